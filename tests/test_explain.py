"""explain / recognise / diff over catalog entries and the distro's real binfmt.d files."""

from __future__ import annotations

from pathlib import Path

import pytest

from binfmtctl.arch import CATALOG, Arch, Profile
from binfmtctl.entry import Entry
from binfmtctl.explain import ByteRow, _misfit, diff, explain, recognise, sample_header
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
    # EM_MIPS little-endian alone: o32/n32 (32-bit) and n64 (64-bit) programs, two identities.
    assert recognise(Entry("o", "M", "/x", offset=18, magic=b"\x08\x00")) is None


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


# --------------------------------------------------------------------------- every row, exactly

#: 32-bit ARM with EABI5 hard-float e_flags checked except the low byte, then e_ehsize.
FLAGS = Entry(
    "f",
    "M",
    "/x",
    magic=b"\x7fELF\x01\x01\x01" + bytes(9) + b"\x02\x00\x28\x00\x01\x00\x00\x00" + bytes(12)
    + b"\x00\x04\x00\x05\xaa\xbb",
    mask=b"\xff" * 7 + bytes(9) + b"\xfe\xff\xff\xff" + b"\xff" * 4 + bytes(12)
    + b"\x00\xff\xff\xff\xff\xff",
)  # fmt: skip
#: Values no catalog entry has: class 5, encoding 7, versions 2, GNU OSABI, an unknown machine.
ODD = Entry(
    "c",
    "M",
    "/x",
    magic=b"\x7fELF\x05\x07\x02\x03\x01\x04" + bytes(6) + b"\x01\x00\x34\x12\x02\x00\x00\x00",
    mask=b"\xff" * 9 + b"\xf0" + b"\xff" * 7 + b"\x00" + b"\xff" * 6,
)

