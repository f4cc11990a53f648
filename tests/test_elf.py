"""ELF identity, PT_INTERP and #! lines, read from real foreign programs and exact headers.

The busybox binaries are Debian's (scripts/test-deps); their expected identities
are what ``readelf -h`` prints for them. Synthetic headers are built with
``struct`` field by field, independently of the code under test.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import struct
from pathlib import Path

import pytest

from binfmtctl import elf
from binfmtctl.arch import CATALOG
from conftest import CACHE, foreign_busybox, missing

# (debian arch, class, data, osabi, e_type, e_machine, e_flags, abi, catalog arch) by readelf -h
BUSYBOX = [
    ("arm64", 64, "little", 3, 2, 183, 0x0, None, "aarch64"),
    ("armel", 32, "little", 0, 2, 40, 0x5000200, "armel", "arm"),
    ("armhf", 32, "little", 3, 2, 40, 0x5000400, "armhf", "arm"),
    ("i386", 32, "little", 3, 2, 3, 0x0, None, "i386"),
    ("mips64el", 64, "little", 0, 2, 8, 0x80000007, "n64", "mips64el"),
    ("mipsel", 32, "little", 0, 2, 8, 0x70001007, "o32", "mipsel"),
    ("ppc64el", 64, "little", 3, 2, 21, 0x2, None, "ppc64le"),
    ("s390x", 64, "big", 3, 2, 22, 0x0, None, "s390x"),
]


@pytest.mark.parametrize(
    ("debian", "bits", "endian", "osabi", "e_type", "machine", "flags", "abi", "arch"),
    BUSYBOX,
    ids=[row[0] for row in BUSYBOX],
)
def test_identity_of_real_foreign_programs(
    debian: str,
    bits: int,
    endian: str,
    osabi: int,
    e_type: int,
    machine: int,
    flags: int,
    abi: str | None,
    arch: str,
) -> None:
    header = elf.read_header(foreign_busybox(debian))
    ident = elf.identity(header)
    assert ident is not None
    assert ident == elf.ElfIdentity(
        elf_class=bits // 32, data=1 if endian == "little" else 2, osabi=osabi,
        e_type=e_type, machine=machine, flags=flags,
    )  # fmt: skip
    assert (ident.bits, ident.endian, ident.abi, ident.arch) == (bits, endian, abi, CATALOG[arch])
    assert ident.to_dict() == {
        "class": bits,
        "endian": endian,
        "type": "ET_EXEC",
        "machine": machine,
        "flags": flags,
        "osabi": osabi,
        "abi": abi,
        "arch": arch,
    }


def ehdr(
    bits: int = 32,
    order: str = "<",
    *,
    osabi: int = 0,
    e_type: int = 2,
    machine: int = 40,
    flags: int = 0,
    data: int | None = None,
) -> bytes:
    """A complete ELF header, packed field by field (e_entry etc. are 0x11.., 0x22.., 0x33..)."""
    word = "I" if bits == 32 else "Q"
    ident = b"\x7fELF" + bytes(
        [bits // 32, (1 if order == "<" else 2) if data is None else data, 1, osabi]
    )
    ident += bytes(8)
    fields = struct.pack(
        f"{order}HHI{word}{word}{word}IHHHHHH",
        e_type, machine, 1, 0x11111111, 0x22222222, 0x33333333, flags,
        52 if bits == 32 else 64, 0, 0, 0, 0, 0,
    )  # fmt: skip
    return ident + fields


# (id, header, class, data, osabi, e_type, machine, flags, abi, arch)
HEADERS = [
    ("arm hard-float", ehdr(flags=0x5000400), 1, 1, 0, 2, 40, 0x5000400, "armhf", "arm"),
    ("arm soft-float", ehdr(flags=0x5000200), 1, 1, 0, 2, 40, 0x5000200, "armel", "arm"),
    ("arm both bits", ehdr(flags=0x600), 1, 1, 0, 2, 40, 0x600, "armhf", "arm"),
    ("arm no float bits", ehdr(flags=0x5000000), 1, 1, 0, 2, 40, 0x5000000, None, "arm"),
    ("armeb", ehdr(order=">", flags=0x400), 1, 2, 0, 2, 40, 0x400, "armhf", "armeb"),
    ("EM_ARM in a 64-bit file", ehdr(64, flags=0x400), 2, 1, 0, 2, 40, 0x400, None, None),
    ("mips o32 BE", ehdr(order=">", machine=8, flags=0x1007), 1, 2, 0, 2, 8, 0x1007, "o32", "mips"),
    ("mips n32 BE", ehdr(order=">", machine=8, flags=0x27), 1, 2, 0, 2, 8, 0x27, "n32", "mipsn32"),
    ("mips n32 LE", ehdr(machine=8, flags=0x20), 1, 1, 0, 2, 8, 0x20, "n32", "mipsn32el"),
    ("mips o32 LE", ehdr(machine=8, flags=0xDF), 1, 1, 0, 2, 8, 0xDF, "o32", "mipsel"),
    ("mips64 BE n64", ehdr(64, ">", machine=8, flags=0x20), 2, 2, 0, 2, 8, 0x20, "n64", "mips64"),
    ("s390x PIE", ehdr(64, ">", e_type=3, machine=22), 2, 2, 0, 3, 22, 0, None, "s390x"),
    ("ppc64 BE flags", ehdr(64, ">", machine=21, flags=1), 2, 2, 0, 2, 21, 1, None, "ppc64"),
    ("x86_64 GNU", ehdr(64, osabi=3, machine=62), 2, 1, 3, 2, 62, 0, None, "x86_64"),
    ("sparc BE", ehdr(order=">", machine=2), 1, 2, 0, 2, 2, 0, None, "sparc"),
    ("riscv64 flags", ehdr(64, machine=243, flags=5), 2, 1, 0, 2, 243, 5, None, "riscv64"),
    ("unknown machine", ehdr(machine=0x1234), 1, 1, 0, 2, 0x1234, 0, None, None),
    ("big e_type", ehdr(e_type=0xFE00, machine=3), 1, 1, 0, 0xFE00, 3, 0, None, "i386"),
]


@pytest.mark.parametrize(
    ("header", "elf_class", "data", "osabi", "e_type", "machine", "flags", "abi", "arch"),
    [pytest.param(*row[1:], id=row[0]) for row in HEADERS],
)
def test_identity_of_exact_headers(
    header: bytes,
    elf_class: int,
    data: int,
    osabi: int,
    e_type: int,
    machine: int,
    flags: int,
    abi: str | None,
    arch: str | None,
) -> None:
    ident = elf.identity(header)
    assert ident == elf.ElfIdentity(elf_class, data, osabi, e_type, machine, flags)
    assert ident.abi == abi
    assert ident.arch == (CATALOG[arch] if arch else None)
    assert ident.to_dict()["arch"] == arch
    assert ident.bits == (64 if elf_class == 2 else 32)
    assert ident.endian == ("big" if data == 2 else "little")


def test_type_names_and_unknown_types() -> None:
    names = {t: elf.ElfIdentity(1, 1, 0, t, 3, 0).to_dict()["type"] for t in (0, 1, 2, 3, 4, 5)}
    assert names == {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE", 5: "5"}


@pytest.mark.parametrize(
    ("ident", "expected"),
    [
        (
            elf.ElfIdentity(1, 1, 3, 2, 40, 0x5000400),
            "7f454c46 01010103 00000000 00000000 02002800 00000000 00000000 00000000"
            " 00000000 00040005",
        ),
        (
            elf.ElfIdentity(2, 2, 0, 3, 22, 0x12345678),
            "7f454c46 02020100 00000000 00000000 00030016 00000000 00000000 00000000"
            " 00000000 00000000 00000000 00000000 12345678",
        ),
    ],
    ids=["32-bit little-endian", "64-bit big-endian"],
)
def test_header_like_is_the_minimal_header(ident: elf.ElfIdentity, expected: str) -> None:
    assert ident.header_like() == bytes.fromhex(expected.replace(" ", ""))
    assert elf.identity(ident.header_like()) == ident


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (b"", "empty"),
        (ehdr()[:19], "shorter than e_machine"),
        (b"\x7fELG" + ehdr()[4:], "not the ELF magic"),
        (b"\x7eELF" + ehdr()[4:], "first magic byte"),
        (ehdr()[:4] + b"\x00" + ehdr()[5:], "ELFCLASSNONE"),
        (ehdr()[:4] + b"\x03" + ehdr()[5:], "class 3"),
        (ehdr(data=0), "ELFDATANONE"),
        (ehdr(data=3), "data encoding 3"),
        (b"#!/bin/sh\n" + bytes(30), "a script"),
    ],
)
def test_not_elf(header: bytes, why: str) -> None:
    assert elf.identity(header) is None, why


@pytest.mark.parametrize(
    ("bits", "size", "flags"),
    [
        (32, 20, 0),  # only up to e_machine: no e_flags, read as 0
        (32, 0x27, 0),  # one byte short of e_flags' end
        (32, 0x28, 0xA1B2C3D4),  # e_flags ends exactly here
        (64, 0x33, 0),
        (64, 0x34, 0xA1B2C3D4),
    ],
)
def test_short_headers_read_e_flags_only_when_complete(bits: int, size: int, flags: int) -> None:
    ident = elf.identity(ehdr(bits, machine=62 if bits == 64 else 3, flags=0xA1B2C3D4)[:size])
    assert ident is not None
    assert (ident.elf_class, ident.machine, ident.flags) == (
        bits // 32,
        3 if bits == 32 else 62,
        flags,
    )


def test_read_header_zero_fills_and_truncates(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"\x7fELF")
    assert elf.read_header(short) == b"\x7fELF" + bytes(252)
    long = tmp_path / "long"
    long.write_bytes(bytes(range(256)) * 2)
    assert elf.read_header(long) == bytes(range(256))
    assert elf.read_header(long, 8) == bytes(range(8))
    assert elf.read_header(str(short), 2) == b"\x7fE"
    assert elf.HEADER_SIZE == 256


def _dynamic(arch: str) -> Path:
    path = CACHE / "foreign-dyn" / arch / "busybox" / "bin" / "busybox"
    if not path.exists():
        missing(f"{path} is missing: run scripts/test-deps")
    return path


def test_program_interpreter(tmp_path: Path) -> None:
    assert elf.program_interpreter(_dynamic("arm64")) == "/lib/ld-linux-aarch64.so.1"
    assert elf.program_interpreter(str(_dynamic("armel"))) == "/lib/ld-linux.so.3"
    for debian in ("arm64", "s390x", "mipsel"):
        assert elf.program_interpreter(foreign_busybox(debian)) is None  # static
    data = _dynamic("arm64").read_bytes()
    cases = {"text": b"hello\n", "empty": b"", "header only": data[:64], "half": data[:100]}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert elf.program_interpreter(tmp_path / name) is None, name


def test_program_interpreter_reads_only_p_filesz(tmp_path: Path) -> None:
    """PT_INTERP's size bounds the name, NUL or not (ELF64 little-endian program headers)."""
    data = bytearray(_dynamic("arm64").read_bytes())
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        at = phoff + i * phentsize
        if struct.unpack_from("<I", data, at)[0] == 3:  # PT_INTERP
            struct.pack_into("<Q", data, at + 32, 5)  # p_filesz
            break
    else:
        pytest.fail("no PT_INTERP in the dynamic busybox")
    (tmp_path / "cut").write_bytes(bytes(data))
    assert elf.program_interpreter(tmp_path / "cut") == "/lib/"


