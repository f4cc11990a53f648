"""``binfmtctl run`` / ``shell`` and the sandbox API behind them, as root AND as a user.

The unprivileged user ``binfmtctl-test`` is created by scripts/test-deps; the
tests run the real command as it with setpriv (which execs, so signals and exit
statuses are not rewritten on the way) and the distro's python3 (the venv's
interpreter may live under root's private home). Foreign programs are Debian's
busybox-static, run by real QEMU through a private binfmt_misc instance; the
host's instance is checked to be the same after every test.
"""

from __future__ import annotations

import atexit
import errno
import functools
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import conftest
from binfmtctl import forking, rootless, sandbox
from binfmtctl.cli import rootless as cli_rootless
from binfmtctl.diagnose import resolve_in
from binfmtctl.errors import (
    CommandNotFoundError,
    InterpreterError,
    RootlessUnavailableError,
    UsageError,
)
from conftest import _NO_SANDBOX, FOREIGN, ROOT, foreign_busybox, qemu

# Per test: the host's binfmt_misc unchanged, not even mounted (conftest).
pytestmark = pytest.mark.usefixtures("host_binfmt_unchanged")

USER = "binfmtctl-test"
SYSTEM_PYTHON = "/usr/bin/python3"

# Debian arch -> what `uname -m` prints under QEMU.
UNAME = {
    "arm64": "aarch64",
    "armhf": "armv7l",
    "s390x": "s390x",
    "ppc64el": "ppc64le",
    "mips64el": "mips64",
}


def _user_problem() -> str | None:
    if _NO_SANDBOX is not None:
        return f"no private binfmt_misc here: {_NO_SANDBOX}"
    if os.geteuid() != 0:
        return "running as a user already: the as-user variant needs root to switch"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER}: run scripts/test-deps as root"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} for the user to run binfmtctl with"
    return None


@pytest.fixture(params=["root", "user"])
def who(request: pytest.FixtureRequest) -> str:
    """Run as the test process's own user (root in CI) and as an ordinary user."""
    if _NO_SANDBOX is not None:
        pytest.skip(f"no private binfmt_misc here: {_NO_SANDBOX}")
    if request.param == "user":
        problem = _user_problem()
        if problem:
            pytest.skip(problem)
    return str(request.param)


def command(who: str, *args: str) -> list[str]:
    """argv for ``binfmtctl ARGS`` as ``who``."""
    if who == "root":
        return [sys.executable, "-m", "binfmtctl", *args]
    entry = pwd.getpwnam(USER)
    return _as_user(
        "env",
        f"PYTHONPATH={_user_tree() / 'src'}",
        f"HOME={entry.pw_dir}",
        SYSTEM_PYTHON,
        "-m",
        "binfmtctl",
        *args,
    )


def _as_user(*argv: str) -> list[str]:
    entry = pwd.getpwnam(USER)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            "--", *argv]  # fmt: skip


