"""The architecture catalog: one row per QEMU linux-user target.

Everything binfmtctl knows about an architecture lives in ``CATALOG``.  Magic
and mask bytes are *derived* from a row's ELF identity for a mask profile:

``qemu``  (default) reproduces what QEMU's upstream ``qemu-binfmt-conf.sh``
          registers, so entries are interchangeable with distro and Docker ones.
          Upstream's per-arch oddities (i386 ignoring the low bit of EI_DATA,
          m68k the low bit of EI_VERSION, ...) are recorded as ``qemu_quirks``.
``seed``  the classic hand-made variant: EI_OSABI, EI_ABIVERSION and the
          e_ident padding are ignored.

In both, the low bit of e_type is masked so ET_EXEC (2) and ET_DYN (3, PIE)
match.  MIPS n32 and o32 share class and machine; they are told apart by the
EF_MIPS_ABI2 bit of e_flags, which extends those entries to 40 bytes.

Where we knowingly differ from upstream, ``UPSTREAM_DEVIATIONS`` says why.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from binfmtctl.errors import UnknownArchError
from binfmtctl.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Literal

ELF_MAGIC = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2
EF_MIPS_ABI2 = 0x20

#: Offsets inside the ELF header (identical for both classes up to e_version).
EI_CLASS, EI_DATA, EI_VERSION, EI_OSABI, EI_ABIVERSION = 4, 5, 6, 7, 8
E_TYPE, E_MACHINE, E_VERSION = 16, 18, 20


def e_flags_offset(elf_class: int) -> int:
    """Where e_flags sits: after e_entry, e_phoff and e_shoff (4 or 8 bytes each)."""
    return 0x24 if elf_class == ELFCLASS32 else 0x30


class Profile(str, enum.Enum):
    """A mask profile: how strictly an entry matches the ELF header."""

    QEMU = "qemu"
    SEED = "seed"


class Arch(NamedTuple):
    """One QEMU linux-user target and how to recognise its ELF files."""

    name: str  # QEMU target name, also the entry name suffix: qemu-<name>
    elf_class: int  # ELFCLASS32 | ELFCLASS64
    data: int  # ELFDATA2LSB | ELFDATA2MSB
    machine: int  # e_machine
    family: str  # QEMU's host family: a host of this family runs the arch natively
    description: str
    emulator: str = ""  # QEMU binary stem, when not qemu-<name>
    debian: tuple[str, ...] = ()  # Debian architecture names
    oci: tuple[str, ...] = ()  # OCI / Docker platforms
    uname: tuple[str, ...] = ()  # what `uname -m` prints on such a machine
    go: tuple[str, ...] = ()  # GOARCH
    # (mask, value) on e_flags; only the MIPS o32/n32 split needs it.
    e_flags: tuple[int, int] | None = None
    # qemu profile only: mask bytes upstream sets differently from the default.
    qemu_quirks: tuple[tuple[int, int], ...] = ()
    # qemu profile only: check e_version == EV_CURRENT (upstream does on 32-bit MIPS).
    qemu_checks_e_version: bool = False

    @property
    def entry_name(self) -> str:
        return f"qemu-{self.name}"

    @property
    def emulator_name(self) -> str:
        """The QEMU user-mode binary for this arch, without -static suffix."""
        return f"qemu-{self.emulator or self.name}"

    @property
    def aliases(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for word in (*self.debian, *self.oci, *self.uname, *self.go):
            if word != self.name:
                seen.setdefault(word, None)
        return tuple(seen)

    @property
    def big_endian(self) -> bool:
        return self.data == ELFDATA2MSB

    @property
    def byteorder(self) -> Literal["big", "little"]:
        """For int.to_bytes/from_bytes: the byte order of this arch's ELF files."""
        return "big" if self.big_endian else "little"

    @property
    def bits(self) -> int:
        return 32 if self.elf_class == ELFCLASS32 else 64

    def _u16(self, value: int) -> bytes:
        return value.to_bytes(2, self.byteorder)

    def _u32(self, value: int) -> bytes:
        return value.to_bytes(4, self.byteorder)

    def magic_mask(self, profile: Profile | str = Profile.QEMU) -> tuple[bytes, bytes]:
        """Derive the binfmt_misc magic and mask for this arch."""
        profile = Profile(profile)
        magic = bytearray(ELF_MAGIC + bytes([self.elf_class, self.data, 1]) + bytes(9))
        magic += self._u16(2) + self._u16(self.machine)  # ET_EXEC; ET_DYN via mask
        mask = bytearray(b"\xff" * 16)
        if profile is Profile.SEED:
            mask[EI_OSABI:16] = bytes(16 - EI_OSABI)
        else:
            mask[EI_OSABI] = 0
        mask += self._u16(0xFFFE) + b"\xff\xff"
        if self.e_flags is not None:
            flags_mask, flags_value = self.e_flags
            at = e_flags_offset(self.elf_class)
            magic += bytes(at + 4 - len(magic))
            mask += bytes(at + 4 - len(mask))
            if profile is Profile.QEMU and self.qemu_checks_e_version:
                magic[E_VERSION : E_VERSION + 4] = self._u32(1)
                mask[E_VERSION : E_VERSION + 4] = b"\xff" * 4
            magic[at : at + 4] = self._u32(flags_value)
            mask[at : at + 4] = self._u32(flags_mask)
        if profile is Profile.QEMU:
            for offset, value in self.qemu_quirks:
                mask[offset] = value
        return bytes(magic), bytes(mask)

    def matches_header(self, header: bytes) -> bool:
        """Whether an ELF header is this arch's, by identity (profile independent)."""
        if len(header) < 20 or header[:4] != ELF_MAGIC:
            return False
        if header[EI_CLASS] != self.elf_class or header[EI_DATA] != self.data:
            return False
        if int.from_bytes(header[E_MACHINE : E_MACHINE + 2], self.byteorder) != self.machine:
            return False
        if self.e_flags is not None:
            at = e_flags_offset(self.elf_class)
            if len(header) < at + 4:
                return False
            flags = int.from_bytes(header[at : at + 4], self.byteorder)
            return flags & self.e_flags[0] == self.e_flags[1]
        return True