def test_program_interpreter_stops_at_nul_and_keeps_odd_bytes(tmp_path: Path) -> None:
    data = bytearray(_dynamic("arm64").read_bytes())
    at = data.index(b"/lib/ld-linux-aarch64.so.1\0")
    data[at : at + 26] = b"/l\xffb/ld\0-linux-aarch64.so"
    (tmp_path / "odd").write_bytes(bytes(data))
    assert elf.program_interpreter(tmp_path / "odd") == "/l\udcffb/ld"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"#!/bin/sh\n", ("/bin/sh", None)),
        (b"#!/bin/sh", ("/bin/sh", None)),
        (b"#! /usr/bin/env  python3 -u \nprint()\n", ("/usr/bin/env", "python3 -u")),
        (b"#!\t/bin/sh\t-e\t\n", ("/bin/sh", "-e")),
        (b"#!/bin/sh\t-e x\n", ("/bin/sh", "-e x")),
        (b"#!/bin/sh -e\tx\n", ("/bin/sh", "-e\tx")),
        (b"#!/bin/sh -e\0ignored\n", ("/bin/sh", "-e")),
        (b"#!/bin/sh\0 -e\n", ("/bin/sh", None)),
        (b"#!/bin/\xffsh \xfe\n", ("/bin/\udcffsh", "\udcfe")),
        (b"#!" + b"/" + b"a" * 300 + b"\n", ("/" + "a" * 253, None)),
        (b"#!/bin/sh " + b"x" * 300, ("/bin/sh", "x" * 246)),
        (b"#!/bin/sh\r\n", ("/bin/sh\r", None)),  # a DOS line end is part of the name
        (b"#!/bin/sh -e\r\n", ("/bin/sh", "-e\r")),
        (b"#!\x0b/bin/sh\n", ("\x0b/bin/sh", None)),  # only space and tab are trimmed
        (b"#!/usr/bin/X\n", ("/usr/bin/X", None)),
        (b"#!/bin/sh X -x X\n", ("/bin/sh", "X -x X")),
        (b"#!/bin/sh\t-e\tx\n", ("/bin/sh", "-e\tx")),  # the first tab ends the name
        (b"#!/bin/sh -e\0a\0b\n", ("/bin/sh", "-e")),
        (b"#!\n/bin/sh\n", None),
        (b"#!  \t \n", None),
        (b"#!", None),
        (b"\0#!/bin/sh\n", None),
        (b" #!/bin/sh\n", None),
        (b"!#/bin/sh\n", None),
        (b"", None),
    ],
)
def test_shebang(header: bytes, expected: tuple[str, str | None] | None) -> None:
    assert elf.shebang(header) == expected


