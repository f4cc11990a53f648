"""Advice that fits the caller: `binfmtctl run` first for an ordinary user, complete root fixes.

Real throughout: a private binfmt_misc instance (``sandbox.Sandbox(full_ids=True)``
maps uids 0..65535 onto themselves, so the unprivileged ``binfmtctl-test`` keeps
its uid inside it and makes private instances of its own, as on a host), real
QEMU, Debian's arm64 busybox-static, and a busybox root made here. The user
"without private instances" is real too: root of the sandbox sets
``user.max_user_namespaces`` to 0 in the sandbox's own user namespace (the
host's limit is untouched), so the user's unshare fails as it would on a host
that forbids user namespaces. There is no sudo on the test machine: a
``sudo CMD`` suggestion is checked to be exactly root's own suggestion with
``sudo`` in front, and CMD is run as root.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from binfmtctl import advice, callerfacts, diagnose, elf, remedies, sandbox
from binfmtctl.advice import Advice, AdviceKind, Caller, Remedy
from binfmtctl.arch import resolve
from binfmtctl.causes import CauseCode
from binfmtctl.instance import Snapshot
from binfmtctl.proving import Outcome, OutcomeCode
from conftest import (
    _NO_SANDBOX,
    ROOT,
    cli,
    exec_result,
    foreign_busybox,
    qemu,
    registered,
    registered_disabled,
    run_in,
)

USER = "binfmtctl-test"
SYSTEM_PYTHON = "/usr/bin/python3"
MP = sandbox.DEFAULT_MOUNTPOINT
ROOTFS = "arm64 root"  # a name that needs quoting, as the user's own might


# -- the pure part: who gets what -------------------------------------------------

INSTALL = Remedy((("binfmtctl", "install", "aarch64"),))
DYNAMIC = Remedy(
    (("apt-get", "install", "qemu-user-static"), ("binfmtctl", "install", "aarch64", "--replace")),
    rootless=False,
)

ADVISE_CASES = [
    # caller, remedy, command, rootfs -> advice
    (
        Caller(root=True, rootless=True),
        INSTALL,
        ["x"],
        None,
        [("root", "binfmtctl install aarch64")],
    ),
    (
        Caller(root=False, rootless=True),
        INSTALL,
        ["/usr/bin/hello", "a b"],
        "my root",
        [
            ("rootless", "binfmtctl run --rootfs 'my root' -- /usr/bin/hello 'a b'"),
            ("root", "sudo binfmtctl install aarch64"),
        ],
    ),
    (
        Caller(root=False, rootless=True),
        INSTALL,
        None,
        None,
        [("rootless", "binfmtctl run -- CMD"), ("root", "sudo binfmtctl install aarch64")],
    ),
    (
        Caller(root=False, rootless=False),
        INSTALL,
        ["x"],
        None,
        [("root", "sudo binfmtctl install aarch64")],
    ),
    (
        Caller(root=False, rootless=True),
        DYNAMIC,
        ["x"],
        "r",
        [
            (
                "root",
                "sudo apt-get install qemu-user-static && sudo binfmtctl install aarch64 --replace",
            )
        ],
    ),
    (Caller(root=False, rootless=True), None, ["x"], None, []),
]


@pytest.mark.parametrize(("caller", "remedy", "command", "rootfs", "expected"), ADVISE_CASES)
def test_advise(
    caller: Caller,
    remedy: Remedy | None,
    command: list[str] | None,
    rootfs: str | None,
    expected: list[tuple[str, str]],
) -> None:
    got = advice.advise(caller, remedy, command, rootfs)
    assert [(a.kind.value, a.command) for a in got] == expected
    assert all(isinstance(a, Advice) and isinstance(a.kind, AdviceKind) for a in got)


def test_rootless_is_asked_only_when_it_could_be_offered() -> None:
    asked: list[str] = []

    def works() -> bool:
        asked.append("asked")
        return True

    advice.advise(Caller(root=True, rootless=works), INSTALL, ["x"])
    advice.advise(Caller(root=False, rootless=works), None, ["x"])
    advice.advise(Caller(root=False, rootless=works), DYNAMIC, ["x"])
    assert asked == []
    advice.advise(Caller(root=False, rootless=works), INSTALL, ["x"])
    assert asked == ["asked"]


def test_a_mountpoint_other_than_the_default_is_named() -> None:
    remedy = advice.binfmtctl("enable", "--instance", mountpoint="/mnt/b m")
    assert advice.as_root(remedy, Caller(root=False)) == (
        "sudo binfmtctl enable --instance --mountpoint '/mnt/b m'"
    )


def _outcome(arch: str, code: OutcomeCode, entry: str | None = None) -> Outcome:
    return Outcome(arch, code in (OutcomeCode.OK, OutcomeCode.NATIVE), code, 0.0, entry=entry)


OUTCOME_CASES = [
    ([_outcome("aarch64", OutcomeCode.OK)], None),
    ([_outcome("aarch64", OutcomeCode.SIGNALED, "qemu-aarch64")], None),
    (
        [
            _outcome("aarch64", OutcomeCode.NO_HANDLER),
            _outcome("riscv64", OutcomeCode.NO_HANDLER),
            _outcome("s390x", OutcomeCode.DISABLED, "qemu-s390x"),
            _outcome("arm", OutcomeCode.WRONG_EMULATOR, "qemu-arm"),
            _outcome("mipsel", OutcomeCode.INTERPRETER_MISSING, "qemu-mipsel"),
        ],
        "binfmtctl enable qemu-s390x && binfmtctl install aarch64 riscv64 && "
        "binfmtctl install arm mipsel --replace",
    ),
    (
        [_outcome("aarch64", OutcomeCode.INSTANCE_DISABLED, "qemu-aarch64")],
        "binfmtctl enable --instance",
    ),
]


@pytest.mark.parametrize(("outcomes", "expected"), OUTCOME_CASES)
def test_what_fixes_failed_probes(outcomes: list[Outcome], expected: str | None) -> None:
    remedy = remedies.for_outcomes(Snapshot(), outcomes)
    got = advice.as_root(remedy, advice.AS_ROOT) if remedy else None
    assert got == expected


RUN_FIX_CASES = [
    (CauseCode.NO_HANDLER, "aarch64", ["arm"], "add `--arch aarch64`"),
    (CauseCode.WRONG_ABI, "arm", ["arm64", "linux/s390x"], "add `--arch arm`"),
    (
        CauseCode.NO_HANDLER,
        "aarch64",
        None,
        "no usable emulator for aarch64 was found: install qemu-aarch64-static "
        "(Debian/Ubuntu: qemu-user-static), or name its directory with --interpreter-dir",
    ),
    (
        CauseCode.INTERPRETER_MISSING,
        "aarch64",
        ["arm64"],
        "leave out --flags, or give flags with F: with F the kernel opens the emulator on "
        "the host, before the chroot",
    ),
    (CauseCode.NO_HANDLER, None, None, None),
]


@pytest.mark.parametrize(("code", "arch", "named", "expected"), RUN_FIX_CASES)
def test_run_fix(code: CauseCode, arch: str | None, named: list[str] | None, expected: str) -> None:
    assert diagnose.run_fix(code, resolve(arch) if arch else None, named) == expected


# -- the real part: a private instance, root and an ordinary user -------------------


def _as_user(*argv: str) -> list[str]:
    entry = pwd.getpwnam(USER)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            "--", *argv]  # fmt: skip


def _user_problem() -> str | None:
    if _NO_SANDBOX is not None:
        return f"no private binfmt_misc here: {_NO_SANDBOX}"
    if os.geteuid() != 0:
        return "the ordinary-user case needs root to create a sandbox with more than one uid"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER}: run scripts/test-deps as root"
    readable = ["test", "-r", str(ROOT / "src" / "binfmtctl" / "__init__.py")]
    if subprocess.run(_as_user(*readable), check=False).returncode != 0:
        return f"{USER} cannot read {ROOT / 'src'}"
    return None


@pytest.fixture
def box() -> Iterator[sandbox.Sandbox]:
    problem = _user_problem()
    if problem:
        pytest.skip(problem)
    qemu("qemu-aarch64")
    with sandbox.Sandbox(full_ids=True) as opened:
        yield opened


@pytest.fixture
def place(world: Path) -> Path:
    """A working directory with a busybox root ``arm64 root`` in it, owned by the test user.

    The root: /bin/busybox (arm64, static), /bin/sh -> busybox, /usr/bin/hello
    (a #!/bin/sh script), /bin/true (the host's own, dynamically linked: its
    loader is not in the root) and /bin/noexec (busybox without the x bit).
    """
    root = world / ROOTFS
    (root / "bin").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    for name in ("proc", "dev", "sys", "tmp", "etc"):  # run's mountpoints, made ahead: root's
        (root / name).mkdir()  # run maps only itself, so it cannot create them in a user's root
    (root / "etc" / "resolv.conf").write_text("")
    shutil.copy2(foreign_busybox("arm64"), root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "usr" / "bin" / "hello").write_text("#!/bin/sh\necho hello from $(uname -m)\n")
    (root / "usr" / "bin" / "hello").chmod(0o755)
    true = shutil.which("true")
    assert true is not None
    shutil.copy2(os.path.realpath(true), root / "bin" / "true")
    shutil.copy2(foreign_busybox("arm64"), root / "bin" / "noexec")
    (root / "bin" / "noexec").chmod(0o644)
    entry = pwd.getpwnam(USER)
    for path in [world, *world.rglob("*")]:
        if path.name not in ("proc", "dev", "sys", "tmp", "etc", "resolv.conf"):
            os.lchown(path, entry.pw_uid, entry.pw_gid)
    return world


def binfmtctl(
    box: sandbox.Sandbox, who: str, *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """The real command inside the box, as root or as the test user, from ``cwd``."""
    argv = ["env", f"PYTHONPATH={ROOT / 'src'}", "HOME=/", SYSTEM_PYTHON, "-m", "binfmtctl", *args]
    if who != "root":
        argv = _as_user(*argv)
    return box.run(subprocess.run, argv, capture_output=True, text=True, check=False, cwd=cwd)


def no_private_instances(box: sandbox.Sandbox) -> None:
    """In the box's own user namespace only: the test user can no longer make one."""

    def forbid() -> None:
        Path("/proc/sys/user/max_user_namespaces").write_text("0")

    box.run(forbid)


