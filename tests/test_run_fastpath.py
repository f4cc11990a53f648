"""``run`` reuses the plan of an identical earlier run (per boot), and only while it is valid.

Which path a run took is read from ``python -X importtime``: a run that
plans imports binfmtctl.hostfacts (the facts planning reads), one that reuses
the kept plan does not. What it registered is read from the private instance
itself, inside the run. The
cache lives in a fresh $XDG_RUNTIME_DIR per test; the emulators are copies of
the real qemu-aarch64-static in directories of the test's own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import _NO_SANDBOX, foreign_busybox

pytestmark = [
    pytest.mark.skipif(
        _NO_SANDBOX is not None or os.geteuid() != 0,
        reason=f"needs root and private binfmt_misc instances ({_NO_SANDBOX or 'not root'})",
    ),
    pytest.mark.usefixtures("host_binfmt_unchanged"),
]

QEMU = Path("/usr/bin/qemu-aarch64-static")
ENTRY = "/proc/sys/fs/binfmt_misc/qemu-aarch64"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    return {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}


def plans(env: dict[str, str]) -> Path:
    return Path(env["XDG_RUNTIME_DIR"]) / "binfmtctl" / "run-plans"


class Ran:
    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        lines = proc.stderr.splitlines()
        self.planned = any(line.split("|")[-1].strip() == "binfmtctl.hostfacts" for line in lines)
        self.stderr = "\n".join(line for line in lines if not line.startswith("import time:"))

    @property
    def interpreter(self) -> str:
        return next(
            line.split(" ", 1)[1] for line in self.stdout.splitlines()
            if line.startswith("interpreter ")
        )  # fmt: skip


def run(env: dict[str, str], *args: str) -> Ran:
    """``binfmtctl run ARGS -- busybox cat ENTRY`` (what was registered for aarch64)."""
    argv = [sys.executable, "-X", "importtime", "-m", "binfmtctl", "run", *args, "--",
            str(foreign_busybox("arm64")), "cat", ENTRY]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd="/")
    return Ran(proc)


def test_the_second_identical_run_reuses_the_plan(env: dict[str, str]) -> None:
    assert not plans(env).exists()
    first = run(env, "--arch", "arm64")
    assert first.returncode == 0, first.stderr
    assert first.planned
    assert plans(env).stat().st_mode & 0o777 == 0o600
    second = run(env, "--arch", "arm64")
    assert second.returncode == 0, second.stderr
    assert not second.planned
    assert second.stdout == first.stdout  # the very same entry
    other = run(env, "--arch", "arm64", "--arch", "armhf")  # other options: planned
    assert other.returncode == 0, other.stderr
    assert other.planned


def test_an_emulator_added_changed_or_removed_makes_it_plan_again(
    env: dict[str, str], tmp_path: Path
) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    shutil.copy2(QEMU, second_dir / QEMU.name)
    dirs = ["--arch", "arm64", "--interpreter-dir", str(first_dir), "--interpreter-dir",
            str(second_dir)]  # fmt: skip
    ran = run(env, *dirs)
    assert (ran.returncode, ran.planned) == (0, True), ran.stderr
    assert ran.interpreter == str(second_dir / QEMU.name)
    assert not run(env, *dirs).planned
    # A better candidate appears (the first directory is searched first).
    shutil.copy2(QEMU, first_dir / QEMU.name)
    ran = run(env, *dirs)
    assert (ran.returncode, ran.planned) == (0, True), ran.stderr
    assert ran.interpreter == str(first_dir / QEMU.name)
    # Replaced by another file (another inode) at the same path.
    (first_dir / QEMU.name).unlink()
    shutil.copy2(QEMU, first_dir / QEMU.name)
    ran = run(env, *dirs)
    assert (ran.returncode, ran.planned) == (0, True), ran.stderr
    assert not run(env, *dirs).planned
    # No longer executable: planned, and refused as before any cache existed.
    (first_dir / QEMU.name).chmod(0o644)
    (second_dir / QEMU.name).chmod(0o644)
    ran = run(env, *dirs)
    assert ran.planned
    assert ran.returncode == 1
    assert "not executable" in ran.stderr
    # Removed: planned again; nothing registered through a stale line.
    (first_dir / QEMU.name).unlink()
    (second_dir / QEMU.name).unlink()
    ran = run(env, *dirs)
    assert (ran.returncode, ran.planned) == (1, True)
    assert "no emulator for aarch64" in ran.stderr


def test_the_c_flag_is_never_reused(env: dict[str, str]) -> None:
    for _ in range(2):
        ran = run(env, "--arch", "arm64", "--flags", "FC")
        assert (ran.returncode, ran.planned) == (0, True), ran.stderr
        assert "flags: OCF" in ran.stdout, ran.stdout  # the kernel shows C with O
    assert not plans(env).exists()


@pytest.mark.parametrize("kind", ["fifo", "symlink", "foreign", "garbage", "directory"])
def test_a_hostile_cache_file_is_a_miss(env: dict[str, str], tmp_path: Path, kind: str) -> None:
    assert run(env, "--arch", "arm64").returncode == 0  # a good plan exists...
    path = plans(env)
    good = path.read_bytes()
    path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        (tmp_path / "elsewhere").write_bytes(good)
        path.symlink_to(tmp_path / "elsewhere")
    elif kind == "foreign":
        path.write_bytes(good)
        os.chown(path, 1, 1)  # not ours: someone else's file in our cache directory
    elif kind == "garbage":
        path.write_bytes(good.replace(b"line ", b"lime ", 1))
    else:
        path.mkdir()
    ran = run(env, "--arch", "arm64")  # ...but this one is not read: plan again
    assert (ran.returncode, ran.planned) == (0, True), ran.stderr


def test_other_planning_code_plans_again(env: dict[str, str]) -> None:
    """An upgrade or an edit of the planner within one boot is not answered by the old plan."""
    from binfmtctl import plan

    assert run(env, "--arch", "arm64").returncode == 0
    assert not run(env, "--arch", "arm64").planned
    before = os.stat(plan.__file__)
    try:
        os.utime(plan.__file__, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
        assert run(env, "--arch", "arm64").planned
    finally:
        os.utime(plan.__file__, ns=(before.st_atime_ns, before.st_mtime_ns))


# What pip's, pipx's and uv's console scripts do (current pip: no `import re`).
CONSOLE_SCRIPT = "import sys\nfrom binfmtctl.cli import run\nsys.exit(run())"

#: Modules a run with a kept plan must not import: every one of them costs
#: milliseconds per foreign command (enum alone ~2 ms here; functools and
#: collections come with contextlib and threading), and none is needed to
#: unshare, mount, register and exec.
NOT_ON_THE_FAST_PATH = {
    "enum", "functools", "collections", "contextlib", "threading", "typing", "re",
    "signal", "importlib", "argparse", "json", "dataclasses", "pathlib", "subprocess",
}  # fmt: skip


def imported(env: dict[str, str], *code_and_args: str) -> set[str]:
    argv = [sys.executable, "-X", "importtime", "-c", *code_and_args]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd="/")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("import time:")]
    return {line.split("|")[-1].strip() for line in lines[1:]}


def test_a_run_with_a_kept_plan_imports_only_what_it_uses(env: dict[str, str]) -> None:
    busybox = str(foreign_busybox("arm64"))
    args = ["run", "--arch", "arm64", "--", busybox, "true"]
    assert run(env, "--arch", "arm64").returncode == 0  # the plan is kept now
    floor = imported(env, "pass")
    used = imported(env, CONSOLE_SCRIPT, *args) - floor
    assert "binfmtctl.rootless" in used  # the record is real: it names what was imported
    assert "binfmtctl.hostfacts" not in used  # the kept plan was used
    assert used & NOT_ON_THE_FAST_PATH == set()
