"""The catalog: aliases, derived magic/mask against QEMU upstream and the distro."""

from __future__ import annotations

import re
import struct
import subprocess
from pathlib import Path

import pytest

from binfmtctl import arch
from binfmtctl.arch import CATALOG, Profile
from binfmtctl.errors import UnknownArchError
from conftest import foreign_busybox, missing

DATA = Path(__file__).parent / "data"
UPSTREAM_34 = [
    "i386",
    "i486",
    "x86_64",
    "alpha",
    "arm",
    "armeb",
    "aarch64",
    "aarch64_be",
    "sparc",
    "sparc32plus",
    "sparc64",
    "ppc",
    "ppc64",
    "ppc64le",
    "m68k",
    "mips",
    "mipsel",
    "mipsn32",
    "mipsn32el",
    "mips64",
    "mips64el",
    "sh4",
    "sh4eb",
    "s390x",
    "hppa",
    "riscv32",
    "riscv64",
    "xtensa",
    "xtensaeb",
    "microblaze",
    "microblazeel",
    "or1k",
    "hexagon",
    "loongarch64",
]


def unescape(text: str) -> bytes:
    out = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode())
    return out


def upstream() -> dict[str, tuple[bytes, bytes]]:
    rows = {}
    for line in (DATA / "qemu-upstream-binfmt.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, magic, mask = line.split()
            rows[name] = (unescape(magic), unescape(mask))
    return rows


def test_catalog_covers_upstream_and_every_debian_emulator() -> None:
    assert set(UPSTREAM_34) <= set(CATALOG)
    assert set(upstream()) == set(UPSTREAM_34)
    shipped = {
        p.name.removeprefix("qemu-").removesuffix("-static")
        for p in Path("/usr/bin").glob("qemu-*-static")
    }
    assert shipped <= set(CATALOG), shipped - set(CATALOG)


@pytest.mark.parametrize("name", UPSTREAM_34)
def test_qemu_profile_equals_upstream(name: str) -> None:
    derived = CATALOG[name].magic_mask(Profile.QEMU)
    if name in arch.UPSTREAM_DEVIATIONS:
        assert derived != upstream()[name]
    else:
        assert derived == upstream()[name]


def test_upstream_microblaze_never_matches_a_big_endian_header() -> None:
    """The one deviation is real: upstream's entry misses every MicroBlaze binary."""
    magic, mask = upstream()["microblaze"]
    ours_magic, ours_mask = CATALOG["microblaze"].magic_mask()
    for e_type in (b"\x00\x02", b"\x00\x03"):
        header = ours_magic[:16] + e_type + ours_magic[18:20]
        assert any((h ^ m) & k for h, m, k in zip(header, magic, mask, strict=False))
        assert not any((h ^ m) & k for h, m, k in zip(header, ours_magic, ours_mask, strict=False))


@pytest.mark.parametrize("name", sorted(CATALOG))
@pytest.mark.parametrize("profile", list(Profile))
def test_every_mask_matches_exec_and_pie_and_identifies_uniquely(
    name: str, profile: Profile
) -> None:
    row = CATALOG[name]
    magic, mask = row.magic_mask(profile)
    assert len(magic) == len(mask) <= 256
    for e_type in (2, 3):
        header = bytearray(magic)
        header[16:18] = e_type.to_bytes(2, "big" if row.big_endian else "little")
        assert all((h ^ m) & k == 0 for h, m, k in zip(header, magic, mask, strict=True))
        assert arch.identify(bytes(header) + bytes(64)) is row
    # No other row's entry claims this arch's executables (o32 vs n32 included).
    sample = bytes(magic) + bytes(64)
    for other in CATALOG.values():
        if other is row:
            continue
        omagic, omask = other.magic_mask(profile)
        hits = all((h ^ m) & k == 0 for h, m, k in zip(sample, omagic, omask, strict=False))
        assert not hits, f"{other.name} would also run {name} programs"


SEED_AARCH64_MASK = unescape(
    r"\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\xfe\xff\xff\xff"
)


def test_seed_profile_is_the_classic_mask() -> None:
    assert CATALOG["aarch64"].magic_mask(Profile.SEED)[1] == SEED_AARCH64_MASK


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("aarch64", "aarch64"),
        ("arm64", "aarch64"),
        ("linux/arm64", "aarch64"),
        ("linux/arm64/v8", "aarch64"),
        ("qemu-aarch64", "aarch64"),
        ("ARM64", "aarch64"),
        ("armhf", "arm"),
        ("armel", "arm"),
        ("linux/arm/v7", "arm"),
        ("armv7l", "arm"),
        ("ppc64el", "ppc64le"),
        ("linux/ppc64le", "ppc64le"),
        ("amd64", "x86_64"),
        ("linux/386", "i386"),
        ("i686", "i386"),
        ("mips64el", "mips64el"),
        ("linux/mips64le", "mips64el"),
        ("mipsle", "mipsel"),
        ("linux/riscv64", "riscv64"),
        ("loong64", "loongarch64"),
        ("linux/loong64", "loongarch64"),
        ("s390x", "s390x"),
        ("powerpc", "ppc"),
        ("parisc", "hppa"),
    ],
)
def test_aliases(word: str, expected: str) -> None:
    assert arch.resolve(word).name == expected


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("arm65", "unknown architecture 'arm65' (did you mean arm64"),
        ("vax", "unknown architecture 'vax'; `binfmtctl arches` lists them"),
    ],
)
def test_unknown_arch_messages(word: str, message: str) -> None:
    with pytest.raises(UnknownArchError) as info:
        arch.resolve(word)
    assert str(info.value).startswith(message)