# (id, entry, every row as 'offset magic/mask field: meaning')
FULL = [
    (
        "mipsn32",
        arch_entry(CATALOG["mipsn32"]),
        """
0 7f/ff EI_MAG0: ELF magic 0x7f
1 45/ff EI_MAG1: ELF magic 'E'
2 4c/ff EI_MAG2: ELF magic 'L'
3 46/ff EI_MAG3: ELF magic 'F'
4 01/ff EI_CLASS: ELFCLASS32
5 02/ff EI_DATA: big-endian (ELFDATA2MSB)
6 01/ff EI_VERSION: EV_CURRENT (1)
7 00/00 EI_OSABI: ignored (mask 00)
8 00/00 EI_ABIVERSION: ignored (mask 00)
9 00/ff EI_PAD: padding, must be 00
10 00/ff EI_PAD: padding, must be 00
11 00/ff EI_PAD: padding, must be 00
12 00/ff EI_PAD: padding, must be 00
13 00/ff EI_PAD: padding, must be 00
14 00/ff EI_PAD: padding, must be 00
15 00/ff EI_PAD: padding, must be 00
16 00/ff e_type: ET_EXEC (2); mask fe also matches ET_DYN (3, PIE)
17 02/fe e_type +1: (cont.)
18 00/ff e_machine: EM_MIPS = 8 (mips, mipsn32)
19 08/ff e_machine +1: (cont.)
20 00/ff e_version: EV_CURRENT (1)
21 00/ff e_version +1: (cont.)
22 00/ff e_version +2: (cont.)
23 01/ff e_version +3: (cont.)
24 00/00 e_entry: ignored (mask 00)
25 00/00 e_entry +1: (cont.)
26 00/00 e_entry +2: (cont.)
27 00/00 e_entry +3: (cont.)
28 00/00 e_phoff: ignored (mask 00)
29 00/00 e_phoff +1: (cont.)
30 00/00 e_phoff +2: (cont.)
31 00/00 e_phoff +3: (cont.)
32 00/00 e_shoff: ignored (mask 00)
33 00/00 e_shoff +1: (cont.)
34 00/00 e_shoff +2: (cont.)
35 00/00 e_shoff +3: (cont.)
36 00/00 e_flags: EF_MIPS_ABI2 must be set (n32)
37 00/00 e_flags +1: (cont.)
38 00/00 e_flags +2: (cont.)
39 20/20 e_flags +3: (cont.)
""",
    ),
    (
        "arm e_flags",
        FLAGS,
        """
0 7f/ff EI_MAG0: ELF magic 0x7f
1 45/ff EI_MAG1: ELF magic 'E'
2 4c/ff EI_MAG2: ELF magic 'L'
3 46/ff EI_MAG3: ELF magic 'F'
4 01/ff EI_CLASS: ELFCLASS32
5 01/ff EI_DATA: little-endian (ELFDATA2LSB)
6 01/ff EI_VERSION: EV_CURRENT (1)
7 00/00 EI_OSABI: ignored (mask 00)
8 00/00 EI_ABIVERSION: ignored (mask 00)
9 00/00 EI_PAD: ignored (mask 00)
10 00/00 EI_PAD: ignored (mask 00)
11 00/00 EI_PAD: ignored (mask 00)
12 00/00 EI_PAD: ignored (mask 00)
13 00/00 EI_PAD: ignored (mask 00)
14 00/00 EI_PAD: ignored (mask 00)
15 00/00 EI_PAD: ignored (mask 00)
16 02/fe e_type: ET_EXEC (2); mask fe also matches ET_DYN (3, PIE)
17 00/ff e_type +1: (cont.)
18 28/ff e_machine: EM_ARM = 40 (arm)
19 00/ff e_machine +1: (cont.)
20 01/ff e_version: EV_CURRENT (1)
21 00/ff e_version +1: (cont.)
22 00/ff e_version +2: (cont.)
23 00/ff e_version +3: (cont.)
24 00/00 e_entry: ignored (mask 00)
25 00/00 e_entry +1: (cont.)
26 00/00 e_entry +2: (cont.)
27 00/00 e_entry +3: (cont.)
28 00/00 e_phoff: ignored (mask 00)
29 00/00 e_phoff +1: (cont.)
30 00/00 e_phoff +2: (cont.)
31 00/00 e_phoff +3: (cont.)
32 00/00 e_shoff: ignored (mask 00)
33 00/00 e_shoff +1: (cont.)
34 00/00 e_shoff +2: (cont.)
35 00/00 e_shoff +3: (cont.)
36 00/00 e_flags: flags 0x5000400 (bits 0xffffff00 checked)
37 04/ff e_flags +1: (cont.)
38 00/ff e_flags +2: (cont.)
39 05/ff e_flags +3: (cont.)
40 aa/ff e_ehsize: 0xbbaa
41 bb/ff e_ehsize +1: (cont.)
""",
    ),
    (
        "odd values",
        ODD,
        """
0 7f/ff EI_MAG0: ELF magic 0x7f
1 45/ff EI_MAG1: ELF magic 'E'
2 4c/ff EI_MAG2: ELF magic 'L'
3 46/ff EI_MAG3: ELF magic 'F'
4 05/ff EI_CLASS: class 5
5 07/ff EI_DATA: encoding 7
6 02/ff EI_VERSION: version 2
7 03/ff EI_OSABI: ELFOSABI_GNU (Linux) (3)
8 01/ff EI_ABIVERSION: ABI version 1
9 04/f0 EI_PAD: padding, must be 04; only bits 0xf0 are checked
10 00/ff EI_PAD: padding, must be 00
11 00/ff EI_PAD: padding, must be 00
12 00/ff EI_PAD: padding, must be 00
13 00/ff EI_PAD: padding, must be 00
14 00/ff EI_PAD: padding, must be 00
15 00/ff EI_PAD: padding, must be 00
16 01/ff e_type: ET_REL (1); only bits 0xff are checked
17 00/00 e_type +1: (cont.)
18 34/ff e_machine: EM_? = 4660
19 12/ff e_machine +1: (cont.)
20 02/ff e_version: version 2
21 00/ff e_version +1: (cont.)
22 00/ff e_version +2: (cont.)
23 00/ff e_version +3: (cont.)
""",
    ),
    (
        "part of e_type",
        Entry("p", "M", "/x", offset=17, magic=b"\x00\x28\x00"),
        """
17 00/ff e_type +1: only part of e_type (1 of 2 bytes) is checked
18 28/ff e_machine: EM_ARM = 40 (arm, armeb)
19 00/ff e_machine +1: (cont.)
""",
    ),
    (
        "not ELF",
        Entry("n", "M", "/x", offset=2, magic=b"MZ\x90\x00", mask=b"\xff\x0f\x00\xff"),
        """
2 4d/ff byte 2: must match
3 5a/0f byte 3: bits 0f checked
4 90/00 byte 4: ignored (mask 00)
5 00/ff byte 5: must match
""",
    ),
    (
        "magic half checked",
        Entry("m", "M", "/x", magic=b"\x7fE\x00", mask=b"\xff\xff\x00"),
        """
0 7f/ff EI_MAG0: ELF magic 0x7f
1 45/ff EI_MAG1: ELF magic 'E'
2 00/00 EI_MAG2: ignored (mask 00)
""",
    ),
    (
        "magic byte 0 wrong",
        Entry("w", "M", "/x", magic=b"\x7eELF\x01"),
        """
0 7e/ff byte 0: must match
1 45/ff byte 1: must match
2 4c/ff byte 2: must match
3 46/ff byte 3: must match
4 01/ff byte 4: must match
""",
    ),
    (
        "past the header",
        Entry("h", "M", "/x", offset=50, magic=b"\x01\x02\x03\x04\x05"),
        """
50 01/ff e_shstrndx: 0x201
51 02/ff e_shstrndx +1: (cont.)
52 03/ff past the ELF header: 0x3
53 04/ff past the ELF header: 0x4
54 05/ff past the ELF header: 0x5
""",
    ),
    (
        "low bits left open",
        Entry(
            "v",
            "M",
            "/x",
            magic=b"\x7fELF\x02\x01\x00\x00\x00\x04\x00",
            mask=b"\xff\xff\xff\xff\xfe\xff\xfe\xff\xfe\xfe\xf8",
        ),
        """
0 7f/ff EI_MAG0: ELF magic 0x7f
1 45/ff EI_MAG1: ELF magic 'E'
2 4c/ff EI_MAG2: ELF magic 'L'
3 46/ff EI_MAG3: ELF magic 'F'
4 02/fe EI_CLASS: ELFCLASS64; mask fe also matches 3
5 01/ff EI_DATA: little-endian (ELFDATA2LSB)
6 00/fe EI_VERSION: version 0; mask fe also matches EV_CURRENT (1)
7 00/ff EI_OSABI: ELFOSABI_SYSV (0)
8 00/fe EI_ABIVERSION: ABI version 0; mask fe also matches 1
9 04/fe EI_PAD: padding, must be 04; mask fe also matches 5
10 00/f8 EI_PAD: padding, must be 00; only bits 0xf8 are checked
""",
    ),
    (
        "ELF magic byte not printable, partly checked",
        Entry("m", "M", "/x", magic=b"\x7f\x20!F", mask=b"\xff\x80\x80\xff"),
        """
0 7f/ff EI_MAG0: ELF magic 0x7f
1 20/80 EI_MAG1: ELF magic 0x20
2 21/80 EI_MAG2: ELF magic '!'
3 46/ff EI_MAG3: ELF magic 'F'
""",
    ),
    (
        "unknown e_type",
        Entry("t", "M", "/x", offset=16, magic=b"\x00\xfe"),
        """
16 00/ff e_type: type (65024)
17 fe/ff e_type +1: (cont.)
""",
    ),
    (
        "section header fields",
        Entry("s", "M", "/x", offset=42, magic=b"\x20\x00\x01\x00\x02\x00\x03\x00\x04\x00"),
        """
42 20/ff e_phentsize: 0x20
43 00/ff e_phentsize +1: (cont.)
44 01/ff e_phnum: 0x1
45 00/ff e_phnum +1: (cont.)
46 02/ff e_shentsize: 0x2
47 00/ff e_shentsize +1: (cont.)
48 03/ff e_shnum: 0x3
49 00/ff e_shnum +1: (cont.)
50 04/ff e_shstrndx: 0x4
51 00/ff e_shstrndx +1: (cont.)
""",
    ),
]