# Mask bytes that upstream relaxes, by family (see module docstring).
_X86_LIKE = ((EI_DATA, 0xFE), (EI_VERSION, 0xFE))
_MIPS = ((EI_ABIVERSION, 0x00),)
_O32 = (EF_MIPS_ABI2, 0)
_N32 = (EF_MIPS_ABI2, EF_MIPS_ABI2)
L, B = ELFDATA2LSB, ELFDATA2MSB
C32, C64 = ELFCLASS32, ELFCLASS64


# fmt: off
_ROWS: tuple[Arch, ...] = (
    Arch("i386", C32, L, 3, "i386", "Intel 80386 (32-bit x86)",
         debian=("i386",), oci=("linux/386",), uname=("i386", "i586", "i686"), go=("386",),
         qemu_quirks=_X86_LIKE),
    Arch("i486", C32, L, 6, "i386", "Intel 80486 (EM_486, rare)", emulator="i386",
         uname=("i486",), qemu_quirks=_X86_LIKE),
    Arch("x86_64", C64, L, 62, "i386", "AMD64 / Intel 64",
         debian=("amd64",), oci=("linux/amd64",), uname=("x86_64",), go=("amd64",),
         qemu_quirks=_X86_LIKE),
    Arch("alpha", C64, L, 0x9026, "alpha", "DEC Alpha",
         debian=("alpha",), uname=("alpha",), qemu_quirks=_X86_LIKE),
    Arch("arm", C32, L, 40, "arm", "32-bit ARM, little-endian (armel, armhf)",
         debian=("armhf", "armel"),
         oci=("linux/arm/v7", "linux/arm/v6", "linux/arm/v5", "linux/arm"),
         uname=("armv7l", "armv6l", "armv5tel", "armv5l", "armv8l"), go=("arm",)),
    Arch("armeb", C32, B, 40, "armeb", "32-bit ARM, big-endian",
         uname=("armv7b", "armv5teb", "armeb")),
    Arch("aarch64", C64, L, 183, "arm", "64-bit ARM (AArch64)",
         debian=("arm64",), oci=("linux/arm64", "linux/arm64/v8"),
         uname=("aarch64", "arm64"), go=("arm64",)),
    Arch("aarch64_be", C64, B, 183, "armeb", "64-bit ARM, big-endian",
         uname=("aarch64_be",)),
    Arch("sparc", C32, B, 2, "sparc", "SPARC (32-bit, V8)", uname=("sparc",)),
    Arch("sparc32plus", C32, B, 18, "sparc", "SPARC V8+ (32-bit code for V9 CPUs)"),
    Arch("sparc64", C64, B, 43, "sparc", "SPARC V9 (64-bit)",
         debian=("sparc64",), uname=("sparc64",)),
    Arch("ppc", C32, B, 20, "ppc", "32-bit PowerPC",
         debian=("powerpc",), oci=("linux/ppc",), uname=("ppc",)),
    Arch("ppc64", C64, B, 21, "ppc", "64-bit POWER, big-endian",
         debian=("ppc64",), oci=("linux/ppc64",), uname=("ppc64",), go=("ppc64",)),
    Arch("ppc64le", C64, L, 21, "ppcle", "64-bit POWER, little-endian",
         debian=("ppc64el",), oci=("linux/ppc64le",), uname=("ppc64le",), go=("ppc64le",),
         qemu_quirks=((E_MACHINE + 1, 0x00),)),
    Arch("m68k", C32, B, 4, "m68k", "Motorola 68000",
         debian=("m68k",), uname=("m68k",), qemu_quirks=((EI_VERSION, 0xFE),)),
    Arch("mips", C32, B, 8, "mips", "MIPS o32, big-endian",
         debian=("mips",), oci=("linux/mips",), uname=("mips",), go=("mips",),
         e_flags=_O32, qemu_quirks=_MIPS, qemu_checks_e_version=True),
    Arch("mipsel", C32, L, 8, "mips", "MIPS o32, little-endian",
         debian=("mipsel",), oci=("linux/mipsle",), go=("mipsle",),
         e_flags=_O32, qemu_quirks=_MIPS, qemu_checks_e_version=True),
    Arch("mipsn32", C32, B, 8, "mips", "MIPS n32, big-endian",
         debian=("mipsn32",), e_flags=_N32, qemu_quirks=_MIPS, qemu_checks_e_version=True),
    Arch("mipsn32el", C32, L, 8, "mips", "MIPS n32, little-endian",
         debian=("mipsn32el",), e_flags=_N32, qemu_quirks=_MIPS, qemu_checks_e_version=True),
    Arch("mips64", C64, B, 8, "mips", "MIPS n64, big-endian",
         debian=("mips64",), oci=("linux/mips64",), uname=("mips64",), go=("mips64",),
         qemu_quirks=_MIPS),
    Arch("mips64el", C64, L, 8, "mips", "MIPS n64, little-endian",
         debian=("mips64el",), oci=("linux/mips64le",), go=("mips64le",),
         qemu_quirks=_MIPS),
    Arch("sh4", C32, L, 42, "sh4", "SuperH SH-4, little-endian",
         debian=("sh4",), uname=("sh4",)),
    Arch("sh4eb", C32, B, 42, "sh4", "SuperH SH-4, big-endian", uname=("sh4eb",)),
    Arch("s390x", C64, B, 22, "s390x", "IBM Z (64-bit)",
         debian=("s390x",), oci=("linux/s390x",), uname=("s390x",), go=("s390x",)),
    Arch("hppa", C32, B, 15, "hppa", "HP PA-RISC",
         debian=("hppa",), uname=("parisc",)),
    Arch("riscv32", C32, L, 243, "riscv32", "RISC-V (32-bit)",
         oci=("linux/riscv32",), uname=("riscv32",)),
    Arch("riscv64", C64, L, 243, "riscv64", "RISC-V (64-bit)",
         debian=("riscv64",), oci=("linux/riscv64",), uname=("riscv64",), go=("riscv64",)),
    Arch("xtensa", C32, L, 94, "xtensa", "Tensilica Xtensa, little-endian"),
    Arch("xtensaeb", C32, B, 94, "xtensaeb", "Tensilica Xtensa, big-endian"),
    Arch("microblaze", C32, B, 0xBAAB, "microblaze", "Xilinx MicroBlaze, big-endian",
         uname=("microblaze",)),
    Arch("microblazeel", C32, L, 0xBAAB, "microblazeel", "Xilinx MicroBlaze, little-endian",
         uname=("microblazeel",)),
    Arch("or1k", C32, B, 92, "or1k", "OpenRISC 1000", uname=("or1k",)),
    Arch("hexagon", C32, L, 164, "hexagon", "Qualcomm Hexagon"),
    Arch("loongarch64", C64, L, 258, "loongarch", "LoongArch (64-bit)",
         debian=("loong64",), oci=("linux/loong64",), uname=("loongarch64",), go=("loong64",),
         qemu_quirks=((EI_OSABI, 0xFC), (EI_ABIVERSION, 0x00))),
    # Not in upstream's binfmt list, but Debian 12 ships emulators for both.
    Arch("cris", C32, L, 76, "cris", "Axis ETRAX CRIS", uname=("cris",)),
    Arch("nios2", C32, L, 113, "nios2", "Altera Nios II", uname=("nios2",)),
)
# fmt: on