def _instance_off(box: sandbox.Sandbox) -> None:
    registered(box)
    assert cli(box, "disable", "--instance").returncode == 0


def _nothing(box: sandbox.Sandbox) -> None:
    pass


# who ("root", "user": private instances work, "user-no-ns": they do not), setup,
# -> the fix lines `why --rootfs 'arm64 root' /usr/bin/hello` prints.
RUN_HELLO = "binfmtctl run --rootfs 'arm64 root' -- /usr/bin/hello"
WHY_CASES = [
    ("root", _nothing, "no_handler", ["fix: binfmtctl install aarch64"]),
    (
        "user",
        _nothing,
        "no_handler",
        [f"fix without root: {RUN_HELLO}", "fix as root: sudo binfmtctl install aarch64"],
    ),
    ("user-no-ns", _nothing, "no_handler", ["fix: sudo binfmtctl install aarch64"]),
    ("root", registered_disabled, "handler_disabled", ["fix: binfmtctl enable qemu-aarch64"]),
    (
        "user",
        registered_disabled,
        "handler_disabled",
        [f"fix without root: {RUN_HELLO}", "fix as root: sudo binfmtctl enable qemu-aarch64"],
    ),
    (
        "user",
        _instance_off,
        "instance_disabled",
        [f"fix without root: {RUN_HELLO}", "fix as root: sudo binfmtctl enable --instance"],
    ),
    ("user-no-ns", _instance_off, "instance_disabled", ["fix: sudo binfmtctl enable --instance"]),
]


