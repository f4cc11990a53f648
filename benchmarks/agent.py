"""Benchmark: the steady-state cost of one ``binfmtctl agent`` round.

Runs the agent (every foreign arch whose emulator is found, or the ARCHes
given) in a private binfmt_misc instance with a one-day interval, waits until
every arch is proven, then forces ROUNDS rounds with SIGHUP, each one awaited
through the feature file it rewrites (a new inode per round). Prints the CPU
time per round (the agent's own and its probes', from /proc/PID/stat), what
that is at the default 30 s interval as a share of one core, and the agent's
peak RSS (VmHWM). Goal: well under 1% of a core and under 40 MiB.

    .venv/bin/python benchmarks/agent.py [--rounds N] [ARCH...]

``--quick`` is the smoke run (tests/test_agent.py): two arches, two rounds.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from binfmtctl import agent, sandbox

WAIT = 120.0  # a bound on waiting for the agent


def _wait(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {what}")
        time.sleep(0.01)


def _cpu(pid: int) -> tuple[float, float]:
    """(own, children's waited-for) CPU seconds of ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _hwm(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def measure(arches: list[str], rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        feats, ready = Path(tmp, "features"), Path(tmp, "ready")
        argv = [sys.executable, "-m", "binfmtctl", "agent", "--allow-private-instance"]
        argv += ["--interval", "86400", "--feature-file", str(feats), "--ready-file", str(ready)]
        proc = subprocess.Popen([*argv, *arches], stdout=subprocess.DEVNULL)
        try:
            _wait("every arch proven", ready.exists)
            lines = feats.read_text().splitlines()
            proven = sum(1 for line in lines if "=" in line and not line.startswith("#"))
            own0, kids0 = _cpu(proc.pid)
            start = time.monotonic()
            for _ in range(rounds):
                before = feats.stat().st_ino
                proc.send_signal(signal.SIGHUP)
                _wait("a round", lambda ino=before: feats.stat().st_ino != ino)  # type: ignore[misc]
            wall = (time.monotonic() - start) / rounds
            own1, kids1 = _cpu(proc.pid)
            hwm = _hwm(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
    own, kids = (own1 - own0) / rounds, (kids1 - kids0) / rounds
    return {"arches": proven, "own": own, "probes": kids, "wall": wall, "rss": hwm / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arches", nargs="*")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    arches, rounds = (["arm64", "armhf"], 2) if args.quick else (args.arches, args.rounds)
    with sandbox.Sandbox() as box:
        got = box.run(measure, arches, rounds)
    per = got["own"] + got["probes"]
    print(f"arches proven: {got['arches']:.0f} (load average {os.getloadavg()[0]:.2f})")
    print(f"cpu per round: {per * 1000:.1f} ms (agent {got['own'] * 1000:.1f} ms, "
          f"probes {got['probes'] * 1000:.1f} ms), wall {got['wall'] * 1000:.0f} ms")  # fmt: skip
    share = per / agent.DEFAULT_INTERVAL * 100
    print(f"at the default {agent.DEFAULT_INTERVAL:g} s interval: {share:.2f}% of one core")
    print(f"peak RSS: {got['rss']:.1f} MiB")


if __name__ == "__main__":
    main()
