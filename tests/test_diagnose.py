"""find / why / scan on the real kernel, real QEMU and real Debian foreign binaries.

Each case sets its situation up for real in a private binfmt_misc instance
(``sb``), asks ``binfmtctl why`` for the cause, and checks the kernel agrees:
the exec really fails (or runs) the way the cause says.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import conftest
from binfmtctl import arch as _arch
from binfmtctl import elf, plan, sandbox
from binfmtctl.diagnose import resolve_in
from binfmtctl.entry import Entry
from binfmtctl.instance import Instance
from conftest import CACHE, cli, exec_result, foreign_busybox, qemu, run_in

DYN = CACHE / "foreign-dyn"
MP = "/proc/sys/fs/binfmt_misc"


def dyn(arch: str, pkg: str) -> Path:
    """Debian's PKG for ARCH, unpacked by scripts/test-deps."""
    path = DYN / arch / pkg
    if not (path / ".complete").exists():
        pytest.skip(f"{path} missing: run scripts/test-deps")
    return path


def envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["version"] == 1
    return data


def why(box: sandbox.Sandbox, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli(box, "why", "--json", *args)
    return proc.returncode, envelope(proc)["data"]


def install(box: sandbox.Sandbox, *args: str) -> None:
    proc = cli(box, "install", *args)
    assert proc.returncode == 0, proc.stderr


def register(box: sandbox.Sandbox, entry: Entry) -> None:
    box.run(Instance().register, entry)


def copy_root(dest: Path, *trees: Path) -> Path:
    """A root filesystem made of unpacked Debian packages."""
    for tree in trees:
        shutil.copytree(tree, dest, symlinks=True, dirs_exist_ok=True)
    return dest


# -- static foreign busybox: handler present, absent, disabled, shadowed ---------

NO_HANDLER_MSG = (
    "no binfmt_misc handler matches this aarch64 program, so exec fails with 'exec format error'."
)


def _nothing(box: sandbox.Sandbox) -> None:
    pass


def _installed(box: sandbox.Sandbox) -> None:
    install(box, "aarch64")


def _disabled(box: sandbox.Sandbox) -> None:
    install(box, "aarch64")
    assert cli(box, "disable", "aarch64").returncode == 0


def _instance_off(box: sandbox.Sandbox) -> None:
    install(box, "aarch64")
    box.run(Instance().set_enabled, False)


def _shadowed(box: sandbox.Sandbox) -> None:
    install(box, "aarch64")
    magic, mask = _arch.resolve("aarch64").magic_mask()
    register(box, Entry("catchall", "M", qemu("qemu-arm"), "F", magic=magic, mask=mask))


STATIC_CASES: list[tuple[str, Callable[[sandbox.Sandbox], None], str | None, str, str | None]] = [
    ("no handler", _nothing, "no_handler", NO_HANDLER_MSG, "binfmtctl install aarch64"),
    (
        "handler disabled",
        _disabled,
        "handler_disabled",
        "the handler qemu-aarch64 for this aarch64 program is registered but disabled, so "
        "the kernel skips it and reports 'exec format error'.",
        "binfmtctl enable qemu-aarch64",
    ),
    (
        "instance disabled",
        _instance_off,
        "instance_disabled",
        f"binfmt_misc at {MP} is switched off (status: disabled), so no handler runs this "
        "aarch64 program (otherwise qemu-aarch64 would run it).",
        "binfmtctl enable --instance",
    ),
    (
        "shadowed by a newer entry",
        _shadowed,
        "shadowed",
        "the newer entry catchall (/usr/bin/qemu-arm-static, flags F) also matches this "
        "aarch64 program and the kernel tries the newest entry first, so qemu-aarch64 "
        "never gets it.",
        "binfmtctl disable catchall",
    ),
    ("runs", _installed, None, "", None),
]


@pytest.mark.parametrize(
    ("setup", "code", "message", "fix"),
    [c[1:] for c in STATIC_CASES],
    ids=[c[0] for c in STATIC_CASES],
)
def test_why_static_foreign_busybox(
    sb: sandbox.Sandbox,
    setup: Callable[[sandbox.Sandbox], None],
    code: str | None,
    message: str,
    fix: str | None,
) -> None:
    busybox = str(foreign_busybox("arm64"))
    qemu("qemu-aarch64")
    setup(sb)
    rc, data = why(sb, busybox, "uname", "-m")
    real = exec_result(sb, busybox, "uname", "-m")
    if code is None:
        assert (rc, data["cause"], data["runs"]) == (0, None, True)
        assert data["chain"][0]["runner"] == (
            "binfmt_misc entry qemu-aarch64 (/usr/bin/qemu-aarch64-static, flags PF)"
        )
        assert real == "aarch64\n"
        return
    assert rc == 1
    assert data["cause"] == {"code": code, "message": message, "fix": fix}
    if code == "shadowed":  # qemu-arm gets the aarch64 program and refuses it
        assert isinstance(real, str)
        assert "Invalid ELF image" in real
    else:
        assert real == errno.ENOEXEC


# -- chroots: F or not, dynamic interpreter, missing loader, wrong ABI -----------


def test_chroot_without_f_then_with_f(sb: sandbox.Sandbox) -> None:
    root = str(foreign_busybox("arm64").parent.parent)
    install(sb, "aarch64", "--flags", "")
    rc, data = why(sb, "--rootfs", root, "busybox", "uname")
    assert rc == 1
    assert data["path"] == "/bin/busybox"  # found along PATH inside the rootfs
    assert data["cause"] == {
        "code": "interpreter_missing",
        "message": f"qemu-aarch64 has no F flag, so the kernel looks up its interpreter "
        f"/usr/bin/qemu-aarch64-static inside {root} at every exec, and it is not there: "
        "exec fails with 'no such file or directory'.",
        "fix": "binfmtctl install aarch64 --replace  (registers with F: the kernel opens "
        "the interpreter once, on the host)",
    }
    ran = run_in(sb, "chroot", root, "/bin/busybox", "uname", "-m")
    assert ran.returncode != 0
    assert "No such file or directory" in ran.stderr
    install(sb, "aarch64", "--replace")
    rc, data = why(sb, "--rootfs", root, "/bin/busybox")
    assert (rc, data["cause"]) == (0, None)
    ran = run_in(sb, "chroot", root, "/bin/busybox", "uname", "-m")
    assert (ran.returncode, ran.stdout) == (0, "aarch64\n")


def test_f_with_a_dynamically_linked_interpreter(sb: sandbox.Sandbox) -> None:
    # A dynamically linked program registered as the aarch64 interpreter (Debian has no
    # dynamic qemu-user here): the kernel opens it thanks to F, then needs its loader.
    root = str(foreign_busybox("arm64").parent.parent)
    echo = shutil.which("echo")
    assert echo is not None
    loader = elf.program_interpreter(echo)
    assert loader is not None
    register(sb, plan.build_entry(_arch.resolve("aarch64"), echo, "F", _arch.Profile.QEMU))
    rc, data = why(sb, "--rootfs", root, "/bin/busybox")
    assert rc == 1
    assert data["cause"] == {
        "code": "interpreter_dynamic",
        "message": f"the interpreter {echo} of qemu-aarch64 is dynamically linked: F makes "
        f"the kernel find the emulator itself, but its loader {loader} and libraries must "
        f"exist inside {root}, and they do not.",
        "fix": "apt-get install qemu-user-static && binfmtctl install aarch64 --replace  "
        "(a static emulator needs nothing inside the root)",
    }
    ran = run_in(sb, "chroot", root, "/bin/busybox")
    assert ran.returncode != 0
    assert "No such file or directory" in ran.stderr


@conftest.x86_64_host
def test_dynamic_foreign_program_without_and_with_its_loader(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    busybox = dyn("arm64", "busybox")
    program = str(busybox / "bin" / "busybox")
    install(sb, "aarch64")
    # On this (x86_64) system there is no /lib/ld-linux-aarch64.so.1.
    rc, data = why(sb, program)
    assert rc == 1
    assert data["cause"] == {
        "code": "loader_missing",
        "message": "this dynamically linked aarch64 program needs its loader "
        "/lib/ld-linux-aarch64.so.1, which does not exist in this system: QEMU starts it, "
        "then stops with \"Could not open '/lib/ld-linux-aarch64.so.1': No such file or "
        'directory".',
        "fix": "run it in a aarch64 root filesystem (chroot, container, "
        "`binfmtctl why --rootfs DIR`), or point QEMU at one with QEMU_LD_PREFIX=DIR",
    }
    real = exec_result(sb, program, "true")
    assert isinstance(real, str)
    assert "Could not open '/lib/ld-linux-aarch64.so.1': No such file or directory" in real
    # In a root that has the loader (Debian's libc6:arm64) it runs.
    root = str(copy_root(tmp_path / "root", busybox, dyn("arm64", "libc6")))
    rc, data = why(sb, "--rootfs", root, "/bin/busybox")
    assert (rc, data["cause"]) == (0, None)
    ran = run_in(sb, "chroot", root, "/bin/busybox", "uname", "-m")
    assert (ran.returncode, ran.stdout) == (0, "aarch64\n"), ran.stderr


def test_armel_program_in_an_armhf_root(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    root = str(copy_root(tmp_path / "root", dyn("armhf", "libc6"), dyn("armel", "busybox")))
    install(sb, "arm")
    rc, data = why(sb, "--rootfs", root, "/bin/busybox")
    assert rc == 1
    assert data["cause"] == {
        "code": "wrong_abi",
        "message": f"this is an armel (soft-float) program and needs the loader "
        f"/lib/ld-linux.so.3, but {root} has the armhf (hard-float) loader "
        "/lib/ld-linux-armhf.so.3: the two ABIs cannot share a loader or libraries.",
        "fix": "run it in a armel root filesystem, or use the armhf build of the program",
    }
    ran = run_in(sb, "chroot", root, "/bin/busybox", "true")
    assert ran.returncode != 0
    assert "Could not open '/lib/ld-linux.so.3'" in ran.stderr


def test_mips_n32_program_with_only_the_o32_handler(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    # Debian has no n32 port, so the n32 program is Debian's mipsel busybox with its
    # e_flags changed to n32 (EF_MIPS_ABI2 set, EF_MIPS_ABI_O32 cleared): a real header,
    # not a runnable program; the kernel's matching only looks at the header.
    source = foreign_busybox("mipsel").read_bytes()
    flags = int.from_bytes(source[0x24:0x28], "little")
    n32 = tmp_path / "busybox-n32"
    patched = (flags | _arch.EF_MIPS_ABI2) & ~0x1000
    n32.write_bytes(source[:0x24] + patched.to_bytes(4, "little") + source[0x28:])
    n32.chmod(0o755)
    install(sb, "mipsel")
    rc, data = why(sb, str(n32))
    assert rc == 1
    assert data["cause"] == {
        "code": "wrong_abi",
        "message": "this is a MIPS n32, little-endian program (mipsn32el), but the "
        "registered qemu-mipsel runs MIPS o32, little-endian programs (mipsel) only, so "
        "exec fails with 'exec format error'.",
        "fix": "binfmtctl install mipsn32el",
    }
    assert exec_result(sb, str(n32)) == errno.ENOEXEC
    # The real o32 program is fine.
    assert why(sb, str(foreign_busybox("mipsel")))[0] == 0


# -- scripts ----------------------------------------------------------------------


def test_script_with_a_foreign_or_missing_interpreter(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    busybox = str(foreign_busybox("arm64"))
    foreign = tmp_path / "foreign.sh"
    foreign.write_text(f"#!{busybox} sh\necho hi\n")
    missing = tmp_path / "missing.sh"
    missing.write_text("#!/nonexistent/sh -e\necho hi\n")
    for script in (foreign, missing):
        script.chmod(0o755)
    rc, data = why(sb, str(foreign))
    assert rc == 1
    assert [link["path"] for link in data["chain"]] == [str(foreign), busybox]
    assert data["cause"]["code"] == "no_handler"
    assert data["cause"]["message"] == NO_HANDLER_MSG
    assert exec_result(sb, str(foreign)) == errno.ENOEXEC
    rc, data = why(sb, str(missing))
    assert rc == 1
    assert data["cause"] == {
        "code": "script_interpreter_missing",
        "message": f"{missing} is a script for /nonexistent/sh, which does not exist in this "
        "system; the kernel reports 'no such file or directory' for the script itself.",
        "fix": f"install /nonexistent/sh in this system, or fix the #! line of {missing}",
    }
    assert exec_result(sb, str(missing)) == errno.ENOENT
    install(sb, "aarch64")
    rc, data = why(sb, str(foreign))
    assert (rc, data["cause"]) == (0, None)
    assert exec_result(sb, str(foreign)) == "hi\n"


# -- registered in a user namespace, looked for on the host ----------------------


def test_handler_only_in_another_user_namespace(sb: sandbox.Sandbox) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root on the host to look into other user namespaces")
    install(sb, "aarch64")
    # Outside the sandbox, against a binfmt_misc that is not mounted (never the host's).
    proc = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "why", "--mountpoint", "/nonexistent", "--json",
         str(foreign_busybox("arm64"))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    cause = envelope(proc)["data"]["cause"]
    assert cause["code"] == "private_instance"
    assert re.fullmatch(
        r"binfmt_misc is not mounted at /nonexistent; the handler qemu-aarch64 exists only "
        r"in the private binfmt_misc of another user namespace \(process \d+\): whatever "
        r"registered it ran inside a user namespace \(a rootless container, `unshare -U`\) "
        r"and changed that private instance, not the host's\.",
        cause["message"],
    ), cause["message"]


# -- find -------------------------------------------------------------------------


def test_find_reports_identity_match_and_verdict(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    arm64, armhf, armel = (foreign_busybox(a) for a in ("arm64", "armhf", "armel"))
    native = shutil.which("true")
    assert native is not None
    renamed = tmp_path / "tool.a64"
    shutil.copy(arm64, renamed)
    install(sb, "aarch64")
    register(sb, Entry("by-extension", "E", qemu("qemu-aarch64"), "F", extension="a64"))
    files = [str(arm64), str(armhf), str(armel), native, str(renamed), "/nonexistent"]
    proc = cli(sb, "find", "--json", *files)
    assert proc.returncode == 1  # one file is missing
    got = {f["path"]: f for f in envelope(proc)["data"]["files"]}
    assert [(got[p]["verdict"], (got[p]["match"] or {}).get("entry")) for p in files] == [
        ("handled", "qemu-aarch64"),
        ("no_handler", None),
        ("no_handler", None),
        ("native", None),
        ("handled", "by-extension"),  # newer than qemu-aarch64: the kernel tries it first
        ("missing", None),
    ]
    abi = {p: (got[p]["elf"] or {}).get("abi") for p in files[:3]}
    assert abi == {str(arm64): None, str(armhf): "armhf", str(armel): "armel"}
    hf, el = got[str(armhf)]["elf"], got[str(armel)]["elf"]
    assert hf["flags"] & elf.EF_ARM_ABI_FLOAT_HARD
    assert el["flags"] & elf.EF_ARM_ABI_FLOAT_SOFT
    assert got[str(arm64)]["elf"] | {"flags": 0} == {
        "class": 64, "endian": "little", "type": "ET_EXEC", "machine": 183, "flags": 0,
        "osabi": 3, "abi": None, "arch": "aarch64", "linking": "static", "interpreter": None,
    }  # fmt: skip
    assert got[str(arm64)]["match"] == {
        "entry": "qemu-aarch64",
        "interpreter": "/usr/bin/qemu-aarch64-static",
        "flags": "PF",  # the default: F, and P (QEMU keeps argv[0])
    }
    # A disabled instance runs nothing, and find says so.
    sb.run(Instance().set_enabled, False)
    off = envelope(cli(sb, "find", "--json", str(arm64)))["data"]["files"][0]
    assert (off["verdict"], off["match"], off["detail"]) == (
        "disabled",
        None,
        "no handler: binfmt_misc is disabled (otherwise qemu-aarch64 would run it)",
    )


def test_find_in_a_rootfs_reports_the_loader(tmp_path: Path) -> None:
    root = str(copy_root(tmp_path / "root", dyn("arm64", "busybox"), dyn("arm64", "libc6")))
    proc = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "find", "--json", "--mountpoint", "/nonexistent",
         "--rootfs", root, "/bin/busybox", "/lib/ld-linux-aarch64.so.1"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    files = envelope(proc)["data"]["files"]
    assert [(f["path"], f["elf"]["linking"], f["elf"]["interpreter"]) for f in files] == [
        ("/bin/busybox", "dynamic", "/lib/ld-linux-aarch64.so.1"),
        ("/lib/ld-linux-aarch64.so.1", "static", None),
    ]
    assert {f["verdict"] for f in files} == {"not_mounted"}


# -- scan -------------------------------------------------------------------------


@conftest.x86_64_host
def test_scan_groups_a_mixed_tree(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "lib").mkdir()
    shutil.copy(foreign_busybox("arm64"), tree / "bin" / "busybox")
    shutil.copy(dyn("arm64", "busybox") / "bin" / "busybox", tree / "bin" / "busybox-dyn")
    shutil.copy(foreign_busybox("armhf"), tree / "bin" / "hf")
    shutil.copy(foreign_busybox("armel"), tree / "lib" / "el")
    shutil.copy(foreign_busybox("i386"), tree / "lib" / "i386")
    true = shutil.which("true")
    assert true is not None
    shutil.copy(true, tree / "bin" / "x86")
    (tree / "README").write_text("not an ELF file\n")
    (tree / "bin" / "outside").symlink_to(true)  # a symlink out of the tree: not followed
    (tree / "loop").symlink_to(tree)  # nor into a loop
    install(sb, "aarch64")
    proc = cli(sb, "scan", "--json", str(tree))
    assert proc.returncode == 1  # the arm files have no handler
    data = envelope(proc)["data"]
    assert (data["files"], data["elf_files"]) == (7, 6)
    got = [
        (g["arch"], g["abi"], g["count"], g["verdict"], (g["match"] or {}).get("entry"))
        for g in data["groups"]
    ]
    assert got == [
        ("aarch64", None, 2, "handled", "qemu-aarch64"),
        ("arm", "armel", 1, "no_handler", None),
        ("arm", "armhf", 1, "no_handler", None),
        ("i386", None, 1, "native", None),
        ("x86_64", None, 1, "native", None),
    ]
    assert data["groups"][1]["files"] == [str(tree / "lib" / "el")]
    assert data["summary"] == (
        "this aarch64 tree contains 1 arm (armel) file, 1 arm (armhf) file, "
        "1 i386 file, 1 x86_64 file"
    )
    text = cli(sb, "scan", str(tree)).stdout
    assert f"no handler for 1 arm (armhf) file(s):\n  {tree / 'bin' / 'hf'}" in text


# -- pure pieces --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (b"#!/bin/sh\n", ("/bin/sh", None)),
        (b"#! /usr/bin/env  python3 -u \nx", ("/usr/bin/env", "python3 -u")),
        (b"#!/bin/busybox\tsh\n", ("/bin/busybox", "sh")),
        (b"#!\n", None),
        (b"#!   \t\n", None),
        (b"\x7fELF", None),
        (b"#!/bin/sh" + b"\0" * 10, ("/bin/sh", None)),
    ],
)
def test_shebang(header: bytes, expected: tuple[str, str | None] | None) -> None:
    assert elf.shebang(header) == expected


def test_resolve_in_stays_inside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "ld.so").write_text("")
    (root / "lib").symlink_to("usr/lib")
    (root / "abs").symlink_to("/usr/lib/ld.so")  # absolute: restarts at the root
    (root / "up").symlink_to("../../../../../../usr/lib/ld.so")  # cannot climb out
    (root / "loop").symlink_to("loop")
    cases = {
        "/lib/ld.so": str(root / "usr" / "lib" / "ld.so"),
        "/abs": str(root / "usr" / "lib" / "ld.so"),
        "/up": str(root / "usr" / "lib" / "ld.so"),
        "/../../lib/ld.so": str(root / "usr" / "lib" / "ld.so"),
        "/loop": None,
        "/lib/missing": None,
        "/usr/lib/ld.so/x": None,
    }
    assert {p: resolve_in(str(root), p) for p in cases} == cases