@pytest.mark.parametrize(("who", "setup", "code", "fixes"), WHY_CASES)
def test_why_advice_fits_the_caller(
    box: sandbox.Sandbox, place: Path, who: str, setup: object, code: str, fixes: list[str]
) -> None:
    assert callable(setup)
    setup(box)
    if who == "user-no-ns":
        no_private_instances(box)
    ran = binfmtctl(box, who, "why", "--rootfs", ROOTFS, "/usr/bin/hello", cwd=place)
    assert ran.returncode == 1, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[4].startswith(f"/usr/bin/hello will not run [{code}]: ")
    assert lines[5:] == fixes
    data = json.loads(
        binfmtctl(box, who, "--json", "why", "--rootfs", ROOTFS, "/usr/bin/hello", cwd=place).stdout
    )["data"]
    kinds = ["rootless"] * (len(fixes) == 2) + ["root"]
    assert [a["kind"] for a in data["advice"]] == kinds
    assert data["advice"][-1]["command"] == data["cause"]["fix"]


def test_the_suggested_run_command_really_runs(box: sandbox.Sandbox, place: Path) -> None:
    why = binfmtctl(box, "user", "--json", "why", "--rootfs", ROOTFS, "/usr/bin/hello", cwd=place)
    first = json.loads(why.stdout)["data"]["advice"][0]
    assert first == {"kind": "rootless", "command": RUN_HELLO}
    words = shlex.split(first["command"])
    assert words[0] == "binfmtctl"
    ran = binfmtctl(box, "user", *words[1:], cwd=place)
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "hello from aarch64\n", "")
    # nothing was registered in the box's instance: run's handlers lived in its own
    assert sorted(box.run(os.listdir, MP)) == ["register", "status"]


