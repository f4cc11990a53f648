"""scan counts only programs: objects, cores and libraries without an entry point never fail it.

Real files wherever they exist here: Debian's busybox-static:arm64 (a program),
libc6:arm64's ld.so and libc.so.6 (ET_DYN with an entry point: programs too) and
its gconv modules (ET_DYN, e_entry 0: libraries), the host's crt1.o (a real
x86_64 ET_REL object, when libc6-dev is installed) and an aarch64 object
assembled by llvm-mc (when LLVM is installed; else a synthetic one). A core dump
is synthetic: busybox's header with e_type set to ET_CORE (a real foreign core
needs a crashing foreign program and a core_pattern we may not set).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from binfmtctl import scan
from binfmtctl.sandbox import Sandbox
from conftest import CACHE, cli, foreign_busybox

LIBC6 = CACHE / "foreign-dyn" / "arm64" / "libc6"
CRT1 = Path("/usr/lib/x86_64-linux-gnu/crt1.o")
GCONV = LIBC6 / "usr" / "lib" / "aarch64-linux-gnu" / "gconv"


def _libc6() -> Path:
    if not GCONV.is_dir():
        pytest.skip(f"{LIBC6} missing: run scripts/test-deps")
    return LIBC6


def _arm64_object(path: Path) -> Path:
    """An aarch64 relocatable object: LLVM's assembler's when llvm-mc is installed.

    Without it (scripts/test-deps does not install LLVM), busybox's header with
    e_type ET_REL and e_entry 0 stands in: synthetic, but what scan reads of a
    real object is exactly that much.
    """
    mc = shutil.which("llvm-mc") or shutil.which("llvm-mc-14")
    if mc is None:
        data = bytearray(foreign_busybox("arm64").read_bytes()[:4096])
        data[16:18] = (1).to_bytes(2, "little")
        data[24:32] = bytes(8)
        path.write_bytes(bytes(data))
        return path
    subprocess.run(
        [mc, "-triple=aarch64-linux-gnu", "-filetype=obj", "-o", str(path)],
        input=b".globl _start\n_start:\n ret\n",
        check=True,
    )
    return path


def _core(path: Path) -> Path:
    """busybox's header with e_type ET_CORE (little-endian aarch64): synthetic, see above."""
    data = bytearray(foreign_busybox("arm64").read_bytes()[:4096])
    data[16:18] = (4).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def _head(path: Path) -> bytes:
    return path.read_bytes()[: scan.SCAN_READ].ljust(scan.SCAN_READ, b"\0")


def test_kinds_of_real_files(tmp_path: Path) -> None:
    libc6 = _libc6()
    cases = {
        foreign_busybox("arm64"): "program",  # ET_EXEC
        libc6 / "lib" / "aarch64-linux-gnu" / "ld-linux-aarch64.so.1": "program",  # ET_DYN + entry
        libc6 / "lib" / "aarch64-linux-gnu" / "libc.so.6": "program",  # runs: prints its version
        GCONV / "IBM880.so": "library",  # ET_DYN, e_entry 0
        _arm64_object(tmp_path / "start.o"): "object",
        _core(tmp_path / "core"): "core",
    }
    if CRT1.exists():
        cases[CRT1] = "object"
    assert {str(p): scan.elf_kind(_head(p)) for p in cases} == {
        str(p): kind for p, kind in cases.items()
    }


def test_kinds_of_big_endian_and_32_bit_headers() -> None:
    s390x = _head(foreign_busybox("s390x"))  # 64-bit big-endian program
    assert scan.elf_kind(s390x) == "program"
    as_object = bytearray(s390x)
    as_object[16:18] = (1).to_bytes(2, "big")
    assert scan.elf_kind(bytes(as_object)) == "object"
    armhf = bytearray(_head(foreign_busybox("armhf")))  # 32-bit: e_entry is 4 bytes at 24
    armhf[16:18] = (3).to_bytes(2, "little")
    armhf[24:28] = bytes(4)
    armhf[28:32] = b"\xff\xff\xff\xff"  # e_phoff, not part of a 32-bit e_entry
    assert scan.elf_kind(bytes(armhf)) == "library"
    armhf[16:18] = (0).to_bytes(2, "little")  # ET_NONE
    assert scan.elf_kind(bytes(armhf)) == "other"


def _tree(tmp_path: Path) -> Path:
    """An arm64 root: a program, libraries, objects (arm64 and x86_64) and a core."""
    libc6 = _libc6()
    tree = tmp_path / "root"
    (tree / "bin").mkdir(parents=True)
    (tree / "lib" / "gconv").mkdir(parents=True)
    shutil.copy(foreign_busybox("arm64"), tree / "bin" / "busybox")
    for name in ("IBM880.so", "ISO8859-16.so", "libKSC.so"):
        shutil.copy(GCONV / name, tree / "lib" / "gconv" / name)
    assert (libc6 / "lib").is_dir()
    _arm64_object(tree / "lib" / "crt1.o")
    if CRT1.exists():
        shutil.copy(CRT1, tree / "lib" / "x86_64-crt1.o")
    _core(tree / "core")
    return tree


def _scan(box: Sandbox, tree: Path) -> tuple[int, dict[str, object]]:
    proc = cli(box, "scan", "--json", str(tree))
    return proc.returncode, json.loads(proc.stdout)["data"]


def test_a_healthy_arm64_root_with_objects_scans_clean(sb: Sandbox, tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    install = cli(sb, "install", "arm64")
    assert install.returncode == 0, install.stderr
    code, data = _scan(sb, tree)
    assert code == 0
    groups = data["groups"]
    assert isinstance(groups, list)
    got = sorted((g["arch"], g["kind"], g["count"], g["verdict"]) for g in groups)
    want = [
        ("aarch64", "core", 1, "not_executable"),
        ("aarch64", "library", 3, "not_executable"),
        ("aarch64", "object", 1, "not_executable"),
        ("aarch64", "program", 1, "handled"),
    ]
    if CRT1.exists():
        want.append(("x86_64", "object", 1, "not_executable"))
    assert got == sorted(want)
    text = cli(sb, "scan", str(tree))
    assert text.returncode == 0
    assert diagnose_section(text.stdout) == sorted(
        f"{arch} {kind} {n}" for arch, kind, n, verdict in want if verdict == "not_executable"
    )
    assert "NO HANDLER" not in text.stdout


def diagnose_section(text: str) -> list[str]:
    """'ARCH KIND FILES' of the text view's never-executed table."""
    lines = text.splitlines()
    start = lines.index(
        "never executed, so no handler needed (objects, cores, libraries without an entry point):"
    )
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        cells = line.split()
        rows.append(f"{cells[0]} {cells[-2]} {cells[-1]}")
    return sorted(rows)


def test_only_programs_without_a_handler_fail_the_scan(sb: Sandbox, tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    code, data = _scan(sb, tree)  # nothing registered
    assert code == 1
    groups = data["groups"]
    assert isinstance(groups, list)
    failing = [
        (g["kind"], g["verdict"], g["files"]) for g in groups if g["verdict"] == "no_handler"
    ]
    assert failing == [("program", "no_handler", [str(tree / "bin" / "busybox")])]
    (tree / "bin" / "busybox").unlink()
    code, data = _scan(sb, tree)
    assert code == 0  # objects, libraries and a core alone need no handler
