"""What the kernel does with a file right now: one file's facts, and the entry
(or native loader, or ``#!``) that would run it.

The kernel's decision at execve is reproduced from data: the entries of an
instance (newest first, disabled ones skipped, first match wins, M and E
alike), then the native ELF loader, then ``#!`` scripts. Everything here reads
files; nothing writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from binfmtctl import arch as _arch
from binfmtctl import elf
from binfmtctl.entry import Handler
from binfmtctl.instance import Snapshot


class Verdict(str, Enum):
    """What the kernel does with a file right now (``find``, ``scan``)."""

    HANDLED = "handled"
    NATIVE = "native"
    SCRIPT = "script"
    NO_HANDLER = "no_handler"
    DISABLED = "disabled"
    NOT_MOUNTED = "not_mounted"
    UNKNOWN = "unknown"
    MISSING = "missing"
    NOT_REGULAR = "not_regular"  # a FIFO, socket, device or directory: never read
    NOT_EXECUTABLE = "not_executable"  # a group of files the kernel never executes


_ABI_WORDS = {
    "armhf": "armhf (hard-float)",
    "armel": "armel (soft-float)",
    "o32": "MIPS o32",
    "n32": "MIPS n32",
    "n64": "MIPS n64",
}


# -- one file --------------------------------------------------------------------


@dataclass(frozen=True)
class Facts:
    """What the kernel sees of a file: its first bytes, and what they say."""

    path: str  # as passed to execve (inside the root)
    host_path: str  # where we read it
    header: bytes
    ident: elf.ElfIdentity | None
    loader: str | None  # PT_INTERP of a dynamically linked ELF
    script: tuple[str, str | None] | None  # #! interpreter and argument

    def elf_dict(self) -> dict[str, object] | None:
        if self.ident is None:
            return None
        out = self.ident.to_dict()
        out["linking"] = "dynamic" if self.loader else "static"
        out["interpreter"] = self.loader
        return out

    def summary(self) -> str:
        if self.ident is None:
            if self.script is not None:
                arg = f" {self.script[1]}" if self.script[1] else ""
                return f"script (#!{self.script[0]}{arg})"
            return "not an ELF file or #! script"
        return describe_ident(self.ident, self.loader)


def describe_ident(ident: elf.ElfIdentity, loader: str | None) -> str:
    found = ident.arch
    name = found.name if found else f"unknown machine {ident.machine}"
    abi = f" {ident.abi}" if ident.abi else ""
    endian = "LSB" if ident.endian == "little" else "MSB"
    link = f"dynamic, loader {loader}" if loader else "static"
    kind = elf.ET_NAMES.get(ident.e_type, str(ident.e_type))
    return f"ELF {ident.bits}-bit {endian} {kind} {name}{abi}, {link}"


def inspect(host_path: str, path: str | None = None) -> Facts:
    """Read a file's header and what it says, from one non-blocking open.

    Raises OSError; elf.NotRegularFileError for a FIFO, socket, device or
    directory (nothing is read from those: a FIFO would block).
    """
    with elf.open_regular(host_path) as fh:
        header = elf.header_of(fh)
        ident = elf.identity(header)
        loader = elf.program_interpreter(fh) if ident is not None else None
    script = elf.shebang(header) if ident is None else None
    return Facts(path or host_path, host_path, header, ident, loader, script)


def is_native(ident: elf.ElfIdentity, native: Iterable[_arch.Arch]) -> bool:
    found = ident.arch
    return found is not None and any(found.name == a.name for a in native)


# -- find: what the kernel does with a file now ---------------------------------


@dataclass(frozen=True)
class Finding:
    path: str
    facts: Facts | None
    handler: Handler | None
    verdict: Verdict
    detail: str

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "elf": self.facts.elf_dict() if self.facts else None,
            "match": self.handler.to_dict() if self.handler else None,
            "verdict": self.verdict.value,
            "detail": self.detail,
        }


def find(snapshot: Snapshot, facts: Facts, native: Sequence[_arch.Arch]) -> Finding:
    """The kernel's choice for ``facts``: a handler, the native loader, #!, or nothing."""
    winner = snapshot.winner(facts.header, facts.path)
    if winner is not None:
        return Finding(facts.path, facts, winner, Verdict.HANDLED, f"run by {winner.describe()}")
    ident = facts.ident
    if ident is not None and is_native(ident, native):
        return Finding(facts.path, facts, None, Verdict.NATIVE, "native ELF for this host")
    if ident is None and facts.script is not None:
        return Finding(
            facts.path, facts, None, Verdict.SCRIPT, f"#! script run by {facts.script[0]}"
        )
    would = snapshot.matching(facts.header, facts.path)
    if not snapshot.mounted:
        return Finding(
            facts.path, facts, None, Verdict.NOT_MOUNTED,
            f"no handler: binfmt_misc is not mounted at {snapshot.mountpoint}",
        )  # fmt: skip
    if not snapshot.enabled:
        also = f" (otherwise {would[0].name} would run it)" if would else ""
        return Finding(
            facts.path, facts, None, Verdict.DISABLED,
            f"no handler: binfmt_misc is disabled{also}",
        )  # fmt: skip
    if ident is None:
        return Finding(facts.path, facts, None, Verdict.UNKNOWN, "exec format error")
    off = f" ({would[0].name} matches but is disabled)" if would else ""
    return Finding(facts.path, facts, None, Verdict.NO_HANDLER, f"no handler{off}")
