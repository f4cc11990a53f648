"""The causes of a failed exec, checked for a file whose runner is known.

``diagnose`` follows a command to a file and the kernel's choice of runner for
it; this module then says, in the order of :class:`CauseCode`, what stops that
runner: no entry (or one disabled, shadowed, for another ABI, or only in
another user namespace's instance), an interpreter that is missing or cannot
run here, or a dynamic loader that is missing or of another ABI. Each
:class:`Cause` carries the command that fixes it. Everything here reads files;
nothing writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from binfmtctl import arch as _arch
from binfmtctl import elf, interpreters
from binfmtctl.advice import AS_ROOT, Caller, Remedy, as_root, binfmtctl
from binfmtctl.entry import Handler
from binfmtctl.explain import recognise
from binfmtctl.find import _ABI_WORDS, Facts, is_native
from binfmtctl.instance import Snapshot
from binfmtctl.rootpath import resolve_in, where


class CauseCode(str, Enum):
    """Why a program does not run, in the order the causes are checked."""

    NOT_FOUND = "not_found"
    NOT_EXECUTABLE = "not_executable"
    NOT_READABLE = "not_readable"
    TOO_MANY_LEVELS = "too_many_levels"
    NOT_MOUNTED = "not_mounted"
    INSTANCE_DISABLED = "instance_disabled"
    PRIVATE_INSTANCE = "private_instance"
    HANDLER_DISABLED = "handler_disabled"
    WRONG_ABI = "wrong_abi"
    NO_HANDLER = "no_handler"
    UNKNOWN_FORMAT = "unknown_format"
    SHADOWED = "shadowed"
    INTERPRETER_MISSING = "interpreter_missing"
    INTERPRETER_UNUSABLE = "interpreter_unusable"
    WRONG_EMULATOR = "wrong_emulator"
    INTERPRETER_DYNAMIC = "interpreter_dynamic"
    LOADER_MISSING = "loader_missing"
    SCRIPT_INTERPRETER_MISSING = "script_interpreter_missing"


# The dynamic loaders a Debian system of each ABI has; used to tell "wrong ABI"
# from "no loader at all" when a program's PT_INTERP is missing.
KNOWN_LOADERS: dict[int, tuple[str, ...]] = {
    elf.EM_ARM: ("/lib/ld-linux-armhf.so.3", "/lib/ld-linux.so.3"),
    elf.EM_MIPS: ("/lib/ld.so.1", "/lib32/ld.so.1", "/lib64/ld.so.1"),
}


@dataclass(frozen=True)
class Cause:
    """Why it will not run; ``fix`` in words, ``remedy`` the commands when they are binfmtctl's."""

    code: CauseCode
    message: str
    fix: str | None = None
    remedy: Remedy | None = None

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code.value, "message": self.message, "fix": self.fix}


# Another user namespace's binfmt_misc, seen from here: (pid, its Snapshot).
OtherInstances = Callable[[], list[tuple[int, Snapshot]]]


@dataclass
class Context:
    """Everything ``why`` consults: the instance, the root, the host's native arches."""

    snapshot: Snapshot
    root: str = "/"
    native: Sequence[_arch.Arch] = ()
    others: OtherInstances | None = None  # looked at only when nothing here matches
    caller: Caller = AS_ROOT  # who types the fixes (sudo unless root)
    # The root as messages name it when this process is already chrooted into it
    # (``binfmtctl run --rootfs``): ``root`` is then "/", the root's own view.
    shown_root: str | None = None

    @property
    def in_root(self) -> bool:
        """Whether the program runs in a root file system rather than on this system."""
        return self.shown_root is not None or os.path.abspath(self.root) != "/"

    @property
    def shown(self) -> str:
        return self.shown_root or self.root

    @property
    def where(self) -> str:
        """'this system', or the root file system, for messages."""
        return self.shown_root or where(self.root)

    def fixed_by(self, remedy: Remedy, note: str = "") -> tuple[str, Remedy]:
        """A remedy as this caller types it (the ``fix``), followed by ``note``; and the remedy."""
        return as_root(remedy, self.caller) + (f"  ({note})" if note else ""), remedy


