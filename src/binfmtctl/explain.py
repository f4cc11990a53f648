"""What each magic/mask byte of an entry checks, in ELF terms; which arch an entry is for.

Pure functions over :class:`~binfmtctl.entry.Entry`: ``explain`` gives one row
per magic byte (the CLI renders them), ``recognise`` names the catalog arch an
entry handles, and ``diff`` lists the bytes where two entries check different
things -- which is how distro and upstream entries are told apart.
"""

from __future__ import annotations

import functools

from binfmtctl import arch as _arch
from binfmtctl.arch import CATALOG, Arch, Profile
from binfmtctl.entry import Entry
from binfmtctl.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Literal


class ByteRow(NamedTuple):
    """One magic byte: where it sits in the file, what it and its mask check."""

    offset: int
    magic: int
    mask: int
    field: str
    meaning: str


_IDENT = ("EI_MAG0", "EI_MAG1", "EI_MAG2", "EI_MAG3", "EI_CLASS", "EI_DATA", "EI_VERSION",
          "EI_OSABI", "EI_ABIVERSION")  # fmt: skip
_CLASSES = {0: "ELFCLASSNONE", 1: "ELFCLASS32", 2: "ELFCLASS64"}
_DATA = {0: "ELFDATANONE", 1: "little-endian (ELFDATA2LSB)", 2: "big-endian (ELFDATA2MSB)"}
_OSABI = {0: "ELFOSABI_SYSV", 1: "ELFOSABI_HPUX", 2: "ELFOSABI_NETBSD",
          3: "ELFOSABI_GNU (Linux)", 6: "ELFOSABI_SOLARIS", 9: "ELFOSABI_FREEBSD",
          97: "ELFOSABI_ARM", 255: "ELFOSABI_STANDALONE"}  # fmt: skip
_TYPES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
#: EM_* names of the machines in the catalog (elf.h spelling).
_MACHINES = {2: "EM_SPARC", 3: "EM_386", 4: "EM_68K", 6: "EM_486", 8: "EM_MIPS",
             15: "EM_PARISC", 18: "EM_SPARC32PLUS", 20: "EM_PPC", 21: "EM_PPC64",
             22: "EM_S390", 40: "EM_ARM", 42: "EM_SH", 43: "EM_SPARCV9", 62: "EM_X86_64",
             76: "EM_CRIS", 92: "EM_OPENRISC", 94: "EM_XTENSA", 113: "EM_ALTERA_NIOS2",
             164: "EM_QDSP6 (Hexagon)", 183: "EM_AARCH64", 243: "EM_RISCV",
             258: "EM_LOONGARCH", 0x9026: "EM_ALPHA (unofficial)",
             0xBAAB: "EM_MICROBLAZE_OLD"}  # fmt: skip


def _layout(elf_class: int) -> list[tuple[str, int, int]]:
    """(field, start, size) of every ELF header field; sizes depend on the class."""
    word = 8 if elf_class == _arch.ELFCLASS64 else 4
    out = [(name, i, 1) for i, name in enumerate(_IDENT)]
    out += [("EI_PAD", i, 1) for i in range(len(_IDENT), 16)]
    at = 16
    for name, size in (("e_type", 2), ("e_machine", 2), ("e_version", 4), ("e_entry", word),
                       ("e_phoff", word), ("e_shoff", word), ("e_flags", 4), ("e_ehsize", 2),
                       ("e_phentsize", 2), ("e_phnum", 2), ("e_shentsize", 2),
                       ("e_shnum", 2), ("e_shstrndx", 2)):  # fmt: skip
        out.append((name, at, size))
        at += size
    return out


class _View(NamedTuple):
    """The entry's magic and mask addressed by file offset (None where not covered)."""

    entry: Entry

    def magic_at(self, pos: int) -> int | None:
        i = pos - self.entry.offset
        return self.entry.magic[i] if 0 <= i < len(self.entry.magic) else None

    def mask_at(self, pos: int) -> int:
        i = pos - self.entry.offset
        if not 0 <= i < len(self.entry.magic):
            return 0
        return 0xFF if self.entry.mask is None else self.entry.mask[i]

    def known(self, pos: int) -> int | None:
        """A byte's value when the entry pins it down completely."""
        return self.magic_at(pos) if self.mask_at(pos) == 0xFF else None

    def looks_elf(self) -> bool:
        """False when the bytes it checks at 0..3 rule out the ELF magic."""
        for pos, want in enumerate(_arch.ELF_MAGIC):
            magic, mask = self.magic_at(pos), self.mask_at(pos)
            if magic is not None and (magic ^ want) & mask:
                return False
        return True


def _matched_values(value: int, mask: int, size: int, names: dict[int, str]) -> str:
    """ "; mask fe also matches 3 (ET_DYN)" when the mask leaves one or two bits open."""
    free = [bit for bit in range(8 * size) if not mask >> bit & 1]
    if not free:
        return ""
    if len(free) > 2:
        return f"; only bits {mask:#x} are checked"
    others = []
    for combo in range(1 << len(free)):
        other = value & mask
        for j, bit in enumerate(free):
            if combo >> j & 1:
                other |= 1 << bit
        if other != value:
            others.append(_named(other, names))
    shown = "".join(f"{b:02x}" for b in mask.to_bytes(size, "big") if b != 0xFF)
    return f"; mask {shown} also matches {', '.join(others)}"


