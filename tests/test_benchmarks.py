"""Each benchmark's quick mode runs once, so a refactor cannot break one silently.

A smoke run: the scripts run for real (scan against file(1) over the foreign test
binaries; binfmtctl test against QEMU in a private instance), and their report
must have its shape and agree with itself. Timings are never asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import _NO_SANDBOX, CACHE, FOREIGN, ROOT

BENCHMARKS = ROOT / "benchmarks"


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--quick"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BINFMTCTL_TEST_CACHE": str(CACHE), "PYTHONPATH": str(ROOT / "src")},
        timeout=300,
    )


def test_every_benchmark_has_a_smoke_run_here() -> None:
    scripts = sorted(p.name for p in BENCHMARKS.glob("*.py"))
    # startup.py's smoke run is tests/test_startup_bench.py.
    # agent.py's smoke run is tests/test_agent.py.
    assert scripts == ["agent.py", "rootfs.py", "scan.py", "startup.py", "test_speed.py"], (
        "a new benchmark needs a smoke test here"
    )


@pytest.mark.skipif(not FOREIGN.is_dir(), reason=f"{FOREIGN} missing: run scripts/test-deps")
def test_scan_benchmark_quick() -> None:
    proc = _run("scan.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"tree: .* \(\d+ files\)", lines[0]), lines
    assert re.fullmatch(r"binfmtctl scan: +\d+\.\d{3} s  \(median of 1\)", lines[1]), lines
    assert re.fullmatch(r"ratio: \d+\.\dx faster", lines[4]), lines
    counts = [line for line in lines[5:] if line.startswith("  ")]
    # Both tools see each foreign busybox: aarch64 at least, and every row agrees.
    assert "  64-bit LSB ARM aarch64: scan 1, file 1 (same)" in counts, counts
    assert all(line.endswith("(same)") for line in counts), counts


@pytest.mark.skipif(_NO_SANDBOX is not None, reason=f"no private binfmt_misc: {_NO_SANDBOX}")
def test_test_speed_benchmark_quick() -> None:
    proc = _run("test_speed.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"arches tested: +2 \(load average .*\)", lines[0]), lines
    assert re.fullmatch(r"floor \(slowest single QEMU start\): +\d+\.\d ms \((aarch64|arm)\)",
                        lines[1]), lines  # fmt: skip
    assert [line.split()[0] for line in lines[2:]] == ["all", "proving.run", "binfmtctl"]


@pytest.mark.skipif(
    _NO_SANDBOX is not None or shutil.which("mmdebstrap") is None,
    reason=f"needs a private binfmt_misc ({_NO_SANDBOX}) and mmdebstrap: run scripts/test-deps",
)
def test_rootfs_benchmark_quick() -> None:
    """Both emulated builds with mmdebstrap --simulate against this machine's mirror."""
    proc = _run("rootfs.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"build: debian \S+ arm64 minbase, mirror \S+ \(simulated\)", lines[0])
    assert re.fullmatch(r"rounds: 1 \(load average .*\)", lines[1]), lines
    assert re.fullmatch(r"plain mmdebstrap \(private instance\): +\d+\.\d s  \(median of 1\)",
                        lines[2]), lines  # fmt: skip
    assert re.fullmatch(r"binfmtctl rootfs create: +\d+\.\d s  \(median of 1\)", lines[3])
    assert re.fullmatch(r"overhead: [+-]\d+\.\d% \(goal: under 5%\)", lines[4]), lines
    assert len(lines) == 5, lines  # --quick builds nothing natively
