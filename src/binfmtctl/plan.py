"""Deciding what ``install`` will do, arch by arch, before anything is written.

Planning is pure: it looks at the catalog, the emulators found and the
entries already registered, and returns one :class:`Step` per arch.
:func:`apply` then carries the steps out on an :class:`~binfmtctl.instance.Instance`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from binfmtctl import host, interpreters
from binfmtctl.arch import CATALOG, Arch, Profile
from binfmtctl.entry import Entry, Handler, normalize_flags
from binfmtctl.errors import NoSuchEntryError, RefusedError, UsageError
from binfmtctl.instance import Instance
from binfmtctl.native import native_arches

DEFAULT_FLAGS = "F"

# What a step does; "refused" and "missing" are failures, the rest are not.
REGISTER, REPLACE, ENABLE, UNCHANGED = "register", "replace", "enable", "unchanged"
KEPT = "kept"  # another tool's handler for the same arch is already there
REFUSED, MISSING = "refused", "missing"
FAILURES = frozenset({REFUSED, MISSING})

#: What to do when no emulator is found, said once for install and run.
INSTALL_EMULATORS = (
    "install QEMU's static user-mode emulators "
    "(Debian/Ubuntu: `sudo apt-get install qemu-user-static`)"
)


@dataclass(frozen=True)
class Options:
    flags: str = DEFAULT_FLAGS
    profile: Profile = Profile.QEMU
    interpreter: str | None = None  # an explicit emulator path (one arch only)
    interpreter_dirs: tuple[str, ...] = interpreters.DEFAULT_DIRS
    force: bool = False  # allow arches the host runs natively (not its own)
    replace: bool = False  # replace a same-named entry that differs
    # accept an --interpreter whose file name says it emulates another arch
    force_interpreter: bool = False


@dataclass(frozen=True)
class Step:
    arch: Arch
    action: str
    entry: Entry | None = None
    reason: str = ""
    warnings: tuple[str, ...] = field(default=())

    @property
    def failed(self) -> bool:
        return self.action in FAILURES

    def to_dict(self) -> dict[str, object]:
        return {
            "arch": self.arch.name,
            "action": self.action,
            "entry": self.entry.to_dict() if self.entry else None,
            "reason": self.reason or None,
            "warnings": list(self.warnings),
        }


def build_entry(arch: Arch, interpreter: str, flags: str, profile: Profile) -> Entry:
    """The binfmt_misc entry for ``arch`` run by ``interpreter``."""
    magic, mask = arch.magic_mask(profile)
    return Entry(
        name=arch.entry_name,
        kind="M",
        interpreter=interpreter,
        flags=normalize_flags(flags),
        magic=magic,
        mask=mask,
    )


#: Emulator searches by arch name: :func:`default_arches` fills it and
#: :func:`plan_install` reads it, so each arch's emulator is looked for once.
Searched = dict[str, interpreters.Search]


def default_arches(options: Options, searched: Searched | None = None) -> list[Arch]:
    """With no ARCH given: every foreign arch whose emulator is found.

    Pass the same ``searched`` to :func:`plan_install` to reuse the searches.
    """
    native = {a.name for a in native_arches()}
    out = []
    for arch in CATALOG.values():
        if arch.name in native:
            continue
        if _search(arch, options, searched).best is not None:
            out.append(arch)
    return out


def _search(arch: Arch, options: Options, searched: Searched | None) -> interpreters.Search:
    """``arch``'s emulator search, done once per ``searched``."""
    if searched is None:
        return interpreters.search(arch, options.interpreter_dirs)
    found = searched.get(arch.name)
    if found is None:
        found = searched[arch.name] = interpreters.search(arch, options.interpreter_dirs)
    return found


def plan_install(
    arches: Sequence[Arch],
    current: Mapping[str, Handler],
    options: Options,
    searched: Searched | None = None,
) -> list[Step]:
    """One step per arch: what install would do, and why not where it won't."""
    if options.interpreter and len(arches) != 1:
        raise UsageError("--interpreter names one emulator, so give exactly one ARCH")
    try:
        flags = normalize_flags(options.flags)
    except ValueError as err:
        raise UsageError(f"--flags: {err}") from err
    searched = {} if searched is None else searched
    me = host.host_arch()
    native = frozenset(a.name for a in native_arches())
    return [
        _plan_one(arch, current, options, flags, me=me, native=native, searched=searched)
        for arch in arches
    ]