def _named(value: int, names: dict[int, str]) -> str:
    if value == 3 and names is _TYPES:
        return "ET_DYN (3, PIE)"
    return f"{names[value]} ({value})" if value in names else str(value)


def _describe(view: _View, field: str, start: int, size: int, ctx: tuple[int, int]) -> str:
    """Words for one whole field, written on its first covered byte."""
    elf_class, data = ctx
    order: Literal["big", "little"] = "big" if data == _arch.ELFDATA2MSB else "little"
    covered = [view.magic_at(p) is not None for p in range(start, start + size)]
    masks = bytes(view.mask_at(p) for p in range(start, start + size))
    mask = int.from_bytes(masks, order)
    if mask == 0:
        return "ignored (mask 00)"
    if not all(covered):
        return f"only part of {field} ({sum(covered)} of {size} bytes) is checked"
    value = int.from_bytes(bytes(view.magic_at(p) or 0 for p in range(start, start + size)), order)
    full = (1 << 8 * size) - 1
    if field.startswith("EI_MAG"):
        return "ELF magic " + (repr(chr(value)) if 32 < value < 127 else f"{value:#04x}")
    if field == "EI_CLASS":
        return _CLASSES.get(value, f"class {value}") + _matched_values(value, mask, 1, _CLASSES)
    if field == "EI_DATA":
        return _DATA.get(value, f"encoding {value}") + _matched_values(value, mask, 1, _DATA)
    if field in ("EI_VERSION", "e_version"):
        words = "EV_CURRENT (1)" if value == 1 else f"version {value}"
        return words + _matched_values(value, mask, size, {1: "EV_CURRENT"})
    if field == "EI_OSABI":
        return _named(value, _OSABI) + _matched_values(value, mask, 1, _OSABI)
    if field == "EI_ABIVERSION":
        return f"ABI version {value}" + _matched_values(value, mask, 1, {})
    if field == "EI_PAD":
        return f"padding, must be {value:02x}" + _matched_values(value, mask, 1, {})
    if field == "e_type":
        return f"{_TYPES.get(value, 'type')} ({value})" + _matched_values(value, mask, 2, _TYPES)
    if field == "e_machine":
        return _machine(value, mask, elf_class, data, view)
    if field == "e_flags":
        machine = _field_value(view, 18, 2, order)
        if machine == 8 and mask == _arch.EF_MIPS_ABI2:
            if value & _arch.EF_MIPS_ABI2:
                return "EF_MIPS_ABI2 must be set (n32)"
            return "EF_MIPS_ABI2 must be clear (o32)"
        return f"flags {value:#x}" + ("" if mask == full else f" (bits {mask:#x} checked)")
    return f"{value:#x}" + ("" if mask == full else f" (bits {mask:#x} checked)")


def _field_value(view: _View, start: int, size: int, order: Literal["big", "little"]) -> int | None:
    raw = [view.known(p) for p in range(start, start + size)]
    if any(b is None for b in raw):
        return None
    return int.from_bytes(bytes(b or 0 for b in raw), order)


def _machine(value: int, mask: int, elf_class: int, data: int, view: _View) -> str:
    if mask != 0xFFFF:
        return f"e_machine {value} (bits {mask:#06x} checked)"
    class_known = view.known(_arch.EI_CLASS) is not None
    data_known = view.known(_arch.EI_DATA) is not None
    names = [
        a.name
        for a in CATALOG.values()
        if a.machine == value
        and (not class_known or a.elf_class == elf_class)
        and (not data_known or a.data == data)
    ]
    label = _MACHINES.get(value, "EM_?")
    return f"{label} = {value}" + (f" ({', '.join(names)})" if names else "")


def explain(entry: Entry) -> list[ByteRow]:
    """One row per magic byte of an M entry (E entries have none).

    Bytes are named after the ELF header field at their file offset, with the
    layout of the class the entry's EI_CLASS byte names (32-bit if it does not
    check it). An entry whose first bytes rule out ELF gets plain byte rows.
    """
    if entry.kind != "M":
        return []
    view = _View(entry)
    rows: list[ByteRow] = []
    positions = range(entry.offset, entry.offset + len(entry.magic))
    if not view.looks_elf():
        for pos in positions:
            mask = view.mask_at(pos)
            note = {0xFF: "must match", 0: "ignored (mask 00)"}.get(
                mask, f"bits {mask:02x} checked"
            )
            rows.append(ByteRow(pos, view.magic_at(pos) or 0, mask, f"byte {pos}", note))
        return rows
    elf_class = view.known(_arch.EI_CLASS) or _arch.ELFCLASS32
    data = view.known(_arch.EI_DATA) or _arch.ELFDATA2LSB
    where = {p: (name, start, size) for name, start, size in _layout(elf_class)
             for p in range(start, start + size)}  # fmt: skip
    for pos in positions:
        name, start, size = where.get(pos, ("past the ELF header", pos, 1))
        first = pos in (start, entry.offset)
        meaning = _describe(view, name, start, size, (elf_class, data)) if first else "(cont.)"
        label = name if size == 1 or pos == start else f"{name} +{pos - start}"
        rows.append(ByteRow(pos, view.magic_at(pos) or 0, view.mask_at(pos), label, meaning))
    return rows


