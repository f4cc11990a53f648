"""Exit codes tell the truth: each verb as root, as an ordinary user, on a read-only mount.

All three run against one private binfmt_misc instance. The sandbox maps uids
0..65535 onto themselves (it is created by root), so ``binfmtctl-test`` keeps
its own uid inside it: an ordinary user of that instance, whose files are
root's (``register`` is mode 0200, entries 0644), exactly as on a host. The
read-only case is a second mount of the same instance, bind-remounted
read-only: root there is refused by the file system, not for lack of privilege.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from binfmtctl import sandbox
from binfmtctl.arch import Profile, resolve
from binfmtctl.plan import build_entry
from conftest import _NO_SANDBOX, ROOT, cli, qemu, registered, registered_disabled

USER = "binfmtctl-test"
SYSTEM_PYTHON = "/usr/bin/python3"
MP = "/proc/sys/fs/binfmt_misc"
NEEDS = (
    "this needs privileges: run it as root (`sudo binfmtctl ...`), or use `binfmtctl run` "
    "for a private instance that needs no root"
)
READ_ONLY = "remount it read-write (in a container: run it privileged, or on the host)"


def _user_problem() -> str | None:
    if _NO_SANDBOX is not None:
        return f"no private binfmt_misc here: {_NO_SANDBOX}"
    if os.geteuid() != 0:
        return "the ordinary-user case needs root to create a sandbox with more than one uid"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER}: run scripts/test-deps as root"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"no {SYSTEM_PYTHON} for the user to run binfmtctl with"
    readable = ["test", "-r", str(ROOT / "src" / "binfmtctl" / "__init__.py")]
    if subprocess.run(_as_user(*readable), check=False).returncode != 0:
        return f"{USER} cannot read {ROOT / 'src'}"
    return None


def _as_user(*argv: str) -> list[str]:
    entry = pwd.getpwnam(USER)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            "--", *argv]  # fmt: skip


@pytest.fixture
def box() -> Iterator[sandbox.Sandbox]:
    problem = _user_problem()
    if problem:
        pytest.skip(problem)
    with sandbox.Sandbox(full_ids=True) as opened:
        yield opened


@pytest.fixture
def conf() -> Iterator[Path]:
    """A binfmt.d file every user may read (pytest's tmp_path is root's alone)."""
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-exit-"))
    top.chmod(0o755)
    path = top / "qemu-aarch64.conf"
    path.write_text(f"{build_entry(resolve('arm64'), qemu('qemu-aarch64'), 'F', Profile.QEMU)}\n")
    path.chmod(0o644)
    yield path
    path.unlink()
    top.rmdir()


def as_user(box: sandbox.Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    argv = _as_user(
        "env", f"PYTHONPATH={ROOT / 'src'}", "HOME=/", SYSTEM_PYTHON, "-m", "binfmtctl", *args
    )
    return box.run(subprocess.run, argv, capture_output=True, text=True, check=False, cwd="/")


def nothing(box: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")


# verb -> (setup as root, argv, what is refused, the file refused, state after success)
CASES: dict[str, tuple[Callable[[sandbox.Sandbox], None], list[str], str, str, str]] = {
    "install": (nothing, ["install", "arm64"], "register", "register", "enabled"),
    "uninstall": (registered, ["uninstall", "arm64"], "remove", "qemu-aarch64", "absent"),
    "enable": (registered_disabled, ["enable", "arm64"], "enable", "qemu-aarch64", "enabled"),
    "disable": (registered, ["disable", "arm64"], "disable", "qemu-aarch64", "disabled"),
    "apply": (nothing, ["apply", "CONF"], "register", "register", "enabled"),
}


def entry_state(box: sandbox.Sandbox) -> str:
    def read() -> str:
        path = Path(MP) / "qemu-aarch64"
        return path.read_text().splitlines()[0] if path.exists() else "absent"

    return box.run(read)


def _argv(argv: list[str], conf: Path, mountpoint: str | None = None) -> list[str]:
    out = [str(conf) if a == "CONF" else a for a in argv]
    return [*out, "--mountpoint", mountpoint] if mountpoint else out


def _message(verb: str, action: str, path: str, conf: Path, reason: str) -> str:
    where = f"{conf}:1: " if verb == "apply" else ""
    return f"binfmtctl: error: {where}cannot {action} qemu-aarch64: {reason}"


@pytest.mark.parametrize("verb", list(CASES))
def test_root_in_the_instance_succeeds(box: sandbox.Sandbox, conf: Path, verb: str) -> None:
    setup, argv, _, _, after = CASES[verb]
    setup(box)
    proc = cli(box, *_argv(argv, conf))
    assert proc.returncode == 0, proc.stderr
    assert "error" not in proc.stderr
    assert entry_state(box) == after


@pytest.mark.parametrize("verb", list(CASES))
def test_an_ordinary_user_is_told_it_needs_privileges(
    box: sandbox.Sandbox, conf: Path, verb: str
) -> None:
    setup, argv, action, refused, _ = CASES[verb]
    setup(box)
    before = entry_state(box)
    proc = as_user(box, *_argv(argv, conf))
    assert proc.returncode == 4, proc.stderr
    expected = _message(verb, action, refused, conf, f"permission denied ({MP}/{refused}); {NEEDS}")
    assert expected in proc.stderr.splitlines()
    assert [line for line in proc.stderr.splitlines() if "error" in line] == [expected]
    assert "not an executable" not in proc.stderr + proc.stdout  # never blames the emulator
    assert entry_state(box) == before


@pytest.mark.parametrize("verb", list(CASES))
def test_root_on_a_read_only_mount_gets_the_real_reason(
    box: sandbox.Sandbox, conf: Path, verb: str, tmp_path: Path
) -> None:
    setup, argv, action, refused, _ = CASES[verb]
    setup(box)
    ro = box.run(_read_only_mount, tmp_path / "ro")
    before = entry_state(box)
    proc = cli(box, *_argv(argv, conf, ro))
    assert proc.returncode == 1, proc.stderr
    expected = _message(verb, action, refused, conf, f"read-only file system ({ro}/{refused}); ")
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert errors == [expected + READ_ONLY]
    assert entry_state(box) == before


def _read_only_mount(where: Path) -> str:
    """A second mount of this instance, read-only; the first stays writable."""
    where.mkdir()
    for argv in (
        ["mount", "-t", "binfmt_misc", "binfmt_misc", str(where)],
        ["mount", "-o", "remount,bind,ro", str(where)],
    ):
        subprocess.run(argv, check=True, capture_output=True)
    return str(where)


def test_registered_but_not_persisted_is_partly_done(box: sandbox.Sandbox, conf: Path) -> None:
    """The kernel part worked and stays; the boot part failed: exit 3, not 1."""
    not_a_dir = conf.parent / "binfmt.d"
    not_a_dir.write_text("a file where a directory should be\n")
    try:
        proc = cli(box, "install", "arm64", "--persist", "--binfmt-d", str(not_a_dir), "--json")
    finally:
        content = not_a_dir.read_text()
        not_a_dir.unlink()
    assert proc.returncode == 3, proc.stderr
    assert content == "a file where a directory should be\n"
    assert entry_state(box) == "enabled"


def test_status_and_install_warn_when_the_instance_is_disabled(box: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    assert cli(box, "disable", "--instance").returncode == 0
    warning = (
        f"binfmtctl: warning: binfmt_misc at {MP} is disabled as a whole: no handler "
        "runs until `binfmtctl enable --instance`"
    )
    status = cli(box, "status")
    assert status.returncode == 0
    assert warning in status.stderr.splitlines()
    install = cli(box, "install", "arm64")
    assert install.returncode == 0
    assert warning in install.stderr.splitlines()


def _read_only_dir(where: Path) -> str:
    where.mkdir()
    for argv in (["mount", "--bind", str(where), str(where)],
                 ["mount", "-o", "remount,bind,ro", str(where)]):  # fmt: skip
        subprocess.run(argv, check=True, capture_output=True)
    return str(where)


def test_persisting_to_a_read_only_directory_is_partly_done_not_privileges(
    box: sandbox.Sandbox, tmp_path: Path
) -> None:
    qemu("qemu-aarch64")
    ro = box.run(_read_only_dir, tmp_path / "binfmt.d")
    proc = cli(box, "install", "arm64", "--persist", "--binfmt-d", ro)
    assert proc.returncode == 3, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1
    assert f": read-only file system ({ro}); " in errors[0]
    assert errors[0].endswith(
        "; remount it read-write, or choose another directory (--binfmt-d, --root, -o)"
    )
    assert entry_state(box) == "enabled"


def test_the_instance_switch_needs_privileges_too(box: sandbox.Sandbox, tmp_path: Path) -> None:
    user = as_user(box, "disable", "--instance")
    assert user.returncode == 4
    assert user.stderr.splitlines()[-1] == (
        f"binfmtctl: error: cannot change status: permission denied ({MP}/status); {NEEDS}"
    )
    ro = box.run(_read_only_mount, tmp_path / "ro")
    root = cli(box, "disable", "--instance", "--mountpoint", ro)
    assert root.returncode == 1
    assert root.stderr.splitlines()[-1] == (
        f"binfmtctl: error: cannot change status: read-only file system ({ro}/status); {READ_ONLY}"
    )
    assert box.run(Path(f"{MP}/status").read_text) == "enabled\n"
