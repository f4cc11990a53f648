"""plan: every install decision, as a table, with no kernel and no file system.

Planning is pure: the host's facts (its arch, what it runs natively, the
emulators found, whether one is safe with C) are plain values here, so each
row names exactly the situation it decides.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from binfmtctl import interpreters, plan
from binfmtctl.arch import CATALOG, Profile
from binfmtctl.entry import Handler
from binfmtctl.errors import UsageError
from binfmtctl.plan import Action, HostFacts, Options

ARM64 = CATALOG["aarch64"]
QEMU = "/usr/bin/qemu-aarch64-static"
STATIC = interpreters.Interpreter(QEMU, static=True, host_native=True)
DYNAMIC = interpreters.Interpreter("/usr/bin/qemu-aarch64", static=False, host_native=True)
FOUND = interpreters.Search(STATIC, ())
NOT_FOUND = interpreters.Search(None, ())
X86 = HostFacts(
    me=CATALOG["x86_64"],
    native=frozenset({"i386", "i486", "x86_64"}),
    emulators={"aarch64": FOUND},
    distro="debian",
)
OURS = plan.build_entry(ARM64, QEMU, "F", Profile.QEMU)
OTHER_TOOL = plan.build_entry(ARM64, "/opt/q/qemu-aarch64", "", Profile.QEMU)
SAME_NAME_OTHER_ARCH = plan.build_entry(CATALOG["arm"], QEMU, "F", Profile.QEMU).replace(
    name=OURS.name
)

NO_EMULATOR = (
    "no emulator for aarch64 (qemu-aarch64-static or qemu-aarch64 in "
    + ", ".join(interpreters.DEFAULT_DIRS)
    + "); install it with `sudo apt-get install qemu-user-static`"
)
OWN = (
    "x86_64 is this machine's own architecture; a handler for it would send every native "
    "program through QEMU"
)
NATIVE = (
    "this x86_64 host runs i386 programs natively; a handler would send every one of them "
    "through QEMU (use --force if that is what you want)"
)
KEPT = (
    "kept the aarch64 handler already registered (interpreter /opt/q/qemu-aarch64, flags -); "
    "--replace installs ours"
)
OTHER = (
    "qemu-aarch64 is already registered with another definition (interpreter "
    f"{QEMU}, flags F); use --replace to replace it"
)

# (case, arch, registered, options, facts, action, entry, reason)
CASES = [
    ("new", "aarch64", {}, Options(), X86, Action.REGISTER, OURS, ""),
    ("same, enabled", "aarch64", {OURS.name: Handler(OURS, True)}, Options(), X86,
     Action.UNCHANGED, OURS, ""),
    ("same, disabled", "aarch64", {OURS.name: Handler(OURS, False)}, Options(), X86,
     Action.ENABLE, OURS, ""),
    ("another tool's", "aarch64", {OURS.name: Handler(OTHER_TOOL, True)}, Options(), X86,
     Action.KEPT, OTHER_TOOL, KEPT),
    ("another tool's, --replace", "aarch64", {OURS.name: Handler(OTHER_TOOL, True)},
     Options(replace=True), X86, Action.REPLACE, OURS, ""),
    ("same name, another arch", "aarch64", {OURS.name: Handler(SAME_NAME_OTHER_ARCH, True)},
     Options(), X86, Action.REFUSED, OURS, OTHER),
    ("own arch", "x86_64", {}, Options(), X86, Action.REFUSED, None, OWN),
    ("native", "i386", {}, Options(), X86, Action.REFUSED, None, NATIVE),
    ("no emulator", "aarch64", {}, Options(), X86._replace(emulators={"aarch64": NOT_FOUND}),
     Action.MISSING, None, NO_EMULATOR),
]  # fmt: skip


@pytest.mark.parametrize(
    ("word", "registered", "options", "facts", "action", "entry", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_every_decision(
    word: str,
    registered: dict[str, Handler],
    options: Options,
    facts: HostFacts,
    action: Action,
    entry: object,
    reason: str,
) -> None:
    [step] = plan.plan_install([CATALOG[word]], registered, options, facts)
    assert (step.arch.name, step.action, step.entry, step.reason) == (word, action, entry, reason)
    assert step.failed is (action in (Action.REFUSED, Action.MISSING))
    assert step.warnings == ()


def test_a_dynamic_emulator_is_registered_with_a_warning() -> None:
    facts = X86._replace(emulators={"aarch64": interpreters.Search(DYNAMIC, ())})
    [step] = plan.plan_install([ARM64], {}, Options(), facts)
    assert (step.action, step.entry) == (
        Action.REGISTER,
        plan.build_entry(ARM64, DYNAMIC.path, "F", Profile.QEMU),
    )
    assert step.warnings == (
        "/usr/bin/qemu-aarch64 is dynamically linked: inside chroots and containers it will "
        "not find its libraries; install a static build (qemu-user-static)",
    )


def test_the_c_flag_is_refused_for_an_emulator_the_facts_call_unsafe() -> None:
    facts = X86._replace(unsafe={QEMU: "the C flag ... /usr/bin is writable by uid 1000"})
    [step] = plan.plan_install([ARM64], {}, Options(flags="FC"), facts)
    assert (step.arch, step.action, step.entry, step.reason) == (
        ARM64,
        Action.REFUSED,
        None,
        "the C flag ... /usr/bin is writable by uid 1000",
    )
    [safe] = plan.plan_install([ARM64], {}, Options(flags="FC"), X86)
    assert (safe.action, safe.entry) == (
        Action.REGISTER,
        plan.build_entry(ARM64, QEMU, "FC", Profile.QEMU),
    )


def test_native_with_force_is_planned_like_any_foreign_arch() -> None:
    i386 = CATALOG["i386"]
    qemu = interpreters.Interpreter("/usr/bin/qemu-i386-static", static=True, host_native=True)
    facts = X86._replace(emulators={"i386": interpreters.Search(qemu, ())})
    [step] = plan.plan_install([i386], {}, Options(force=True), facts)
    assert (step.action, step.entry) == (
        Action.REGISTER,
        plan.build_entry(i386, qemu.path, "F", Profile.QEMU),
    )


@pytest.mark.parametrize(
    ("interpreter", "found", "action", "reason"),
    [
        ("/opt/q/qemu-aarch64-static", "/opt/q/qemu-aarch64-static", Action.REGISTER, ""),
        (
            "qemu-aarch64-static",
            None,
            Action.REFUSED,
            "qemu-aarch64-static is not an absolute path: the kernel would look it up from "
            "the working directory of every program it runs (and boot configuration would "
            "too); give the full path, e.g. <CWD>/qemu-aarch64-static",
        ),
        (
            "/usr/bin/qemu-arm-static",
            "/usr/bin/qemu-arm-static",
            Action.REFUSED,
            "/usr/bin/qemu-arm-static is, by its name, the emulator for arm, not aarch64: "
            "aarch64 programs would crash or misbehave under it; pass qemu-aarch64's path, "
            "or --force-interpreter if this file really runs them",
        ),
    ],
)
def test_an_explicit_interpreter(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    interpreter: str,
    found: str | None,
    action: Action,
    reason: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # the one fact the refusal of a relative path reads
    reason = reason.replace("<CWD>", str(tmp_path))
    inspected = interpreters.Interpreter(found, True, True) if found else None
    facts = X86._replace(emulators={}, interpreter=inspected)
    [step] = plan.plan_install([ARM64], {}, Options(interpreter=interpreter), facts)
    assert (step.arch, step.action, step.reason) == (ARM64, action, reason)


def test_an_interpreter_with_problems_is_refused_with_them() -> None:
    broken = interpreters.Interpreter(QEMU, True, False, problems=("built for another CPU",))
    facts = X86._replace(emulators={}, interpreter=broken)
    [step] = plan.plan_install([ARM64], {}, Options(interpreter=QEMU), facts)
    assert (step.arch, step.action, step.reason) == (
        ARM64,
        Action.REFUSED,
        f"{QEMU} cannot be an emulator here: built for another CPU",
    )


@pytest.mark.parametrize(
    ("arches", "options", "message"),
    [
        (
            ["aarch64", "arm"],
            Options(interpreter=QEMU),
            "--interpreter names one emulator, so give exactly one ARCH",
        ),
        (
            ["aarch64"],
            Options(flags="FX"),
            "--flags: unknown flag 'X': binfmt_misc flags are P, O, C and F (T, L and D are "
            "not kernel flags)",
        ),
    ],
)
def test_usage_errors(arches: list[str], options: Options, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        plan.plan_install([CATALOG[a] for a in arches], {}, options, X86)
    assert caught.value.message == message


def test_actions_are_the_json_contract() -> None:
    assert [a.value for a in Action] == [
        "register", "replace", "enable", "unchanged", "kept", "refused", "missing",
    ]  # fmt: skip
    [step] = plan.plan_install([ARM64], {}, Options(), X86)
    assert step.to_dict()["action"] == "register"


def test_a_name_mismatch_is_accepted_when_forced() -> None:
    arm = interpreters.Interpreter("/usr/bin/qemu-arm-static", True, True)
    facts = X86._replace(emulators={}, interpreter=arm)
    options = Options(interpreter=arm.path, force_interpreter=True)
    [step] = plan.plan_install([ARM64], {}, options, facts)
    assert (step.action, step.entry, step.reason) == (
        Action.REGISTER,
        plan.build_entry(ARM64, arm.path, "F", Profile.QEMU),
        "",
    )


def test_no_usable_emulator_names_the_refused_candidates() -> None:
    bad = (
        interpreters.Interpreter("/usr/bin/qemu-aarch64-static", False, False, ("empty file",)),
        interpreters.Interpreter("/usr/bin/qemu-aarch64", False, False, ("a script", "no ELF")),
    )
    facts = X86._replace(emulators={"aarch64": interpreters.Search(None, bad)})
    [step] = plan.plan_install([ARM64], {}, Options(), facts)
    assert (step.action, step.entry, step.reason) == (
        Action.MISSING,
        None,
        NO_EMULATOR.replace(
            "; install it",
            "; unusable: /usr/bin/qemu-aarch64-static: empty file; "
            "/usr/bin/qemu-aarch64: a script, no ELF; install it",
        ),
    )


def test_a_host_of_unknown_arch_is_named_as_the_machine() -> None:
    facts = X86._replace(me=None, native=frozenset({"i386"}))
    [step] = plan.plan_install([CATALOG["i386"]], {}, Options(), facts)
    assert (step.action, step.reason) == (
        Action.REFUSED,
        NATIVE.replace("this x86_64 host", "this machine host"),
    )


def test_steps_as_json() -> None:
    facts = X86._replace(emulators={"aarch64": interpreters.Search(DYNAMIC, ())})
    [step] = plan.plan_install([ARM64], {}, Options(), facts)
    assert step.to_dict() == {
        "arch": "aarch64",
        "action": "register",
        "entry": plan.build_entry(ARM64, DYNAMIC.path, "F", Profile.QEMU).to_dict(),
        "reason": None,
        "warnings": [
            "/usr/bin/qemu-aarch64 is dynamically linked: inside chroots and containers it "
            "will not find its libraries; install a static build (qemu-user-static)"
        ],
    }
    [refused] = plan.plan_install([CATALOG["i386"]], {}, Options(), X86)
    assert refused.to_dict() == {
        "arch": "i386",
        "action": "refused",
        "entry": None,
        "reason": NATIVE,
        "warnings": [],
    }


def test_facts_without_a_search_for_the_arch_mean_no_emulator() -> None:
    [step] = plan.plan_install([ARM64], {}, Options(), X86._replace(emulators={}))
    assert (step.arch, step.action, step.reason) == (ARM64, Action.MISSING, NO_EMULATOR)


def test_an_interpreter_the_caller_did_not_inspect_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        plan.plan_install([ARM64], {}, Options(interpreter=QEMU), X86._replace(interpreter=None))
    assert caught.value.message == f"--interpreter {QEMU}: not inspected before planning"


@pytest.mark.parametrize(
    ("registered", "options", "action"),
    [
        (True, Options(), Action.UNCHANGED),
        (False, Options(), Action.ENABLE),
        (None, Options(replace=True), Action.REPLACE),
    ],
)
def test_the_dynamic_warning_comes_with_every_action_that_keeps_our_entry(
    registered: bool | None, options: Options, action: Action
) -> None:
    ours = plan.build_entry(ARM64, DYNAMIC.path, "F", Profile.QEMU)
    current = {
        ours.name: Handler(OTHER_TOOL, True) if registered is None else Handler(ours, registered)
    }
    facts = X86._replace(emulators={"aarch64": interpreters.Search(DYNAMIC, ())})
    [step] = plan.plan_install([ARM64], current, options, facts)
    assert (step.action, step.entry) == (action, ours)
    assert step.warnings == (
        "/usr/bin/qemu-aarch64 is dynamically linked: inside chroots and containers it will "
        "not find its libraries; install a static build (qemu-user-static)",
    )
