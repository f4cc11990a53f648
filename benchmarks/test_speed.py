"""How fast is ``binfmtctl test`` against its floor?  Run by hand:

    .venv/bin/python benchmarks/test_speed.py [--repeat N]

In a fresh private binfmt_misc instance (never the host's) it registers every
foreign arch whose QEMU is installed (``binfmtctl install``), then measures:

* the floor: each probe run directly by its ``qemu-ARCH-static``, back to back,
  best of N per arch; the floor is the slowest of those single QEMU starts
  (no parallel run can beat it), the sum is what a serial loop would cost;
* ``proving.run`` over every arch (the work of ``binfmtctl test``, in-process);
* the whole ``binfmtctl test`` command (Python start-up included).

Wall times are the median of N runs; the ratio is wall / floor.

``--quick`` is the smoke run the test suite does (tests/test_benchmarks.py):
two arches, one run each, so the script cannot rot; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from binfmtctl import probes, proving, sandbox
from binfmtctl.arch import CATALOG
from binfmtctl.instance import Instance


def _qemu(name: str) -> Path:
    return Path("/usr/bin") / f"{CATALOG[name].emulator_name}-static"


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - start


@dataclass(frozen=True)
class Measured:
    arches: int
    floor: float  # the slowest single QEMU start, seconds
    floor_arch: str
    serial: float  # every QEMU start back to back
    run: float  # proving.run over every arch, median wall
    command: float  # the binfmtctl test command, median wall


def measure(repeat: int, only: Sequence[str] | None = None) -> Measured:
    """Runs inside the private instance; ``only`` limits the arches (quick mode)."""
    install = [sys.executable, "-m", "binfmtctl", "install", *(only or ())]
    subprocess.run(install, capture_output=True, check=True)
    snapshot = Instance().snapshot()
    arches = proving.claimed(snapshot)
    with tempfile.TemporaryDirectory() as where:
        best: dict[str, float] = {}
        for name in arches:  # back to back, one QEMU at a time
            path = probes.write(name, Path(where) / name)
            best[name] = min(_timed([str(_qemu(name)), str(path)]) for _ in range(repeat))
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        outcomes = proving.run(arches, snapshot)
        walls.append(time.perf_counter() - start)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            raise RuntimeError(f"probes failed: {failed}")
    command = [sys.executable, "-m", "binfmtctl", "test"]
    cli = [_timed(command) for _ in range(repeat)]
    slowest = max(best, key=best.__getitem__)
    return Measured(
        arches=len(arches),
        floor=best[slowest],
        floor_arch=slowest,
        serial=sum(best.values()),
        run=statistics.median(walls),
        command=statistics.median(cli),
    )


QUICK_ARCHES = ("aarch64", "arm")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: two arches, one run (for the tests)"
    )
    args = parser.parse_args(argv)
    repeat, only = (1, QUICK_ARCHES) if args.quick else (args.repeat, None)
    m = sandbox.run(measure, repeat, only)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"arches tested:                    {m.arches} (load average {load})")
    print(f"floor (slowest single QEMU start): {m.floor * 1000:6.1f} ms ({m.floor_arch})")
    print(f"all QEMU starts back to back:      {m.serial * 1000:6.1f} ms")
    for label, wall in (
        ("proving.run (in-process)", m.run),
        ("binfmtctl test (command)", m.command),
    ):
        print(f"{label:33} {wall * 1000:6.1f} ms wall, {wall / m.floor:4.1f} x floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
