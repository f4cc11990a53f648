"""Shared fixtures: a private binfmt_misc instance, real QEMU, real foreign binaries.

Every test that registers anything does it inside ``binfmtctl.sandbox`` (a user +
mount namespace with its own binfmt_misc). A session guard fails the run if the
host's binfmt_misc changed while the tests ran.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from binfmtctl import host, sandbox

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BINFMTCTL_TEST_CACHE", ROOT / ".cache"))
FOREIGN = CACHE / "foreign"
HOST_BINFMT = "/proc/sys/fs/binfmt_misc"


def _host_binfmt_state() -> tuple[bool, tuple[str, ...]]:
    with open("/proc/mounts") as fh:
        mounted = any(line.split()[1] == HOST_BINFMT for line in fh if len(line.split()) > 2)
    names = tuple(sorted(os.listdir(HOST_BINFMT))) if mounted else ()
    return mounted, names


@pytest.fixture(scope="session", autouse=True)
def host_binfmt_untouched() -> Iterator[None]:
    """The host's binfmt_misc must look the same after the suite as before it."""
    before = _host_binfmt_state()
    yield
    after = _host_binfmt_state()
    assert after == before, f"the host's binfmt_misc changed: {before} -> {after}"


@pytest.fixture
def host_binfmt_unchanged() -> Iterator[None]:
    """The same check per test (not even mounted), for modules that run binfmtctl
    on the host itself (``run``, ``shell``, ``rootfs`` make their own private
    instance): a failure names the culprit."""
    before = _host_binfmt_state()
    yield
    assert _host_binfmt_state() == before


# The suite may be started under nohup (SIGHUP ignored), and an ignored signal
# stays ignored across exec: every process the tests start would then shrug off
# the SIGHUP that tests/test_hostile_signals.py sends and checks the effect of.
# The tests need the disposition a terminal session gives.
signal.signal(signal.SIGHUP, signal.SIG_DFL)

#: CI sets CI=true: there every test must run, so a skip for something missing fails.
IN_CI = os.environ.get("CI") == "true"
#: The reason prefix of a skip that is right on some machines (e.g. off x86_64).
NOT_APPLICABLE = "not applicable here: "


def missing(what: str) -> NoReturn:
    """Skip a test that needs ``what`` (a tool, QEMU, a private instance, a binary).

    Under CI=true it fails instead, naming what is missing: a CI run that skips
    the tests of a feature would go green without testing it.
    """
    if IN_CI:
        pytest.fail(f"CI=true, but {what}", pytrace=False)
    pytest.skip(what)


def not_applicable(why: str) -> NoReturn:
    """Skip a test that cannot apply to this host (not a missing tool); also in CI."""
    pytest.skip(NOT_APPLICABLE + why)


#: For tests whose expectations are an x86_64 machine's (i386 and x86_64 run natively).
x86_64_host = pytest.mark.skipif(
    host.machine() != "x86_64",
    reason=f"{NOT_APPLICABLE}expects an x86_64 host; this one is {host.machine()}",
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI=true, turn every other skip (a skipif mark, a bare pytest.skip) into a failure."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    if reason.removeprefix("Skipped: ").startswith(NOT_APPLICABLE):
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true, but the test skipped: {reason.removeprefix('Skipped: ')}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """Under CI=true, a whole module skipped at import (importorskip) fails the same way."""
    outcome = yield
    report: pytest.CollectReport = outcome.get_result()  # type: ignore[attr-defined]
    if not (IN_CI and report.skipped):
        return
    longrepr = report.longrepr
    reason = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)
    if reason.removeprefix("Skipped: ").startswith(NOT_APPLICABLE):
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true, but the module skipped: {reason.removeprefix('Skipped: ')}"


def _private_instances_work() -> str | None:
    try:
        sandbox.run(os.listdir, HOST_BINFMT)
    except Exception as err:  # noqa: BLE001 - any failure means: cannot test here
        return str(err)
    return None


_NO_SANDBOX = _private_instances_work()
needs_sandbox = pytest.mark.skipif(
    _NO_SANDBOX is not None, reason=f"no private binfmt_misc here: {_NO_SANDBOX}"
)


def require_sandbox() -> None:
    """For tests that need a private binfmt_misc instance but not the ``sb`` fixture."""
    if _NO_SANDBOX is not None:
        missing(f"no private binfmt_misc instance can be mounted here: {_NO_SANDBOX}")


@pytest.fixture
def sb() -> Iterator[sandbox.Sandbox]:
    """One private binfmt_misc instance for the whole test."""
    require_sandbox()
    with sandbox.Sandbox() as box:
        yield box


def foreign_busybox(debian_arch: str) -> Path:
    """Debian's busybox-static for ``debian_arch`` (fetched by scripts/test-deps)."""
    path = FOREIGN / debian_arch / "bin" / "busybox"
    if not path.exists():
        missing(f"{path} is missing: run scripts/test-deps")
    return path


def qemu(stem: str) -> str:
    path = f"/usr/bin/{stem}-static"
    if not os.path.exists(path):
        missing(f"{path} is missing: run scripts/test-deps (installs qemu-user-static)")
    return path


def cli(
    box: sandbox.Sandbox, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``binfmtctl`` command inside the sandbox."""
    return box.run(
        subprocess.run,
        [sys.executable, "-m", "binfmtctl", *args],
        capture_output=True,
        text=True,
        input=stdin,
        check=False,
    )


def registered(box: sandbox.Sandbox) -> None:
    """Setup: arm64's handler (qemu-aarch64) installed in the box's instance."""
    assert cli(box, "install", "arm64").returncode == 0


def registered_disabled(box: sandbox.Sandbox) -> None:
    """Setup: arm64's handler installed, then disabled."""
    registered(box)
    assert cli(box, "disable", "arm64").returncode == 0


def host_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``binfmtctl`` command here, outside any sandbox (for the verbs
    that make their own private instance: run, shell, rootfs)."""
    return subprocess.run(
        [sys.executable, "-m", "binfmtctl", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env=env,
    )


def run_in(box: sandbox.Sandbox, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run a program inside the sandbox (through the kernel's binfmt_misc route)."""
    return box.run(subprocess.run, list(argv), capture_output=True, text=True, check=False)


def exec_result(box: sandbox.Sandbox, *argv: str) -> int | str:
    """errno if execve itself failed, else the program's stdout+stderr."""

    def attempt() -> int | str:
        try:
            done = subprocess.run(list(argv), check=False, capture_output=True, text=True)
        except OSError as err:
            return err.errno or -1
        return done.stdout + done.stderr

    return box.run(attempt)


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory the unprivileged test user can reach (pytest's tmp_path is root-only)."""
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-hostile-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


@pytest.fixture(scope="session")
def arm64_root() -> Iterator[tuple[Path, dict[str, object]]]:
    """One arm64 minbase root, built as root by the real CLI, shared by every test.

    The only expensive fixture (a minute or more: mmdebstrap from the network),
    so it is built once per run, for tests/test_rootfs.py and the run/shell tests.
    """
    import json

    if _NO_SANDBOX is not None or shutil.which("mmdebstrap") is None or os.geteuid() != 0:
        pytest.skip("needs root, a private instance and mmdebstrap: run scripts/test-deps")
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-rootfs-"))
    root = top / "debian-arm64"
    done = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "rootfs", "create", str(root), "--arch", "arm64",
         "--json"],
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    envelope = json.loads(done.stdout)
    yield root, envelope
    shutil.rmtree(top)