@pytest.mark.parametrize("setup", [_nothing, registered_disabled, _instance_off])
def test_the_suggested_root_fix_really_fixes_it(
    box: sandbox.Sandbox, place: Path, setup: object
) -> None:
    assert callable(setup)
    setup(box)
    user = json.loads(
        binfmtctl(
            box, "user", "--json", "why", "--rootfs", ROOTFS, "/usr/bin/hello", cwd=place
        ).stdout
    )["data"]
    root = json.loads(
        binfmtctl(
            box, "root", "--json", "why", "--rootfs", ROOTFS, "/usr/bin/hello", cwd=place
        ).stdout
    )["data"]
    assert [a["kind"] for a in root["advice"]] == ["root"]
    told = user["advice"][-1]["command"]
    assert told == f"sudo {root['advice'][0]['command']}"
    assert run_in(box, "chroot", str(place / ROOTFS), "/usr/bin/hello").returncode != 0
    words = shlex.split(told)
    assert words[:2] == ["sudo", "binfmtctl"]
    fixed = binfmtctl(box, "root", *words[2:], cwd=place)
    assert fixed.returncode == 0, fixed.stderr
    again = binfmtctl(box, "user", "why", "--rootfs", ROOTFS, "/usr/bin/hello", cwd=place)
    assert again.returncode == 0, again.stdout
    assert "/usr/bin/hello will run." in again.stdout.splitlines()
    ran = run_in(box, "chroot", str(place / ROOTFS), "/usr/bin/hello")
    assert (ran.returncode, ran.stdout) == (0, "hello from aarch64\n")


