"""How fast is ``binfmtctl test`` against its floor?  Run by hand:

    .venv/bin/python benchmarks/test_speed.py [--repeat N]

In a fresh private binfmt_misc instance (never the host's) it registers every
foreign arch whose QEMU is installed (``binfmtctl install``), then measures:

* the floor: each probe run directly by its ``qemu-ARCH-static``, back to back,
  best of N per arch; the floor is the slowest of those single QEMU starts
  (no parallel run can beat it), the sum is what a serial loop would cost;
* ``probes.run`` over every arch (the work of ``binfmtctl test``, in-process);
* the whole ``binfmtctl test`` command (Python start-up included).

Wall times are the median of N runs; the ratio is wall / floor.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from binfmtctl import probes, sandbox
from binfmtctl.arch import CATALOG
from binfmtctl.instance import Instance


def _qemu(name: str) -> Path:
    return Path("/usr/bin") / f"{CATALOG[name].emulator_name}-static"


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - start


def measure(repeat: int) -> dict[str, object]:
    """Runs inside the private instance."""
    install = [sys.executable, "-m", "binfmtctl", "install"]
    subprocess.run(install, capture_output=True, check=True)
    handlers = probes.Handlers.of(Instance())
    arches = handlers.registered_arches()
    with tempfile.TemporaryDirectory() as where:
        best: dict[str, float] = {}
        for name in arches:  # back to back, one QEMU at a time
            path = probes.write(name, Path(where) / name)
            best[name] = min(_timed([str(_qemu(name)), str(path)]) for _ in range(repeat))
    walls = []
    for _ in range(repeat):
        start = time.perf_counter()
        outcomes = probes.run(arches, handlers)
        walls.append(time.perf_counter() - start)
        assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    command = [sys.executable, "-m", "binfmtctl", "test"]
    cli = [_timed(command) for _ in range(repeat)]
    slowest = max(best, key=best.__getitem__)
    return {
        "arches": len(arches),
        "floor": best[slowest],
        "floor_arch": slowest,
        "serial": sum(best.values()),
        "run": statistics.median(walls),
        "command": statistics.median(cli),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement")
    args = parser.parse_args()
    m = sandbox.run(measure, args.repeat)
    floor = float(m["floor"])  # type: ignore[arg-type]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"arches tested:                    {m['arches']} (load average {load})")
    print(f"floor (slowest single QEMU start): {floor * 1000:6.1f} ms ({m['floor_arch']})")
    print(f"all QEMU starts back to back:      {float(m['serial']) * 1000:6.1f} ms")  # type: ignore[arg-type]
    for label, key in (("probes.run (in-process)", "run"), ("binfmtctl test (command)", "command")):
        wall = float(m[key])  # type: ignore[arg-type]
        print(f"{label:33} {wall * 1000:6.1f} ms wall, {wall / floor:4.1f} x floor")


if __name__ == "__main__":
    main()