# (arch, the rows that start a field, past the ELF magic and padding)
FIRST_ROWS = [
    (
        "i386",
        """
4 01/ff EI_CLASS: ELFCLASS32
5 01/fe EI_DATA: little-endian (ELFDATA2LSB); mask fe also matches ELFDATANONE (0)
6 01/fe EI_VERSION: EV_CURRENT (1); mask fe also matches 0
7 00/00 EI_OSABI: ignored (mask 00)
8 00/ff EI_ABIVERSION: ABI version 0
16 02/fe e_type: ET_EXEC (2); mask fe also matches ET_DYN (3, PIE)
18 03/ff e_machine: EM_386 = 3 (i386)
""",
    ),
    (
        "ppc64le",
        """
4 02/ff EI_CLASS: ELFCLASS64
5 01/ff EI_DATA: little-endian (ELFDATA2LSB)
6 01/ff EI_VERSION: EV_CURRENT (1)
7 00/00 EI_OSABI: ignored (mask 00)
8 00/ff EI_ABIVERSION: ABI version 0
16 02/fe e_type: ET_EXEC (2); mask fe also matches ET_DYN (3, PIE)
18 15/ff e_machine: e_machine 21 (bits 0x00ff checked)
""",
    ),
    (
        "m68k",
        """
4 01/ff EI_CLASS: ELFCLASS32
5 02/ff EI_DATA: big-endian (ELFDATA2MSB)
6 01/fe EI_VERSION: EV_CURRENT (1); mask fe also matches 0
7 00/00 EI_OSABI: ignored (mask 00)
8 00/ff EI_ABIVERSION: ABI version 0
16 00/ff e_type: ET_EXEC (2); mask fe also matches ET_DYN (3, PIE)
18 00/ff e_machine: EM_68K = 4 (m68k)
""",
    ),
    (
        "aarch64",
        """
4 02/ff EI_CLASS: ELFCLASS64
5 01/ff EI_DATA: little-endian (ELFDATA2LSB)
6 01/ff EI_VERSION: EV_CURRENT (1)
7 00/00 EI_OSABI: ignored (mask 00)
8 00/ff EI_ABIVERSION: ABI version 0
16 02/fe e_type: ET_EXEC (2); mask fe also matches ET_DYN (3, PIE)
18 b7/ff e_machine: EM_AARCH64 = 183 (aarch64)
""",
    ),
    (
        "s390x",
        """
4 02/ff EI_CLASS: ELFCLASS64
5 02/ff EI_DATA: big-endian (ELFDATA2MSB)
6 01/ff EI_VERSION: EV_CURRENT (1)
7 00/00 EI_OSABI: ignored (mask 00)
8 00/ff EI_ABIVERSION: ABI version 0
16 00/ff e_type: ET_EXEC (2); mask fe also matches ET_DYN (3, PIE)
18 00/ff e_machine: EM_S390 = 22 (s390x)
""",
    ),
]


