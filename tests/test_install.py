"""install / uninstall / enable / disable / status, end to end on the real kernel.

Each test runs the real ``binfmtctl`` command in a private binfmt_misc
instance, with Debian's qemu-user-static and Debian's busybox-static for
foreign arches.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import conftest
from binfmtctl import sandbox
from conftest import cli, foreign_busybox, qemu, run_in


def envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["version"] == 1
    return data


def exec_errno(box: sandbox.Sandbox, path: str) -> int:
    """errno of exec'ing ``path`` in the sandbox (0 if it ran)."""

    def attempt() -> int:
        try:
            subprocess.run([path, "true"], check=False, capture_output=True)
        except OSError as err:
            return err.errno or -1
        return 0

    return box.run(attempt)


def test_foreign_busybox_fails_before_and_runs_after_install(sb: sandbox.Sandbox) -> None:
    arm64, armhf = foreign_busybox("arm64"), foreign_busybox("armhf")
    qemu("qemu-aarch64")
    assert exec_errno(sb, str(arm64)) == errno.ENOEXEC
    assert exec_errno(sb, str(armhf)) == errno.ENOEXEC
    proc = cli(sb, "install", "arm64", "armhf", "--json")
    assert proc.returncode == 0, proc.stderr
    steps = envelope(proc)["data"]["steps"]
    assert [(s["arch"], s["action"]) for s in steps] == [
        ("aarch64", "register"),
        ("arm", "register"),
    ]
    assert run_in(sb, str(arm64), "uname", "-m").stdout == "aarch64\n"
    assert run_in(sb, str(armhf), "uname", "-m").stdout == "armv7l\n"


def test_chroot_into_foreign_package_needs_the_f_flag(sb: sandbox.Sandbox) -> None:
    root = foreign_busybox("arm64").parent.parent
    assert cli(sb, "install", "aarch64").returncode == 0
    ran = run_in(sb, "chroot", str(root), "/bin/busybox", "uname", "-m")
    assert (ran.returncode, ran.stdout) == (0, "aarch64\n"), ran.stderr
    # Without F the kernel looks the interpreter up inside the chroot, where it is missing.
    assert cli(sb, "install", "aarch64", "--flags", "", "--replace").returncode == 0
    ran = run_in(sb, "chroot", str(root), "/bin/busybox", "uname", "-m")
    assert ran.returncode != 0
    assert "No such file or directory" in ran.stderr