@functools.cache
def _user_tree() -> Path:
    """Where the user finds src/ and the foreign programs.

    The checkout itself when the user can read it; otherwise (a clone below a
    directory only root may enter, such as /root) a world-readable copy of
    src/ and the foreign busyboxes, removed when the session ends.
    """
    busybox = foreign_busybox("arm64")
    check = [
        "test", "-r", str(ROOT / "src" / "binfmtctl" / "__init__.py"), "-a", "-x", str(busybox)
    ]  # fmt: skip
    if subprocess.run(_as_user(*check), check=False).returncode == 0:
        return ROOT
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-user-"))
    atexit.register(shutil.rmtree, top, True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "src", top / "src", ignore=ignore)
    shutil.copytree(FOREIGN, top / ".cache" / "foreign", symlinks=True)
    for path in [top, *top.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    return top


def program(who: str, debian_arch: str) -> str:
    """Debian's busybox-static for ``debian_arch``, at a path ``who`` can execute."""
    path = foreign_busybox(debian_arch)
    if who == "user" and _user_tree() != ROOT:
        path = _user_tree() / ".cache" / "foreign" / path.relative_to(FOREIGN)
    return str(path)


def binfmtctl(
    who: str, *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(who, *args),
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
        cwd="/",
        env=env,
    )


@pytest.fixture
def rootfs(who: str) -> Iterator[Path]:
    """A writable copy of the extracted busybox-static:arm64 package, owned by ``who``."""
    source = foreign_busybox("arm64").parent.parent
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-rootfs-"))
    root = top / "arm64-rootfs"
    shutil.copytree(source, root, symlinks=True)
    (root / "bin" / "sh").symlink_to("busybox")
    if who == "user":
        entry = pwd.getpwnam(USER)
        for path in [top, root, *root.rglob("*")]:
            os.lchown(path, entry.pw_uid, entry.pw_gid)
    yield root
    shutil.rmtree(top)


# -- foreign programs, exit status, signals, stdio ---------------------------------


def test_foreign_busybox_of_several_arches_runs(who: str) -> None:
    programs = [program(who, a) for a in UNAME]
    script = 'for b in "$@"; do "$b" uname -m; done'
    # No --arch: every foreign arch whose emulator is found.
    proc = binfmtctl(who, "run", "--", "sh", "-c", script, "sh", *programs)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == list(UNAME.values())


def test_only_the_requested_arches_are_registered(who: str) -> None:
    qemu("qemu-aarch64")
    proc = binfmtctl(
        who,
        "run",
        "--arch",
        "arm64",
        "--arch",
        "linux/s390x",
        "--",
        "ls",
        sandbox.DEFAULT_MOUNTPOINT,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.split()) == ["qemu-aarch64", "qemu-s390x", "register", "status"]
    armhf = binfmtctl(who, "run", "--arch", "arm64", "--", program(who, "armhf"), "true")
    assert armhf.returncode == 126
    assert armhf.stderr == (
        f"binfmtctl: error: cannot run {program(who, 'armhf')}: this is a 32-bit ARM, "
        "little-endian (armel, armhf) program (arm), but the registered qemu-aarch64 runs "
        "64-bit ARM (AArch64) programs (aarch64) only, so exec fails with 'exec format "
        "error'.\n  fix: add `--arch arm`\n"
    )


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["false"], 1), (["true"], 0), (["sh", "-c", "exit 7"], 7)],
)
def test_exit_status_passes_through(who: str, argv: list[str], code: int) -> None:
    proc = binfmtctl(who, "run", "--arch", "arm64", "--", program(who, "arm64"), *argv)
    assert proc.returncode == code, proc.stderr


def test_a_second_identical_run_reuses_the_plan(who: str) -> None:
    """As root and as an ordinary user: inside the user's namespace the emulator's owner
    (root, unmapped there) reads as 65534, so the plan must be checked where it was kept.
    Which path a run took is read from -X importtime (planning imports hostfacts)."""
    runtime = Path(tempfile.mkdtemp(prefix="binfmtctl-runtime-"))
    try:
        if who == "user":
            entry = pwd.getpwnam(USER)
            os.chown(runtime, entry.pw_uid, entry.pw_gid)
        argv = command(who, "run", "--arch", "arm64", "--", program(who, "arm64"), "true")
        at = argv.index("-m")
        argv[at:at] = ["-X", "importtime"]
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
        planned = []
        for _ in range(3):
            done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
            assert done.returncode == 0, done.stderr
            modules = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
            planned.append("binfmtctl.hostfacts" in modules)
        assert planned == [True, False, False]
    finally:
        shutil.rmtree(runtime)


