"""What each magic/mask byte of an entry checks, in ELF terms; which arch an entry is for.

Pure functions over :class:`~binfmtctl.entry.Entry`: ``explain`` gives one row
per magic byte, ``recognise`` names the catalog arch an entry handles, and
``diff`` lists the bytes where two entries check different things.
"""

from __future__ import annotations

from dataclasses import dataclass

from binfmtctl import arch as _arch
from binfmtctl.arch import CATALOG, Arch, Profile
from binfmtctl.entry import Entry

_CLASSES = {1: "ELFCLASS32", 2: "ELFCLASS64"}
_DATA = {1: "little-endian (ELFDATA2LSB)", 2: "big-endian (ELFDATA2MSB)"}
_OSABI = {0: "ELFOSABI_SYSV", 3: "ELFOSABI_GNU (Linux)"}
_TYPES = {1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
_IDENT = ["EI_MAG0", "EI_MAG1", "EI_MAG2", "EI_MAG3", "EI_CLASS", "EI_DATA", "EI_VERSION",
          "EI_OSABI", "EI_ABIVERSION"]  # fmt: skip


@dataclass(frozen=True)
class ByteRow:
    """One magic byte: where it sits, what it and its mask check."""

    offset: int
    magic: int
    mask: int
    field: str
    meaning: str


def _layout(elf_class: int) -> list[tuple[str, int, int]]:
    """(field, start, size) of the ELF header for a class, after e_ident."""
    word = 4 if elf_class == _arch.ELFCLASS32 else 8
    fields = [("e_type", 2), ("e_machine", 2), ("e_version", 4), ("e_entry", word),
              ("e_phoff", word), ("e_shoff", word), ("e_flags", 4), ("e_ehsize", 2),
              ("e_phentsize", 2), ("e_phnum", 2), ("e_shentsize", 2), ("e_shnum", 2),
              ("e_shstrndx", 2)]  # fmt: skip
    out, at = [], 16
    for name, size in fields:
        out.append((name, at, size))
        at += size
    return out


def _field_at(pos: int, elf_class: int) -> tuple[str, int, int]:
    if pos < len(_IDENT):
        return _IDENT[pos], pos, 1
    if pos < 16:
        return "EI_PAD", pos, 1
    for name, start, size in _layout(elf_class):
        if start <= pos < start + size:
            return name, start, size
    return "past the ELF header", pos, 1


def _value_of(raw: bytes | None, offset: int, start: int, size: int, data: int) -> int | None:
    """A field's value out of magic or mask bytes, if they cover all of it."""
    if raw is None:
        return (1 << (8 * size)) - 1
    lo, hi = start - offset, start - offset + size
    if lo < 0 or hi > len(raw):
        return None
    return int.from_bytes(raw[lo:hi], "big" if data == 2 else "little")


def _value(entry: Entry, start: int, size: int, data: int) -> int | None:
    """The field's value from the magic, if the magic covers all of it."""
    return _value_of(entry.magic, entry.offset, start, size, data)


def _meaning(entry: Entry, field: str, start: int, size: int, ctx: tuple[int, int]) -> str:
    elf_class, data = ctx
    value = _value(entry, start, size, data)
    if value is None:
        return "part of the field only"
    if field.startswith("EI_MAG"):
        return "ELF magic"
    if field == "EI_CLASS":
        return _CLASSES.get(value, f"class {value}")
    if field == "EI_DATA":
        return _DATA.get(value, f"encoding {value}")
    if field in ("EI_VERSION", "e_version"):
        return "EV_CURRENT" if value == 1 else f"version {value}"
    if field == "EI_OSABI":
        return _OSABI.get(value, f"OS ABI {value}")
    if field == "e_type":
        name = _TYPES.get(value, f"type {value}")
        low_at = start + (1 if data == 2 else 0) - entry.offset
        low = entry.mask[low_at] if entry.mask else 0xFF
        if value == 2 and low & 1 == 0:
            return f"{name} ({value}); the mask also matches ET_DYN (3, PIE)"
        return f"{name} ({value})"
    if field == "e_machine":
        names = [a.name for a in CATALOG.values()
                 if (a.machine, a.elf_class, a.data) == (value, elf_class, data)]  # fmt: skip
        return f"e_machine {value}" + (f" ({', '.join(names)})" if names else "")
    if field == "e_flags":
        field_mask = _value_of(entry.mask, entry.offset, start, size, data)
        if field_mask == _arch.EF_MIPS_ABI2 and _value(entry, 18, 2, data) == 8:
            state = "set (n32)" if value & _arch.EF_MIPS_ABI2 else "clear (o32)"
            return f"EF_MIPS_ABI2 must be {state}"
        return f"flags {value:#x}"
    return f"{value:#x}"


def explain(entry: Entry) -> list[ByteRow]:
    """One row per magic byte of an M entry (E entries have no bytes)."""
    if entry.kind != "M":
        return []
    mask = entry.mask or b"\xff" * len(entry.magic)
    elf = entry.offset == 0 and entry.magic[:4] == _arch.ELF_MAGIC
    ctx = (
        entry.magic[4] if elf and len(entry.magic) > 4 else 1,
        entry.magic[5] if elf and len(entry.magic) > 5 else 1,
    )
    rows = []
    for i, (m, k) in enumerate(zip(entry.magic, mask, strict=True)):
        pos = entry.offset + i
        if not elf:
            note = {0xFF: "must match", 0: "ignored (mask 00)"}.get(k, f"bits {k:02x} checked")
            rows.append(ByteRow(pos, m, k, f"byte {pos}", note))
            continue
        field, start, size = _field_at(pos, ctx[0])
        if pos == start or i == 0:
            field_mask = _value_of(entry.mask, entry.offset, start, size, ctx[1])
            if field_mask == 0:
                meaning = "ignored (mask 00)"
            else:
                meaning = _meaning(entry, field, start, size, ctx)
                full = (1 << (8 * size)) - 1
                if field_mask is not None and field_mask != full and field != "e_type":
                    meaning += f"; only bits {field_mask:#x} checked"
        else:
            meaning = "(cont.)"
        label = field if size == 1 or pos == start else f"{field} +{pos - start}"
        rows.append(ByteRow(pos, m, k, label, meaning))
    return rows


def sample_header(arch: Arch) -> bytes:
    """A typical executable's first 256 bytes for ``arch`` (ET_EXEC, zero elsewhere)."""
    magic, _ = arch.magic_mask(Profile.QEMU)
    return magic + bytes(256 - len(magic))


def recognise(entry: Entry) -> Arch | None:
    """The catalog arch an entry handles, or None (not an ELF handler).

    An exact profile match wins; otherwise the arch whose typical executable
    the entry matches, preferring the entry that checks the most bits.
    """
    if entry.kind != "M":
        return None
    for arch in CATALOG.values():
        for profile in Profile:
            magic, mask = arch.magic_mask(profile)
            if entry.offset == 0 and (entry.magic, entry.mask) == (magic, mask):
                return arch
    hits = [a for a in CATALOG.values() if entry.matches(sample_header(a))]
    if len(hits) == 1:
        return hits[0]
    # Several arches fit a loose entry: it handles none of them in particular,
    # unless they are the same arch identity (never: rows differ by identity).
    return None


def diff(a: Entry, b: Entry) -> list[tuple[ByteRow | None, ByteRow | None]]:
    """Bytes (by file offset) where ``a`` and ``b`` check something different."""
    rows_a = {r.offset: r for r in explain(a)}
    rows_b = {r.offset: r for r in explain(b)}
    out = []
    for pos in sorted(set(rows_a) | set(rows_b)):
        ra, rb = rows_a.get(pos), rows_b.get(pos)
        checked_a = (ra.magic & ra.mask, ra.mask) if ra else (0, 0)
        checked_b = (rb.magic & rb.mask, rb.mask) if rb else (0, 0)
        if checked_a != checked_b:
            out.append((ra, rb))
    return out