@conftest.x86_64_host
def test_install_without_arch_registers_every_foreign_emulator(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    proc = cli(sb, "install", "--json")
    assert proc.returncode == 0, proc.stderr
    registered = {s["arch"] for s in envelope(proc)["data"]["steps"] if s["action"] == "register"}
    # Every emulator Debian ships, except the host's own family (i386, i486, x86_64 here).
    expected = {
        p.name.removeprefix("qemu-").removesuffix("-static")
        for p in Path("/usr/bin").glob("qemu-*-static")
    } - {"i386", "x86_64"}
    assert registered == expected
    status = envelope(cli(sb, "status", "--json"))["data"]
    assert status["instance"]["host"] is False
    assert {e["arch"] for e in status["entries"]} == expected
    assert all(not e["problems"] for e in status["entries"]), status["entries"]
    # Re-running changes nothing and says so.
    again = envelope(cli(sb, "install", "--json"))["data"]["steps"]
    assert {s["action"] for s in again} == {"unchanged"}


@pytest.mark.parametrize(
    ("words", "code", "message"),
    [
        (["x86_64"], 1, "x86_64 is this machine's own architecture"),
        (["i386"], 1, "runs i386 programs natively"),
        (["i386", "aarch64"], 3, "runs i386 programs natively"),
        (["nonsense"], 2, "unknown architecture 'nonsense'"),
        (
            ["--interpreter-dir", "/nonexistent", "riscv64"],
            1,
            "no emulator for riscv64 (qemu-riscv64-static or qemu-riscv64 in /nonexistent); "
            "install it with `sudo apt-get install qemu-user-static`",
        ),
        (["--flags", "FX", "aarch64"], 2, "--flags"),
        (["--interpreter", "/bin/true", "arm", "aarch64"], 2, "exactly one ARCH"),
    ],
)
@conftest.x86_64_host
def test_install_refusals(sb: sandbox.Sandbox, words: list[str], code: int, message: str) -> None:
    proc = cli(sb, "install", *words)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr


@conftest.x86_64_host
def test_force_allows_i386_and_the_host_then_runs_it_through_qemu(sb: sandbox.Sandbox) -> None:
    i386 = foreign_busybox("i386")
    assert run_in(sb, str(i386), "uname", "-m").stdout == "x86_64\n"  # native compat mode
    assert cli(sb, "install", "--force", "i386").returncode == 0
    assert run_in(sb, str(i386), "uname", "-m").stdout in ("i686\n", "i386\n")


def test_replace_and_conflicts(sb: sandbox.Sandbox) -> None:
    qemu("qemu-arm")
    # Another tool's handler for the same arch (here: no F flag) is kept, and said so.
    assert cli(sb, "install", "arm", "--flags", "").returncode == 0
    proc = cli(sb, "install", "arm")
    assert proc.returncode == 0
    assert "kept the arm handler already registered" in proc.stdout
    assert "--replace installs ours" in proc.stdout
    assert cli(sb, "install", "arm", "--replace").returncode == 0
    state = envelope(cli(sb, "status", "--json"))["data"]["entries"]
    # Ours: F and P (QEMU 7.2 keeps argv[0]; tests/test_argv0.py proves the choice).
    assert [(e["name"], e["entry"]["flags"]) for e in state] == [("qemu-arm", "PF")]
    # The same name used for something that is not an arm handler is refused.
    assert cli(sb, "uninstall", "arm").returncode == 0
    line = ":qemu-arm:M::MZ::/bin/true:"
    sb.run(lambda: Path("/proc/sys/fs/binfmt_misc/register").write_text(line))
    proc = cli(sb, "install", "arm")
    assert proc.returncode == 1
    assert "qemu-arm is already registered with another definition" in proc.stderr
    assert "use --replace to replace it" in proc.stderr


def test_c_flag_refused_for_interpreter_writable_by_others(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    unsafe = tmp_path / "open"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    copy = unsafe / "qemu-arm-static"
    shutil.copy(qemu("qemu-arm"), copy)
    proc = cli(sb, "install", "arm", "--flags", "CF", "--interpreter", str(copy))
    assert proc.returncode == 1
    assert f"{unsafe} is writable by its group and others (mode 0777)" in proc.stderr
    ok = cli(sb, "install", "arm", "--flags", "CF", "--json")
    assert ok.returncode == 0, ok.stderr
    assert envelope(ok)["data"]["steps"][0]["entry"]["flags"] == "OCF"


def test_uninstall_all_keeps_foreign_entries(sb: sandbox.Sandbox) -> None:
    def add_foreign() -> None:
        for line in (
            b":WSLInterop:M::MZ::/bin/true:PF",
            b":python3.11:M::\\xa7\\x0d\\x0d\\x0a::/usr/bin/python3.11:",
        ):
            fd = os.open("/proc/sys/fs/binfmt_misc/register", os.O_WRONLY)
            os.write(fd, line)
            os.close(fd)

    assert cli(sb, "install", "arm", "aarch64").returncode == 0
    sb.run(add_foreign)
    proc = cli(sb, "uninstall", "--all", "--json")
    assert proc.returncode == 0, proc.stderr
    removed = {r["name"] for r in envelope(proc)["data"]["removed"]}
    assert removed == {"qemu-arm", "qemu-aarch64"}
    names = {e["name"] for e in envelope(cli(sb, "status", "--json"))["data"]["entries"]}
    assert names == {"WSLInterop", "python3.11"}


def test_enable_disable_and_status_problems(sb: sandbox.Sandbox) -> None:
    arm64 = foreign_busybox("arm64")
    assert cli(sb, "install", "aarch64").returncode == 0
    assert cli(sb, "disable", "aarch64").returncode == 0
    assert exec_errno(sb, str(arm64)) == errno.ENOEXEC
    entries = envelope(cli(sb, "status", "--json"))["data"]["entries"]
    assert entries[0]["problems"] == ["disabled: the kernel skips it"]
    assert cli(sb, "enable", "qemu-aarch64").returncode == 0
    assert run_in(sb, str(arm64), "uname", "-m").stdout == "aarch64\n"
    # A newer entry for the same binaries shadows ours; one without F whose file is gone.
    line = f":mine:M::{arch_escape('aarch64')}:/nonexistent/qemu:"
    sb.run(lambda: Path("/proc/sys/fs/binfmt_misc/register").write_text(line))
    entries = envelope(cli(sb, "status", "--json"))["data"]["entries"]
    by_name = {e["name"]: e["problems"] for e in entries}
    assert by_name["mine"] == ["interpreter /nonexistent/qemu does not exist: every exec will fail"]
    assert by_name["qemu-aarch64"] == [
        "shadowed by the newer entry mine: the kernel tries it first"
    ]
    missing = cli(sb, "disable", "nosuch")
    assert missing.returncode == 1
    assert "no entry named 'nosuch'" in missing.stderr


def arch_escape(name: str) -> str:
    from binfmtctl.arch import CATALOG

    magic, mask = CATALOG[name].magic_mask()
    return "".join(f"\\x{b:02x}" for b in magic) + ":" + "".join(f"\\x{b:02x}" for b in mask)


def test_status_when_not_mounted_and_bare_command(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    proc = cli(sb, "--mountpoint", str(tmp_path), "--json")
    data = envelope(proc)
    assert data["command"] == "status"
    assert data["data"]["instance"]["mounted"] is False
    human = cli(sb, "--mountpoint", str(tmp_path))
    assert f"binfmt_misc: not mounted at {tmp_path}" in human.stdout


CLASSIC_ARM = (
    r":qemu-arm:M::\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00"
    r"\x28\x00:\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\xfe\xff\xff"
    r"\xff:/usr/bin/qemu-arm-static:F"
)
CLASSIC_AARCH64 = (
    r":qemu-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02"
    r"\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00\xfe\xff"
    r"\xff\xff:/usr/bin/qemu-aarch64-static:F"
)


def test_export_reproduces_the_classic_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from binfmtctl.cli import main

    argv = ["export", "--profile", "seed", "--interpreter-dir", "/usr/bin", "arm", "aarch64"]
    argv += ["--flags", "F"]  # the classic recipe's flags (the default adds P where it works)
    assert main(argv) == 0
    assert capsys.readouterr().out == f"{CLASSIC_ARM}\n{CLASSIC_AARCH64}\n"


def test_root_without_the_privilege_is_told_about_containers(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    """Root that lacks CAP_SYS_ADMIN (a container run without --privileged), in the sandbox."""
    import sys

    proc = run_in(
        sb,
        "setpriv",
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--",
        sys.executable,
        "-m",
        "binfmtctl",
        "install",
        "--mountpoint",
        str(tmp_path),
        "arm64",
    )
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr == (
        f"binfmtctl: error: cannot mount binfmt_misc: permission denied ({tmp_path}); this "
        "process is root but lacks CAP_SYS_ADMIN over it (in a container, run it with "
        "--privileged; in a user namespace, change the host from outside it)\n"
    )
