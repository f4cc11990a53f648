"""--root confinement, attacked for real: every path below --root is resolved
inside it, as a chroot would see it. Absolute links restart at the root,
``..`` stops there; a write lands inside the root or is refused, and the
"victim" directory outside the root (a temporary one standing for the
host's /etc) never changes. Kernel work happens in a private instance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from binfmtctl import binfmt_d, binfmts, files, rootpath, sandbox
from binfmtctl.errors import ConfigError
from binfmtctl.instance import Instance
from conftest import cli, qemu

TEST_USER = "binfmtctl-test"
UPDATE_BINFMTS = "/usr/sbin/update-binfmts"


def snapshot(directory: Path) -> dict[str, bytes | str]:
    """Every entry below ``directory``: file bytes, or a link's target."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in filenames + dirnames:
            path = Path(dirpath, name)
            rel = str(path.relative_to(directory))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_file():
                out[rel] = path.read_bytes()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture
def victim(world: Path) -> Path:
    """Stands for the host's /etc/binfmt.d: outside the root, with one file of its own."""
    path = world / "victim"
    path.mkdir()
    (path / "keep.conf").write_text("# the host's own file\n")
    return path


def as_user(*argv: str) -> None:
    """Run a command as the unprivileged test user (it builds the attack)."""
    subprocess.run(["runuser", "-u", TEST_USER, "--", *argv], check=True)


def envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def entries(box: sandbox.Sandbox) -> list[str]:
    return box.run(lambda: sorted(Instance().names()))


# -- the lookup itself ---------------------------------------------------------------


def test_lookups_stay_inside_the_root(world: Path, victim: Path) -> None:
    root = world / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("inside")
    links = {
        "etc/abs": str(victim),  # absolute: restarts at the root
        "etc/up": "../../../../../../../../" + str(victim).lstrip("/"),  # .. stops at the root
        "etc/tool": "/usr/bin/tool",
        "etc/loop": "/etc/loop",
        "etc/a": "b",
        "etc/b": "a",
    }
    for rel, target in links.items():
        (root / rel).symlink_to(target)
    table = {
        "/etc/abs/keep.conf": None,  # would be the victim's file on the host
        "/etc/up/keep.conf": None,
        "/etc/tool": f"{root}/usr/bin/tool",
        "/etc/../../../usr/bin/tool": f"{root}/usr/bin/tool",
        "/etc/loop": None,
        "/etc/a": None,
    }
    assert {p: rootpath.resolve_in(str(root), p) for p in table} == table
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        rootpath.read_file(str(root), "/etc/loop")
    with pytest.raises(FileNotFoundError):
        rootpath.read_file(str(root), "/etc/abs/keep.conf")
    assert rootpath.read_file(str(root), "/etc/tool") == b"inside"
    # Made through a link: the directories appear inside the root, never in the victim.
    with rootpath.open_dir(str(root), "/etc/abs/new", create=True):
        pass
    assert (root / str(victim).lstrip("/") / "new").is_dir()
    assert sorted(os.listdir(victim)) == ["keep.conf"]


def test_a_directory_swapped_for_a_link_during_writes_never_leads_out(
    world: Path, victim: Path
) -> None:
    # A real concurrent attacker keeps exchanging root/etc/binfmt.d (a directory) with an
    # absolute link to the victim (renameat2 RENAME_EXCHANGE: the name always exists)
    # while binfmtctl writes: every write lands inside the root -- in the directory,
    # or where the link leads inside the root -- or is refused; never in the victim.
    root = world / "root"
    (root / "etc/binfmt.d").mkdir(parents=True)
    (root / "etc/other").symlink_to(victim)
    before = snapshot(victim)
    flipper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import ctypes, os, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            "a, b = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])\n"
            "while True:\n"
            "    if libc.renameat2(-100, a, -100, b, 2) != 0:\n"
            "        sys.exit(f'renameat2: {os.strerror(ctypes.get_errno())}')\n",
            str(root / "etc/binfmt.d"),
            str(root / "etc/other"),
        ]
    )
    outcomes: dict[str, int] = {}
    try:
        for n in range(300):
            try:
                files.put(
                    str(root / "etc/binfmt.d"),
                    f"x{n}.conf",
                    binfmt_d.HEADER,
                    root=str(root),
                    ours=binfmt_d.marked_binfmt_d,
                )
                outcomes["written"] = outcomes.get("written", 0) + 1
            except ConfigError as err:  # the attacker won every retry of a step
                outcomes[err.message] = outcomes.get(err.message, 0) + 1
        assert flipper.poll() is None, "the attacker stopped early"
    finally:
        flipper.kill()
        flipper.wait()
    assert snapshot(victim) == before
    assert set(outcomes) <= {
        "written",
        f"cannot use {root}/etc/binfmt.d: too many levels of symbolic links inside {root} "
        "(paths there are resolved as a chroot would: an absolute link such as "
        "etc/binfmt.d -> /etc/binfmt.d names itself)",
    }, outcomes
    landed = sum(len([f for f in files if f.endswith(".conf")]) for _, _, files in os.walk(root))
    assert landed == outcomes.get("written", 0) > 0