def debian_entries() -> dict[str, tuple[bytes, bytes]]:
    from binfmtctl.entry import Entry

    rows = {}
    for conf in sorted(Path("/usr/lib/binfmt.d").glob("qemu-*.conf")):
        for line in conf.read_text().splitlines():
            if line.startswith(":"):
                entry = Entry.parse(line)
                assert entry.mask is not None
                rows[entry.name.removeprefix("qemu-")] = (entry.magic, entry.mask)
    if not rows:
        missing("no /usr/lib/binfmt.d/qemu-*.conf: run scripts/test-deps (qemu-user-static)")
    return rows


# The ELF fields where Debian's files (QEMU 7.2) and our qemu profile may differ.
EXPLAINED_FIELDS = {
    "EI_DATA": "upstream masks the low bit on x86 and Alpha; QEMU 7.2 checked all of it",
    "EI_VERSION": "upstream masks the low bit on x86, Alpha and m68k; QEMU 7.2 did not",
    "EI_OSABI": "Debian also requires EI_OSABI 0-3 on some arches; upstream ignores it",
    "EI_ABIVERSION": "Debian masks the low bit of EI_ABIVERSION on MIPS; upstream ignores it",
    "e_version": "upstream checks e_version on 32-bit MIPS entries; QEMU 7.2 did not",
}


def test_debian_files_differ_only_in_explained_fields() -> None:
    from binfmtctl.entry import Entry
    from binfmtctl.explain import diff

    debian = debian_entries()
    seen: set[str] = set()
    for name, (magic, mask) in debian.items():
        theirs = Entry(f"qemu-{name}", "M", "/x", magic=magic, mask=mask)
        ours_magic, ours_mask = CATALOG[name].magic_mask()
        ours = Entry(f"qemu-{name}", "M", "/x", magic=ours_magic, mask=ours_mask)
        fields = {row.field.split()[0] for pair in diff(ours, theirs) for row in pair if row}
        unexplained = fields - set(EXPLAINED_FIELDS)
        assert not unexplained, f"{name}: unexplained difference in {unexplained}"
        seen |= fields
    # Every explanation is needed by at least one of the files on this machine.
    assert seen == set(EXPLAINED_FIELDS), set(EXPLAINED_FIELDS) - seen


