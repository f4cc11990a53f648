"""binfmt.d (systemd's format) without a kernel: syntax, written files, precedence
between directories and file names, and the boot simulation."""

from __future__ import annotations

from pathlib import Path

import pytest

from binfmtctl import binfmt_d
from binfmtctl.errors import ConfigError
from config_samples import AARCH64, ARM, tree

# -- syntax ---------------------------------------------------------------------


def test_comments_blank_lines_and_whitespace_are_skipped_like_systemd() -> None:
    text = b"# comment\n; other comment\n\n   \n  \t" + ARM.register_bytes() + b"  \r\n"
    conf = binfmt_d.parse_binfmt_d(text, "x.conf")
    assert [(r.line, r.name, r.entry) for r in conf.rules] == [(5, "qemu-arm", ARM)]
    assert not conf.ours


@pytest.mark.parametrize(
    ("line", "name", "field", "reason"),
    [
        (b":a:M::MZ::/bin/true", "a", "interpreter", "missing delimiter ':' after the interpreter"),
        (b":a:X::MZ::/bin/true:", "a", "type", "must be M (magic) or E (extension), not 'X'"),
        (b":a:M::\\x4::/bin/x:", "a", "magic", "\\x must be followed by two hex digits"),
        (
            b":a:M::MZ:\\xff:/bin/x:",
            "a",
            "mask",
            "the mask is 1 bytes but the magic is 2; they must be the same length",
        ),
        (
            b":a:M::MZ::/bin/x:Q",
            "a",
            "flags",
            "unexpected 'Q'; flags are P, O, C, F and then at most one newline",
        ),
        (b"::M::MZ::/bin/x:", None, "name", "the name is empty"),
    ],
)
def test_bad_lines_report_file_line_and_field(
    line: bytes, name: str | None, field: str, reason: str
) -> None:
    conf = binfmt_d.parse_binfmt_d(
        b"# header\n" + ARM.register_bytes() + b"\n" + line + b"\n", "f.conf"
    )
    good, bad = conf.rules
    assert good.entry == ARM
    assert (bad.line, bad.name, bad.entry) == (3, name, None)
    assert bad.error is not None
    assert (bad.error.field, bad.error.reason) == (field, reason)
    with pytest.raises(ConfigError) as caught:
        binfmt_d.check_binfmt_d(conf)
    assert caught.value.message.startswith(f"f.conf:3: invalid {field}: {reason}")


def test_written_files_carry_the_owner_header_and_round_trip() -> None:
    data = binfmt_d.format_binfmt_d([ARM, AARCH64])
    assert data.startswith(b"# Written by binfmtctl; `binfmtctl uninstall --persist` removes it.\n")
    conf = binfmt_d.parse_binfmt_d(data)
    assert conf.ours
    assert [r.entry for r in conf.rules] == [ARM, AARCH64]


def test_entries_that_cannot_be_one_binfmt_d_line_are_refused() -> None:
    newline = ARM.replace(interpreter="/opt/odd\ndir/qemu-arm")  # the kernel accepts it
    with pytest.raises(ConfigError, match=r"cannot be written as one binfmt\.d line"):
        binfmt_d.format_binfmt_d([newline])


# -- precedence and the boot simulation ---------------------------------------------


def test_same_file_name_in_etc_overrides_usr_lib_and_files_apply_by_name(tmp_path: Path) -> None:
    usr_arm = ARM.replace(interpreter="/usr/libexec/qemu-binfmt/arm-binfmt-P", flags="OPF")
    layout = tree(
        tmp_path,
        {
            "usr/lib/binfmt.d/qemu-arm.conf": str(usr_arm) + "\n",
            "etc/binfmt.d/qemu-arm.conf": binfmt_d.format_binfmt_d([ARM]),
            "run/binfmt.d/a.conf": str(AARCH64) + "\n",
            "usr/local/lib/binfmt.d/.hidden.conf": str(AARCH64) + "\n",
            "usr/local/lib/binfmt.d/notes.txt": "x",
        },
    )
    cands = binfmt_d.list_binfmt_d(layout.binfmt_d)
    etc, usr = (
        f"{tmp_path}/etc/binfmt.d/qemu-arm.conf",
        f"{tmp_path}/usr/lib/binfmt.d/qemu-arm.conf",
    )
    assert [(c.name, c.path, c.overridden_by) for c in cands] == [
        ("a.conf", f"{tmp_path}/run/binfmt.d/a.conf", None),
        ("qemu-arm.conf", etc, None),
        ("qemu-arm.conf", usr, etc),
    ]
    state = binfmt_d.simulate(binfmt_d.boot_files(layout.binfmt_d), check_interpreter=False)
    assert {n: r.entry for n, r in state.entries.items()} == {
        "qemu-aarch64": AARCH64,
        "qemu-arm": ARM,
    }
    assert state.order_newest_first() == ["qemu-arm", "qemu-aarch64"]


def test_the_later_file_name_wins_and_a_failing_later_line_leaves_nothing(tmp_path: Path) -> None:
    # The classic recipe: qemu-arm-static.conf sorts before the package's qemu-arm.conf.
    usr_arm = ARM.replace(interpreter="/usr/libexec/qemu-binfmt/arm-binfmt-P", flags="OPF")
    layout = tree(
        tmp_path,
        {
            "etc/binfmt.d/qemu-arm-static.conf": str(ARM) + "\n",
            "usr/lib/binfmt.d/qemu-arm.conf": str(usr_arm) + "\n",
            "usr/lib/binfmt.d/zz-broken.conf": ":qemu-aarch64:M::\\x7f::/x\n",
            "usr/lib/binfmt.d/yy.conf": str(AARCH64) + "\n",
        },
    )
    state = binfmt_d.simulate(binfmt_d.boot_files(layout.binfmt_d), check_interpreter=False)
    assert state.entries["qemu-arm"].entry == usr_arm
    assert state.entries["qemu-arm"].path.endswith("/usr/lib/binfmt.d/qemu-arm.conf")
    assert "qemu-aarch64" not in state.entries  # yy registered it, zz removed it and failed
    assert state.dropped["qemu-aarch64"].line == 1
    assert binfmt_d.boot_problem(state.dropped["qemu-aarch64"]).endswith(
        "zz-broken.conf:1: missing delimiter ':' after the interpreter (in the interpreter)"
    )
