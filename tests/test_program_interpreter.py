"""PT_INTERP read with struct (no ELF library on hot paths), checked against pyelftools.

pyelftools is the oracle here (a test dependency only): every answer of
:func:`binfmtctl.elf.program_interpreter` on real foreign programs, the
host's emulators and hand-built headers of both classes and byte orders must
equal what pyelftools reads from the same file.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from elftools.common.exceptions import ELFError
from elftools.common.utils import struct_parse
from elftools.elf.elffile import ELFFile

from binfmtctl import elf
from conftest import CACHE, foreign_busybox

DEBIAN_ARCHES = ["arm64", "armhf", "armel", "i386", "mips64el", "mipsel", "ppc64el", "s390x"]
# Debian's dynamically linked busybox and its loader, per arch (scripts/test-deps).
DYNAMIC = {
    "arm64": "/lib/ld-linux-aarch64.so.1",
    "armel": "/lib/ld-linux.so.3",
}


def oracle(path: Path) -> str | None:
    """pyelftools' PT_INTERP of ``path`` (None: static, or not an ELF file it can read)."""
    with open(path, "rb") as fh:
        try:
            found = ELFFile(fh)
            for index in range(found.num_segments()):
                at = found["e_phoff"] + index * found["e_phentsize"]
                phdr = struct_parse(found.structs.Elf_Phdr, fh, stream_pos=at)
                if phdr["p_type"] == "PT_INTERP":
                    fh.seek(phdr["p_offset"])
                    name = fh.read(phdr["p_filesz"]).split(b"\0", 1)[0]
                    return name.decode("utf-8", "surrogateescape")
        except (ELFError, ValueError):
            return None
    return None


@pytest.mark.parametrize("debian_arch", DEBIAN_ARCHES)
def test_static_foreign_busybox_has_no_loader(debian_arch: str) -> None:
    path = foreign_busybox(debian_arch)
    assert elf.program_interpreter(path) is None
    assert oracle(path) is None


@pytest.mark.parametrize(("debian_arch", "loader"), sorted(DYNAMIC.items()))
def test_dynamic_foreign_busybox_names_its_loader(debian_arch: str, loader: str) -> None:
    path = CACHE / "foreign-dyn" / debian_arch / "busybox" / "bin" / "busybox"
    if not path.exists():
        pytest.skip(f"{path} missing: run scripts/test-deps")
    assert elf.program_interpreter(path) == loader
    assert oracle(path) == loader


def _elf_files() -> list[Path]:
    """Every ELF file of the test cache and the host's QEMU emulators."""
    roots = [CACHE / "foreign", CACHE / "foreign-dyn"]
    found = sorted(Path("/usr/bin").glob("qemu-*"))
    for root in roots:
        found += sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    out = []
    for path in found:
        with open(path, "rb") as fh:
            if fh.read(4) == b"\x7fELF":
                out.append(path)
    return out


def test_same_answer_as_pyelftools_on_every_real_elf_file() -> None:
    files = _elf_files()
    if len(files) < 20:
        pytest.skip("too few ELF files: run scripts/test-deps")
    differ = [(str(p), elf.program_interpreter(p), oracle(p)) for p in files]
    differ = [d for d in differ if d[1] != d[2]]
    assert differ == []
    answers = {elf.program_interpreter(p) is None for p in files}
    assert answers == {True, False}  # both static and dynamic files were looked at


def build(
    elf_class: int,
    order: str,
    loader: bytes | None,
    *,
    phentsize: int | None = None,
    phnum: int | None = None,
    table_cut: int = 0,
) -> bytes:
    """A minimal ELF executable: a PT_LOAD, then PT_INTERP (with ``loader``), then PT_NOTE."""
    is64 = elf_class == 2
    ehsize, entsize = (64, 56) if is64 else (52, 32)
    kinds = [1, 3, 4] if loader is not None else [1, 4]
    name = (loader or b"") + b"\0"
    phoff = ehsize
    interp_at = phoff + entsize * len(kinds)
    data = 1 if order == "<" else 2
    ident = b"\x7fELF" + bytes([elf_class, data, 1, 0]) + bytes(8)
    word = "Q" if is64 else "I"
    head = ident + struct.pack(
        f"{order}HHI{word}{word}{word}IHHHHHH",
        2,  # e_type ET_EXEC
        183 if is64 else 40,  # e_machine
        1,
        0x400000,  # e_entry
        phoff,
        0,  # e_shoff: no section headers
        0,
        ehsize,
        entsize if phentsize is None else phentsize,
        len(kinds) if phnum is None else phnum,
        0,
        0,
        0,
    )
    table = b""
    for kind in kinds:
        offset, size = (interp_at, len(name)) if kind == 3 else (0, 0)
        if is64:
            table += struct.pack(f"{order}IIQQQQQQ", kind, 4, offset, 0, 0, size, size, 1)
        else:
            table += struct.pack(f"{order}IIIIIIII", kind, offset, 0, 0, size, size, 4, 1)
    if table_cut:
        return head + table[:-table_cut]
    return head + table + (name if loader is not None else b"")