def _plan_one(
    arch: Arch,
    current: Mapping[str, Handler],
    options: Options,
    flags: str,
    *,
    me: Arch | None,
    native: frozenset[str],
    searched: Searched,
) -> Step:
    if me is not None and arch.name == me.name:
        return Step(
            arch,
            REFUSED,
            reason=f"{arch.name} is this machine's own architecture; a handler for it "
            "would send every native program through QEMU",
        )
    if arch.name in native and not options.force:
        return Step(
            arch,
            REFUSED,
            reason=f"this {me.name if me else 'machine'} host runs {arch.name} programs "
            "natively; a handler would send every one of them through QEMU "
            "(use --force if that is what you want)",
        )
    warnings: list[str] = []
    chosen = _emulator(arch, options, searched)
    if isinstance(chosen, Step):
        return chosen
    found = chosen
    if "F" in flags and not found.static:
        warnings.append(
            f"{found.path} is dynamically linked: inside chroots and containers it "
            "will not find its libraries; install a static build (qemu-user-static)"
        )
    if "C" in flags:
        unsafe = credentials_problem(found.path)
        if unsafe:
            return Step(arch, REFUSED, reason=unsafe)
    entry = build_entry(arch, found.path, flags, options.profile)
    existing = current.get(entry.name)
    if existing is None:
        return Step(arch, REGISTER, entry, warnings=tuple(warnings))
    if existing.entry == entry:
        action = UNCHANGED if existing.enabled else ENABLE
        return Step(arch, action, entry, warnings=tuple(warnings))
    if options.replace:
        return Step(arch, REPLACE, entry, warnings=tuple(warnings))
    from binfmtctl.explain import recognise

    theirs = existing.entry
    if recognise(theirs) is arch:
        return Step(
            arch,
            KEPT,
            theirs,
            reason=f"kept the {arch.name} handler already registered (interpreter "
            f"{theirs.interpreter}, flags {theirs.flags or '-'}); --replace installs ours",
        )
    return Step(
        arch,
        REFUSED,
        entry,
        reason=f"{entry.name} is already registered with another definition "
        f"(interpreter {existing.entry.interpreter}, flags {existing.entry.flags or '-'}); "
        "use --replace to replace it",
    )


def _emulator(arch: Arch, options: Options, searched: Searched) -> interpreters.Interpreter | Step:
    """The emulator for ``arch`` (--interpreter or found), or the step that refuses it."""
    if options.interpreter is None:
        search = _search(arch, options, searched)
        if search.best is not None:
            return search.best
        refused = f"; unusable: {search.why_none()}" if search.refused else ""
        return Step(
            arch,
            MISSING,
            reason=f"no emulator for {arch.name} ({' or '.join(interpreters.candidates(arch))} "
            f"in {', '.join(options.interpreter_dirs)}){refused}; "
            f"{interpreters.install_hint(arch)}",
        )
    if not options.interpreter.startswith("/"):
        return Step(
            arch,
            REFUSED,
            reason=f"{options.interpreter} is not an absolute path: the kernel would look "
            "it up from the working directory of every program it runs (and boot "
            f"configuration would too); give the full path, e.g. "
            f"{os.path.abspath(options.interpreter)}",
        )
    found = interpreters.inspect(options.interpreter)
    if found.problems:
        return Step(
            arch,
            REFUSED,
            reason=f"{found.path} cannot be an emulator here: {'; '.join(found.problems)}",
        )
    meant = interpreters.targets(found.path)
    if meant and arch not in meant and not options.force_interpreter:
        return Step(
            arch,
            REFUSED,
            reason=f"{found.path} is, by its name, the emulator for "
            f"{', '.join(a.name for a in meant)}, not {arch.name}: {arch.name} programs "
            f"would crash or misbehave under it; pass {arch.emulator_name}'s path, or "
            "--force-interpreter if this file really runs them",
        )
    return found


def credentials_problem(interpreter: str) -> str | None:
    """Why ``interpreter`` must not get the C flag, as the refusal reason; None if safe.

    One rule for every path that registers (install, export, run/shell, apply).
    """
    from binfmtctl import credentials  # here: only the C flag needs it (run/install start-up)

    unsafe = credentials.check(interpreter)
    if unsafe is None:
        return None
    return (
        "the C flag runs the interpreter with the program's credentials (a setuid "
        "program's emulator runs as root), so every component of its path must be "
        f"owned by root and writable by root only: {unsafe}"
    )


def apply(instance: Instance, step: Step) -> str:
    """Carry out one step; return what was really done (an action above).

    Another process may change the instance between planning and now: an
    identical entry registered meanwhile is UNCHANGED (installs racing with
    one definition all succeed), and a replace never loses a working handler
    (see :meth:`Instance.replace`).
    """
    entry = step.entry
    if entry is None or step.action in (UNCHANGED, KEPT, *FAILURES):
        return step.action
    if step.action == ENABLE:
        try:
            instance.enable(entry.name)
        except NoSuchEntryError:  # removed meanwhile: register it again
            return REGISTER if instance.ensure(entry) else UNCHANGED
    elif step.action == REGISTER:
        if not instance.ensure(entry):
            return UNCHANGED
    elif step.action == REPLACE:
        instance.replace(entry)
    else:  # pragma: no cover - every action is handled above
        raise RefusedError(f"unknown step {step.action}")
    return step.action