def test_killed_by_a_signal_looks_the_same_to_the_shell(who: str) -> None:
    busybox = program(who, "arm64")
    argv = command(who, "run", "--arch", "arm64", "--", busybox, "sh", "-c", "kill -TERM $$")
    # binfmtctl execs the command, so it dies of the signal itself...
    direct = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert direct.returncode == -15, direct.stderr
    # ...and a shell reports 128+N, as it does for any program.
    shell = subprocess.run(
        ["sh", "-c", '"$@"; echo "status=$?"', "sh", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    assert shell.stdout == "status=143\n", shell.stderr


def test_stdin_stdout_stderr_pass_through(who: str) -> None:
    busybox = program(who, "arm64")
    proc = binfmtctl(
        who, "run", "--arch", "arm64", "--", busybox, "sh", "-c", '"$0" cat; echo oops >&2',
        busybox, stdin="hello\nworld\n",
    )  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "hello\nworld\n", "oops\n")


def test_signals_python_ignores_are_not_ignored_in_the_command(who: str) -> None:
    # Python ignores SIGPIPE and SIGXFSZ; an ignored signal would stay ignored across exec.
    # The command must see what any child of ours sees: nothing ignored in a foreground
    # run, SIGINT and SIGQUIT where the suite was started as a background job (kept, as a
    # shell keeps them).
    argv = ["grep", "SigIgn", "/proc/self/status"]
    plain = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.split()
    assert int(plain[1], 16) & ~(1 << (signal.SIGINT - 1) | 1 << (signal.SIGQUIT - 1)) == 0
    proc = binfmtctl(who, "run", "--arch", "arm64", "--", *argv)
    assert proc.stdout.split() == plain, proc.stderr


def test_command_errors_use_the_shells_statuses(who: str) -> None:
    missing = binfmtctl(who, "run", "--arch", "arm64", "--", "/no/such/program")
    assert missing.returncode == 127
    assert "cannot run /no/such/program: no such file or directory" in missing.stderr
    not_exec = binfmtctl(who, "run", "--arch", "arm64", "--", "/etc")
    assert not_exec.returncode == 126
    assert not_exec.stderr == (  # in why's words (binfmtctl.diagnose.explain_exec_error)
        "binfmtctl: error: cannot run /etc: /etc is not a regular file (a directory), so "
        "exec fails with 'permission denied'.\n  fix: run a regular executable file\n"
    )


# -- root file systems --------------------------------------------------------------


def test_rootfs_runs_busybox_inside_the_chroot(who: str, rootfs: Path) -> None:
    proc = binfmtctl(who, "run", "--rootfs", str(rootfs), "--", "/bin/busybox", "uname", "-m")
    assert (proc.returncode, proc.stdout) == (0, "aarch64\n"), proc.stderr
    # The example: the root's own /bin/sh, PATH of a Linux root.
    proc = binfmtctl(who, "run", "--rootfs", str(rootfs), "--", "/bin/sh", "-c", "uname -m")
    assert (proc.returncode, proc.stdout) == (0, "aarch64\n"), proc.stderr


def test_rootfs_has_proc_dev_sys_tmp_and_starts_in_slash(who: str, rootfs: Path) -> None:
    script = (
        "pwd; head -n 1 /proc/sys/fs/binfmt_misc/qemu-aarch64; test -c /dev/null && echo dev; "
        "test -d /sys/kernel && echo sys; touch /tmp/t && stat -c %a /tmp; echo $PATH"
    )
    proc = binfmtctl(
        who, "run", "--arch", "arm64", "--rootfs", str(rootfs), "--", "/bin/sh", "-c", script
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["/", "enabled", "dev", "sys", "1777", rootless.ROOTFS_PATH]
    # Only the empty mountpoints were added to the root; /tmp's file went with the tmpfs.
    assert sorted(p.name for p in rootfs.iterdir()) == ["bin", "dev", "proc", "sys", "tmp", "usr"]
    assert list((rootfs / "tmp").iterdir()) == []


def test_uid_map_auto_lets_the_root_chown(who: str, rootfs: Path) -> None:
    script = (
        "touch /f && chown 1000:1000 /f && stat -c %u:%g /f && /bin/busybox cat /proc/self/uid_map"
    )
    plain = binfmtctl(
        who, "run", "--uid-map", "none", "--rootfs", str(rootfs), "--", "/bin/sh", "-c", script
    )
    assert plain.returncode == 1
    assert "Invalid argument" in plain.stderr  # uid 1000 does not exist inside
    if who == "user" and not shutil.which("newuidmap"):
        pytest.skip("newuidmap missing: run scripts/test-deps (installs uidmap)")
    auto = binfmtctl(
        who, "run", "--uid-map", "auto", "--rootfs", str(rootfs), "--", "/bin/sh", "-c", script
    )
    assert auto.returncode == 0, auto.stderr
    owner, *map_lines = auto.stdout.splitlines()
    assert owner == "1000:1000"
    maps = [tuple(int(w) for w in line.split()) for line in map_lines]
    me = os.getuid() if who == "root" else pwd.getpwnam(USER).pw_uid
    assert maps[0][:2] == (0, me)  # root inside is the caller
    assert sum(count for _, _, count in maps) >= 65535
    # Seen from the host, the file belongs to what uid 1000 inside maps to.
    (outside,) = [out + 1000 - ins for ins, out, count in maps if ins <= 1000 < ins + count]
    assert (rootfs / "f").stat().st_uid == outside


def test_shell_opens_the_roots_shell_with_an_arch_prompt(who: str, rootfs: Path) -> None:
    env = {**os.environ, "SHELL": "/bin/bash"}  # not in the root: falls back to /bin/sh
    # -i: interactive although stdin is a pipe (without it, the pipe is a script).
    proc = binfmtctl(who, "shell", str(rootfs), "-i", stdin="uname -m\nexit 5\n", env=env)
    assert proc.returncode == 5, proc.stderr
    # busybox's sh prints its prompt on stdout; bash would print it on stderr.
    prompt = "(aarch64) arm64-rootfs:/# "
    assert proc.stdout.endswith(f"{prompt}aarch64\n{prompt}"), proc.stdout


# -- refusals -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ([], 2, "no command given: `binfmtctl run [OPTIONS] -- CMD [ARG ...]`"),
        (["--"], 2, "no command given"),
        (["--rootfs", "/no/such/dir", "--", "true"], 2, "--rootfs /no/such/dir: not a directory"),
        (["--arch", "nonsense", "--", "true"], 2, "unknown architecture 'nonsense'"),
        (["--uid-map", "manual", "--", "true"], 2, "invalid choice: 'manual'"),
        (
            ["--arch", "arm64", "--interpreter-dir", "/nonexistent", "--", "true"],
            1,
            "no emulator for aarch64 (qemu-aarch64-static or qemu-aarch64 in /nonexistent); "
            "install it with `sudo apt-get install qemu-user-static`",
        ),
        (
            ["--arch", "x86_64", "--", "true"],
            1,
            "x86_64 is this machine's own architecture",
        ),
    ],
)
@conftest.x86_64_host
def test_run_refusals(who: str, args: list[str], code: int, message: str) -> None:
    proc = binfmtctl(who, "run", *args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    assert proc.stdout == ""


def test_json_envelope_on_failure_only_and_not_for_the_commands_json(who: str) -> None:
    proc = binfmtctl(who, "run", "--json", "--arch", "bogus", "--", "true")
    assert proc.returncode == 2
    assert '"code": "unknown_arch"' in proc.stdout
    ran = binfmtctl(who, "run", "--arch", "arm64", "--", "echo", "--json")
    assert (ran.returncode, ran.stdout) == (0, "--json\n")


# The real knobs cannot be flipped on a shared machine (and one of them is
# Ubuntu-only), so these read knob files written here, through the same
# function enter() consults when unshare(2) or the first mount fails.
@pytest.mark.parametrize(
    ("knobs", "message", "knob"),
    [
        (
            {"user/max_user_namespaces": "0"},
            "user namespaces are disabled (user.max_user_namespaces = 0); allow them with "
            "`sudo sysctl -w user.max_user_namespaces=15000`, or use `sudo binfmtctl install` "
            "instead of a private instance",
            "user.max_user_namespaces",
        ),
        (
            {
                "user/max_user_namespaces": "63000",
                "kernel/apparmor_restrict_unprivileged_userns": "1",
            },
            "AppArmor forbids unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns = 1); allow them with "
            "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (persist it in "
            "/etc/sysctl.d/), or give this Python an AppArmor profile with the `userns,` rule, "
            "or use `sudo binfmtctl install` instead",
            "kernel.apparmor_restrict_unprivileged_userns",
        ),
        (
            {"kernel/unprivileged_userns_clone": "0"},
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0); "
            "allow them with `sudo sysctl -w kernel.unprivileged_userns_clone=1`",
            "kernel.unprivileged_userns_clone",
        ),
    ],
)
def test_userns_refusal_names_the_knob(
    tmp_path: Path, knobs: dict[str, str], message: str, knob: str
) -> None:
    for name, value in knobs.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(value + "\n")
    err = sandbox._unshare_refusal(OSError(errno.EPERM, "denied"), proc_sys=str(tmp_path))
    assert isinstance(err, RootlessUnavailableError)
    assert (err.message, err.context["knob"], err.exit_code) == (message, knob, 4)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (errno.EINVAL, "cannot create a user namespace from a multi-threaded process"),
        (errno.EPERM, "cannot create a user namespace: Operation not permitted"),
    ],
)
def test_userns_refusal_without_a_knob(tmp_path: Path, code: int, message: str) -> None:
    err = sandbox._unshare_refusal(OSError(code, os.strerror(code)), proc_sys=str(tmp_path))
    assert not isinstance(err, RootlessUnavailableError)
    assert err.message.startswith(message)