def render(rows: list[ByteRow]) -> str:
    return "".join(f"{r.offset} {r.magic:02x}/{r.mask:02x} {r.field}: {r.meaning}\n" for r in rows)


@pytest.mark.parametrize(("entry", "expected"), [pytest.param(e, x, id=i) for i, e, x in FULL])
def test_explain_every_row(entry: Entry, expected: str) -> None:
    assert "\n" + render(explain(entry)) == expected


@pytest.mark.parametrize(("name", "expected"), FIRST_ROWS)
def test_explain_catalog_field_rows(name: str, expected: str) -> None:
    rows = explain(arch_entry(CATALOG[name]))
    starts = [r for r in rows if r.meaning not in ("(cont.)", "padding, must be 00")]
    assert "\n" + render([r for r in starts if not r.field.startswith("EI_MAG")]) == expected


#: aarch64's entry, and e_version checked too.
AARCH64_24 = Entry(
    "l",
    "M",
    "/x",
    magic=CATALOG["aarch64"].magic_mask()[0] + b"\x01\x00\x00\x00",
    mask=CATALOG["aarch64"].magic_mask()[1] + b"\xff" * 4,
)
#: A MIPS entry without e_version and e_flags: matches o32 and n32 programs alike.
MIPS_20 = Entry(
    "m",
    "M",
    "/x",
    magic=CATALOG["mips"].magic_mask()[0][:20],
    mask=CATALOG["mips"].magic_mask()[1][:20],
)


