"""Configuration without a kernel: binfmt.d and binfmt-support formats, precedence,
the boot simulation, and atomic writes under SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binfmtctl import binfmt_d, binfmts, files, persist, plan
from binfmtctl.arch import CATALOG, Profile
from binfmtctl.errors import ConfigError, RefusedError
from conftest import missing

ARM = plan.build_entry(CATALOG["arm"], "/usr/bin/qemu-arm-static", "F", Profile.QEMU)
AARCH64 = plan.build_entry(CATALOG["aarch64"], "/usr/bin/qemu-aarch64-static", "F", Profile.QEMU)


def tree(tmp_path: Path, files: dict[str, str | bytes]) -> persist.Layout:
    """A configuration root holding ``files`` (paths relative to the root)."""
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return persist.Layout.under(str(tmp_path))


# -- binfmt.d syntax ------------------------------------------------------------


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


def test_save_warns_when_another_file_wins_and_refuses_foreign_files(tmp_path: Path) -> None:
    usr_arm = ARM.replace(interpreter="/usr/libexec/qemu-binfmt/arm-binfmt-P", flags="OPF")
    layout = tree(tmp_path, {"usr/lib/binfmt.d/zz-qemu.conf": str(usr_arm) + "\n"})
    etc = layout.admin_binfmt_d
    saved = persist.save_systemd(ARM, etc, layout.binfmt_d)
    assert (saved.action, saved.target) == ("written", f"{etc}/qemu-arm.conf")
    assert saved.warnings == (
        f"at boot {tmp_path}/usr/lib/binfmt.d/zz-qemu.conf also registers qemu-arm and wins: "
        "it is applied after qemu-arm.conf (files are applied in order of file name)",
    )
    assert persist.save_systemd(ARM, etc, layout.binfmt_d).action == "unchanged"
    Path(etc, "qemu-aarch64.conf").write_text(str(AARCH64) + "\n")
    foreign = f"{etc}/qemu-aarch64.conf was not written by binfmtctl and seems to belong to"
    with pytest.raises(RefusedError) as refused:
        persist.save_systemd(AARCH64, etc, layout.binfmt_d)
    assert refused.value.message == (
        f"{foreign} an administrator; binfmtctl does not replace it "
        "(pass --overwrite-foreign to replace it anyway)"
    )
    with pytest.raises(RefusedError) as refused:
        persist.forget_systemd("qemu-aarch64", etc)
    assert refused.value.message == (
        f"{foreign} an administrator; binfmtctl does not remove it "
        "(pass --overwrite-foreign to remove it anyway)"
    )
    assert Path(etc, "qemu-aarch64.conf").read_text() == str(AARCH64) + "\n"
    assert persist.our_conf_files(etc) == ["qemu-arm"]
    assert persist.forget_systemd("qemu-arm", etc).action == "removed"
    assert not Path(etc, "qemu-arm.conf").exists()
    elsewhere = persist.save_systemd(ARM, str(tmp_path / "other"), layout.binfmt_d)
    assert elsewhere.warnings[0].startswith(f"{tmp_path}/other is not read by systemd-binfmt")


# -- atomic writes -------------------------------------------------------------------

WRITER = """
import sys
from binfmtctl import files
files.write_atomic(sys.argv[1], bytes([int(sys.argv[2])]) * int(sys.argv[3]))
"""


def test_a_writer_killed_at_any_point_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    size = 16 << 20
    target = tmp_path / "qemu-arm.conf"
    target.write_bytes(b"A" * size)
    for attempt in range(24):
        old = target.read_bytes()[:1]
        new = b"A" if old == b"B" else b"B"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(new[0]), str(size)])
        time.sleep((attempt % 12) * 0.01)  # varied kill points, not a timing assertion
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = target.read_bytes()
        assert len(data) == size
        assert data in (old * size, new * size)
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != target.name]
        assert all(n.startswith(".qemu-arm.conf.") and n.endswith(".tmp") for n in leftovers)
        assert binfmt_d.list_binfmt_d([str(tmp_path)])[0].path == str(target)
    # Which of the two each kill leaves varies by design; a writer left alone writes.
    old = target.read_bytes()[:1]
    new = b"A" if old == b"B" else b"B"
    subprocess.run([sys.executable, "-c", WRITER, str(target), str(new[0]), str(size)], check=True)
    assert target.read_bytes() == new * size
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [target.name]


DIE_AT = """
import os, signal, sys
from binfmtctl import files
point, nth = sys.argv[4], int(sys.argv[5])
real, calls = getattr(os, point), []
def die(*args, **kwargs):
    calls.append(1)
    if len(calls) == nth:
        if point == "write":  # half of the data reaches the temporary file
            real(args[0], args[1][: len(args[1]) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(os, point, die)
files.write_atomic(sys.argv[1], bytes([int(sys.argv[2])]) * int(sys.argv[3]))
"""


@pytest.mark.parametrize(
    ("point", "nth", "expect"),
    [("write", 1, b"A"), ("fsync", 1, b"A"), ("replace", 1, b"A"), ("fsync", 2, b"B")],
)
def test_a_writer_killed_at_each_step_leaves_a_whole_file(
    tmp_path: Path, point: str, nth: int, expect: bytes
) -> None:
    # Killed mid-write, at the file's fsync, before the rename: the old file; killed
    # at the directory's fsync (after the rename): the new one. Never a mix.
    size = 4 << 20
    target = tmp_path / "qemu-arm.conf"
    target.write_bytes(b"A" * size)
    argv = [str(target), str(ord("B")), str(size), point, str(nth)]
    proc = subprocess.run([sys.executable, "-c", DIE_AT, *argv], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == expect * size


def test_write_atomic_failure_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"cannot write {tmp_path}/missing/x.conf"):
        files.write_atomic(tmp_path / "missing" / "x.conf", b"x")
    assert os.listdir(tmp_path) == []
