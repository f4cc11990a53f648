"""Deciding what ``install`` will do, arch by arch, before anything is written.

Planning is pure: it looks at the catalog, the entries already registered and
the facts of this machine its caller gathered (:class:`HostFacts`, from
:func:`binfmtctl.hostfacts.gather`), and returns one :class:`Step` per arch.
:func:`apply` then carries the steps out on an :class:`~binfmtctl.instance.Instance`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from enum import Enum
from types import MappingProxyType

from binfmtctl import interpreters
from binfmtctl.arch import Arch, Profile
from binfmtctl.entry import Entry, Handler
from binfmtctl.errors import NoSuchEntryError, RefusedError, UsageError
from binfmtctl.records import NamedTuple
from binfmtctl.register_string import normalize_flags

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from binfmtctl.instance import Instance

DEFAULT_FLAGS = "F"
#: ``--flags auto`` (the CLI's default): :func:`default_flags` decides per emulator.
AUTO_FLAGS = "auto"


class Action(str, Enum):
    """What a step does; REFUSED and MISSING are failures, the rest are not."""

    REGISTER = "register"
    REPLACE = "replace"
    ENABLE = "enable"
    UNCHANGED = "unchanged"
    KEPT = "kept"  # another tool's handler for the same arch is already there
    REFUSED = "refused"
    MISSING = "missing"  # no emulator found


REGISTER, REPLACE, ENABLE, UNCHANGED = (
    Action.REGISTER,
    Action.REPLACE,
    Action.ENABLE,
    Action.UNCHANGED,
)
KEPT, REFUSED, MISSING = Action.KEPT, Action.REFUSED, Action.MISSING
FAILURES = frozenset({REFUSED, MISSING})

#: What to do when no emulator is found, said once for install and run.
INSTALL_EMULATORS = (
    "install QEMU's static user-mode emulators "
    "(Debian/Ubuntu: `sudo apt-get install qemu-user-static`)"
)


class Options(NamedTuple):
    flags: str = DEFAULT_FLAGS
    profile: Profile = Profile.QEMU
    interpreter: str | None = None  # an explicit emulator path (one arch only)
    interpreter_dirs: tuple[str, ...] = interpreters.DEFAULT_DIRS
    force: bool = False  # allow arches the host runs natively (not its own)
    replace: bool = False  # replace a same-named entry that differs
    # accept an --interpreter whose file name says it emulates another arch
    force_interpreter: bool = False


class HostFacts(NamedTuple):
    """What planning needs to know of this machine, gathered once by the caller.

    Like :class:`binfmtctl.diagnose.Context`: the I/O happens before planning
    (:func:`binfmtctl.hostfacts.gather`), so a plan is a function of its inputs.
    """

    me: Arch | None = None  # this machine's own arch
    native: frozenset[str] = frozenset()  # arches it runs without emulation
    emulators: Mapping[str, interpreters.Search] = MappingProxyType({})  # by arch
    interpreter: interpreters.Interpreter | None = None  # --interpreter, inspected
    unsafe: Mapping[str, str] = MappingProxyType({})  # emulator -> why not with C
    distro: str | None = None  # the distro family, for the package a hint names
    # emulator path -> whether it keeps argv[0] behind the P flag (binfmtctl.argv0)
    keeps_argv0: Mapping[str, bool] = MappingProxyType({})


class Step(NamedTuple):
    arch: Arch
    action: Action
    entry: Entry | None = None
    reason: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return self.action in FAILURES

    def to_dict(self) -> dict[str, object]:
        return {
            "arch": self.arch.name,
            "action": self.action.value,
            "entry": self.entry.to_dict() if self.entry else None,
            "reason": self.reason or None,
            "warnings": list(self.warnings),
        }


def default_flags(keeps_argv0: bool) -> str:
    """The flags of an entry when none are given: FP if the emulator keeps argv[0], else F.

    F opens the emulator at registration (it then works in chroots and
    containers); P passes the program's own argv[0] on, so login shells and
    ``exec -a`` work, but only an emulator that honours P may get it (one that
    does not sees argv[0] as an extra argument). The one rule for install,
    run, shell, export, persistence and the agent.
    """
    return "FP" if keeps_argv0 else DEFAULT_FLAGS


def flags_for(flags: str, emulator: str, facts: HostFacts) -> str:
    """``flags`` as given, or with :data:`AUTO_FLAGS` the default for ``emulator``."""
    if flags != AUTO_FLAGS:
        return flags
    return default_flags(facts.keeps_argv0.get(emulator, False))


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


#: Emulator searches by arch name, so each arch's emulator is looked for once.
Searched = dict[str, interpreters.Search]


def plan_install(
    arches: Sequence[Arch],
    current: Mapping[str, Handler],
    options: Options,
    facts: HostFacts,
) -> list[Step]:
    """One step per arch: what install would do, and why not where it won't."""
    if options.interpreter and len(arches) != 1:
        raise UsageError("--interpreter names one emulator, so give exactly one ARCH")
    try:
        flags = options.flags if options.flags == AUTO_FLAGS else normalize_flags(options.flags)
    except ValueError as err:
        raise UsageError(f"--flags: {err}") from err
    return [_plan_one(arch, current, options, flags, facts) for arch in arches]


def _plan_one(
    arch: Arch,
    current: Mapping[str, Handler],
    options: Options,
    flags: str,
    facts: HostFacts,
) -> Step:
    me = facts.me
    if me is not None and arch.name == me.name:
        return Step(
            arch,
            REFUSED,
            reason=f"{arch.name} is this machine's own architecture; a handler for it "
            "would send every native program through QEMU",
        )
    if arch.name in facts.native and not options.force:
        return Step(
            arch,
            REFUSED,
            reason=f"this {me.name if me else 'machine'} host runs {arch.name} programs "
            "natively; a handler would send every one of them through QEMU "
            "(use --force if that is what you want)",
        )
    warnings: list[str] = []
    chosen = _emulator(arch, options, facts)
    if isinstance(chosen, Step):
        return chosen
    found = chosen
    flags = flags_for(flags, found.path, facts)
    if "F" in flags and not found.static:
        warnings.append(
            f"{found.path} is dynamically linked: inside chroots and containers it "
            "will not find its libraries; install a static build (qemu-user-static)"
        )
    if "C" in flags:
        unsafe = facts.unsafe.get(found.path)
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
    # Start-up speed: explain (~1.7 ms) only when an entry of that name differs.
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


def _emulator(arch: Arch, options: Options, facts: HostFacts) -> interpreters.Interpreter | Step:
    """The emulator for ``arch`` (--interpreter or found), or the step that refuses it."""
    if options.interpreter is None:
        search = facts.emulators.get(arch.name, interpreters.Search(None, ()))
        if search.best is not None:
            return search.best
        refused = f"; unusable: {search.why_none()}" if search.refused else ""
        return Step(
            arch,
            MISSING,
            reason=f"no emulator for {arch.name} ({' or '.join(interpreters.candidates(arch))} "
            f"in {', '.join(options.interpreter_dirs)}){refused}; "
            f"{interpreters.hint_for(arch, facts.distro)}",
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
    found = facts.interpreter
    if found is None:
        raise UsageError(f"--interpreter {options.interpreter}: not inspected before planning")
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


def apply(instance: Instance, step: Step) -> Action:
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
