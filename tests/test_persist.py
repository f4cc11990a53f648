"""Persistence against the real consumers, in a private binfmt_misc instance:
systemd's systemd-binfmt, binfmt-support's update-binfmts, and our own
install --persist / status / apply on a temporary configuration tree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from binfmtctl import binfmt_d, binfmts, sandbox
from binfmtctl.entry import Handler
from binfmtctl.instance import Instance
from binfmtctl.sandbox import MS_BIND
from conftest import cli, foreign_busybox, missing, not_applicable, qemu, run_in

SYSTEMD_BINFMT = "/usr/lib/systemd/systemd-binfmt"
UPDATE_BINFMTS = "/usr/sbin/update-binfmts"
PACKAGED_ARM = (
    ":qemu-arm:M::\\x7f\\x45\\x4c\\x46\\x01\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
    "\\x00\\x00\\x02\\x00\\x28\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff"
    "\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/libexec/qemu-binfmt/arm-binfmt-P:OPF\n"
)


def need(tool: str) -> str:
    if not os.access(tool, os.X_OK):
        missing(f"{tool} is missing: run scripts/test-deps")
    return tool


def provide(root: Path, path: str) -> None:
    """Copy this system's ``path`` into ``root``: with --root, interpreters are looked up there."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(path), target)


def envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def entries(box: sandbox.Sandbox) -> dict[str, Handler]:
    return box.run(lambda: {h.name: h for h in Instance().entries()})


