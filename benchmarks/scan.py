"""Benchmark: ``binfmtctl scan`` against ``find DIR -type f -exec file {} +``.

Builds (once, cached under .cache/bench/) a Debian arm64 root filesystem with
``mmdebstrap`` or ``debootstrap --foreign`` (root needed; nothing foreign is
run), then times both on the same tree, checks they count the same ELF files
per architecture, and prints the ratio. Goal: scan at least 10x faster.

    .venv/bin/python benchmarks/scan.py [--rootfs DIR] [--runs N]

``--quick`` is the smoke run the test suite does (tests/test_benchmarks.py): one
run over a copy of the foreign test binaries (scripts/test-deps fetched them into
$BINFMTCTL_TEST_CACHE/foreign), no download, no root; its timings mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ROOTFS = ROOT / ".cache" / "bench" / "rootfs-arm64"
CACHE = Path(os.environ.get("BINFMTCTL_TEST_CACHE", ROOT / ".cache"))
MIRROR = "http://deb.debian.org/debian"
# `file`'s machine words for the arches a Debian tree may hold.
FILE_MACHINE = {
    "aarch64": "ARM aarch64",
    "arm": "ARM",
    "x86_64": "x86-64",
    "i386": "Intel 80386",
    "riscv64": "UCB RISC-V",
    "s390x": "IBM S/390",
    "ppc64le": "64-bit PowerPC or cisco 7500",
    "mips64el": "MIPS",
    "mipsel": "MIPS",
}
# file(1) prefixes setuid/setgid/sticky files with those words.
_FILE_ELF = re.compile(
    r":\s+(?:(?:setuid|setgid|sticky)\s+)*ELF (32|64)-bit (LSB|MSB) [^,]*, ([^,]+),"
)


def build_rootfs(dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    # Neither runs a foreign program: debootstrap's first stage and mmdebstrap's
    # "extract" variant only download and unpack packages.
    if shutil.which("debootstrap"):
        cmd = ["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
               "bookworm", str(tmp), MIRROR]  # fmt: skip
    elif shutil.which("mmdebstrap"):
        cmd = ["mmdebstrap", "--variant=extract", "--arch=arm64", "bookworm", str(tmp), MIRROR]
    else:
        sys.exit("install debootstrap or mmdebstrap (apt-get install debootstrap)")
    print("building", dest, "with", cmd[0], file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    tmp.rename(dest)


def run_scan(tree: Path) -> tuple[float, Counter[tuple[int, str, str]]]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "scan", "--json", str(tree)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    counts: Counter[tuple[int, str, str]] = Counter()
    for g in json.loads(proc.stdout)["data"]["groups"]:
        word = FILE_MACHINE.get(g["arch"], g["arch"] or f"machine {g['machine']}")
        counts[(g["class"], "LSB" if g["endian"] == "little" else "MSB", word)] += g["count"]
    return elapsed, counts


def run_file(tree: Path) -> tuple[float, Counter[tuple[int, str, str]]]:
    start = time.perf_counter()
    proc = subprocess.run(
        ["find", str(tree), "-type", "f", "-exec", "file", "{}", "+"],
        capture_output=True, text=True, check=False, errors="replace",
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    counts: Counter[tuple[int, str, str]] = Counter()
    for line in proc.stdout.splitlines():
        m = _FILE_ELF.search(line)
        if m:
            counts[(int(m[1]), m[2], m[3])] += 1
    return elapsed, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rootfs", type=Path, default=DEFAULT_ROOTFS)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run over the test binaries (for the tests)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            tree = Path(tmp) / "tree"
            shutil.copytree(CACHE / "foreign", tree, symlinks=True)
            return compare(tree, 1)
    if not args.rootfs.is_dir():
        build_rootfs(args.rootfs)
    return compare(args.rootfs, args.runs)


def compare(rootfs: Path, runs: int) -> int:
    """Time both on ``rootfs``; 0 when they count the same ELF files per arch."""
    os.environ["PYTHONPATH"] = str(ROOT / "src")
    paths = [Path(d, n) for d, _, names in os.walk(rootfs) for n in names]
    files = sum(1 for p in paths if p.is_file() and not p.is_symlink())
    run_scan(rootfs)  # warm the page cache for both
    scans, baselines = [], []
    for _ in range(runs):  # interleaved, so a busy machine slows both alike
        scans.append(run_scan(rootfs))
        baselines.append(run_file(rootfs))
    with tempfile.TemporaryDirectory() as empty:
        startup_s = statistics.median(run_scan(Path(empty))[0] for _ in range(runs))
    scan_s = statistics.median(t for t, _ in scans)
    file_s = statistics.median(t for t, _ in baselines)
    ours, theirs = scans[0][1], baselines[0][1]
    print(f"tree: {rootfs} ({files} files)")
    print(f"binfmtctl scan:            {scan_s:7.3f} s  (median of {runs})")
    print(f"find -type f -exec file:   {file_s:7.3f} s  (median of {runs})")
    print(f"  of which start-up (scan of an empty dir): {startup_s:.3f} s")
    print(f"ratio: {file_s / scan_s:.1f}x faster")
    for key in sorted(set(ours) | set(theirs)):
        mark = "same" if ours[key] == theirs[key] else "DIFFERENT"
        print(f"  {key[0]}-bit {key[1]} {key[2]}: scan {ours[key]}, file {theirs[key]} ({mark})")
    return 0 if ours == theirs else 1


if __name__ == "__main__":
    sys.exit(main())