@pytest.mark.parametrize(
    ("debian_arch", "name"),
    [
        ("arm64", "aarch64"),
        ("armhf", "arm"),
        ("armel", "arm"),
        ("i386", "i386"),
        ("mips64el", "mips64el"),
        ("mipsel", "mipsel"),
        ("ppc64el", "ppc64le"),
        ("s390x", "s390x"),
    ],
)
def test_real_binaries_matched_by_ours_and_debians(debian_arch: str, name: str) -> None:
    header = foreign_busybox(debian_arch).read_bytes()[:256]
    assert arch.identify(header) is CATALOG[name]
    candidates = [CATALOG[name].magic_mask(p) for p in Profile]
    debian = debian_entries().get(name)
    if debian is not None:
        candidates.append(debian)
    for magic, mask in candidates:
        assert all((h ^ m) & k == 0 for h, m, k in zip(header, magic, mask, strict=False))


# ------------------------------------------------------------------ the catalog, pinned
# What users type and read (`binfmtctl arches`), row by row.

# (name, bits, endian, e_machine, family, emulator, description)
CATALOG_ROWS = [
    ("i386", 32, "little", 3, "i386", "qemu-i386", "Intel 80386 (32-bit x86)"),
    ("i486", 32, "little", 6, "i386", "qemu-i386", "Intel 80486 (EM_486, rare)"),
    ("x86_64", 64, "little", 62, "i386", "qemu-x86_64", "AMD64 / Intel 64"),
    ("alpha", 64, "little", 36902, "alpha", "qemu-alpha", "DEC Alpha"),
    ("arm", 32, "little", 40, "arm", "qemu-arm", "32-bit ARM, little-endian (armel, armhf)"),
    ("armeb", 32, "big", 40, "armeb", "qemu-armeb", "32-bit ARM, big-endian"),
    ("aarch64", 64, "little", 183, "arm", "qemu-aarch64", "64-bit ARM (AArch64)"),
    ("aarch64_be", 64, "big", 183, "armeb", "qemu-aarch64_be", "64-bit ARM, big-endian"),
    ("sparc", 32, "big", 2, "sparc", "qemu-sparc", "SPARC (32-bit, V8)"),
    (
        "sparc32plus",
        32,
        "big",
        18,
        "sparc",
        "qemu-sparc32plus",
        "SPARC V8+ (32-bit code for V9 CPUs)",
    ),
    ("sparc64", 64, "big", 43, "sparc", "qemu-sparc64", "SPARC V9 (64-bit)"),
    ("ppc", 32, "big", 20, "ppc", "qemu-ppc", "32-bit PowerPC"),
    ("ppc64", 64, "big", 21, "ppc", "qemu-ppc64", "64-bit POWER, big-endian"),
    ("ppc64le", 64, "little", 21, "ppcle", "qemu-ppc64le", "64-bit POWER, little-endian"),
    ("m68k", 32, "big", 4, "m68k", "qemu-m68k", "Motorola 68000"),
    ("mips", 32, "big", 8, "mips", "qemu-mips", "MIPS o32, big-endian"),
    ("mipsel", 32, "little", 8, "mips", "qemu-mipsel", "MIPS o32, little-endian"),
    ("mipsn32", 32, "big", 8, "mips", "qemu-mipsn32", "MIPS n32, big-endian"),
    ("mipsn32el", 32, "little", 8, "mips", "qemu-mipsn32el", "MIPS n32, little-endian"),
    ("mips64", 64, "big", 8, "mips", "qemu-mips64", "MIPS n64, big-endian"),
    ("mips64el", 64, "little", 8, "mips", "qemu-mips64el", "MIPS n64, little-endian"),
    ("sh4", 32, "little", 42, "sh4", "qemu-sh4", "SuperH SH-4, little-endian"),
    ("sh4eb", 32, "big", 42, "sh4", "qemu-sh4eb", "SuperH SH-4, big-endian"),
    ("s390x", 64, "big", 22, "s390x", "qemu-s390x", "IBM Z (64-bit)"),
    ("hppa", 32, "big", 15, "hppa", "qemu-hppa", "HP PA-RISC"),
    ("riscv32", 32, "little", 243, "riscv32", "qemu-riscv32", "RISC-V (32-bit)"),
    ("riscv64", 64, "little", 243, "riscv64", "qemu-riscv64", "RISC-V (64-bit)"),
    ("xtensa", 32, "little", 94, "xtensa", "qemu-xtensa", "Tensilica Xtensa, little-endian"),
    ("xtensaeb", 32, "big", 94, "xtensaeb", "qemu-xtensaeb", "Tensilica Xtensa, big-endian"),
    (
        "microblaze",
        32,
        "big",
        47787,
        "microblaze",
        "qemu-microblaze",
        "Xilinx MicroBlaze, big-endian",
    ),
    (
        "microblazeel",
        32,
        "little",
        47787,
        "microblazeel",
        "qemu-microblazeel",
        "Xilinx MicroBlaze, little-endian",
    ),
    ("or1k", 32, "big", 92, "or1k", "qemu-or1k", "OpenRISC 1000"),
    ("hexagon", 32, "little", 164, "hexagon", "qemu-hexagon", "Qualcomm Hexagon"),
    ("loongarch64", 64, "little", 258, "loongarch", "qemu-loongarch64", "LoongArch (64-bit)"),
    ("cris", 32, "little", 76, "cris", "qemu-cris", "Axis ETRAX CRIS"),
    ("nios2", 32, "little", 113, "nios2", "qemu-nios2", "Altera Nios II"),
]
# name: (Debian, OCI platform, uname -m, GOARCH)
NAMES = {
    "i386": (("i386",), ("linux/386",), ("i386", "i586", "i686"), ("386",)),
    "i486": ((), (), ("i486",), ()),
    "x86_64": (("amd64",), ("linux/amd64",), ("x86_64",), ("amd64",)),
    "alpha": (("alpha",), (), ("alpha",), ()),
    "arm": (
        ("armhf", "armel"),
        ("linux/arm/v7", "linux/arm/v6", "linux/arm/v5", "linux/arm"),
        ("armv7l", "armv6l", "armv5tel", "armv5l", "armv8l"),
        ("arm",),
    ),
    "armeb": ((), (), ("armv7b", "armv5teb", "armeb"), ()),
    "aarch64": (("arm64",), ("linux/arm64", "linux/arm64/v8"), ("aarch64", "arm64"), ("arm64",)),
    "aarch64_be": ((), (), ("aarch64_be",), ()),
    "sparc": ((), (), ("sparc",), ()),
    "sparc32plus": ((), (), (), ()),
    "sparc64": (("sparc64",), (), ("sparc64",), ()),
    "ppc": (("powerpc",), ("linux/ppc",), ("ppc",), ()),
    "ppc64": (("ppc64",), ("linux/ppc64",), ("ppc64",), ("ppc64",)),
    "ppc64le": (("ppc64el",), ("linux/ppc64le",), ("ppc64le",), ("ppc64le",)),
    "m68k": (("m68k",), (), ("m68k",), ()),
    "mips": (("mips",), ("linux/mips",), ("mips",), ("mips",)),
    "mipsel": (("mipsel",), ("linux/mipsle",), (), ("mipsle",)),
    "mipsn32": (("mipsn32",), (), (), ()),
    "mipsn32el": (("mipsn32el",), (), (), ()),
    "mips64": (("mips64",), ("linux/mips64",), ("mips64",), ("mips64",)),
    "mips64el": (("mips64el",), ("linux/mips64le",), (), ("mips64le",)),
    "sh4": (("sh4",), (), ("sh4",), ()),
    "sh4eb": ((), (), ("sh4eb",), ()),
    "s390x": (("s390x",), ("linux/s390x",), ("s390x",), ("s390x",)),
    "hppa": (("hppa",), (), ("parisc",), ()),
    "riscv32": ((), ("linux/riscv32",), ("riscv32",), ()),
    "riscv64": (("riscv64",), ("linux/riscv64",), ("riscv64",), ("riscv64",)),
    "xtensa": ((), (), (), ()),
    "xtensaeb": ((), (), (), ()),
    "microblaze": ((), (), ("microblaze",), ()),
    "microblazeel": ((), (), ("microblazeel",), ()),
    "or1k": ((), (), ("or1k",), ()),
    "hexagon": ((), (), (), ()),
    "loongarch64": (("loong64",), ("linux/loong64",), ("loongarch64",), ("loong64",)),
    "cris": ((), (), ("cris",), ()),
    "nios2": ((), (), ("nios2",), ()),
}


