"""Tiny per-arch ELF programs that prove an emulator, or a binfmt_misc entry, works.

The programs only, as data and a builder (pure: nothing here runs anything);
running them through the kernel and judging the result is :mod:`binfmtctl.proving`.

A probe is a static ELF executable of a few hundred bytes that writes
``binfmtctl-probe <arch>\\n`` to stdout and exits 0.  It needs no libc, no
loader and no cross toolchain, so ``binfmtctl`` can test any registered
architecture on any host.  Every file has the same layout::

    ELF header | one PT_LOAD program header | code | length (u32) | message

The whole file is loaded read+execute at ``Probe.load_address``.  The code is
fixed: it finds the message relative to its own address (PC-relative
addressing, or a call/branch-and-link that leaves its address in a register)
and reads the count from the 4-byte-aligned length word just before the
message, so the builder only appends data.  ``length`` and ``msg`` in the
assembly (:mod:`binfmtctl.probe_code`, one table per family) name those two
places; ``1:``/``1b``/``1f`` are local labels.

ELF class, byte order and e_machine come from the catalog (``arch.py``); a
probe adds only what the catalog does not know: the machine code, e_flags and
where to load it.  Each encoding is written next to its assembly so a reader
can check it against the ISA manual.  Encodings were produced and checked with
Debian's cross binutils or llvm-mc where one exists; LoongArch, MicroBlaze,
Nios II, CRIS and big-endian Xtensa were encoded by hand from their ISA
references and checked against QEMU's own disassembler (``qemu-ARCH -d in_asm``).
Every probe runs under Debian 12's QEMU 7.2 (the tests prove it).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from binfmtctl import probe_code as _code
from binfmtctl.arch import CATALOG, ELF_MAGIC, ELFCLASS32, Arch, resolve
from binfmtctl.errors import BinfmtError
from binfmtctl.probe_code import (
    AARCH64,
    ALPHA,
    ARM,
    CRIS,
    HEXAGON,
    HPPA,
    I386,
    LOONGARCH64,
    M68K,
    MICROBLAZE,
    MIPS_N32,
    MIPS_N64,
    MIPS_O32,
    NIOS2,
    OR1K,
    PPC,
    RISCV,
    S390X,
    SH4,
    X86_64,
    XTENSA,
    XTENSAEB,
    Insn,
    sparc,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Literal

ET_EXEC, EV_CURRENT, PT_LOAD = 2, 1, 1
PF_X, PF_R = 1, 4
SEGMENT_ALIGN = 0x10000  # 64 KiB: a multiple of every target's page size
DEFAULT_LOAD_ADDRESS = SEGMENT_ALIGN


@dataclass(frozen=True)
class Probe:
    """What a probe adds to the catalog row: code, e_flags, load address."""

    code: tuple[Insn, ...]
    e_flags: int = 0
    load_address: int = DEFAULT_LOAD_ADDRESS
    # "data": instructions use the arch's data byte order; AArch64 is always little.
    code_order: Literal["data", "little"] = "data"

    def __post_init__(self) -> None:
        if self.load_address % SEGMENT_ALIGN:
            raise ValueError(f"load address {self.load_address:#x} is not 64 KiB aligned")

    def code_bytes(self, arch: Arch) -> bytes:
        """The machine code, with each instruction unit in the right byte order."""
        little = self.code_order == "little" or not arch.big_endian
        order: Literal["little", "big"] = "little" if little else "big"
        out = bytearray()
        for encoding, _asm in self.code:
            for unit in encoding.split():
                out += int(unit, 16).to_bytes(len(unit) // 2, order)
        return bytes(out)


EF_ARM_EABI5 = 0x05000000
EF_PPC64_ELFV2 = 2
EF_MIPS_NOREORDER, EF_MIPS_ABI2, EF_MIPS_ABI_O32 = 0x1, 0x20, 0x1000
EF_MIPS_ARCH_32R2, EF_MIPS_ARCH_64R2 = 0x70000000, 0x80000000

PROBES: dict[str, Probe] = {
    "i386": Probe(I386),
    "x86_64": Probe(X86_64),
    "alpha": Probe(ALPHA),
    "arm": Probe(ARM, EF_ARM_EABI5),
    # Big-endian words (BE32): QEMU runs them when e_flags lacks EF_ARM_BE8.
    "armeb": Probe(ARM, EF_ARM_EABI5),
    "aarch64": Probe(AARCH64),
    "aarch64_be": Probe(AARCH64, code_order="little"),
    "sparc": Probe(sparc(0x10)),
    "sparc32plus": Probe(sparc(0x10), 0x100),  # EF_SPARC_32PLUS
    "sparc64": Probe(sparc(0x6D)),
    "ppc": Probe(PPC),
    # ELFv2 on both: e_entry is the code itself, not an ELFv1 function descriptor.
    "ppc64": Probe(PPC, EF_PPC64_ELFV2),
    "ppc64le": Probe(PPC, EF_PPC64_ELFV2),
    "m68k": Probe(M68K),
    "mips": Probe(MIPS_O32, EF_MIPS_ARCH_32R2 | EF_MIPS_ABI_O32 | EF_MIPS_NOREORDER),
    "mipsel": Probe(MIPS_O32, EF_MIPS_ARCH_32R2 | EF_MIPS_ABI_O32 | EF_MIPS_NOREORDER),
    "mipsn32": Probe(MIPS_N32, EF_MIPS_ARCH_64R2 | EF_MIPS_ABI2 | EF_MIPS_NOREORDER),
    "mipsn32el": Probe(MIPS_N32, EF_MIPS_ARCH_64R2 | EF_MIPS_ABI2 | EF_MIPS_NOREORDER),
    "mips64": Probe(MIPS_N64, EF_MIPS_ARCH_64R2 | EF_MIPS_NOREORDER),
    "mips64el": Probe(MIPS_N64, EF_MIPS_ARCH_64R2 | EF_MIPS_NOREORDER),
    "sh4": Probe(SH4, 0x9),  # EF_SH4
    "sh4eb": Probe(SH4, 0x9),
    "s390x": Probe(S390X),
    "hppa": Probe(HPPA, 0x210),  # EFA_PARISC_1_1
    "riscv32": Probe(RISCV),
    "riscv64": Probe(RISCV),
    "xtensa": Probe(XTENSA, 0x300),  # EF_XTENSA_XT_INSN | EF_XTENSA_XT_LIT
    "xtensaeb": Probe(XTENSAEB, 0x300),
    "microblaze": Probe(MICROBLAZE),
    "microblazeel": Probe(MICROBLAZE),
    "or1k": Probe(OR1K),
    "hexagon": Probe(HEXAGON, 0x67),  # EF_HEXAGON_MACH_V67, QEMU's model
    "loongarch64": Probe(LOONGARCH64, 0x43),  # double-float ABI, object ABI v1
    "cris": Probe(CRIS),
    "nios2": Probe(NIOS2),
    # EM_486 is an old alias of EM_386; the i386 code runs unchanged.
    "i486": Probe(I386),
}

#: Why a catalog arch has no probe.  Empty today: Debian 12's QEMU 7.2 runs a
#: probe for every catalog arch.  An arch added to the catalog without a probe
#: must be listed here with the reason (the tests check).
NO_PROBE: dict[str, str] = {}


def available() -> list[str]:
    """Catalog arches that have a probe, in catalog order."""
    return [name for name in CATALOG if name in PROBES]


def _arch(arch: str | Arch) -> Arch:
    """A catalog row from a row or any word ``arch.resolve`` knows (arm64, ppc64el...)."""
    return resolve(arch) if isinstance(arch, str) else arch


def _probe(row: Arch) -> Probe:
    probe = PROBES.get(row.name)
    if probe is None:
        reason = NO_PROBE.get(row.name, "none was written")
        raise BinfmtError(f"no probe program for {row.name}: {reason}", arch=row.name)
    return probe


def expected_output(arch: str | Arch) -> bytes:
    """Exactly what the probe writes to stdout."""
    return f"binfmtctl-probe {_arch(arch).name}\n".encode()


def build(arch: str | Arch) -> bytes:
    """The complete probe executable for ``arch``.

    Raises UnknownArchError for a word the catalog does not know, and
    BinfmtError for an arch without a probe (see ``NO_PROBE``).
    """
    row = _arch(arch)
    return _build(row, _probe(row))


def _build(row: Arch, probe: Probe) -> bytes:
    code = probe.code_bytes(row)
    if len(code) % 4:
        raise ValueError(f"{row.name}: code is {len(code)} bytes, not a multiple of 4")
    message = expected_output(row)
    order: Literal["little", "big"] = "big" if row.big_endian else "little"
    is32 = row.elf_class == ELFCLASS32
    word = 4 if is32 else 8  # size of addresses and offsets
    ehsize, phentsize, shentsize = (52, 32, 40) if is32 else (64, 56, 64)
    body = code + len(message).to_bytes(4, order) + message
    size = ehsize + phentsize + len(body)
    entry = probe.load_address + ehsize + phentsize

    def fields(*items: tuple[int, int]) -> bytes:
        return b"".join(value.to_bytes(width, order) for width, value in items)

    ident = ELF_MAGIC + bytes([row.elf_class, row.data, EV_CURRENT]) + bytes(9)
    header = ident + fields(
        (2, ET_EXEC),
        (2, row.machine),
        (4, EV_CURRENT),
        (word, entry),
        (word, ehsize),  # e_phoff: the program header follows
        (word, 0),  # e_shoff: no sections
        (4, probe.e_flags),
        (2, ehsize),
        (2, phentsize),
        (2, 1),  # e_phnum
        (2, shentsize),
        (2, 0),  # e_shnum
        (2, 0),  # e_shstrndx
    )
    flags, addr, align = PF_R | PF_X, probe.load_address, SEGMENT_ALIGN
    if is32:
        phdr = fields((4, PT_LOAD), (4, 0), (4, addr), (4, addr), (4, size), (4, size))
        phdr += fields((4, flags), (4, align))
    else:
        phdr = fields((4, PT_LOAD), (4, flags), (8, 0), (8, addr), (8, addr), (8, size))
        phdr += fields((8, size), (8, align))
    out = header + phdr + body
    assert len(header) == ehsize and len(phdr) == phentsize and len(out) == size
    return out


#: The argv[0] probes by arch (:data:`binfmtctl.probe_code.ARGV0_X86_64` and
#: the tables after it): the ELF header of the arch's probe, code that exits
#: with the first byte of argv[0].
ARGV0_CODE: dict[str, tuple[Insn, ...]] = {
    "i386": _code.ARGV0_I386,
    "i486": _code.ARGV0_I386,
    "x86_64": _code.ARGV0_X86_64,
    "alpha": _code.ARGV0_ALPHA,
    "arm": _code.ARGV0_ARM,
    "armeb": _code.ARGV0_ARM,
    "aarch64": _code.ARGV0_AARCH64,
    "aarch64_be": _code.ARGV0_AARCH64,
    "sparc": _code.ARGV0_SPARC,
    "sparc32plus": _code.ARGV0_SPARC,
    "sparc64": _code.ARGV0_SPARC64,
    "ppc": _code.ARGV0_PPC,
    "ppc64": _code.ARGV0_PPC64,
    "ppc64le": _code.ARGV0_PPC64,
    "m68k": _code.ARGV0_M68K,
    "mips": _code.ARGV0_MIPS_O32,
    "mipsel": _code.ARGV0_MIPS_O32,
    "mipsn32": _code.ARGV0_MIPS_N32,
    "mipsn32el": _code.ARGV0_MIPS_N32,
    "mips64": _code.ARGV0_MIPS_N64,
    "mips64el": _code.ARGV0_MIPS_N64,
    "sh4": _code.ARGV0_SH4,
    "sh4eb": _code.ARGV0_SH4,
    "s390x": _code.ARGV0_S390X,
    "riscv32": _code.ARGV0_RISCV32,
    "riscv64": _code.ARGV0_RISCV64,
    "xtensa": _code.ARGV0_XTENSA,
    "xtensaeb": _code.ARGV0_XTENSAEB,
    "microblaze": _code.ARGV0_MICROBLAZE,
    "microblazeel": _code.ARGV0_MICROBLAZE,
    "or1k": _code.ARGV0_OR1K,
    "hexagon": _code.ARGV0_HEXAGON,
    "loongarch64": _code.ARGV0_LOONGARCH64,
    "nios2": _code.ARGV0_NIOS2,
    "hppa": _code.ARGV0_HPPA,
    "cris": _code.ARGV0_CRIS,
}

#: Why an arch with a probe has no argv[0] probe (its handler then gets F alone).
#: Empty today: every arch with a probe has an argv[0] probe too.
NO_ARGV0_PROBE: dict[str, str] = {}

#: The argv[0] an argv[0] probe is started with, and what it exits with when
#: the emulator kept it; an emulator that did not gives it the path ('/').
ARGV0 = "-binfmtctl-argv0"
ARGV0_KEPT, ARGV0_REPLACED = ord("-"), ord("/")


def build_argv0(arch: str | Arch) -> bytes:
    """The argv[0] probe for ``arch``: exits with the first byte of its argv[0].

    BinfmtError for an arch without one (see :data:`NO_ARGV0_PROBE`).
    """
    row = _arch(arch)
    code = ARGV0_CODE.get(row.name)
    if code is None:
        reason = NO_ARGV0_PROBE.get(row.name, "none was written")
        raise BinfmtError(f"no argv[0] probe for {row.name}: {reason}", arch=row.name)
    return _build(row, replace(_probe(row), code=code))


def write(arch: str | Arch, path: str | os.PathLike[str]) -> Path:
    """Write the probe for ``arch`` to ``path``, mode 0755, atomically.

    The file appears complete or not at all (temp file + rename in the same
    directory), so a concurrent exec never sees half a probe.  OSError
    propagates for the caller to translate.
    """
    target = Path(path)
    data = build(arch)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)  # noqa: S103 -- a program others may run, like /usr/bin
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