def no_runner(ctx: Context, facts: Facts) -> Cause:
    """No enabled entry matches a file the kernel cannot run itself."""
    snapshot, ident, path = ctx.snapshot, facts.ident, facts.path
    what = _what(ident) if ident else "file"
    would = snapshot.matching(facts.header, path)
    arch_word = ident.arch.name if ident and ident.arch else None
    mp = snapshot.mountpoint
    install = binfmtctl("install", arch_word, mountpoint=mp) if arch_word else None
    if not would:
        other = _elsewhere(ctx, facts)
        if other is not None:
            return other
    if not snapshot.mounted:
        # `binfmtctl install` mounts binfmt_misc itself; with no arch to install, mount it.
        mount = Remedy((("mount", "-t", "binfmt_misc", "binfmt_misc", mp),), rootless=False)
        return Cause(
            CauseCode.NOT_MOUNTED,
            f"binfmt_misc is not mounted at {mp}, so the kernel has no "
            f"handler for this {what} and reports 'exec format error'.",
            *ctx.fixed_by(install or mount),
        )
    if not snapshot.enabled:
        hint = (
            f" (otherwise {would[0].name} would run it)"
            if would
            else " (and no entry would run it anyway)"
        )
        return Cause(
            CauseCode.INSTANCE_DISABLED,
            f"binfmt_misc at {snapshot.mountpoint} is switched off (status: disabled), "
            f"so no handler runs this {what}{hint}.",
            *ctx.fixed_by(binfmtctl("enable", "--instance", mountpoint=mp)),
        )
    if would:
        return Cause(
            CauseCode.HANDLER_DISABLED,
            f"the handler {would[0].name} for this {what} is registered but disabled, "
            "so the kernel skips it and reports 'exec format error'.",
            *ctx.fixed_by(binfmtctl("enable", would[0].name, mountpoint=mp)),
        )
    if ident is None:
        return Cause(
            CauseCode.UNKNOWN_FORMAT,
            f"{path} is neither an ELF program nor a #! script and no handler matches it, "
            "so exec fails with 'exec format error' (a shell would run it as a sh script).",
            f"add a #! line to {path}",
        )
    sibling = _sibling(ctx, ident)
    if sibling is not None:
        return sibling
    if arch_word is None:
        return Cause(
            CauseCode.NO_HANDLER,
            f"no binfmt_misc handler matches this {what} (e_machine {ident.machine}, "
            "unknown to binfmtctl), so exec fails with 'exec format error'.",
            "register a handler for it with `binfmtctl explain` and a custom entry",
        )
    assert install is not None  # arch_word is known here
    return Cause(
        CauseCode.NO_HANDLER,
        f"no binfmt_misc handler matches this {what}, so exec fails with 'exec format error'.",
        *ctx.fixed_by(install),
    )


def _what(ident: elf.ElfIdentity) -> str:
    found = ident.arch
    name = found.name if found else f"e_machine {ident.machine}"
    if ident.abi in ("armhf", "armel"):
        name = f"{name} {_ABI_WORDS[ident.abi]}"
    return f"{name} program"


def _sibling(ctx: Context, ident: elf.ElfIdentity) -> Cause | None:
    """An enabled handler for the same machine but another ABI, endianness or class."""
    mine = ident.arch
    if mine is None:
        return None
    for h in ctx.snapshot.handlers:
        theirs = recognise(h.entry)
        if not h.enabled or theirs is None or theirs.name == mine.name:
            continue
        if theirs.machine == ident.machine or theirs.family == mine.family:
            return Cause(
                CauseCode.WRONG_ABI,
                f"this is a {mine.description} program ({mine.name}), but the registered "
                f"{h.name} runs {theirs.description} programs ({theirs.name}) only, so "
                "exec fails with 'exec format error'.",
                *ctx.fixed_by(binfmtctl("install", mine.name, mountpoint=ctx.snapshot.mountpoint)),
            )
    return None


def _elsewhere(ctx: Context, facts: Facts) -> Cause | None:
    """A handler for this file that lives only in another user namespace's instance."""
    if ctx.others is None:
        return None
    for pid, other in ctx.others():
        hit = other.winner(facts.header, facts.path)
        if hit is None:
            continue
        arch_word = facts.ident.arch.name if facts.ident and facts.ident.arch else hit.name
        here = (
            f"binfmt_misc is not mounted at {ctx.snapshot.mountpoint}"
            if not ctx.snapshot.mounted
            else "no handler here matches it"
        )
        return Cause(
            CauseCode.PRIVATE_INSTANCE,
            f"{here}; the handler {hit.name} exists only in the private binfmt_misc of "
            f"another user namespace (process {pid}): whatever registered it ran inside a "
            "user namespace (a rootless container, `unshare -U`) and changed that private "
            "instance, not the host's.",
            *ctx.fixed_by(
                binfmtctl("install", arch_word), "on the host, outside any user namespace"
            ),
        )
    return None


