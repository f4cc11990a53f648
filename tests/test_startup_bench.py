"""Smoke test of benchmarks/startup.py: its --quick mode runs every row once through.

Nothing is timed here: the test checks that each row ran its command and its
baseline (real namespaces, real QEMU, systemd-binfmt in a private instance) and
printed a number for both and their ratio, and that the host's binfmt_misc is
as it was.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys

import pytest

from conftest import _NO_SANDBOX, ROOT, _host_binfmt_state

BENCH = ROOT / "benchmarks" / "startup.py"
ROWS = [
    "python -c pass (floor)",
    "qemu-aarch64-static BUSYBOX true (floor)",
    "run --arch arm64 -- BUSYBOX true",
    "install of Debian's",
    "status (",
    "status --json (",
]
ROW = re.compile(
    r"^\| (?P<what>.+?) \| (?P<a>[0-9.]+) ms \((?P<a_cpu>[0-9.]+)\) "
    r"\| (?P<b>[0-9.]+) ms \((?P<b_cpu>[0-9.]+)\): .+ "
    r"\| (?P<ratio>[0-9.]+)x \((?P<cpu_ratio>[0-9.]+)x\) \|"
)


#: With --user: the ordinary user's rows (run through newuidmap, on the host).
USER = "binfmtctl-test"
USER_ROWS = [f"/usr/bin/python3 -c pass as {USER} (floor)", "run --arch arm64 -- BUSYBOX true as"]


def test_quick_mode_measures_every_row() -> None:
    if _NO_SANDBOX is not None:
        pytest.skip(f"no private binfmt_misc here: {_NO_SANDBOX}")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"no user {USER}: run scripts/test-deps as root")
    before = _host_binfmt_state()
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--user", USER],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert _host_binfmt_state() == before
    if done.returncode == 2 and done.stderr.startswith("cannot run:"):
        pytest.skip(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    found = [m for m in map(ROW.match, done.stdout.splitlines()) if m]
    assert len(found) == len(ROWS + USER_ROWS), done.stdout
    for match, label in zip(found, ROWS + USER_ROWS, strict=True):
        assert match["what"].startswith(label)
        numbers = [float(match[k]) for k in ("a", "b", "a_cpu", "b_cpu", "ratio", "cpu_ratio")]
        assert all(n > 0 for n in numbers), match.group(0)
    entries = int(re.search(r"status \((\d+) entries\)", done.stdout)[1])  # type: ignore[index]
    assert entries >= 2
    assert done.stdout.rstrip().endswith("quick mode: too few runs for any claim")


def test_too_few_repetitions_for_a_claim_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--repeat", "5"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--repeat: at least 11 for a median worth printing (or --quick)" in done.stderr