# --------------------------------------------------------------------------- only regular files


def _special_files(tmp_path: Path) -> dict[str, str]:
    """Real non-regular files: a FIFO (no writer), a socket, a directory, a device."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    sock.close()
    return {
        str(fifo): "FIFO",
        str(tmp_path / "sock"): "socket",
        str(tmp_path): "directory",
        "/dev/null": "character device",
    }


@pytest.mark.parametrize("seen_regular", [False, True])
def test_special_files_are_refused_without_blocking(tmp_path: Path, seen_regular: bool) -> None:
    for path, kind in _special_files(tmp_path).items():
        with pytest.raises(elf.NotRegularFileError) as read:
            elf.read_header(path)
        assert read.value.kind == kind
        if kind == "socket" and seen_regular:
            continue  # a socket cannot be opened for reading at all (ENXIO)
        with pytest.raises(elf.NotRegularFileError) as info:
            os.close(elf.open_regular_fd(path, seen_regular=seen_regular))
        err = info.value
        assert (err.errno, err.kind, err.filename) == (errno.EINVAL, kind, path)
        assert str(err) == f"[Errno 22] not a regular file (a {kind}): '{path}'"


def test_symlinks_are_followed_unless_asked_not_to(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"\x7fELF")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert elf.read_header(link, 4) == b"\x7fELF"
    os.close(elf.open_regular_fd(link, seen_regular=True))
    for seen in (False, True):
        with pytest.raises(OSError) as info:
            os.close(elf.open_regular_fd(link, follow=False, seen_regular=seen))
        assert info.value.errno in (errno.ELOOP, errno.EINVAL), info.value
    with pytest.raises(elf.NotRegularFileError) as refused:
        elf.read_header(link, 4, follow=False)
    assert refused.value.kind == "symbolic link"


def test_file_kind_of_a_mode_with_no_type() -> None:
    assert elf.file_kind(0) == "special file"
    assert elf.file_kind(stat.S_IFIFO | 0o644) == "FIFO"


def test_interpreter_in_refuses_an_unknown_data_encoding() -> None:
    data = _dynamic("arm64").read_bytes()

    def read_at(offset: int, size: int) -> bytes:
        return data[offset : offset + size]

    assert elf.interpreter_in(data[:64], read_at) == "/lib/ld-linux-aarch64.so.1"
    for encoding in (0, 3):
        assert elf.interpreter_in(data[:5] + bytes([encoding]) + data[6:64], read_at) is None
