"""binfmt-support's format (/usr/share/binfmts, /var/lib/binfmts) without a kernel:
round trips through both formats, Debian's own files, errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binfmtctl import binfmt_d, binfmts, plan
from binfmtctl.arch import CATALOG, Profile
from binfmtctl.errors import ConfigError
from conftest import missing

_FLAGS = st.sampled_from(["", "F", "P", "PF", "OC", "POCF", "OCF", "PO"])


@settings(max_examples=60, deadline=None)
@given(arch=st.sampled_from(sorted(CATALOG)), flags=_FLAGS, profile=st.sampled_from(Profile))
def test_binfmt_d_and_binfmt_support_round_trip(arch: str, flags: str, profile: Profile) -> None:
    entry = plan.build_entry(CATALOG[arch], f"/usr/bin/qemu-{arch}-static", flags, profile)
    assert [r.entry for r in binfmt_d.parse_binfmt_d(binfmt_d.format_binfmt_d([entry])).rules] == [
        entry
    ]
    if "O" in entry.flags and "C" not in entry.flags:
        with pytest.raises(ConfigError, match="cannot express the O flag without C"):
            binfmts.format_binfmts(entry)
        return
    parsed = binfmts.parse_binfmts(binfmts.format_binfmts(entry), entry.name)
    assert (parsed.package, parsed.entry) == ("binfmtctl", entry)


def test_binfmt_support_format_reads_debians_own_files() -> None:
    packaged = Path("/usr/share/binfmts/qemu-arm")
    if not packaged.exists():
        missing(f"{packaged} is missing: run scripts/test-deps (installs qemu-user-static)")
    fmt = binfmts.parse_binfmts(packaged.read_bytes(), "qemu-arm", str(packaged))
    assert fmt.package == "qemu-user-static"
    # Debian's binfmt.d file asks for OPF; binfmt-support cannot say O without C.
    shipped = binfmt_d.read_binfmt_d("/usr/lib/binfmt.d/qemu-arm.conf").rules[0].entry
    assert shipped is not None
    assert (shipped.flags, fmt.entry.flags) == ("POF", "PF")
    assert fmt.entry == shipped.replace(flags="PF")


def test_binfmt_support_unknown_key_names_the_line() -> None:
    with pytest.raises(ConfigError, match=r"^f:3: unknown key 'magik'"):
        binfmts.parse_binfmts(b"package p\ninterpreter /bin/x\nmagik MZ\n", "x", "f")