@pytest.mark.parametrize(
    ("release", "refused"),
    [
        ("5.15.0-91-generic", True),
        ("6.6.30", True),
        ("6.7.0", False),
        ("6.18.44-fc-v657", False),
        ("7.0.0-rc1", False),
    ],
)
def test_kernel_refusal(release: str, refused: bool) -> None:
    err = sandbox.kernel_refusal(release)
    if not refused:
        assert err is None
        return
    assert err is not None
    assert err.message == (
        f"this kernel ({release}) has one global binfmt_misc; rootless mode needs "
        "Linux 6.7+; use `sudo binfmtctl install`"
    )
    assert err.exit_code == 4


# -- the library API ----------------------------------------------------------------


@pytest.mark.skipif(_NO_SANDBOX is not None, reason=f"no private binfmt_misc: {_NO_SANDBOX}")
def test_call_returns_statuses_and_raises_errors() -> None:
    busybox = str(foreign_busybox("arm64"))
    arm64 = rootless.RunOptions(arches=["arm64"])
    assert rootless.call([busybox, "false"], rootless.RunOptions(arches=["aarch64"])) == 1
    assert rootless.call([busybox, "sh", "-c", "kill -KILL $$"], arm64) == -9
    with pytest.raises(CommandNotFoundError):
        rootless.call(["/no/such/program"], arm64)
    with pytest.raises(InterpreterError, match="no emulator for aarch64"):
        rootless.call(["true"], arm64.replace(interpreter_dirs=["/nonexistent"]))
    with pytest.raises(UsageError, match="the maps on offer are `auto` and `none`"):
        rootless.call(["true"], arm64.replace(uid_map="0 0 1"))