def test_not_mounted_the_root_fix_is_one_install_that_mounts(place: Path) -> None:
    """Outside any box, as the test user, the host's binfmt_misc (read only, never changed)."""
    problem = _user_problem()
    if problem:
        pytest.skip(problem)
    with open("/proc/mounts") as fh:
        if any(line.split()[1] == MP for line in fh):
            pytest.skip("not applicable here: the host's binfmt_misc is mounted")
    argv = ["env", f"PYTHONPATH={ROOT / 'src'}", "HOME=/", SYSTEM_PYTHON, "-m", "binfmtctl"]
    ran = subprocess.run(
        _as_user(*argv, "why", "--rootfs", ROOTFS, "/usr/bin/hello"),
        capture_output=True, text=True, check=False, cwd=place,
    )  # fmt: skip
    assert ran.returncode == 1
    assert ran.stdout.splitlines()[4:] == [
        "/usr/bin/hello will not run [not_mounted]: binfmt_misc is not mounted at "
        f"{MP}, so the kernel has no handler for this aarch64 program and reports "
        "'exec format error'.",
        f"fix without root: {RUN_HELLO}",
        "fix as root: sudo binfmtctl install aarch64",
    ]
    # and `binfmtctl install` does mount it (in a box whose binfmt_misc is unmounted first)
    with sandbox.Sandbox() as sb:

        def unmount() -> None:
            subprocess.run(["umount", MP], check=True)

        sb.run(unmount)
        assert sb.run(os.listdir, MP) == []
        assert cli(sb, "install", "aarch64").returncode == 0
        assert exec_result(sb, str(place / ROOTFS / "bin" / "busybox"), "uname", "-m") == (
            "aarch64\n"
        )


# -- find, scan, test, status --------------------------------------------------------

VERB_CASES = [
    (
        ["find", "--rootfs", ROOTFS, "/bin/busybox"],
        [
            "  fix without root: binfmtctl run --rootfs 'arm64 root' -- /bin/busybox",
            "  fix as root: sudo binfmtctl install aarch64",
        ],
        ["  fix: binfmtctl install aarch64"],
    ),
    (
        ["scan", ROOTFS],
        [
            "fix without root: binfmtctl run --rootfs 'arm64 root' -- CMD",
            "fix as root: sudo binfmtctl install aarch64",
        ],
        ["fix: binfmtctl install aarch64"],
    ),
    (
        ["test", "arm64"],
        ["fix without root: binfmtctl run -- CMD", "fix as root: sudo binfmtctl install aarch64"],
        ["fix: binfmtctl install aarch64"],
    ),
]


@pytest.mark.parametrize(("argv", "user_lines", "root_lines"), VERB_CASES)
def test_find_scan_and_test_advise_like_why(
    box: sandbox.Sandbox, place: Path, argv: list[str], user_lines: list[str],
    root_lines: list[str],
) -> None:  # fmt: skip
    for who, expected in (("user", user_lines), ("root", root_lines)):
        ran = binfmtctl(box, who, *argv, cwd=place)
        assert ran.stdout.splitlines()[-len(expected) :] == expected, ran.stdout
        data = json.loads(binfmtctl(box, who, "--json", *argv, cwd=place).stdout)["data"]
        found = data["files"][0]["advice"] if argv[0] == "find" else data["advice"]
        assert [a["command"] for a in found] == [line.split(": ", 1)[1] for line in expected]
    no_private_instances(box)
    ran = binfmtctl(box, "user", *argv, cwd=place)
    assert ran.stdout.splitlines()[-1].endswith(": sudo binfmtctl install aarch64")
    assert "binfmtctl run" not in ran.stdout
    # the root fix, run as root, leaves the user nothing to fix
    words = shlex.split(ran.stdout.splitlines()[-1].split(": ", 1)[1])
    assert words[:2] == ["sudo", "binfmtctl"]
    assert binfmtctl(box, "root", *words[2:], cwd=place).returncode == 0
    after = binfmtctl(box, "user", *argv, cwd=place)
    assert after.returncode == 0, after.stdout
    assert "fix" not in after.stdout


