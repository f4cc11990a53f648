"""Other people's files and files that are not files, attacked for real.

One ownership rule: binfmtctl replaces or removes only files that carry its
marker (or already hold exactly what it would write); anything else is
refused naming who seems to own it, unless --overwrite-foreign. Readers take
only regular files (and links to them): a FIFO never blocks, and one
unreadable, dangling or looping file is a reported problem, not the end of
the command. Every command here runs with a timeout, so a hang fails the test
instead of hanging the suite. Kernel work happens in a private instance.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from binfmtctl import binfmt_d, binfmts, boot_report, files, persist, rootpath, sandbox
from binfmtctl.errors import ForeignFileError
from binfmtctl.instance import Instance
from binfmtctl.sandbox import MS_BIND
from conftest import ROOT, qemu

TEST_USER = "binfmtctl-test"
TIMEOUT = 120  # seconds; only so that a hang fails instead of blocking the suite
ADMIN_LINE = ":qemu-aarch64:M::\\x7fELF\\x02::/opt/mine/qemu-aarch64:F\n"


def run(box: sandbox.Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``binfmtctl`` inside the sandbox, with a timeout."""
    return box.run(
        subprocess.run,
        [sys.executable, "-m", "binfmtctl", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )


def as_test_user(*args: str) -> subprocess.CompletedProcess[str]:
    """The real ``binfmtctl`` as the unprivileged user (system python3, this source tree)."""
    user = ["runuser", "-u", TEST_USER, "--", "env", f"PYTHONPATH={ROOT / 'src'}"]
    return subprocess.run(
        [*user, "/usr/bin/python3", "-m", "binfmtctl", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=TIMEOUT,
    )


def envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def last_error(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stderr.splitlines()[-1]


def aarch64_line() -> str:
    """Our own register line for arm64, as install writes it."""
    proc = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "export", "arm64"],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
    )
    return proc.stdout


# -- the ownership rule: export -o -------------------------------------------------------


def test_export_refuses_an_administrators_file_and_overwrites_only_when_told(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    qemu("qemu-aarch64")
    admin = tmp_path / "qemu-aarch64.conf"
    admin.write_text(ADMIN_LINE)
    proc = run(sb, "export", "arm64", "--format", "systemd", "-o", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert last_error(proc) == (
        f"binfmtctl: error: {admin} was not written by binfmtctl and seems to belong to an "
        "administrator; binfmtctl does not replace it (pass --overwrite-foreign to replace "
        "it anyway)"
    )
    assert admin.read_text() == ADMIN_LINE
    assert sorted(os.listdir(tmp_path)) == ["qemu-aarch64.conf"]  # no temporary left over
    argv = ["export", "arm64", "--format", "systemd", "-o", str(tmp_path), "--overwrite-foreign"]
    assert run(sb, *argv).returncode == 0
    assert binfmt_d.read_binfmt_d(admin).ours
    # Ours now: exporting again (even something else into it) needs no override.
    assert run(sb, "export", "arm64", "--format", "systemd", "-o", str(tmp_path)).returncode == 0


def test_export_refuses_a_packages_binfmt_support_file(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    qemu("qemu-aarch64")
    packaged = tmp_path / "qemu-aarch64"
    text = "package qemu-user-static\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n"
    packaged.write_text(text)
    proc = run(sb, "export", "arm64", "--format", "binfmt-support", "-o", str(tmp_path))
    assert proc.returncode == 1, proc.stderr
    assert last_error(proc) == (
        f"binfmtctl: error: {packaged} was not written by binfmtctl and seems to belong to "
        "package qemu-user-static (its binfmt-support 'package' line); binfmtctl does not "
        "replace it (pass --overwrite-foreign to replace it anyway)"
    )
    assert packaged.read_text() == text


def test_export_names_the_dpkg_package_that_ships_a_file(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    # /usr/lib/binfmt.d/qemu-aarch64.conf as dpkg's real file list names it; a copy is bound
    # over that directory inside the sandbox, so the real packaged file is never at risk.
    listed = "/var/lib/dpkg/info/qemu-user-static.list"
    shipped = "/usr/lib/binfmt.d/qemu-aarch64.conf"
    if not os.path.exists(listed) or shipped not in Path(listed).read_text().splitlines():
        pytest.skip(f"{shipped} is not shipped by qemu-user-static here: run scripts/test-deps")
    qemu("qemu-aarch64")
    copy = tmp_path / "binfmt.d"
    shutil.copytree("/usr/lib/binfmt.d", copy)
    before = (copy / "qemu-aarch64.conf").read_bytes()

    def export() -> subprocess.CompletedProcess[str]:
        sandbox.mount(str(copy), "/usr/lib/binfmt.d", None, MS_BIND)
        argv = ["export", "arm64", "--format", "systemd", "-o", "/usr/lib/binfmt.d"]
        return subprocess.run(
            [sys.executable, "-m", "binfmtctl", *argv],
            capture_output=True,
            text=True,
            check=False,
            timeout=TIMEOUT,
        )

    proc = sb.run(export)
    assert proc.returncode == 1, proc.stderr
    assert last_error(proc) == (
        f"binfmtctl: error: {shipped} was not written by binfmtctl and seems to belong to "
        "package qemu-user-static (dpkg lists it); binfmtctl does not replace it (pass "
        "--overwrite-foreign to replace it anyway)"
    )
    assert (copy / "qemu-aarch64.conf").read_bytes() == before


def test_export_never_follows_a_users_link_at_the_target(sb: sandbox.Sandbox, world: Path) -> None:
    qemu("qemu-aarch64")
    out, victim = world / "out", world / "victim.conf"
    victim.write_text("# someone else's\n")
    out.mkdir(mode=0o1777)
    out.chmod(0o1777)
    subprocess.run(
        ["runuser", "-u", TEST_USER, "--", "ln", "-s", str(victim), str(out / "qemu-aarch64")],
        check=True,
    )
    proc = run(sb, "export", "arm64", "-o", str(out))
    assert proc.returncode == 1, proc.stderr
    assert last_error(proc) == (
        f"binfmtctl: error: {out}/qemu-aarch64 is a symbolic link to {victim} and seems to "
        "belong to a user outside this user namespace (it owns it; unmapped here, shown as "
        "65534); binfmtctl does not replace it (pass --overwrite-foreign to replace it anyway)"
    )
    assert victim.read_text() == "# someone else's\n"
    assert os.readlink(out / "qemu-aarch64") == str(victim)


def test_register_and_json_files_are_replaced_only_when_identical(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    # These formats cannot carry a marker: the same bytes are "ours", anything else is not.
    qemu("qemu-aarch64")
    assert run(sb, "export", "arm64", "--format", "json", "-o", str(tmp_path)).returncode == 0
    again = run(sb, "export", "arm64", "--format", "json", "-o", str(tmp_path))
    assert again.returncode == 0, again.stderr
    (tmp_path / "qemu-aarch64").write_text(ADMIN_LINE)
    proc = run(sb, "export", "arm64", "--format", "register", "-o", str(tmp_path))
    assert proc.returncode == 1
    assert (tmp_path / "qemu-aarch64").read_text() == ADMIN_LINE


def test_export_makes_a_missing_directory_and_reports_a_partial_refusal(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    qemu("qemu-aarch64")
    qemu("qemu-arm")
    out = tmp_path / "new" / "nested"
    proc = run(sb, "export", "arm64", "--format", "systemd", "-o", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    assert envelope(proc)["data"]["files"] == [f"{out}/qemu-aarch64.conf"]
    (out / "qemu-arm.conf").write_text("# mine\n")
    proc = run(sb, "export", "arm64", "armhf", "--format", "systemd", "-o", str(out), "--json")
    assert proc.returncode == 3, proc.stderr
    data = envelope(proc)
    assert data["data"]["files"] == [f"{out}/qemu-aarch64.conf"]
    assert [(e["code"], e["path"]) for e in data["errors"]] == [
        ("foreign_file", f"{out}/qemu-arm.conf")
    ]
    assert (out / "qemu-arm.conf").read_text() == "# mine\n"


# -- the ownership rule: uninstall --persist -----------------------------------------------


def test_uninstall_persist_refuses_an_administrators_file(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    qemu("qemu-aarch64")
    etc = tmp_path / "etc/binfmt.d"
    etc.mkdir(parents=True)
    (etc / "qemu-aarch64.conf").write_text(ADMIN_LINE)
    root = ["--root", str(tmp_path)]
    assert run(sb, "install", "arm64").returncode == 0
    proc = run(sb, "uninstall", "arm64", "--persist", *root, "--json")
    assert proc.returncode == 3, proc.stderr  # the kernel entry went; the file stayed
    data = envelope(proc)
    assert [r["action"] for r in data["data"]["removed"]] == ["removed"]
    assert [e["message"] for e in data["errors"]] == [
        f"{etc}/qemu-aarch64.conf was not written by binfmtctl and seems to belong to an "
        "administrator; binfmtctl does not remove it (pass --overwrite-foreign to remove it "
        "anyway)"
    ]
    assert (etc / "qemu-aarch64.conf").read_text() == ADMIN_LINE
    proc = run(sb, "uninstall", "arm64", "--persist", "--overwrite-foreign", *root)
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(etc) == []


# -- never block, never stop at one bad file --------------------------------------------------


def hostile_tree(root: Path, good: str) -> Path:
    """root/etc/binfmt.d with a good file and every kind of bad one."""
    etc = root / "etc/binfmt.d"
    etc.mkdir(parents=True)
    (etc / "z-good.conf").write_text(good)
    os.mkfifo(etc / "qemu-aarch64.conf")
    (etc / "dangling.conf").symlink_to("/nowhere/at/all.conf")
    (etc / "loop.conf").symlink_to("loop.conf")
    os.mkfifo(root / "fifo")
    (etc / "to-fifo.conf").symlink_to("/fifo")  # a link to a FIFO, inside the root
    return etc


def problems_for(etc: Path) -> list[str]:
    fifo = (
        "not a regular file but a FIFO; configuration files must be regular files "
        "(or symlinks to them)"
    )
    return [
        f"cannot read: {etc}/dangling.conf does not exist",
        f"cannot read: Too many levels of symbolic links ({etc}/loop.conf)",
        f"cannot read {etc}/qemu-aarch64.conf: {fifo}",
        f"cannot read {etc}/to-fifo.conf: {fifo}",
    ]


def test_status_boot_reports_fifos_and_broken_links_and_goes_on(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    etc = hostile_tree(tmp_path, ":good:E::good::/bin/true:\n")
    proc = run(sb, "status", "--boot", "--root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[3:] == problems_for(etc), proc.stdout
    assert lines[2].startswith("good   -      /bin/true    "), proc.stdout
    cfg = envelope(run(sb, "status", "--boot", "--root", str(tmp_path), "--json"))["data"]
    assert [b["name"] for b in cfg["config"]["boot"]] == ["good"]
    problems = [f["problem"] for f in cfg["config"]["files"] if f["problem"]]
    assert problems == problems_for(etc)
    # Plain status too: the whole report, with the same problems, exit 0.
    proc = run(sb, "status", "--root", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert all(f"  {p}" in proc.stdout.splitlines() for p in problems_for(etc)), proc.stdout


def test_apply_registers_the_good_file_and_fails_each_bad_one(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    hostile_tree(tmp_path, ":good:E::good::/bin/true:\n")
    proc = run(sb, "apply", "--root", str(tmp_path), "--json")
    assert proc.returncode == 3, proc.stderr
    lines = envelope(proc)["data"]["lines"]
    assert [(Path(r["path"]).name, r["action"]) for r in lines] == [
        ("dangling.conf", "failed"),
        ("loop.conf", "failed"),
        ("qemu-aarch64.conf", "failed"),
        ("to-fifo.conf", "failed"),
        ("z-good.conf", "registered"),
    ]
    assert sb.run(lambda: sorted(Instance().names())) == ["good"]
    # A FIFO named on the command line: refused at once too.
    proc = run(sb, "apply", str(tmp_path / "etc/binfmt.d/qemu-aarch64.conf"))
    assert proc.returncode == 1


def test_install_persist_next_to_a_fifo_does_not_block(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    qemu("qemu-aarch64")
    qemu("qemu-arm")
    etc = hostile_tree(tmp_path, ":good:E::good::/bin/true:\n")
    root = ["--root", str(tmp_path)]
    # The FIFO sits where the file would go: refused as not ours, never opened.
    proc = run(sb, "install", "arm64", "--persist", *root)
    assert proc.returncode == 3, proc.stderr  # registered; not persisted
    assert last_error(proc) == (
        f"binfmtctl: error: {etc}/qemu-aarch64.conf is not a regular file but a FIFO and "
        "seems to belong to an administrator; binfmtctl does not replace it (pass "
        "--overwrite-foreign to replace it anyway)"
    )
    # Another name: written, though the boot check reads past the FIFO and the bad links.
    proc = run(sb, "install", "arm", "--persist", *root)
    assert proc.returncode == 0, proc.stderr
    assert binfmt_d.read_binfmt_d(etc / "qemu-arm.conf").ours
    # --all: both kernel entries go; our file goes; the FIFO is refused, not opened.
    proc = run(sb, "uninstall", "--all", "--persist", *root)
    assert proc.returncode == 3, proc.stderr
    assert last_error(proc) == (
        f"binfmtctl: error: {etc}/qemu-aarch64.conf is not a regular file but a FIFO and "
        "seems to belong to an administrator; binfmtctl does not remove it (pass "
        "--overwrite-foreign to remove it anyway)"
    )
    assert sb.run(lambda: sorted(Instance().names())) == []
    assert sorted(os.listdir(etc)) == [
        "dangling.conf",
        "loop.conf",
        "qemu-aarch64.conf",
        "to-fifo.conf",
        "z-good.conf",
    ]


def test_an_unreadable_file_is_one_problem_for_an_ordinary_user(world: Path) -> None:
    etc = world / "etc/binfmt.d"
    etc.mkdir(parents=True)
    (etc / "a-secret.conf").write_text(":secret:E::s::/bin/true:\n")
    (etc / "a-secret.conf").chmod(0o000)
    (etc / "b-good.conf").write_text(":good:E::good::/bin/true:\n")
    os.mkfifo(etc / "c-fifo.conf")
    (etc / "c-fifo.conf").chmod(0o666)
    nowhere = world / "no-binfmt_misc"
    nowhere.mkdir()
    proc = as_test_user(
        "status", "--boot", "--root", str(world), "--mountpoint", str(nowhere), "--json"
    )
    assert proc.returncode == 0, proc.stderr
    cfg = envelope(proc)["data"]["config"]
    assert [b["name"] for b in cfg["boot"]] == ["good"]
    assert [f["problem"] for f in cfg["files"] if f["problem"]] == [
        f"cannot read: Permission denied ({etc}/a-secret.conf); run as root, or choose "
        "another directory (--binfmt-d, --root, -o)",
        f"cannot read {etc}/c-fifo.conf: not a regular file but a FIFO; configuration files "
        "must be regular files (or symlinks to them)",
    ]


def test_binfmt_support_database_entry_of_a_package_is_refused_then_taken_over(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    if not os.access("/usr/sbin/update-binfmts", os.X_OK):
        pytest.skip("/usr/sbin/update-binfmts missing: run scripts/test-deps")
    arm = qemu("qemu-arm")
    admindir = tmp_path / "var/lib/binfmts"
    admindir.mkdir(parents=True)
    theirs = "qemu-user-static\nmagic\n0\nMZ\n\n/usr/bin/qemu-arm-static\n\nno\nno\nno\n"
    (admindir / "qemu-arm").write_text(theirs)
    root = ["--persist=binfmt-support", "--root", str(tmp_path)]
    proc = run(sb, "install", "arm", *root)
    assert proc.returncode == 3, proc.stderr  # registered; not persisted
    assert last_error(proc) == (
        f"binfmtctl: error: {admindir}/qemu-arm is not binfmtctl's binfmt-support format and "
        "seems to belong to package qemu-user-static (binfmt-support's database); binfmtctl "
        "does not replace it (pass --overwrite-foreign to replace it anyway)"
    )
    assert (admindir / "qemu-arm").read_text() == theirs
    proc = run(sb, "install", "arm", *root, "--overwrite-foreign")
    assert proc.returncode == 0, proc.stderr
    fmt = binfmts.parse_binfmts_admin((admindir / "qemu-arm").read_bytes(), "qemu-arm")
    assert (fmt.package, fmt.entry.interpreter) == ("binfmtctl", arm)


def test_an_unlistable_directory_is_a_problem_for_status_and_stops_apply(world: Path) -> None:
    etc = world / "etc/binfmt.d"
    etc.mkdir(parents=True)
    (etc / "a.conf").write_text(":good:E::good::/bin/true:\n")
    etc.chmod(0o000)
    admindir = world / "var/lib/binfmts"
    admindir.mkdir(parents=True)
    os.mkfifo(admindir / "qemu-arm")
    nowhere = world / "no-binfmt_misc"
    nowhere.mkdir()
    common = ["--root", str(world), "--mountpoint", str(nowhere)]
    denied = (
        f"cannot list: Permission denied ({etc}); run as root, or choose another directory "
        "(--binfmt-d, --root, -o)"
    )
    proc = as_test_user("status", "--boot", *common)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        denied,
        f"cannot read {admindir}/qemu-arm: not a regular file but a FIFO; configuration "
        "files must be regular files (or symlinks to them)",
    ]
    # apply cannot know what boot would register: it stops before touching anything.
    proc = as_test_user("apply", "--dry-run", *common)
    assert (proc.returncode, proc.stderr) == (4, f"binfmtctl: error: {denied}\n")


def test_a_huge_file_at_the_target_is_judged_from_its_start(tmp_path: Path) -> None:
    # A sparse 8 GiB file where binfmtctl would write: refused after reading its start only.
    huge = tmp_path / "qemu-arm.conf"
    with open(huge, "wb") as fh:
        fh.truncate(8 << 30)
    with pytest.raises(ForeignFileError):
        files.put(str(tmp_path), "qemu-arm.conf", binfmt_d.HEADER, ours=binfmt_d.marked_binfmt_d)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(rootpath.read_at(fd, "qemu-arm.conf", str(huge), limit=100)) == 100
        have = files.examine(
            fd, "qemu-arm.conf", str(huge), content=binfmt_d.HEADER, ours=binfmt_d.marked_binfmt_d
        )
    finally:
        os.close(fd)
    assert (have.state, have.what) == ("foreign", "was not written by binfmtctl")
    assert huge.stat().st_size == 8 << 30


def test_a_fifo_where_a_directory_should_be_is_skipped_not_opened(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    qemu("qemu-aarch64")
    (tmp_path / "etc").mkdir()
    os.mkfifo(tmp_path / "etc/binfmt.d")
    (tmp_path / "usr/lib/binfmt.d").mkdir(parents=True)
    (tmp_path / "usr/lib/binfmt.d/good.conf").write_text(":good:E::good::/bin/true:\n")
    proc = run(sb, "status", "--boot", "--root", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [b["name"] for b in envelope(proc)["data"]["config"]["boot"]] == ["good"]
    proc = run(sb, "install", "arm64", "--persist", "--root", str(tmp_path))
    assert proc.returncode == 3, proc.stderr  # registered; not persisted
    assert last_error(proc) == (
        f"binfmtctl: error: cannot write into: Not a directory ({tmp_path}/etc/binfmt.d)"
    )


def test_a_link_to_dev_null_masks_a_file_even_in_a_root_without_dev(tmp_path: Path) -> None:
    (tmp_path / "etc/binfmt.d").mkdir(parents=True)
    (tmp_path / "usr/lib/binfmt.d").mkdir(parents=True)
    (tmp_path / "usr/lib/binfmt.d/qemu-arm.conf").write_text(":qemu-arm:E::arm::/bin/true:\n")
    (tmp_path / "etc/binfmt.d/qemu-arm.conf").symlink_to("/dev/null")
    layout = persist.Layout.under(str(tmp_path))
    report = boot_report.describe(layout, (), check_interpreter=False).to_dict()
    assert report["boot"] == []
    listed = report["files"]
    assert isinstance(listed, list)
    assert [(f["path"], f["problem"]) for f in listed] == [
        (f"{tmp_path}/etc/binfmt.d/qemu-arm.conf", None),
        (f"{tmp_path}/usr/lib/binfmt.d/qemu-arm.conf", None),
    ]
