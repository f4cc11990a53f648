"""Why an exec fails: the first known cause that applies, with the command that fixes it.

Diagnosis resolves the command as execvp would, then follows the exec chain
(``#!`` lines, binfmt_misc entries) file by file with the facts of each
(:mod:`binfmtctl.find`: the kernel's own choice of runner); what stops a
runner is checked in :mod:`binfmtctl.causes`, in the order of its ``CauseCode``.

Paths are looked up inside a root (``/`` or a chroot / container rootfs)
exactly as the kernel would there: absolute symlinks restart at that root.
Everything here reads files; nothing writes.
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from binfmtctl import arch as _arch
from binfmtctl import elf, rootpath
from binfmtctl.advice import Advice, advise
from binfmtctl.callerfacts import caller
from binfmtctl.causes import (
    Cause,
    CauseCode,
    Context,
    OtherInstances,
    check_handler,
    check_loader,
    no_runner,
)
from binfmtctl.errors import ExecError
from binfmtctl.find import inspect, is_native
from binfmtctl.instance import Instance, Snapshot
from binfmtctl.namespaces import in_initial_user_namespace, other_user_namespaces
from binfmtctl.native import native_arches

# What a library user reaches through this module: ``diagnose``'s own names
# and the cause types (defined in ``causes``) its results carry.
__all__ = [
    "DEFAULT_PATH",
    "MAX_DEPTH",
    "Cause",
    "CauseCode",
    "Context",
    "Diagnosis",
    "Link",
    "OtherInstances",
    "default_context",
    "diagnose",
    "explain_exec_error",
    "lookup",
    "other_instances",
    "resolve_in",
    "run_failure",
    "run_fix",
    "where",
]

MAX_DEPTH = 5  # the kernel gives up (ELOOP) after this many interpreter rewrites
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Paths inside a root: one lookup, shared (rootpath), named here for its users.
resolve_in = rootpath.resolve_in
where = rootpath.where

# -- why: the command, the file, its runner -------------------------------------


@dataclass(frozen=True)
class Link:
    """One step of the exec chain: a file and who runs it."""

    path: str
    what: str
    runner: str

    def to_dict(self) -> dict[str, object]:
        return {"path": self.path, "what": self.what, "runner": self.runner}


@dataclass(frozen=True)
class Diagnosis:
    command: str
    root: str
    path: str | None
    chain: tuple[Link, ...]
    cause: Cause | None
    notes: tuple[str, ...] = field(default=())
    advice: tuple[Advice, ...] = field(default=())  # best first: `binfmtctl run`, then root

    @property
    def ok(self) -> bool:
        return self.cause is None

    def to_dict(self) -> dict[str, object]:
        return {
            "command": self.command,
            "root": self.root,
            "path": self.path,
            "runs": self.ok,
            "chain": [c.to_dict() for c in self.chain],
            "cause": self.cause.to_dict() if self.cause else None,
            "notes": list(self.notes),
            "advice": [a.to_dict() for a in self.advice],
        }


def lookup(ctx: Context, command: str, path_env: str | None) -> str | Cause:
    """Resolve ``command`` like execvp: a path if it has a '/', else along PATH in the root."""
    root = ctx.root
    if "/" in command:
        path = command
        if os.path.abspath(root) == "/":
            path = os.path.abspath(command)
        elif not path.startswith("/"):
            path = "/" + path
        if resolve_in(root, path) is None:
            return _missing(ctx, path)
        return path
    dirs = (path_env if path_env is not None else DEFAULT_PATH).split(":")
    for directory in dirs:
        candidate = os.path.join(directory or ".", command)
        host_path = resolve_in(root, candidate)
        if host_path and os.path.isfile(host_path) and os.access(host_path, os.X_OK):
            return candidate
    return Cause(
        CauseCode.NOT_FOUND,
        f"{command}: command not found in {ctx.where} (PATH={':'.join(dirs)}).",
        "give the full path, or run it where it is installed",
    )


def diagnose(
    ctx: Context,
    command: str,
    path_env: str | None = None,
    args: Sequence[str] = (),
    rootfs: str | None = None,
) -> Diagnosis:
    """Why ``command`` will or will not run (the first cause that applies).

    ``args`` and ``rootfs`` (the root as the user wrote it) only shape the
    advice: ``binfmtctl run --rootfs ROOTFS -- COMMAND ARGS``.
    """
    found = lookup(ctx, command, path_env)
    if isinstance(found, Cause):
        return Diagnosis(command, ctx.root, None, (), found)
    chain: list[Link] = []
    cause = _examine(ctx, found, chain, 0)
    notes: list[str] = []
    if cause is None and not ctx.snapshot.host and chain and "binfmt_misc" in chain[-1].runner:
        notes.append(
            "this binfmt_misc is a private instance of a user namespace: its entries "
            "exist only here, not on the host"
        )
    advice = advise(ctx.caller, cause.remedy if cause else None, [command, *args], rootfs)
    return Diagnosis(command, ctx.root, found, tuple(chain), cause, tuple(notes), advice)


def _examine(ctx: Context, path: str, chain: list[Link], depth: int) -> Cause | None:
    if depth >= MAX_DEPTH:
        return Cause(
            CauseCode.TOO_MANY_LEVELS,
            f"{path}: more than {MAX_DEPTH} levels of interpreters (#! lines or handlers); "
            "the kernel gives up with 'too many levels of symbolic links' (ELOOP).",
            "point the #! line at the real interpreter",
        )
    host_path = resolve_in(ctx.root, path)
    if host_path is None:
        return _missing(ctx, path)
    try:
        mode = os.stat(host_path).st_mode
    except OSError as err:
        return _unreadable(path, err)
    if not stat.S_ISREG(mode):
        return _not_regular(path, elf.file_kind(mode))
    if not os.access(host_path, os.X_OK):
        return Cause(
            CauseCode.NOT_EXECUTABLE,
            f"{path} is not an executable file, so exec fails with 'permission denied'.",
            f"chmod +x {shlex.quote(host_path)}",
        )
    try:
        facts = inspect(host_path, path)
    except elf.NotRegularFileError as err:  # replaced since the stat above
        return _not_regular(path, err.kind)
    except OSError as err:
        return _unreadable(path, err)
    ident = facts.ident
    winner = ctx.snapshot.winner(facts.header, path)
    if winner is not None:
        chain.append(Link(path, facts.summary(), f"binfmt_misc entry {winner.describe()}"))
        return check_handler(ctx, facts, winner)
    if ident is not None and is_native(ident, ctx.native):
        chain.append(Link(path, facts.summary(), "the kernel's native ELF loader"))
        return check_loader(ctx, facts)
    if ident is None and facts.script is not None:
        interp = facts.script[0]
        chain.append(Link(path, facts.summary(), f"the kernel's #! loader, then {interp}"))
        if resolve_in(ctx.root, interp) is None:
            return Cause(
                CauseCode.SCRIPT_INTERPRETER_MISSING,
                f"{path} is a script for {interp}, which does not exist in "
                f"{ctx.where}; the kernel reports 'no such file or directory' "
                "for the script itself.",
                f"install {interp} in {ctx.where}, or fix the #! line of {path}",
            )
        return _examine(ctx, interp, chain, depth + 1)
    chain.append(Link(path, facts.summary(), "nothing"))
    return no_runner(ctx, facts)


def _missing(ctx: Context, path: str) -> Cause:
    """Not there; on this system, a dangling or looping symlink is said as such."""
    if os.path.abspath(ctx.root) == "/" and os.path.islink(path):
        try:
            os.stat(path)
        except OSError as err:
            return Cause(
                CauseCode.NOT_FOUND, f"{path} is a symlink that leads nowhere ({err.strerror})."
            )
    return Cause(CauseCode.NOT_FOUND, f"{path} does not exist in {ctx.where}.")


def _not_regular(path: str, kind: str) -> Cause:
    """The kernel execs only regular files; a FIFO is never opened (it would block)."""
    return Cause(
        CauseCode.NOT_EXECUTABLE,
        f"{path} is not a regular file (a {kind}), so exec fails with 'permission denied'.",
        "run a regular executable file",
    )


def _unreadable(path: str, err: OSError) -> Cause:
    return Cause(
        CauseCode.NOT_READABLE,
        f"{path} cannot be read ({err.strerror}), so which handler the kernel would "
        "choose for it cannot be told.",
        "run `binfmtctl why` as a user who can read it",
    )


# -- other user namespaces' instances (I/O) -------------------------------------


def other_instances(proc: str = "/proc") -> list[tuple[int, Snapshot]]:
    """binfmt_misc instances with handlers, mounted by processes in other user namespaces.

    Seen through /proc/PID/root; needs privileges over those namespaces (root on
    the host has them). Unreadable ones are skipped.
    """
    out: list[tuple[int, Snapshot]] = []
    for pid, points in other_user_namespaces(proc):
        for point in points:
            try:
                snapshot = Instance(f"{proc}/{pid}/root{point}").snapshot()
            except Exception:  # noqa: BLE001, S112 - a process that went away, or no access
                continue
            if snapshot.mounted and snapshot.handlers:
                out.append((pid, snapshot))
                break
    return out


def default_context(instance: Instance, root: str = "/") -> Context:
    """The facts ``why`` needs, gathered once from this system (the caller's too)."""
    snapshot = instance.snapshot()
    others: OtherInstances | None = other_instances if in_initial_user_namespace() else None
    return Context(snapshot, root, native_arches(), others, caller())


# -- run's own exec failures ------------------------------------------------------


def run_fix(
    code: CauseCode, found: _arch.Arch | None, named: Sequence[str | _arch.Arch] | None
) -> str | None:
    """What fixes a handler problem of ``binfmtctl run``'s own private instance.

    ``named``: the arches ``--arch`` named (None: run registered every arch whose
    emulator it found). Pure: the cause, the program's arch and the options.
    """
    if code is CauseCode.INTERPRETER_MISSING:
        return (
            "leave out --flags, or give flags with F: with F the kernel opens the emulator "
            "on the host, before the chroot"
        )
    if code is CauseCode.INTERPRETER_DYNAMIC:
        return (
            "install a static emulator (Debian/Ubuntu: qemu-user-static): it needs nothing "
            "inside the root"
        )
    if found is None:
        return None
    wanted = {a.name if isinstance(a, _arch.Arch) else _arch.resolve(a).name for a in named or ()}
    if named is not None and found.name not in wanted:
        return f"add `--arch {found.name}`"
    return (
        f"no usable emulator for {found.name} was found: install "
        f"{found.emulator_name}-static (Debian/Ubuntu: qemu-user-static), or name its "
        "directory with --interpreter-dir"
    )


def run_failure(
    ctx: Context,
    program: str,
    path_env: str | None,
    named: Sequence[str | _arch.Arch] | None = None,
) -> Cause | None:
    """Why ``binfmtctl run`` could not exec ``program``: ``why``'s cause, with run's fix.

    ``ctx`` is run's own private instance, seen from where the command runs
    (after a chroot: ``root`` "/" and ``shown_root`` the root's name). A handler
    problem gets :func:`run_fix`; any other cause (a missing loader, a file that
    is not executable) keeps why's fix. None when why finds nothing wrong.
    """
    found = diagnose(ctx, program, path_env)
    cause = found.cause
    if cause is None or cause.remedy is None:
        return cause
    return replace(cause, fix=run_fix(cause.code, _arch_of(ctx, found), named), remedy=None)


def _arch_of(ctx: Context, found: Diagnosis) -> _arch.Arch | None:
    """The arch of the last file of the exec chain (the one nothing runs), if an ELF."""
    if not found.chain:
        return None
    host_path = resolve_in(ctx.root, found.chain[-1].path)
    try:
        ident = inspect(host_path).ident if host_path else None
    except OSError:
        return None
    return ident.arch if ident else None


def explain_exec_error(
    err: ExecError,
    program: str,
    *,
    path_env: str | None,
    named: Sequence[str | _arch.Arch] | None,
    rootfs: str | None,
    shown: str | None,
    mountpoint: str,
) -> ExecError:
    """``err`` (run's exec of ``program`` failed) restated with why's cause and run's fix.

    Called in run's private instance after the exec failed, seen from the host's
    root (``rootfs``: the absolute path of run's root, ``shown``: as the user
    wrote it). The error keeps its class and exit status (126, 127); a command
    not found in PATH, or one why finds nothing wrong with, keeps its own message.
    """
    ctx = default_context(Instance(mountpoint), rootfs or "/")
    ctx.shown_root = shown
    cause = run_failure(ctx, program, path_env, named)
    if cause is None or cause.code is CauseCode.NOT_FOUND:
        return err
    fix = f"\n  fix: {cause.fix}" if cause.fix else ""
    context = {**err.context, "cause": cause.code.value}
    return type(err)(f"cannot run {program}: {cause.message}{fix}", **context)
