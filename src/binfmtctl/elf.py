"""Reading ELF identity from a file's first bytes, and PT_INTERP for diagnosis.

The identity (class, data encoding, type, machine, flags) comes from the
fixed-layout header and needs no library; program headers are read with
pyelftools, imported only when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from binfmtctl import arch as _arch

HEADER_SIZE = 256  # the kernel matches against this many bytes
ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}


@dataclass(frozen=True)
class ElfIdentity:
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

    def header_like(self) -> bytes:
        """A minimal header with this identity, for catalog lookups."""
        at = _arch.e_flags_offset(self.elf_class)
        order = "big" if self.data == _arch.ELFDATA2MSB else "little"
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
            "arch": found.name if found else None,
        }


def identity(header: bytes) -> ElfIdentity | None:
    """Parse the ELF identity out of a header; None if it is not an ELF file."""
    if len(header) < 20 or header[:4] != _arch.ELF_MAGIC:
        return None
    elf_class, data = header[4], header[5]
    if elf_class not in (1, 2) or data not in (1, 2):
        return None
    order = "big" if data == _arch.ELFDATA2MSB else "little"
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


def read_header(path: str | Path, size: int = HEADER_SIZE) -> bytes:
    """The first ``size`` bytes, zero-filled past end of file (what the kernel sees)."""
    with open(path, "rb") as fh:
        data = fh.read(size)
    return data + bytes(size - len(data))


def program_interpreter(path: str | Path) -> str | None:
    """PT_INTERP of an ELF file (its dynamic loader), or None if it is static."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as fh:
        try:
            elf = ELFFile(fh)
            for segment in elf.iter_segments():
                if segment["p_type"] == "PT_INTERP":
                    return str(segment.get_interp_name())
        except ELFError:
            return None
    return None
