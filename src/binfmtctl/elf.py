"""Reading ELF identity from a file's first bytes, and PT_INTERP for diagnosis.

The identity (class, data encoding, type, machine, flags) comes from the
fixed-layout header; PT_INTERP from the program headers. Both are a few
fixed-layout fields read with :mod:`struct`: no ELF library, so looking at
an emulator costs two small reads, not an import and a parse.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from collections.abc import Callable

from binfmtctl import arch as _arch
from binfmtctl.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from pathlib import Path
    from typing import BinaryIO, Literal, NoReturn

HEADER_SIZE = 256  # the kernel matches against this many bytes
ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
EM_ARM, EM_MIPS = 40, 8
EF_ARM_ABI_FLOAT_SOFT, EF_ARM_ABI_FLOAT_HARD = 0x200, 0x400
PT_INTERP = 3
PATH_MAX = 4096  # the kernel refuses a longer PT_INTERP
PHDR_TABLE_MAX = 65536  # bytes of program headers the kernel reads at most
# Per class: header size, where e_phoff and e_phentsize/e_phnum sit, e_phoff's
# format, one program header's size and format up to p_filesz, and the index
# of p_offset and p_filesz in it (ELF64 moves p_flags up to second place).
_PHDRS = {
    _arch.ELFCLASS32: (52, 28, 42, "I", 32, "IIIII", 1, 4),
    _arch.ELFCLASS64: (64, 32, 54, "Q", 56, "IIQQQQ", 2, 5),
}


class ElfIdentity(NamedTuple):
    elf_class: int
    data: int
    osabi: int
    e_type: int
    machine: int
    flags: int

    @property
    def bits(self) -> int:
        return 64 if self.elf_class == _arch.ELFCLASS64 else 32

    @property
    def endian(self) -> str:
        return "big" if self.data == _arch.ELFDATA2MSB else "little"

    @property
    def arch(self) -> _arch.Arch | None:
        return _arch.identify(self.header_like())

    @property
    def abi(self) -> str | None:
        """The ABI variant an arch name alone does not tell.

        32-bit ARM: ``armhf`` / ``armel`` from the float-ABI bits of e_flags
        (programs of one cannot use the other's loader and libraries); MIPS:
        ``o32``, ``n32`` (EF_MIPS_ABI2) or ``n64``. None for other machines.
        """
        if self.machine == EM_ARM and self.elf_class == _arch.ELFCLASS32:
            if self.flags & EF_ARM_ABI_FLOAT_HARD:
                return "armhf"
            if self.flags & EF_ARM_ABI_FLOAT_SOFT:
                return "armel"
            return None
        if self.machine == EM_MIPS:
            if self.elf_class == _arch.ELFCLASS64:
                return "n64"
            return "n32" if self.flags & _arch.EF_MIPS_ABI2 else "o32"
        return None

    def header_like(self) -> bytes:
        """A minimal header with this identity, for catalog lookups."""
        at = _arch.e_flags_offset(self.elf_class)
        order: Literal["big", "little"] = "big" if self.data == _arch.ELFDATA2MSB else "little"
        head = bytearray(at + 4)
        head[:4] = _arch.ELF_MAGIC
        head[4:8] = bytes([self.elf_class, self.data, 1, self.osabi])
        head[16:18] = self.e_type.to_bytes(2, order)
        head[18:20] = self.machine.to_bytes(2, order)
        head[at : at + 4] = self.flags.to_bytes(4, order)
        return bytes(head)

    def to_dict(self) -> dict[str, object]:
        found = self.arch
        return {
            "class": self.bits,
            "endian": self.endian,
            "type": ET_NAMES.get(self.e_type, str(self.e_type)),
            "machine": self.machine,
            "flags": self.flags,
            "osabi": self.osabi,
            "abi": self.abi,
            "arch": found.name if found else None,
        }


def identity(header: bytes) -> ElfIdentity | None:
    """Parse the ELF identity out of a header; None if it is not an ELF file."""
    if len(header) < 20 or header[:4] != _arch.ELF_MAGIC:
        return None
    elf_class, data = header[4], header[5]
    if elf_class not in (1, 2) or data not in (1, 2):
        return None
    order: Literal["big", "little"] = "big" if data == _arch.ELFDATA2MSB else "little"
    at = _arch.e_flags_offset(elf_class)
    flags = int.from_bytes(header[at : at + 4], order) if len(header) >= at + 4 else 0
    return ElfIdentity(
        elf_class=elf_class,
        data=data,
        osabi=header[7],
        e_type=int.from_bytes(header[16:18], order),
        machine=int.from_bytes(header[18:20], order),
        flags=flags,
    )


class NotRegularFileError(OSError):
    """The path is a FIFO, socket, device or directory: only regular files are read.

    Reading one could block for ever (a FIFO without a writer, a terminal) or
    have effects (opening some devices does); the kernel itself execs only
    regular files.
    """

    def __init__(self, path: str | Path, kind: str) -> None:
        super().__init__(errno.EINVAL, f"not a regular file (a {kind})", os.fspath(path))
        self.kind = kind


_KINDS = (
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISLNK, "symbolic link"),
)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words ("FIFO", "socket", ...)."""
    return next((kind for test, kind in _KINDS if test(mode)), "special file")


def open_regular(path: str | Path, follow: bool = True) -> BinaryIO:
    """Open a regular file for reading without ever blocking or opening anything else.

    The path is first opened with O_PATH (which opens no device and waits for no
    FIFO writer) and checked with fstat; only a regular file is then reopened for
    reading, through /proc/self/fd, so what is read is the inode that was
    checked. ``follow=False`` refuses a symlink as the last component.
    Raises NotRegularFileError (an OSError) for anything but a regular file.
    """
    return os.fdopen(open_regular_fd(path, follow), "rb")


def open_regular_fd(path: str | Path, follow: bool = True, seen_regular: bool = False) -> int:
    """:func:`open_regular` as a file descriptor.

    ``seen_regular``: the caller has just seen a regular file there (scandir's
    d_type, for a tree of thousands of files); the O_PATH step is skipped, the
    open is still non-blocking and the result still checked with fstat.
    """
    reading = _READ if follow else _READ_NOFOLLOW
    if seen_regular:
        fd = os.open(path, reading)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        return _refuse(path, fd)
    handle = os.open(path, os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    try:
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(path, file_kind(mode))
        try:
            return os.open(f"/proc/self/fd/{handle}", _READ)
        except FileNotFoundError:  # no /proc: open the path itself, still non-blocking
            fd = os.open(path, reading)
            return fd if stat.S_ISREG(os.fstat(fd).st_mode) else _refuse(path, fd)
    finally:
        os.close(handle)


_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_READ_NOFOLLOW = _READ | os.O_NOFOLLOW


def _refuse(path: str | Path, fd: int) -> NoReturn:
    kind = file_kind(os.fstat(fd).st_mode)
    os.close(fd)
    raise NotRegularFileError(path, kind)


def read_header(path: str | Path, size: int = HEADER_SIZE, follow: bool = True) -> bytes:
    """The first ``size`` bytes, zero-filled past end of file (what the kernel sees).

    Only a regular file is read (see :func:`open_regular`): never blocks.
    """
    with open_regular(path, follow) as fh:
        return header_of(fh, size)


def header_of(fh: BinaryIO, size: int = HEADER_SIZE) -> bytes:
    data = fh.read(size)
    return data + bytes(size - len(data))


def program_interpreter(path: str | Path | BinaryIO) -> str | None:
    """PT_INTERP of an ELF file (its dynamic loader), or None if it is static.

    ``path`` may be a file already opened (with :func:`open_regular`); a path is
    opened with it, so a FIFO, device or directory raises NotRegularFileError
    (an OSError) without being read, and a missing file raises OSError. A file
    whose program headers are not sane (see :func:`interpreter_in`) names no loader.
    """
    if isinstance(path, str | os.PathLike):
        with open_regular(path) as fh:
            return program_interpreter(fh)
    fh = path

    def read_at(offset: int, size: int) -> bytes:
        fh.seek(offset)
        return fh.read(size)

    try:
        return interpreter_in(read_at(0, 64), read_at)
    except (OSError, OverflowError, ValueError):  # an offset past what seek takes
        return None


def program_interpreter_at(fd: int, header: bytes) -> str | None:
    """:func:`program_interpreter` of the regular file open at ``fd``, whose first bytes
    (``header``) were already read: the program headers are read with pread, so the
    file is opened once for both (never raises; None where no loader can be read)."""
    try:
        return interpreter_in(header[:64], lambda offset, size: os.pread(fd, size, offset))
    except (OSError, OverflowError, ValueError):
        return None


def interpreter_in(header: bytes, read_at: Callable[[int, int], bytes]) -> str | None:
    """PT_INTERP from an ELF ``header`` (its first 64 bytes), reading more with ``read_at``.

    ``read_at(offset, size)`` returns up to ``size`` bytes at ``offset``. Like
    the kernel, a table whose entry size is not the class's, or with no or too
    many entries, is not used (None); the name ends at its first NUL.
    """
    if header[:4] != _arch.ELF_MAGIC or len(header) < 6:
        return None
    layout = _PHDRS.get(header[4])
    if layout is None or header[5] not in (_arch.ELFDATA2LSB, _arch.ELFDATA2MSB):
        return None
    size, at_phoff, at_phnum, phoff_fmt, entsize, entry_fmt, at_offset, at_filesz = layout
    if len(header) < size:
        return None
    order = ">" if header[5] == _arch.ELFDATA2MSB else "<"
    (phoff,) = struct.unpack_from(order + phoff_fmt, header, at_phoff)
    phentsize, phnum = struct.unpack_from(order + "HH", header, at_phnum)
    if phentsize != entsize or not 0 < phnum * entsize <= PHDR_TABLE_MAX:
        return None
    table = read_at(phoff, phnum * entsize)
    if len(table) < phnum * entsize:
        return None
    for index in range(phnum):
        fields = struct.unpack_from(order + entry_fmt, table, index * entsize)
        if fields[0] == PT_INTERP:
            name = read_at(fields[at_offset], min(fields[at_filesz], PATH_MAX))
            return name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
    return None


def shebang(header: bytes) -> tuple[str, str | None] | None:
    """The interpreter and optional argument of a ``#!`` line, as fs/binfmt_script.c reads it.

    The kernel looks only at the first 256 bytes; the interpreter ends at the
    first space, tab or NUL, and the rest of the line (trimmed) is ONE argument.
    None if the file does not start with ``#!`` or names no interpreter.
    """
    if not header.startswith(b"#!"):
        return None
    line = header[2:HEADER_SIZE].split(b"\n", 1)[0].split(b"\0", 1)[0]
    line = line.strip(b" \t")
    if not line:
        return None
    cut = min((i for i in (line.find(b" "), line.find(b"\t")) if i >= 0), default=len(line))
    arg = line[cut:].strip(b" \t")
    return os.fsdecode(line[:cut]), (os.fsdecode(arg) if arg else None)
