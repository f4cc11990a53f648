"""Benchmark: ``binfmtctl rootfs create`` against plain ``mmdebstrap``, same options.

Three builds per round, in this order, into fresh directories:

* plain: mmdebstrap with exactly the argv ``rootfs create`` uses, run in a
  private instance with an arm64 handler (``binfmtctl run --arch arm64
  --uid-map auto -- mmdebstrap ...``: the least it takes without touching the
  host's handlers);
* ``binfmtctl rootfs create DIR --arch arm64``: the same build plus the checks
  (mirror, ids, target), progress, the smoke test and the provenance record;
* native floor: the same options for the host's own arch, no emulation.

Goal: rootfs create within 5% of plain. Prints medians over ``--runs``, and
binfmtctl's own part of ``rootfs create`` (its total minus its mmdebstrap run,
as its --json reports them): on a busy machine the difference between two
whole builds is mostly noise, this part is not.

    .venv/bin/python benchmarks/rootfs.py [--runs N] [--arch arm64] [--suite S]

``--quick`` is the smoke run the test suite does (tests/test_benchmarks.py):
both emulated variants with mmdebstrap's ``--simulate`` (apt resolves the
package set, nothing is downloaded or installed), one round, no native build;
its timings mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from binfmtctl import host, rootfs, rootfs_checks, runplan, sandbox  # noqa: E402
from binfmtctl import rootfs_plan as rp  # noqa: E402

BINFMTCTL = [sys.executable, "-m", "binfmtctl"]


LAST_STDOUT: list[str] = [""]


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    seconds = time.monotonic() - start
    LAST_STDOUT[0] = done.stdout
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}\n{tail}")
    return seconds


def _remove(path: Path) -> None:
    """Remove a built root: as an ordinary user, its files belong to the subordinate ids."""
    if not path.exists():
        return
    if os.geteuid() == 0:
        shutil.rmtree(path)
    else:
        with sandbox.Sandbox(full_ids=True) as box:
            box.run(shutil.rmtree, str(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--arch", default="arm64")
    parser.add_argument("--suite", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    facts = rootfs_checks.host_facts()
    spec = rp.decide(rp.Request(args.arch, suite=args.suite), facts)
    native_row = host.host_arch()
    native = (
        rp.decide(rp.Request(native_row.name, suite=spec.suite), facts)
        if native_row and native_row.debian and not args.quick
        else None
    )
    engine = shutil.which(rp.ENGINE)
    if engine is None:
        raise SystemExit(
            "mmdebstrap missing: run scripts/test-deps (or apt-get install mmdebstrap)"
        )
    extra = ["--simulate"] if args.quick else []
    times: dict[str, list[float]] = {"plain": [], "create": [], "native": []}
    own: list[float] = []  # rootfs create's total minus its mmdebstrap run
    work = Path(tempfile.mkdtemp(prefix="binfmtctl-bench-rootfs-"))
    try:
        for n in range(1 if args.quick else args.runs):
            plain_dir, create_dir, native_dir = (work / f"{k}-{n}" for k in times)
            plain = rp.engine_argv(spec, str(plain_dir), engine=engine)
            plain[1:1] = extra
            times["plain"].append(
                _timed(
                    [*BINFMTCTL, "run", "--arch", spec.arch, "--uid-map", "auto", "--", *plain], env
                )
            )
            _remove(plain_dir)
            if args.quick:
                # rootfs create has no dry run: its engine step, in its own machinery.
                start = time.monotonic()
                with sandbox.Sandbox(full_ids=True) as box:
                    box.run(runplan.register_handlers, [spec.arch])
                    argv_c = rp.engine_argv(spec, str(create_dir), engine=engine)
                    argv_c[1:1] = extra
                    log = work / "create.log"
                    status = rootfs.run_engine(box, argv_c, str(log), lambda line: None)
                if status != 0:
                    raise SystemExit(f"simulated build failed:\n{log.read_text()[-2000:]}")
                times["create"].append(time.monotonic() - start)
            else:
                times["create"].append(
                    _timed(
                        [
                            *BINFMTCTL,
                            "rootfs",
                            "create",
                            str(create_dir),
                            "--arch",
                            spec.arch,
                            "--suite",
                            spec.suite,
                            "--json",
                        ],
                        env,
                    )
                )
                data = json.loads(LAST_STDOUT[0])["data"]
                own.append(data["seconds"] - data["engine_seconds"])
            _remove(create_dir)
            if native is not None:
                times["native"].append(
                    _timed(rp.engine_argv(native, str(native_dir), engine=engine), env)
                )
                _remove(native_dir)
    finally:
        _remove(work)
    load = os.getloadavg()
    runs = len(times["plain"])
    print(f"build: {spec.distro.value} {spec.suite} {spec.deb_arch} {spec.variant}, "
          f"mirror {spec.mirror}{' (simulated)' if args.quick else ''}")  # fmt: skip
    print(f"rounds: {runs} (load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})")
    plain_s, create_s = statistics.median(times["plain"]), statistics.median(times["create"])
    print(f"plain mmdebstrap (private instance):  {plain_s:7.1f} s  (median of {runs})")
    print(f"binfmtctl rootfs create:              {create_s:7.1f} s  (median of {runs})")
    print(f"overhead: {100 * (create_s - plain_s) / plain_s:+.1f}% (goal: under 5%)")
    if own:
        own_s = statistics.median(own)
        share = 100 * own_s / plain_s
        print(f"of which binfmtctl's own part:        {own_s:7.1f} s  ({share:.1f}% of plain: "
              "checks, namespace, smoke test, record)")  # fmt: skip
    if times["native"]:
        native_s = statistics.median(times["native"])
        assert native is not None
        print(f"native {native.deb_arch} floor:                 {native_s:7.1f} s  "
              f"(median of {runs})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
