"""Advice that fits the caller: the commands that fix a program that will not run, as data.

A fix that needs root is a complete command: ``sudo binfmtctl install aarch64``
for an ordinary user, ``binfmtctl install aarch64`` for root. When the caller
is not root and private binfmt_misc instances work here, ``binfmtctl run`` (no
root, nothing changes on the host) comes first, with the real command and root
when they are known. Pure: who the caller is comes in as a :class:`Caller`
(:func:`binfmtctl.callerfacts.caller` gathers it); the CLI renders the records.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from binfmtctl.namespaces import DEFAULT_MOUNTPOINT

#: Shown for the command when it is not known (``status``, ``scan``).
PLACEHOLDER = "CMD"


class AdviceKind(str, Enum):
    """Which way a piece of advice goes."""

    ROOTLESS = "rootless"  # `binfmtctl run`: a private instance, no root needed
    ROOT = "root"  # a change to this instance: sudo unless the caller is root


@dataclass(frozen=True)
class Advice:
    """One command that fixes it, complete and quoted for a POSIX shell."""

    kind: AdviceKind
    command: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "command": self.command}


@dataclass(frozen=True)
class Caller:
    """Who asks: root (euid 0) or not, and whether `binfmtctl run` works for them here.

    ``rootless`` may be a function, asked only when advice is wanted (finding
    out costs a fork; most runs need no advice at all).
    """

    root: bool
    rootless: bool | Callable[[], bool] = False

    def can_run_rootless(self) -> bool:
        return self.rootless() if callable(self.rootless) else self.rootless


#: Commands as root types them: what a :class:`~binfmtctl.causes.Context` says by default.
AS_ROOT = Caller(root=True)


@dataclass(frozen=True)
class Remedy:
    """The commands (argv each, without sudo, run in turn) that fix a handler problem as root.

    ``rootless``: whether a private instance with fresh handlers (``binfmtctl
    run``) fixes it too; every handler problem but a dynamically linked
    emulator's (run would register the same emulator) is.
    """

    commands: tuple[tuple[str, ...], ...]
    rootless: bool = True


def binfmtctl(*words: str, mountpoint: str = DEFAULT_MOUNTPOINT, rootless: bool = True) -> Remedy:
    """A Remedy running ``binfmtctl WORDS``, naming ``--mountpoint`` only when not the default."""
    where = ("--mountpoint", mountpoint) if mountpoint != DEFAULT_MOUNTPOINT else ()
    return Remedy((("binfmtctl", *words, *where),), rootless)


def as_root(remedy: Remedy, caller: Caller) -> str:
    """The remedy as the caller types it: each command with sudo unless the caller is root."""
    sudo = () if caller.root else ("sudo",)
    return " && ".join(shlex.join((*sudo, *argv)) for argv in remedy.commands)


def run_command(command: Sequence[str] | None = None, rootfs: str | None = None) -> str:
    """``binfmtctl run [--rootfs DIR] -- CMD``, quoted; CMD stays a placeholder when unknown."""
    words = ["binfmtctl", "run", *(("--rootfs", rootfs) if rootfs else ()), "--"]
    return f"{shlex.join(words)} {shlex.join(command) if command else PLACEHOLDER}"


def advise(
    caller: Caller,
    remedy: Remedy | None,
    command: Sequence[str] | None = None,
    rootfs: str | None = None,
) -> tuple[Advice, ...]:
    """What to run, best first: `binfmtctl run` when it helps this caller, then the root fix."""
    if remedy is None:
        return ()
    out: list[Advice] = []
    if remedy.rootless and not caller.root and caller.can_run_rootless():
        out.append(Advice(AdviceKind.ROOTLESS, run_command(command, rootfs)))
    out.append(Advice(AdviceKind.ROOT, as_root(remedy, caller)))
    return tuple(out)