@pytest.mark.parametrize("row", CATALOG_ROWS, ids=[r[0] for r in CATALOG_ROWS])
def test_catalog_row(row: tuple[str, int, str, int, str, str, str]) -> None:
    name, bits, endian, machine, family, emulator, description = row
    a = CATALOG[name]
    assert (a.name, a.bits, a.big_endian, a.machine, a.family) == (
        name, bits, endian == "big", machine, family,
    )  # fmt: skip
    assert (a.elf_class, a.data) == (bits // 32, 2 if endian == "big" else 1)
    assert (a.emulator_name, a.entry_name, a.description) == (emulator, f"qemu-{name}", description)
    assert (a.debian, a.oci, a.uname, a.go) == NAMES[name]
    words = [w for group in NAMES[name] for w in group if w != name]
    assert a.aliases == tuple(dict.fromkeys(words))
    for word in (name, f"qemu-{name}", *a.aliases):
        assert arch.resolve(word) is a


def test_catalog_is_exactly_the_pinned_rows() -> None:
    assert [r[0] for r in CATALOG_ROWS] == list(CATALOG)
    assert list(NAMES) == list(CATALOG)
    assert {"cris", "nios2"} == arch.NOT_IN_UPSTREAM
    assert set(arch.UPSTREAM_DEVIATIONS) == {"microblaze"}


def test_debian_names_are_debians() -> None:
    """Every Debian name in the catalog is one dpkg knows (an independent list)."""
    proc = subprocess.run(["dpkg-architecture", "-L"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        missing("dpkg-architecture is missing: run scripts/test-deps (installs dpkg-dev)")
    known = set(proc.stdout.split())
    ours = {word for names in NAMES.values() for word in names[0]}
    assert ours - known == set()


def test_e_flags_offsets() -> None:
    """e_flags follows e_entry, e_phoff and e_shoff: 4 bytes each in ELF32, 8 in ELF64."""
    assert (arch.e_flags_offset(arch.ELFCLASS32), arch.e_flags_offset(arch.ELFCLASS64)) == (
        0x24,
        0x30,
    )


def _header(bits: int, big: bool, machine: int, flags: int = 0, size: int = 64) -> bytes:
    order = ">" if big else "<"
    word = "I" if bits == 32 else "Q"
    ident = b"\x7fELF" + bytes([bits // 32, 2 if big else 1, 1]) + bytes(9)
    rest = struct.pack(f"{order}HHI{word}{word}{word}I", 2, machine, 1, 0, 0, 0, flags)
    return (ident + rest + bytes(64))[:size]


# (id, header, catalog name or None)
IDENTIFY = [
    ("i386", _header(32, False, 3), "i386"),
    ("i386 but not ELF magic", b"\x7fELG" + _header(32, False, 3)[4:], None),
    ("i386 but first byte", b"\x00ELF" + _header(32, False, 3)[4:], None),
    ("i386, 20 bytes", _header(32, False, 3, size=20), "i386"),
    ("i386, 19 bytes", _header(32, False, 3, size=19), None),
    ("i386 machine, big-endian", _header(32, True, 3 << 8), None),
    ("i386 machine, 64-bit", _header(64, False, 3), None),
    ("x86_64", _header(64, False, 62), "x86_64"),
    ("x86_64 machine, 32-bit", _header(32, False, 62), None),
    ("s390x", _header(64, True, 22), "s390x"),
    ("s390x machine read little-endian", _header(64, False, 22 << 8), None),
    ("mips o32", _header(32, True, 8, 0x1007), "mips"),
    ("mips n32", _header(32, True, 8, 0x20), "mipsn32"),
    ("mipsel o32", _header(32, False, 8, 0x70001007), "mipsel"),
    ("mipsel n32", _header(32, False, 8, 0x20), "mipsn32el"),
    ("mips, header ends before e_flags", _header(32, True, 8, size=0x27), None),
    ("mips, header ends with e_flags", _header(32, True, 8, 0x20, size=0x28), "mipsn32"),
    ("mips64 with the ABI2 bit", _header(64, True, 8, 0x20), "mips64"),
    ("mips64el", _header(64, False, 8), "mips64el"),
    ("microblaze (EM 0xbaab) big-endian", _header(32, True, 0xBAAB), "microblaze"),
    ("unknown machine", _header(32, False, 0x1234), None),
    ("empty", b"", None),
]


@pytest.mark.parametrize(("header", "name"), [pytest.param(h, n, id=i) for i, h, n in IDENTIFY])
def test_identify(header: bytes, name: str | None) -> None:
    assert arch.identify(header) is (CATALOG[name] if name else None)


def test_seed_profile_of_a_big_endian_mips_row() -> None:
    """e_flags in big-endian order at 0x24; the seed profile leaves e_version alone."""
    magic, mask = CATALOG["mipsn32"].magic_mask("seed")
    assert magic.hex() == "7f454c46010201" + "00" * 9 + "00020008" + "00" * 16 + "00000020"
    assert mask.hex() == "ff" * 7 + "00" * 9 + "fffeffff" + "00" * 16 + "00000020"
    assert CATALOG["mipsn32"].magic_mask(Profile.SEED) == (magic, mask)
    magic, mask = CATALOG["mipsn32"].magic_mask("qemu")
    assert magic.hex() == "7f454c46010201" + "00" * 9 + "00020008" + "00000001" + "00" * 12 + (
        "00000020"
    )
    assert mask.hex() == "ff" * 7 + "0000" + "ff" * 7 + "fffeffff" + "ff" * 4 + "00" * 12 + (
        "00000020"
    )
    with pytest.raises(ValueError, match="'strict' is not a valid Profile"):
        CATALOG["mips"].magic_mask("strict")


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("arm65", "unknown architecture 'arm65' (did you mean arm64, arm, armv6l?)"),
        ("x86-64", "unknown architecture 'x86-64' (did you mean x86_64?)"),
        ("ppc64e", "unknown architecture 'ppc64e' (did you mean ppc64le, ppc64el, ppc64?)"),
        ("vax", "unknown architecture 'vax'"),
        ("", "unknown architecture ''"),
    ],
)
def test_unknown_arch_exact_messages(word: str, message: str) -> None:
    with pytest.raises(UnknownArchError) as info:
        arch.resolve(word)
    assert str(info.value) == f"{message}; `binfmtctl arches` lists them"
    assert info.value.code == "unknown_arch"


def test_resolve_trims_and_folds_case_and_resolve_all_drops_repeats() -> None:
    assert arch.resolve("  Arm64\n") is CATALOG["aarch64"]
    assert arch.resolve("QEMU-MIPS64EL") is CATALOG["mips64el"]
    got = arch.resolve_all(["arm64", "aarch64", "armhf", "armel", "amd64", "arm"])
    assert [a.name for a in got] == ["aarch64", "arm", "x86_64"]
    assert arch.resolve_all([]) == []
    with pytest.raises(UnknownArchError):
        arch.resolve_all(["arm64", "nonsense"])


def test_alias_index() -> None:
    """Every name, entry name and alias, lower-cased; no two rows share a word."""
    index = arch._alias_index()
    assert all(key == key.lower() for key in index)
    for a in CATALOG.values():
        assert index[a.name.lower()] == a.name
        assert index[a.entry_name.lower()] == a.name
        for alias in a.aliases:
            assert index[alias.lower()] == a.name
    assert index["linux/arm64"] == "aarch64"
    assert len(index) == len(
        {w.lower() for a in CATALOG.values() for w in (a.name, a.entry_name, *a.aliases)}
    )