CLASSES = [(1, "<"), (1, ">"), (2, "<"), (2, ">")]


@pytest.mark.parametrize(("elf_class", "order"), CLASSES)
def test_both_classes_and_byte_orders(tmp_path: Path, elf_class: int, order: str) -> None:
    dynamic = tmp_path / "dynamic"
    dynamic.write_bytes(build(elf_class, order, b"/lib/ld-test.so.1"))
    static = tmp_path / "static"
    static.write_bytes(build(elf_class, order, None))
    assert elf.program_interpreter(dynamic) == "/lib/ld-test.so.1" == oracle(dynamic)
    assert elf.program_interpreter(static) is None
    assert oracle(static) is None


@pytest.mark.parametrize(("elf_class", "order"), CLASSES)
def test_unusable_program_headers_name_no_loader(
    tmp_path: Path, elf_class: int, order: str
) -> None:
    """What the kernel would refuse to load is not read for a loader either."""
    loader = b"/lib/ld-test.so.1"
    size = 56 if elf_class == 2 else 32
    cases = {
        "entry size not the class's": build(elf_class, order, loader, phentsize=size + 8),
        "no program headers": build(elf_class, order, loader, phnum=0),
        "more than 64 KiB of them": build(elf_class, order, loader, phnum=65536 // size + 1),
        "table cut short": build(elf_class, order, loader, table_cut=1),
        "header cut short": build(elf_class, order, loader)[: 40 if elf_class == 1 else 60],
    }
    for why, data in cases.items():
        path = tmp_path / why.replace(" ", "-")
        path.write_bytes(data)
        assert elf.program_interpreter(path) is None, why


def test_a_loader_name_is_cut_at_path_max(tmp_path: Path) -> None:
    path = tmp_path / "long"
    path.write_bytes(build(2, "<", b"/" + b"x" * 5000))
    assert elf.program_interpreter(path) == "/" + "x" * (elf.PATH_MAX - 1)


def test_undecodable_loader_bytes_survive(tmp_path: Path) -> None:
    path = tmp_path / "odd"
    path.write_bytes(build(1, ">", b"/lib/ld-\xff.so"))
    assert elf.program_interpreter(path) == "/lib/ld-\udcff.so" == oracle(path)


def test_not_elf_is_none_and_what_cannot_be_read_is_an_error(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_bytes(b"#!/bin/sh\nexit 0\n")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for path in (script, empty):
        assert elf.program_interpreter(path) is None, path
    with pytest.raises(FileNotFoundError):
        elf.program_interpreter(tmp_path / "missing")
    for path, kind in ((tmp_path, "directory"), (Path("/dev/zero"), "character device")):
        with pytest.raises(elf.NotRegularFileError) as caught:
            elf.program_interpreter(path)
        assert caught.value.kind == kind


def test_an_open_file_is_read_from_its_start(tmp_path: Path) -> None:
    """diagnose reads the header first, then asks for the loader on the same file."""
    path = tmp_path / "dynamic"
    path.write_bytes(build(2, ">", b"/lib/ld64.so.1"))
    with elf.open_regular(path) as fh:
        assert elf.header_of(fh)[:4] == b"\x7fELF"
        assert elf.program_interpreter(fh) == "/lib/ld64.so.1"


def test_a_fifo_is_never_read(tmp_path: Path) -> None:
    """A FIFO at an interpreter path (status looks there) is refused, never waited on.

    The call runs in a child with a generous timeout only so that a regression
    fails instead of hanging the suite.
    """
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    code = (
        "import sys\nfrom binfmtctl import elf\n"
        "try:\n    elf.program_interpreter(sys.argv[1])\n"
        "except elf.NotRegularFileError as err:\n    print(err.kind)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(fifo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "FIFO\n")