def _suits(handler: Handler, found: _arch.Arch) -> bool:
    """Whether a handler is meant for ``found`` (by entry name or emulator name)."""
    base = os.path.basename(handler.entry.interpreter)
    for suffix in ("-static", "-binfmt"):
        base = base.removesuffix(suffix)
    return handler.name == found.entry_name or base == found.emulator_name


def check_handler(ctx: Context, facts: Facts, winner: Handler) -> Cause | None:
    ident, path, root = facts.ident, facts.path, ctx.root
    found = ident.arch if ident else None
    if found is not None and not _suits(winner, found):
        for older in ctx.snapshot.handlers[ctx.snapshot.handlers.index(winner) + 1 :]:
            if older.enabled and _suits(older, found) and older.entry.matches(facts.header, path):
                return Cause(
                    CauseCode.SHADOWED,
                    f"the newer entry {winner.describe()} also matches this "
                    f"{_what(ident) if ident else 'file'} and the kernel tries the newest "
                    f"entry first, so {older.name} never gets it.",
                    *ctx.fixed_by(
                        binfmtctl("disable", winner.name, mountpoint=ctx.snapshot.mountpoint)
                    ),
                )
    interp = winner.entry.interpreter
    fixed = "F" in winner.entry.flags
    arch_word = found.name if found else winner.name
    replace = binfmtctl("install", arch_word, "--replace", mountpoint=ctx.snapshot.mountpoint)
    inside = resolve_in(root, interp)
    if not fixed and inside is None:
        if ctx.in_root:
            return Cause(
                CauseCode.INTERPRETER_MISSING,
                f"{winner.name} has no F flag, so the kernel looks up its interpreter "
                f"{interp} inside {ctx.shown} at every exec, and it is not there: exec fails "
                "with 'no such file or directory'.",
                *ctx.fixed_by(
                    replace, "registers with F: the kernel opens the interpreter once, on the host"
                ),
            )
        return Cause(
            CauseCode.INTERPRETER_MISSING,
            f"the interpreter {interp} of {winner.name} does not exist, so exec fails "
            "with 'no such file or directory'.",
            *ctx.fixed_by(replace),
        )
    # With F the kernel runs the file it opened on the host; without F, the one in the root.
    emulator = interp if fixed else inside
    if emulator is not None:
        unfit = _unfit_emulator(ctx, winner, emulator, found)
        if unfit is not None:
            return unfit
    if emulator is not None and ctx.in_root:
        try:
            needs = elf.program_interpreter(emulator)
        except OSError:
            needs = None
        if needs is not None and resolve_in(root, needs) is None:
            how = (
                "F makes the kernel find the emulator itself, but"
                if fixed
                else "the emulator is there, but"
            )
            return Cause(
                CauseCode.INTERPRETER_DYNAMIC,
                f"the interpreter {interp} of {winner.name} is dynamically linked: {how} "
                f"its loader {needs} and libraries must exist inside {ctx.shown}, and they do "
                "not.",
                *ctx.fixed_by(
                    Remedy(
                        (("apt-get", "install", "qemu-user-static"), *replace.commands),
                        rootless=False,  # run would register the same dynamic emulator
                    ),
                    "a static emulator needs nothing inside the root",
                ),
            )
    return check_loader(ctx, facts)


# What exec reports when the interpreter is such a file (the kernel's open_exec
# and binfmt_elf); a #! script is absent: the kernel runs it through its #! line.
_UNFIT_ERRNO = {
    interpreters.Problem.EMPTY: "exec format error",
    interpreters.Problem.NOT_ELF: "exec format error",
    interpreters.Problem.NOT_PROGRAM: "exec format error",
    interpreters.Problem.FOREIGN_CPU: "exec format error",
    interpreters.Problem.NOT_REGULAR: "permission denied",
    interpreters.Problem.NOT_EXECUTABLE: "permission denied",
}


