"""The catalog: aliases, derived magic/mask against QEMU upstream and the distro."""

from __future__ import annotations

import re
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