@pytest.mark.skipif(_NO_SANDBOX is not None, reason=f"no private binfmt_misc: {_NO_SANDBOX}")
def test_prepare_inside_run_registers_handlers_and_returns_the_steps() -> None:
    def body() -> tuple[list[tuple[str, str]], str]:
        steps = rootless.prepare(rootless.RunOptions(arches=["arm64", "armhf"]))
        out = subprocess.run(
            [str(foreign_busybox("armhf")), "uname", "-m"],
            capture_output=True,
            text=True,
            check=True,
        )
        return [(s.arch.name, s.action) for s in steps], out.stdout

    # sandbox.run's child enters its own namespace first; prepare() nests one more.
    steps, out = forking.fork_call(body)
    assert steps == [("aarch64", "register"), ("arm", "register")]
    assert out == "armv7l\n"


@pytest.mark.parametrize(
    ("links", "path", "expected"),
    [
        ({}, "/bin/sh", "bin/sh"),
        ({"bin/sh": "busybox"}, "/bin/sh", "bin/busybox"),
        ({"bin/sh": "/usr/bin/dash"}, "/bin/sh", "usr/bin/dash"),
        ({"bin": "usr/bin", "usr/bin/sh": "dash"}, "/bin/sh", "usr/bin/dash"),
        ({"bin/sh": "../../../../etc/passwd"}, "/bin/sh", "etc/passwd"),
        ({"bin/sh": "/../../etc/shadow"}, "/bin/sh", "etc/shadow"),
    ],
)
def test_resolve_in_never_leaves_the_root(
    tmp_path: Path, links: dict[str, str], path: str, expected: str
) -> None:
    (tmp_path / "usr" / "bin").mkdir(parents=True)
    for name, target in links.items():
        link = tmp_path / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
    if not (tmp_path / "bin").exists():
        (tmp_path / "bin").mkdir()
    wanted = tmp_path / expected
    assert resolve_in(str(tmp_path), path) is None  # nothing there yet
    wanted.parent.mkdir(parents=True, exist_ok=True)
    wanted.touch()
    assert resolve_in(str(tmp_path), path) == str(wanted)


def test_a_hostile_root_name_reaches_the_prompt_inert(who: str, rootfs: Path) -> None:
    # bash and busybox expand $(...) and backquotes in PS1: the root's name must not run.
    hostile = rootfs.parent / "r$(touch pwned)`touch pwned2`"
    rootfs.rename(hostile)
    try:
        proc = binfmtctl(who, "shell", str(hostile), "-i", stdin="exit 0\n")
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.endswith("\n(aarch64) r__touch_pwned__touch_pwned2_:/# "), proc.stdout
        assert [p for p in hostile.rglob("pwned*")] == []
    finally:
        hostile.rename(rootfs)


@pytest.mark.parametrize(
    ("links", "prompt"),
    [
        ({"bin/sh": "dash"}, "(x) r# "),
        ({"bin/sh": "bash"}, "(x) r:\\w# "),
        ({"bin/sh": "busybox"}, "(x) r:\\w# "),
        ({"bin/sh": "/usr/bin/dash"}, "(x) r# "),
    ],
)
def test_the_prompt_uses_escapes_only_where_the_roots_shell_expands_them(
    tmp_path: Path, links: dict[str, str], prompt: str
) -> None:
    for name, target in links.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).symlink_to(target)
    for program in ("bin/dash", "bin/bash", "bin/busybox", "usr/bin/dash"):
        (tmp_path / program).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / program).touch()
    assert cli_rootless.shell_prompt(str(tmp_path), "/bin/sh", "(x) r") == prompt