CATALOG: dict[str, Arch] = {a.name: a for a in _ROWS}

#: Where our ``qemu`` profile knowingly differs from upstream's script, and why.
UPSTREAM_DEVIATIONS: dict[str, str] = {
    "microblaze": (
        "upstream writes e_type as 02 00 (little-endian order) for this big-endian "
        "arch, so its entry never matches a real MicroBlaze binary; we use 00 02"
    ),
}

#: Targets upstream's script does not register; no upstream magic to compare with.
NOT_IN_UPSTREAM = frozenset({"cris", "nios2"})


def _alias_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for arch in _ROWS:
        index.setdefault(arch.name.lower(), arch.name)
        index.setdefault(arch.entry_name.lower(), arch.name)
    for arch in _ROWS:
        for alias in arch.aliases:
            index.setdefault(alias.lower(), arch.name)
    return index


_ALIASES = _alias_index()


def resolve(word: str) -> Arch:
    """Resolve what a user typed (QEMU name, Debian arch, OCI platform, uname -m, GOARCH)."""
    key = word.strip().lower()
    name = _ALIASES.get(key)
    if name is None:
        raise UnknownArchError(word, suggestions=_suggest(key))
    return CATALOG[name]


def resolve_all(words: Iterable[str]) -> list[Arch]:
    """Resolve several words, keeping order and dropping repeats."""
    out: dict[str, Arch] = {}
    for word in words:
        arch = resolve(word)
        out.setdefault(arch.name, arch)
    return list(out.values())


def _suggest(key: str) -> list[str]:
    import difflib

    return difflib.get_close_matches(key, list(_ALIASES), n=3, cutoff=0.6)


def identify(header: bytes) -> Arch | None:
    """The catalog row an ELF header belongs to, or None (by identity, not masks)."""
    for arch in _ROWS:
        if arch.matches_header(header):
            return arch
    return None