PRIVATE_BOOT = [
    "boot configuration:",
    "  none applies here: this binfmt_misc is a private instance (of a user namespace, or",
    "  of another namespace than this host's); its entries vanish with it, and nothing",
    "  registers them at boot. /etc/binfmt.d, binfmt-support and systemd-binfmt configure",
    "  the host's instance, not this one (`--root DIR` shows a root file system's).",
]


@pytest.mark.parametrize(
    ("who", "line"),
    [
        ("root", "no entries; `binfmtctl install` registers every foreign arch"),
        (
            "user",
            "no entries; without root, `binfmtctl run -- CMD` runs foreign programs in a "
            "private instance; `sudo binfmtctl install` registers every foreign arch",
        ),
    ],
)
def test_status_in_a_private_instance(
    box: sandbox.Sandbox, place: Path, who: str, line: str
) -> None:
    ran = binfmtctl(box, who, "status", cwd=place)
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert lines[1:3] == [f"binfmt_misc: {MP}, enabled, a private instance (user namespace)", line]
    assert lines[-len(PRIVATE_BOOT) :] == PRIVATE_BOOT
    data = json.loads(binfmtctl(box, who, "--json", "status", cwd=place).stdout)["data"]
    assert data["boot_applies"] is False
    # with entries too: no comparison with the host's configuration is shown
    registered(box)
    shown = binfmtctl(box, who, "status", cwd=place).stdout
    assert shown.splitlines()[-len(PRIVATE_BOOT) :] == PRIVATE_BOOT
    assert "not persisted" not in shown


def test_another_namespaces_instance_seen_from_here_is_private() -> None:
    """A box's binfmt_misc through /proc/PID/root, from the initial user namespace."""
    if _NO_SANDBOX is not None:
        pytest.skip(f"no private binfmt_misc here: {_NO_SANDBOX}")
    from binfmtctl.namespaces import in_initial_user_namespace

    if not in_initial_user_namespace():
        pytest.skip("not applicable here: the tests run in a user namespace already")
    with sandbox.Sandbox() as sb:
        theirs = f"/proc/{sb.pid}/root{MP}"
        assert callerfacts.private_instance(theirs) is True
        assert sb.run(callerfacts.private_instance, MP) is True
    assert callerfacts.private_instance("/nonexistent") is False


# -- run's own exec failures, in why's words --------------------------------------------


def _loader_of_true() -> str:
    true = shutil.which("true")
    assert true is not None
    loader = elf.program_interpreter(os.path.realpath(true))
    assert loader is not None
    return loader


RUN_FAILURES = [
    (
        ["--arch", "arm", "--", "arm64 root/bin/busybox", "uname", "-m"],
        126,
        "cannot run arm64 root/bin/busybox: this is a 64-bit ARM (AArch64) program (aarch64), "
        "but the registered qemu-arm runs 32-bit ARM, little-endian (armel, armhf) programs "
        "(arm) only, so exec fails with 'exec format error'.\n  fix: add `--arch aarch64`",
    ),
    (
        ["--rootfs", ROOTFS, "--arch", "arm", "--", "/bin/busybox", "uname", "-m"],
        126,
        "cannot run /bin/busybox: this is a 64-bit ARM (AArch64) program (aarch64), "
        "but the registered qemu-arm runs 32-bit ARM, little-endian (armel, armhf) programs "
        "(arm) only, so exec fails with 'exec format error'.\n  fix: add `--arch aarch64`",
    ),
    (
        ["--rootfs", ROOTFS, "--arch", "arm64", "--flags", "", "--", "/bin/busybox"],
        127,
        "cannot run /bin/busybox: qemu-aarch64 has no F flag, so the kernel looks up its "
        "interpreter /usr/bin/qemu-aarch64-static inside arm64 root at every exec, and it "
        "is not there: exec fails with 'no such file or directory'.\n  fix: leave out "
        "--flags, or give flags with F: with F the kernel opens the emulator on the host, "
        "before the chroot",
    ),
    (
        ["--rootfs", ROOTFS, "--arch", "arm64", "--", "/bin/true"],
        127,
        "cannot run /bin/true: this dynamically linked {host} program needs its loader "
        "{loader}, which does not exist in arm64 root: exec fails with 'no such file or "
        "directory'.\n  fix: install the {host} C library (libc6) in arm64 root",
    ),
    (
        ["--rootfs", ROOTFS, "--arch", "arm64", "--", "/bin/noexec"],
        126,
        "cannot run /bin/noexec: /bin/noexec is not an executable file, so exec fails with "
        "'permission denied'.\n  fix: chmod +x '{place}/arm64 root/bin/noexec'",
    ),
]