class _Known(NamedTuple):
    """The catalog as recognise needs it, computed once per process (see :func:`_known`)."""

    exact: dict[tuple[bytes, bytes], Arch]  # (magic, mask) of every profile: first arch wins
    samples: dict[Arch, bytes]  # arch -> its typical executable's header


@functools.cache
def _known() -> _Known:
    """Every arch's magic/mask and sample header: built on first use only."""
    exact: dict[tuple[bytes, bytes], Arch] = {}
    samples: dict[Arch, bytes] = {}
    for arch in CATALOG.values():
        for profile in Profile:
            exact.setdefault(arch.magic_mask(profile), arch)
        magic, _ = arch.magic_mask(Profile.QEMU)
        samples[arch] = magic + bytes(256 - len(magic))
    return _Known(exact, samples)


def sample_header(arch: Arch) -> bytes:
    """A typical executable's first 256 bytes for ``arch`` (ET_EXEC, zero elsewhere)."""
    found = _known().samples.get(arch)
    if found is not None:
        return found
    magic, _ = arch.magic_mask(Profile.QEMU)
    return magic + bytes(256 - len(magic))


def _misfit(entry: Entry, arch: Arch) -> int:
    """How many checked bits differ between ``entry`` and ``arch``'s qemu entry.

    Bits a mask checks that the other's does not, plus bits both check whose
    values differ; a byte an entry does not cover is checked by none of its bits.
    Computed on the whole span as integers, not byte by byte (status recognises
    every entry whose mask is not one of the catalog's this way).
    """
    magic, mask = _qemu_magic_mask(arch)
    end = max(len(magic), entry.offset + len(entry.magic))
    a_val, a_mask = _span(magic, mask, 0, end)
    b_val, b_mask = _span(entry.magic, entry.mask, entry.offset, end)
    return (a_mask ^ b_mask).bit_count() + ((a_val ^ b_val) & a_mask & b_mask).bit_count()


@functools.cache
def _qemu_magic_mask(arch: Arch) -> tuple[bytes, bytes]:
    """``arch``'s qemu magic and mask, computed the first time an inexact entry needs them."""
    return arch.magic_mask(Profile.QEMU)


def _span(magic: bytes, mask: bytes | None, offset: int, end: int) -> tuple[int, int]:
    """The checked value and the mask of file offsets 0..``end`` as big-endian integers."""
    size = len(magic)
    bits = int.from_bytes(mask, "big") if mask is not None else (1 << 8 * size) - 1
    shift = 8 * (end - offset - size)
    return (int.from_bytes(magic, "big") & bits) << shift, bits << shift


def recognise(entry: Entry) -> Arch | None:
    """The catalog arch an entry handles, or None (not an ELF handler, or too loose).

    An exact match with a profile's magic and mask wins. Otherwise the entry
    must match the typical executable of arches that share one ELF identity
    (class, data, machine) -- MIPS o32 and n32 do, an entry checking only
    "\\x7fELF" matches many that do not -- and the one whose own entry is
    closest, bit for bit, is chosen.
    """
    if entry.kind != "M":
        return None
    known = _known()
    if entry.offset == 0 and entry.mask is not None:
        exact = known.exact.get((entry.magic, entry.mask))
        if exact is not None:
            return exact
    # entry.matches(sample) of every sample, with the entry's integers made once
    size, at = len(entry.magic), entry.offset
    mask = int.from_bytes(entry.mask, "big") if entry.mask is not None else (1 << 8 * size) - 1
    want = int.from_bytes(entry.magic, "big") & mask
    hits = [
        a
        for a, sample in known.samples.items()
        if int.from_bytes(sample[at : at + size], "big") & mask == want
    ]
    if not hits or len({(a.elf_class, a.data, a.machine) for a in hits}) > 1:
        return None
    return min(hits, key=lambda a: _misfit(entry, a))


def diff(a: Entry, b: Entry) -> list[tuple[ByteRow | None, ByteRow | None]]:
    """Bytes, by file offset, where ``a`` and ``b`` check something different.

    A byte one entry does not cover counts as ignored, so ``(row, None)`` only
    appears when the other entry really checks that byte.
    """
    rows_a = {r.offset: r for r in explain(a)}
    rows_b = {r.offset: r for r in explain(b)}
    out: list[tuple[ByteRow | None, ByteRow | None]] = []
    for pos in sorted(set(rows_a) | set(rows_b)):
        ra, rb = rows_a.get(pos), rows_b.get(pos)
        checked_a = (ra.magic & ra.mask, ra.mask) if ra else (0, 0)
        checked_b = (rb.magic & rb.mask, rb.mask) if rb else (0, 0)
        if checked_a != checked_b:
            out.append((ra, rb))
    return out