def test_systemd_binfmt_registers_our_files_exactly_as_install_does(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    need(SYSTEMD_BINFMT)
    qemu("qemu-aarch64")
    qemu("qemu-arm")
    proc = cli(sb, "export", "arm64", "armhf", "--format", "systemd", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["qemu-aarch64.conf", "qemu-arm.conf"]
    assert cli(sb, "install", "arm64", "armhf").returncode == 0
    installed = entries(sb)
    assert cli(sb, "uninstall", "arm64", "armhf").returncode == 0
    assert entries(sb) == {}
    for name in ("qemu-aarch64.conf", "qemu-arm.conf"):
        ran = run_in(sb, SYSTEMD_BINFMT, str(tmp_path / name))
        assert ran.returncode == 0, ran.stderr
    assert entries(sb) == installed
    assert run_in(sb, str(foreign_busybox("arm64")), "uname", "-m").stdout == "aarch64\n"


def test_update_binfmts_imports_our_format_files_and_finds_our_interpreter(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    need(UPDATE_BINFMTS)
    interpreter = qemu("qemu-aarch64")
    busybox = foreign_busybox("arm64")
    importdir, admindir = tmp_path / "import", tmp_path / "admin"
    importdir.mkdir()
    admindir.mkdir()
    proc = cli(sb, "export", "arm64", "--format", "binfmt-support", "-o", str(importdir))
    assert proc.returncode == 0, proc.stderr
    assert cli(sb, "install", "arm64").returncode == 0
    installed = entries(sb)
    assert cli(sb, "uninstall", "arm64").returncode == 0
    common = ["--admindir", str(admindir), "--importdir", str(importdir)]
    ran = run_in(sb, UPDATE_BINFMTS, *common, "--import", "qemu-aarch64")
    assert ran.returncode == 0, ran.stderr
    assert entries(sb) == installed  # imported and enabled in the kernel
    found = run_in(sb, UPDATE_BINFMTS, "--admindir", str(admindir), "--find", str(busybox))
    assert (found.returncode, found.stdout) == (0, f"{interpreter}\n")
    assert run_in(sb, str(busybox), "uname", "-m").stdout == "aarch64\n"


def test_install_persist_binfmt_support_goes_through_its_database(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    need(UPDATE_BINFMTS)
    interpreter = qemu("qemu-aarch64")
    admindir = tmp_path / "var/lib/binfmts"
    admindir.mkdir(parents=True)
    (admindir / "qemu-arm").write_text(
        "qemu-user-static\nmagic\n0\nMZ\n\n/usr/bin/qemu-arm-static\n\nno\nno\nno\n"
    )
    root = ["--root", str(tmp_path)]
    proc = cli(sb, "install", "arm64", "--persist=binfmt-support", *root, "--json")
    assert proc.returncode == 0, proc.stderr
    step = envelope(proc)["data"]["steps"][0]
    assert step["persist"]["action"] == "written"
    fmt = binfmts.parse_binfmts_admin((admindir / "qemu-aarch64").read_bytes(), "qemu-aarch64")
    assert (fmt.package, fmt.entry) == ("binfmtctl", entries(sb)["qemu-aarch64"].entry)
    found = run_in(
        sb, UPDATE_BINFMTS, "--admindir", str(admindir), "--find", str(foreign_busybox("arm64"))
    )
    assert found.stdout == f"{interpreter}\n"
    # Another package's format is refused (left alone); ours is removed through update-binfmts.
    proc = cli(sb, "uninstall", "arm64", "arm", "--persist=binfmt-support", *root, "--json")
    assert proc.returncode == 3, proc.stderr
    data = envelope(proc)
    persisted = {p["name"]: p["action"] for p in data["data"]["persist"]}
    assert persisted == {"qemu-aarch64": "removed"}
    assert [e["message"] for e in data["errors"]] == [
        f"{admindir}/qemu-arm is not binfmtctl's binfmt-support format and seems to belong "
        "to package qemu-user-static (binfmt-support's database); binfmtctl does not remove "
        "it (pass --overwrite-foreign to remove it anyway)"
    ]
    assert sorted(os.listdir(admindir)) == ["qemu-arm"]
    assert entries(sb) == {}


def test_install_persist_overrides_the_packaged_file_and_status_explains_it(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    arm = qemu("qemu-arm")
    packaged = tmp_path / "usr/lib/binfmt.d/qemu-arm.conf"
    packaged.parent.mkdir(parents=True)
    packaged.write_text(PACKAGED_ARM)
    root = ["--root", str(tmp_path)]
    provide(tmp_path, "/usr/libexec/qemu-binfmt/arm-binfmt-P")  # F: must exist inside the root
    provide(tmp_path, arm)

    # Before: the packaged file wins at boot, and the running entry differs from it.
    assert cli(sb, "install", "arm").returncode == 0
    status = cli(sb, "status", *root)
    assert (
        f"qemu-arm: running entry uses {arm} with PF, but at boot {packaged} will register "
        "/usr/libexec/qemu-binfmt/arm-binfmt-P with POF"
    ) in status.stdout, status.stdout + status.stderr

    # install --persist writes /etc/binfmt.d/qemu-arm.conf, which overrides it.
    proc = cli(sb, "install", "arm", "--persist", *root, "--json")
    assert proc.returncode == 0, proc.stderr
    ours = tmp_path / "etc/binfmt.d/qemu-arm.conf"
    assert envelope(proc)["data"]["steps"][0]["persist"]["target"] == str(ours)
    assert binfmt_d.read_binfmt_d(ours).ours
    cfg = envelope(cli(sb, "status", *root, "--json"))["data"]["config"]
    arm_cfg = next(n for n in cfg["names"] if n["name"] == "qemu-arm")
    assert [(f["path"], f["role"]) for f in arm_cfg["files"]] == [
        (str(ours), "wins at boot"),
        (str(packaged), f"ignored: {ours} has the same file name"),
    ]
    assert (arm_cfg["differs"], arm_cfg["problems"]) == (False, [])
    boot = envelope(cli(sb, "status", "--boot", *root, "--json"))["data"]["config"]["boot"]
    assert [(b["name"], b["path"], b["entry"]["interpreter"]) for b in boot] == [
        ("qemu-arm", str(ours), arm)
    ]

    # The classic recipe's file sorts before the packaged one and silently loses.
    ours.unlink()
    (tmp_path / "etc/binfmt.d/qemu-arm-static.conf").write_text(
        PACKAGED_ARM.replace("/usr/libexec/qemu-binfmt/arm-binfmt-P:OPF", f"{arm}:F")
    )
    status = cli(sb, "status", *root)
    assert (
        f"qemu-arm: defined in 2 files; {packaged} wins at boot (files are applied in "
        "order of file name, the last one wins)"
    ) in status.stdout
    # uninstall --persist removes only files binfmtctl wrote.
    assert cli(sb, "install", "arm", "--persist", *root).returncode == 0
    proc = cli(sb, "uninstall", "arm", "--persist", *root, "--json")
    assert proc.returncode == 0, proc.stderr
    assert [p["action"] for p in envelope(proc)["data"]["persist"]] == ["removed"]
    assert sorted(os.listdir(tmp_path / "etc/binfmt.d")) == ["qemu-arm-static.conf"]
    (tmp_path / "etc/binfmt.d/qemu-arm.conf").write_text(PACKAGED_ARM)
    proc = cli(sb, "install", "arm", "--persist", *root)
    assert proc.returncode == 3  # registered in the kernel, persistence refused: partly done
    assert (
        f"{tmp_path}/etc/binfmt.d/qemu-arm.conf was not written by binfmtctl and seems to "
        "belong to an administrator; binfmtctl does not replace it (pass --overwrite-foreign "
        "to replace it anyway)"
    ) in proc.stderr
    assert (tmp_path / "etc/binfmt.d/qemu-arm.conf").read_text() == PACKAGED_ARM
    proc = cli(sb, "install", "arm", "--persist", "--overwrite-foreign", *root)
    assert proc.returncode == 0, proc.stderr
    assert binfmt_d.read_binfmt_d(tmp_path / "etc/binfmt.d/qemu-arm.conf").ours


def test_apply_touches_only_the_names_in_its_files_and_reports_each_line(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    arm = qemu("qemu-arm")
    foreign = ":WSLInterop:M::MZ::/bin/true:"
    sb.run(lambda: Path("/proc/sys/fs/binfmt_misc/register").write_text(foreign))
    conf = tmp_path / "mine.conf"
    good = PACKAGED_ARM.replace("/usr/libexec/qemu-binfmt/arm-binfmt-P:OPF", f"{arm}:F")
    conf.write_text(f"# mine\n{good}\n:broken:M::\\x4::/bin/true:\n")
    proc = cli(sb, "apply", str(conf), "--json")
    assert proc.returncode == 3, proc.stderr
    lines = envelope(proc)["data"]["lines"]
    assert [(r["line"], r["name"], r["action"]) for r in lines] == [
        (2, "qemu-arm", "registered"),
        (4, "broken", "invalid"),
    ]
    assert lines[1]["reason"] == "magic: \\x must be followed by two hex digits"
    assert sorted(entries(sb)) == ["WSLInterop", "qemu-arm"]
    again = envelope(cli(sb, "apply", str(conf), "--json"))["data"]["lines"]
    assert again[0]["action"] == "re-registered"
    assert sorted(entries(sb)) == ["WSLInterop", "qemu-arm"]


def test_boot_simulation_matches_the_real_systemd_binfmt(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    need(SYSTEMD_BINFMT)
    arm = qemu("qemu-arm")
    qemu("qemu-aarch64")  # the arm64 handler that boot must flush
    for d in ("/run/binfmt.d", "/usr/local/lib/binfmt.d"):
        if os.path.exists(d):
            not_applicable(f"{d} exists on this machine; the test binds only /etc and /usr/lib")
    ours = PACKAGED_ARM.replace("/usr/libexec/qemu-binfmt/arm-binfmt-P:OPF", f"{arm}:F")
    files = {
        "etc/binfmt.d/qemu-arm-static.conf": ours,
        "usr/lib/binfmt.d/qemu-arm.conf": PACKAGED_ARM,
        "etc/binfmt.d/python.conf": "# masked\n",
        "usr/lib/binfmt.d/python.conf": ":python:M::\\xa7\\x0d\\x0d\\x0a::/usr/bin/python3:\n",
        "usr/lib/binfmt.d/b.conf": ":aa:E::xyz::/bin/true:\n; c\n:aa:E::abc::/bin/sh:\n",
        "usr/lib/binfmt.d/c.conf": ":bb:E::q::/nonexistent:F\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    # The real boot below checks F interpreters on this system; the simulation inside the root.
    provide(tmp_path, "/usr/libexec/qemu-binfmt/arm-binfmt-P")
    provide(tmp_path, arm)
    installed = cli(sb, "install", "arm64")
    assert installed.returncode == 0, installed.stderr
    assert sorted(entries(sb)) == ["qemu-aarch64"]  # boot starts by flushing everything
    simulated = envelope(cli(sb, "status", "--boot", "--root", str(tmp_path), "--json"))
    expected = [(b["name"], b["entry"]) for b in simulated["data"]["config"]["boot"]]
    assert [name for name, _ in expected] == ["qemu-arm", "aa"]

    def boot() -> list[tuple[str, dict[str, object]]]:
        sandbox.mount(str(tmp_path / "etc/binfmt.d"), "/etc/binfmt.d", None, MS_BIND)
        sandbox.mount(str(tmp_path / "usr/lib/binfmt.d"), "/usr/lib/binfmt.d", None, MS_BIND)
        subprocess.run([SYSTEMD_BINFMT], check=False, capture_output=True)
        return [(h.name, h.entry.to_dict()) for h in Instance().entries()]

    assert sb.run(boot) == expected  # the flush removed the arm64 handler install registered


def test_an_entry_boot_will_not_restore_says_how_to_keep_it(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    provide(tmp_path, qemu("qemu-aarch64"))  # at boot of the root, F opens it there
    root = ["--root", str(tmp_path)]
    assert cli(sb, "install", "aarch64").returncode == 0
    cfg = json.loads(cli(sb, "status", *root, "--json").stdout)["data"]["config"]
    named = next(n for n in cfg["names"] if n["name"] == "qemu-aarch64")
    assert named["problems"] == [
        "qemu-aarch64: registered now, but no binfmt.d file registers it at boot: it will "
        "be gone after a reboot (`binfmtctl install --persist aarch64` keeps it)"
    ]
    assert cli(sb, "install", "aarch64", "--persist", *root).returncode == 0
    cfg = json.loads(cli(sb, "status", *root, "--json").stdout)["data"]["config"]
    named = next(n for n in cfg["names"] if n["name"] == "qemu-aarch64")
    assert named["problems"] == []