@pytest.mark.parametrize(
    ("entry", "name", "misfit"),
    [
        (arch_entry(CATALOG["aarch64"]), "aarch64", 0),
        (arch_entry(CATALOG["aarch64"], Profile.SEED), "aarch64", 8 * 8),  # bytes 8..15 unchecked
        (arch_entry(CATALOG["aarch64"]), "arm", 2 + 6),  # class 02^01, machine b7^28
        (arch_entry(CATALOG["mips"]), "mipsn32", 1),  # the ABI2 bit
        (MIPS_20, "mips", 32 + 1),  # e_version and the ABI2 bit not checked
        (AARCH64_24, "aarch64", 32),  # checks 4 bytes past the arch's own entry
        (MIPS_20, "mipsn32", 32 + 1),
        # mipsel's entry checks 176 bits (e_flags only its ABI2 bit); 16 of them the same
        (Entry("o", "M", "/x", offset=18, magic=b"\x08\x00"), "mipsel", 176 - 16),
    ],
)
def test_misfit_counts_differing_checked_bits(entry: Entry, name: str, misfit: int) -> None:
    """The tie-breaker of recognise(): bits checked by one entry only, or checked differently."""
    assert _misfit(entry, CATALOG[name]) == misfit


def test_sample_header_is_the_qemu_magic_zero_filled() -> None:
    assert sample_header(CATALOG["s390x"]) == bytes.fromhex(
        "7f454c46020201" + "00" * 9 + "00020016"
    ) + bytes(236)
    mips = sample_header(CATALOG["mipsn32el"])
    assert len(mips) == 256
    assert mips[:40].hex() == "7f454c46010101" + "00" * 9 + "02000800" + "01000000" + (
        "00" * 12 + "20000000"
    )
    assert mips[40:] == bytes(216)


def test_diff_rows_exactly() -> None:
    ours = arch_entry(CATALOG["ppc"])
    assert ours.mask is not None
    debian = ours.replace(mask=ours.mask[:7] + b"\xfc" + ours.mask[8:])
    assert diff(ours, debian) == [
        (
            ByteRow(7, 0, 0, "EI_OSABI", "ignored (mask 00)"),
            ByteRow(
                7,
                0,
                0xFC,
                "EI_OSABI",
                "ELFOSABI_SYSV (0); mask fc also matches ELFOSABI_HPUX (1), "
                "ELFOSABI_NETBSD (2), ELFOSABI_GNU (Linux) (3)",
            ),
        )
    ]
    # Bytes one entry does not cover count as ignored: only checked ones differ.
    longer = Entry("l", "M", "/x", magic=ours.magic + b"\x01\x00", mask=ours.mask + b"\xff\x00")
    assert diff(ours, longer) == [
        (
            None,
            ByteRow(20, 1, 0xFF, "e_version", "only part of e_version (2 of 4 bytes) is checked"),
        )
    ]
    assert diff(longer, ours) == [
        (
            ByteRow(20, 1, 0xFF, "e_version", "only part of e_version (2 of 4 bytes) is checked"),
            None,
        )
    ]
    same_value = ours.replace(
        magic=ours.magic[:9] + b"\x55" + ours.magic[10:],
        mask=ours.mask[:9] + b"\x00" + ours.mask[10:],
    )
    assert [(a.offset, b.offset) for a, b in diff(ours, same_value) if a and b] == [(9, 9)]