@pytest.mark.parametrize("who", ["root", "user"])
@pytest.mark.parametrize(("argv", "status", "message"), RUN_FAILURES)
def test_run_exec_failures_say_what_why_says(
    box: sandbox.Sandbox, place: Path, who: str, argv: list[str], status: int, message: str
) -> None:
    from binfmtctl import host

    me = host.host_arch()
    assert me is not None
    expected = message.format(host=me.name, loader=_loader_of_true(), place=place)
    ran = binfmtctl(box, who, "run", *argv, cwd=place)
    assert (ran.returncode, ran.stdout) == (status, ""), ran.stderr
    assert ran.stderr == f"binfmtctl: error: {expected}\n"
    data = json.loads(binfmtctl(box, who, "run", "--json", *argv, cwd=place).stdout)
    assert data["errors"][0]["message"] == expected


def test_run_fix_it_gives_works(box: sandbox.Sandbox, place: Path) -> None:
    """`add --arch aarch64`, done: the same command runs."""
    ran = binfmtctl(box, "user", "run", "--arch", "arm", "--arch", "aarch64", "--",
                    "arm64 root/bin/busybox", "uname", "-m", cwd=place)  # fmt: skip
    assert (ran.returncode, ran.stdout, ran.stderr) == (0, "aarch64\n", "")


def test_run_without_a_failure_pays_nothing_for_advice() -> None:
    """The explanation's modules are imported only on failure (start-up speed)."""
    code = (
        "import sys, binfmtctl.cli, binfmtctl.cli.rootless, binfmtctl.rootless, "
        "binfmtctl.cli.status; "
        "print(sorted(m for m in ('binfmtctl.diagnose', 'binfmtctl.causes', "
        "'binfmtctl.callerfacts', 'binfmtctl.advice') if m in sys.modules))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout == "[]\n"


# -- README shows it as it is -----------------------------------------------------------


# The README examples tests/test_readme.py leaves to this file (its NOT_RUN).
README_ADVICE = (
    "$ binfmtctl why --rootfs ./arm64-rootfs /usr/bin/hello",
    "$ binfmtctl run --arch arm -- arm64/busybox uname -m",
)


def _readme_text_blocks() -> dict[str, list[str]]:
    """README's console blocks of README_ADVICE: command -> output lines."""
    blocks: dict[str, list[str]] = {}
    lines = (ROOT / "README.md").read_text().splitlines()
    for i, line in enumerate(lines):
        if line == "```console" and lines[i + 1].split("  #")[0].rstrip() in README_ADVICE:
            end = lines.index("```", i + 1)
            command = lines[i + 1][2:].split("  #")[0].rstrip()
            blocks[command] = lines[i + 2 : end]
    return blocks


def test_readme_shows_the_advice_an_ordinary_user_gets(box: sandbox.Sandbox, place: Path) -> None:
    blocks = _readme_text_blocks()
    assert len(blocks) == 2, blocks
    shutil.copytree(place / ROOTFS, place / "arm64-rootfs", symlinks=True)
    (place / "arm64").mkdir()
    shutil.copy2(foreign_busybox("arm64"), place / "arm64" / "busybox")
    for command, expected in blocks.items():
        ran = binfmtctl(box, "user", *shlex.split(command)[1:], cwd=place)
        assert ran.returncode != 0
        assert (ran.stdout + ran.stderr).splitlines() == expected, command