# -- install / uninstall --persist -----------------------------------------------------


def test_install_persist_follows_an_absolute_link_inside_the_root(
    sb: sandbox.Sandbox, world: Path, victim: Path
) -> None:
    qemu("qemu-aarch64")
    root = world / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/binfmt.d").symlink_to(victim)  # R/etc/binfmt.d -> "/etc/binfmt.d", in effect
    before = snapshot(victim)
    proc = cli(sb, "install", "arm64", "--persist", "--root", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    target = envelope(proc)["data"]["steps"][0]["persist"]["target"]
    assert target == f"{root}/etc/binfmt.d/qemu-aarch64.conf"
    landed = root / str(victim).lstrip("/") / "qemu-aarch64.conf"
    assert binfmt_d.parse_binfmt_d(landed.read_bytes()).ours
    assert snapshot(victim) == before
    # uninstall --persist removes the file it wrote, inside the root, and nothing else.
    proc = cli(sb, "uninstall", "arm64", "--persist", "--root", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [p["action"] for p in envelope(proc)["data"]["persist"]] == ["removed"]
    assert not landed.exists()
    assert snapshot(victim) == before


def test_a_link_that_points_at_itself_through_the_root_is_refused(
    sb: sandbox.Sandbox, world: Path, victim: Path
) -> None:
    # The repro, R/etc/binfmt.d -> /etc/binfmt.d, with the victim standing in for
    # /etc/binfmt.d: R/VICTIM -> VICTIM. Inside the root the link names itself: ELOOP.
    qemu("qemu-aarch64")
    root = world / "root"
    link = root / str(victim).lstrip("/")
    link.parent.mkdir(parents=True)
    link.symlink_to(victim)
    before = snapshot(victim)
    argv = ["install", "arm64", "--persist", "--root", str(root), "--binfmt-d", str(victim)]
    proc = cli(sb, *argv)
    assert proc.returncode == 3, proc.stderr  # registered; not persisted
    assert proc.stderr.splitlines()[-1] == (
        f"binfmtctl: error: cannot use {root}{victim}: too many levels of symbolic links "
        f"inside {root} (paths there are resolved as a chroot would: an absolute link such "
        "as etc/binfmt.d -> /etc/binfmt.d names itself)"
    )
    assert snapshot(victim) == before
    assert entries(sb) == ["qemu-aarch64"]  # the kernel part was done; only persisting failed


def test_relative_links_climbing_out_stop_at_the_root(
    sb: sandbox.Sandbox, world: Path, victim: Path
) -> None:
    qemu("qemu-aarch64")
    root = world / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/binfmt.d").symlink_to("../../../../../../../.." + str(victim))
    before = snapshot(victim)
    proc = cli(sb, "install", "arm64", "--persist", "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    assert (root / str(victim).lstrip("/") / "qemu-aarch64.conf").is_file()
    assert snapshot(victim) == before


def test_links_planted_by_an_ordinary_user_never_lead_out(
    sb: sandbox.Sandbox, world: Path, victim: Path
) -> None:
    # The root's /etc belongs to an ordinary user, who plants the links.
    qemu("qemu-aarch64")
    root = world / "root"
    root.mkdir()
    (root / "etc").mkdir()
    shutil.chown(root / "etc", TEST_USER, TEST_USER)
    as_user("ln", "-s", str(victim), str(root / "etc/binfmt.d"))
    before = snapshot(victim)
    assert cli(sb, "install", "arm64", "--persist", "--root", str(root)).returncode == 0
    assert snapshot(victim) == before
    assert (root / str(victim).lstrip("/") / "qemu-aarch64.conf").is_file()

    # The target file itself a link out of the root, owned by the user: refused, not followed.
    as_user("rm", str(root / "etc/binfmt.d"))
    (root / "etc/binfmt.d").mkdir()  # root's, but anyone may add to it (like /tmp)
    (root / "etc/binfmt.d").chmod(0o1777)
    as_user("ln", "-s", str(victim / "keep.conf"), str(root / "etc/binfmt.d/qemu-arm.conf"))
    qemu("qemu-arm")
    proc = cli(sb, "install", "arm", "--persist", "--root", str(root))
    assert proc.returncode == 3, proc.stderr  # registered; not persisted
    assert proc.stderr.splitlines()[-1] == (
        f"binfmtctl: error: {root}/etc/binfmt.d/qemu-arm.conf is a symbolic link to "
        f"{victim}/keep.conf and seems to belong to a user outside this user namespace "
        "(it owns it; unmapped here, shown as 65534); binfmtctl does not replace it "
        "(pass --overwrite-foreign to replace it anyway)"
    )
    assert snapshot(victim) == before
    assert os.readlink(root / "etc/binfmt.d/qemu-arm.conf") == f"{victim}/keep.conf"
    # Told to overwrite: the link is replaced by a regular file; its target is untouched.
    argv = ["install", "arm", "--persist", "--root", str(root), "--overwrite-foreign"]
    assert cli(sb, *argv).returncode == 0
    assert not (root / "etc/binfmt.d/qemu-arm.conf").is_symlink()
    assert binfmt_d.parse_binfmt_d((root / "etc/binfmt.d/qemu-arm.conf").read_bytes()).ours
    assert snapshot(victim) == before


def test_binfmt_support_database_is_made_inside_the_root_and_uninstall_says_removed(
    sb: sandbox.Sandbox, world: Path, victim: Path
) -> None:
    if not os.access(UPDATE_BINFMTS, os.X_OK):
        pytest.skip(f"{UPDATE_BINFMTS} missing: run scripts/test-deps")
    qemu("qemu-aarch64")
    root = world / "root"
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/binfmts").symlink_to(victim)  # a link out, and nothing at its target
    before = snapshot(victim)
    proc = cli(sb, "install", "arm64", "--persist=binfmt-support", "--root", str(root), "--json")
    assert proc.returncode == 0, proc.stderr
    inside = root / str(victim).lstrip("/") / "qemu-aarch64"
    fmt = binfmts.parse_binfmts_admin(inside.read_bytes(), "qemu-aarch64")
    assert fmt.package == "binfmtctl"
    assert snapshot(victim) == before
    # update-binfmts --remove also unregisters: uninstall reports that as removed.
    proc = cli(sb, "uninstall", "arm64", "--persist=binfmt-support", "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "qemu-aarch64: removed"
    assert not inside.exists()
    assert entries(sb) == []
    # A root with no /var/lib/binfmts at all: made.
    bare = world / "bare"
    bare.mkdir()
    proc = cli(sb, "install", "arm64", "--persist=binfmt-support", "--root", str(bare))
    assert proc.returncode == 0, proc.stderr
    assert (bare / "var/lib/binfmts/qemu-aarch64").is_file()


# -- reads: status --boot and apply ---------------------------------------------------------


def test_status_boot_reads_and_checks_interpreters_inside_the_root(
    sb: sandbox.Sandbox, world: Path, victim: Path
) -> None:
    aarch64 = qemu("qemu-aarch64")
    line = (
        ":qemu-aarch64:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
        f"\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff"
        f"\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:{aarch64}:F\n"
    )
    (victim / "qemu-aarch64.conf").write_text(line)
    root = world / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/binfmt.d").symlink_to(victim)
    boot = envelope(cli(sb, "status", "--boot", "--root", str(root), "--json"))
    assert boot["data"]["config"]["boot"] == []  # the victim's file is not the root's

    # The root's own file, whose F interpreter exists on this system but not in the root.
    (root / "etc/binfmt.d").unlink()
    (root / "etc/binfmt.d").mkdir()
    (root / "etc/binfmt.d/qemu-aarch64.conf").write_text(line)
    proc = cli(sb, "status", "--boot", "--root", str(root))
    assert proc.stdout.splitlines() == [
        f"at boot nothing is registered from {root}/etc/binfmt.d, {root}/run/binfmt.d, "
        f"{root}/usr/local/lib/binfmt.d, {root}/usr/lib/binfmt.d",
    ], proc.stdout
    cfg = envelope(cli(sb, "status", "--boot", "--root", str(root), "--json"))["data"]["config"]
    named = next(n for n in cfg["names"] if n["name"] == "qemu-aarch64")
    assert named["problems"] == [
        f"qemu-aarch64: registers nothing at boot: {root}/etc/binfmt.d/qemu-aarch64.conf:1: "
        f"the interpreter {aarch64} is missing or not executable inside {root}, and with F "
        "the kernel refuses the entry"
    ]
    (root / aarch64.lstrip("/")).parent.mkdir(parents=True)
    shutil.copy2(aarch64, root / aarch64.lstrip("/"))
    cfg = envelope(cli(sb, "status", "--boot", "--root", str(root), "--json"))["data"]["config"]
    assert [b["name"] for b in cfg["boot"]] == ["qemu-aarch64"]


def test_apply_looks_names_up_inside_the_root(
    sb: sandbox.Sandbox, world: Path, victim: Path
) -> None:
    arm = qemu("qemu-arm")
    (victim / "qemu-arm.conf").write_text(f":qemu-arm:E::armx::{arm}:\n")
    root = world / "root"
    (root / "etc/binfmt.d").mkdir(parents=True)
    (root / "etc/binfmt.d/qemu-arm.conf").symlink_to(victim / "qemu-arm.conf")
    proc = cli(sb, "apply", "--root", str(root), "qemu-arm.conf", "--json")
    assert proc.returncode == 1, proc.stderr
    assert envelope(proc)["errors"][0]["message"] == (
        f"cannot read: {root}/etc/binfmt.d/qemu-arm.conf does not exist"
    )
    assert entries(sb) == []