def _unfit_emulator(
    ctx: Context, winner: Handler, emulator: str, found: _arch.Arch | None
) -> Cause | None:
    """An interpreter that cannot run here, or that emulates another arch than the program's."""
    interp, fixed = winner.entry.interpreter, "F" in winner.entry.flags
    arch_word = found.name if found else winner.name
    mp = ctx.snapshot.mountpoint
    looked = interpreters.fitness(emulator, {a.family for a in ctx.native} or None)
    problems = list(looked.problems)
    if not fixed and not problems and not os.access(emulator, os.X_OK):
        # with F the kernel opened it at registration; without, it needs +x at every exec
        problems.append((interpreters.Problem.NOT_EXECUTABLE, "not executable"))
    for code, words in problems:
        error = _UNFIT_ERRNO.get(code)
        if error is None:
            continue
        if code is interpreters.Problem.FOREIGN_CPU and ctx.snapshot.winner(
            looked.header, emulator
        ):
            continue  # another entry emulates the emulator itself: the kernel chains them
        return Cause(
            CauseCode.INTERPRETER_UNUSABLE,
            f"the interpreter {interp} of {winner.name} cannot run on this machine: it is "
            f"{words}, so exec fails with '{error}'.",
            *ctx.fixed_by(binfmtctl("install", arch_word, "--replace", mountpoint=mp)),
        )
    meant = interpreters.targets(interp)
    if found is not None and meant and found not in meant:
        return Cause(
            CauseCode.WRONG_EMULATOR,
            f"{winner.name} runs this {found.name} program with {interp}, which by its "
            f"name emulates {', '.join(a.name for a in meant)}, not {found.name}: QEMU "
            "refuses it ('Invalid ELF image for this architecture').",
            *ctx.fixed_by(binfmtctl("install", found.name, "--replace", mountpoint=mp)),
        )
    return None


def check_loader(ctx: Context, facts: Facts) -> Cause | None:
    """A dynamically linked program needs its PT_INTERP inside the root, of its own ABI."""
    ident, loader, root = facts.ident, facts.loader, ctx.root
    if ident is None or loader is None:
        return None
    found = resolve_in(root, loader)
    what = _what(ident)
    if found is None:
        other = _other_loader(ctx, ident, loader)
        if other is not None:
            return other
        if is_native(ident, ctx.native):
            outcome = "exec fails with 'no such file or directory'"
        else:
            outcome = (
                f"QEMU starts it, then stops with \"Could not open '{loader}': "
                'No such file or directory"'
            )
        arch_word = ident.arch.name if ident.arch else "its architecture"
        if not ctx.in_root:
            fix = (
                f"run it in a {arch_word} root filesystem (chroot, container, "
                "`binfmtctl why --rootfs DIR`), or point QEMU at one with QEMU_LD_PREFIX=DIR"
            )
        else:
            fix = f"install the {arch_word} C library (libc6) in {ctx.shown}"
        return Cause(
            CauseCode.LOADER_MISSING,
            f"this dynamically linked {what} needs its loader {loader}, which does not "
            f"exist in {ctx.where}: {outcome}.",
            fix,
        )
    try:
        theirs = elf.identity(elf.read_header(found))
    except OSError:
        theirs = None
    if theirs is not None and ident.abi and theirs.abi and theirs.abi != ident.abi:
        return _abi_cause(ident, loader, theirs, loader, ctx.where)
    return None


def _other_loader(ctx: Context, ident: elf.ElfIdentity, wanted: str) -> Cause | None:
    for candidate in KNOWN_LOADERS.get(ident.machine, ()):
        host_path = resolve_in(ctx.root, candidate)
        if host_path is None:
            continue
        try:
            theirs = elf.identity(elf.read_header(host_path))
        except OSError:
            continue
        if theirs is not None and theirs.abi and theirs.abi != ident.abi:
            return _abi_cause(ident, wanted, theirs, candidate, ctx.where)
    return None


def _abi_cause(
    ident: elf.ElfIdentity,
    wanted: str,
    theirs: elf.ElfIdentity,
    their_loader: str,
    place: str,
) -> Cause:
    mine = _ABI_WORDS.get(ident.abi or "", ident.abi or "?")
    other = _ABI_WORDS.get(theirs.abi or "", theirs.abi or "?")
    return Cause(
        CauseCode.WRONG_ABI,
        f"this is an {mine} program and needs the loader {wanted}, but {place} "
        f"has the {other} loader {their_loader}: the two ABIs cannot share a loader or "
        "libraries.",
        f"run it in a {ident.abi} root filesystem, or use the {theirs.abi} build of the program",
    )