def test_loongarch_osabi_and_a_two_byte_machine() -> None:
    rows = by_offset(arch_entry(CATALOG["loongarch64"]))
    assert rows[7] == ByteRow(
        7,
        0,
        0xFC,
        "EI_OSABI",
        "ELFOSABI_SYSV (0); mask fc also matches ELFOSABI_HPUX (1), ELFOSABI_NETBSD (2), "
        "ELFOSABI_GNU (Linux) (3)",
    )
    assert rows[18] == ByteRow(18, 2, 0xFF, "e_machine", "EM_LOONGARCH = 258 (loongarch64)")
    assert rows[19] == ByteRow(19, 1, 0xFF, "e_machine +1", "(cont.)")


def _arm_flags(
    machine: int, flags: int, flags_mask: int, tail: bytes = b"", tail_mask: bytes = b""
) -> Entry:
    """A 32-bit little-endian header up to e_flags (and ``tail`` after it)."""
    magic = b"\x7fELF\x01\x01\x01" + bytes(9) + b"\x02\x00" + machine.to_bytes(2, "little")
    magic += b"\x01" + bytes(15) + flags.to_bytes(4, "little") + tail
    mask = b"\xff" * 7 + bytes(9) + b"\xfe" + b"\xff" * 7 + bytes(12)
    return Entry(
        "f", "M", "/x", magic=magic, mask=mask + flags_mask.to_bytes(4, "little") + tail_mask
    )


@pytest.mark.parametrize(
    ("entry", "flags", "after"),
    [
        (_arm_flags(40, 0, 0x20), "flags 0x0 (bits 0x20 checked)", None),  # not MIPS: no ABI2
        (_arm_flags(40, 0x5000400, 0xFFFFFFFF), "flags 0x5000400", None),
        (_arm_flags(8, 0x20, 0xFFFFFFFF), "flags 0x20", None),  # MIPS, more than ABI2 checked
        (
            _arm_flags(40, 0, 0xFFFFFFFF, b"\x34\x00", b"\xff\x00"),
            "flags 0x0",
            "0x34 (bits 0xff checked)",
        ),
    ],
)
def test_e_flags_and_later_fields(entry: Entry, flags: str, after: str | None) -> None:
    rows = by_offset(entry)
    assert rows[36].meaning == flags
    assert (rows[40].meaning if 40 in rows else None) == after


def test_recognise_needs_offset_0_for_an_exact_match() -> None:
    magic, mask = CATALOG["aarch64"].magic_mask()
    assert recognise(Entry("s", "M", "/x", offset=1, magic=magic, mask=mask)) is None


def test_two_open_bits_across_both_bytes_of_a_field() -> None:
    entry = Entry(
        "t",
        "M",
        "/x",
        magic=b"\x7fELF\x01\x01" + bytes(10) + b"\x02\x00",
        mask=b"\xff" * 4 + bytes(12) + b"\xfe\xfe",
    )
    assert by_offset(entry)[16].meaning == (
        "ET_EXEC (2); mask fefe also matches ET_DYN (3, PIE), 258, 259"
    )


def test_a_class_byte_not_fully_checked_leaves_the_class_open() -> None:
    """EI_CLASS 2 with mask fe also matches class 3: machines of both classes are named."""
    entry = Entry(
        "c",
        "M",
        "/x",
        magic=b"\x7fELF\x02\x01" + bytes(12) + b"\x08\x00",
        mask=b"\xff" * 4 + b"\xfe\xff" + bytes(12) + b"\xff\xff",
    )
    rows = by_offset(entry)
    assert rows[4].meaning == "ELFCLASS64; mask fe also matches 3"
    assert rows[18].meaning == "EM_MIPS = 8 (mipsel, mipsn32el, mips64el)"
