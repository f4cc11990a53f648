"""explain / recognise / diff over catalog entries and the distro's real binfmt.d files."""

from __future__ import annotations

from pathlib import Path

import pytest

from binfmtctl.arch import CATALOG, Arch, Profile
from binfmtctl.entry import Entry
from binfmtctl.explain import ByteRow, diff, explain, recognise
from conftest import missing

BINFMT_D = Path("/usr/lib/binfmt.d")


def arch_entry(arch: Arch, profile: Profile = Profile.QEMU) -> Entry:
    magic, mask = arch.magic_mask(profile)
    return Entry(arch.entry_name, "M", "/usr/bin/qemu-static", magic=magic, mask=mask)


def conf_entry(path: Path) -> Entry:
    """The register line of a binfmt.d file (after its comments)."""
    lines = [line for line in path.read_text().splitlines() if line and line[0] not in "#;"]
    return Entry.parse(lines[0])


def by_offset(entry: Entry) -> dict[int, ByteRow]:
    return {row.offset: row for row in explain(entry)}


def test_aarch64_rows() -> None:
    rows = by_offset(arch_entry(CATALOG["aarch64"]))
    assert sorted(rows) == list(range(20))
    assert rows[4].field == "EI_CLASS" and rows[4].meaning == "ELFCLASS64"
    assert rows[5].meaning.startswith("little-endian")
    assert rows[7] == ByteRow(7, 0x00, 0x00, "EI_OSABI", "ignored (mask 00)")
    assert rows[16].meaning == "ET_EXEC (2); mask fe also matches ET_DYN (3, PIE)"
    assert rows[17] == ByteRow(17, 0x00, 0xFF, "e_type +1", "(cont.)")
    assert rows[18] == ByteRow(18, 183, 0xFF, "e_machine", "EM_AARCH64 = 183 (aarch64)")


@pytest.mark.parametrize(("name", "state"), [("mips", "clear (o32)"), ("mipsn32el", "set (n32)")])
def test_mips_abi2(name: str, state: str) -> None:
    rows = by_offset(arch_entry(CATALOG[name]))
    assert rows[36].field == "e_flags"
    assert rows[36].meaning == f"EF_MIPS_ABI2 must be {state}"
    assert rows[20].meaning == "EV_CURRENT (1)"


def test_seed_profile_ignores_padding() -> None:
    rows = by_offset(arch_entry(CATALOG["riscv64"], Profile.SEED))
    assert all(rows[i].meaning == "ignored (mask 00)" for i in range(7, 16))


def test_x86_quirks_named() -> None:
    rows = by_offset(arch_entry(CATALOG["i386"]))
    assert rows[5].meaning.endswith("mask fe also matches ELFDATANONE (0)")
    assert rows[6].meaning == "EV_CURRENT (1); mask fe also matches 0"


def test_layout_follows_the_class() -> None:
    wide = Entry("w", "M", "/x", magic=b"\x7fELF\x02" + bytes(51))
    narrow = Entry("n", "M", "/x", magic=b"\x7fELF\x01" + bytes(51))
    assert [by_offset(wide)[i].field for i in (24, 32, 40, 48, 52)] == [
        "e_entry",
        "e_phoff",
        "e_shoff",
        "e_flags",
        "e_ehsize",
    ]
    assert [by_offset(narrow)[i].field for i in (24, 28, 32, 36, 40)] == [
        "e_entry",
        "e_phoff",
        "e_shoff",
        "e_flags",
        "e_ehsize",
    ]


def test_class_not_checked_assumes_32_bit_and_names_every_candidate() -> None:
    rows = explain(Entry("m", "M", "/x", offset=18, magic=b"\x28\x00"))
    assert [r.field for r in rows] == ["e_machine", "e_machine +1"]
    assert rows[0].meaning == "EM_ARM = 40 (arm, armeb)"
    later = by_offset(Entry("f", "M", "/x", offset=36, magic=b"\x01\x02\x03\x04"))
    assert later[36].field == "e_flags"


def test_every_byte_gets_a_row() -> None:
    for arch in CATALOG.values():
        for profile in Profile:
            entry = arch_entry(arch, profile)
            rows = explain(entry)
            assert [r.offset for r in rows] == list(range(len(entry.magic)))
            assert [r.magic for r in rows] == list(entry.magic)
            assert [r.mask for r in rows] == list(entry.mask or b"")
            assert all(r.meaning for r in rows)


def test_non_elf_entries_get_plain_rows() -> None:
    pyc = Entry.parse(r":python3.11:M::\xa7\x0d\x0d\x0a::/usr/bin/python3.11:")
    assert [r.field for r in explain(pyc)] == ["byte 0", "byte 1", "byte 2", "byte 3"]
    assert explain(pyc)[0].meaning == "must match"
    assert explain(Entry.parse(":py:E::py::/usr/bin/python3:")) == []


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("name", sorted(CATALOG))
def test_recognise_catalog(name: str, profile: Profile) -> None:
    assert recognise(arch_entry(CATALOG[name], profile)) is CATALOG[name]


DEBIAN = sorted(BINFMT_D.glob("qemu-*.conf"))


def test_debian_files_are_there() -> None:
    if not DEBIAN:
        missing(f"no {BINFMT_D}/qemu-*.conf: run scripts/test-deps (qemu-user-static)")


@pytest.mark.parametrize("path", DEBIAN, ids=[p.stem for p in DEBIAN])
def test_recognise_debian_files(path: Path) -> None:
    entry = conf_entry(path)
    assert entry.name == path.stem
    assert recognise(entry) is CATALOG[path.stem.removeprefix("qemu-")]


def test_recognise_rejects_non_elf_and_loose_entries() -> None:
    python = BINFMT_D / "python3.11.conf"
    if python.exists():
        assert recognise(conf_entry(python)) is None
    assert recognise(Entry.parse(r":python3.11:M::\xa7\x0d\x0d\x0a::/usr/bin/python3.11:")) is None
    assert recognise(Entry.parse(":WSLInterop:M::MZ::/init:PF")) is None
    assert recognise(Entry.parse(r":elf:M::\x7fELF::/bin/x:")) is None
    assert recognise(Entry.parse(":py:E::py::/usr/bin/python3:")) is None


def test_recognise_prefers_the_tightest_fit() -> None:
    magic, mask = CATALOG["mips"].magic_mask()
    short = Entry("old-mips", "M", "/x", magic=magic[:20], mask=mask[:20])  # no e_flags check
    assert recognise(short) is CATALOG["mips"]


def test_diff() -> None:
    ours = arch_entry(CATALOG["ppc"])
    assert diff(ours, ours) == []
    assert ours.mask is not None
    debian = ours.replace(mask=ours.mask[:7] + b"\xfc" + ours.mask[8:])
    ((a, b),) = diff(ours, debian)
    assert a is not None and b is not None
    assert (a.field, a.meaning, b.mask) == ("EI_OSABI", "ignored (mask 00)", 0xFC)
    assert "also matches" in b.meaning
    magic, mask = CATALOG["mips"].magic_mask()
    short = Entry("old-mips", "M", "/x", magic=magic[:20], mask=mask[:20])
    extra = diff(arch_entry(CATALOG["mips"]), short)
    assert {a.field.split()[0] for a, b in extra if a is not None and b is None} == {
        "e_version",
        "e_flags",
    }
