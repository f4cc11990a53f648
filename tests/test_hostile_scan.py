"""find / why / scan / status never block and never stop at one bad file.

Real FIFOs (no writer: opening one for reading would wait for ever), real
unix sockets, existing character devices, looping and dangling symlinks, and
files and directories of mode 000 read by the unprivileged user
``binfmtctl-test``. Every command runs with a subprocess timeout: a hang
fails the test instead of stopping the suite.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from binfmtctl import arch as _arch
from binfmtctl import elf, plan, sandbox
from conftest import ROOT, foreign_busybox, qemu

USER = "binfmtctl-test"
SYSTEM_PYTHON = "/usr/bin/python3"
HANG = 120  # seconds: far beyond any run of these commands; reaching it means a hang
MP = "/proc/sys/fs/binfmt_misc"


def _socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.close()  # the socket file stays


@pytest.fixture
def odd() -> Iterator[Path]:
    """A world-readable directory of every kind of file that is not a regular one."""
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-odd-"))
    top.chmod(0o755)
    os.mkfifo(top / "fifo")
    _socket(top / "sock")
    (top / "loop").symlink_to("loop")
    (top / "dangling").symlink_to("nowhere")
    (top / "to-fifo").symlink_to("fifo")
    (top / "dir").mkdir()
    yield top
    shutil.rmtree(top)


def binfmtctl(*args: str, box: sandbox.Sandbox | None = None) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "binfmtctl", *args]
    if box is None:
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=HANG)
    return box.run(subprocess.run, argv, capture_output=True, text=True, check=False, timeout=HANG)


def envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in proc.stderr, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


# -- the one reader --------------------------------------------------------------

KINDS = [
    ("fifo", True, "FIFO"),
    ("to-fifo", True, "FIFO"),
    ("sock", True, "socket"),
    ("dir", True, "directory"),
    ("/dev/zero", True, "character device"),
    ("/dev/null", True, "character device"),
    ("to-fifo", False, "symbolic link"),
]


@pytest.mark.parametrize(("name", "follow", "kind"), KINDS)
def test_open_regular_refuses_what_is_not_a_regular_file(
    odd: Path, name: str, follow: bool, kind: str
) -> None:
    with pytest.raises(elf.NotRegularFileError) as caught:
        elf.open_regular(odd / name, follow)
    assert caught.value.kind == kind
    assert caught.value.strerror == f"not a regular file (a {kind})"
    with pytest.raises(elf.NotRegularFileError):
        elf.read_header(odd / name, follow=follow)


def test_open_regular_reads_a_regular_file_and_reports_a_loop(odd: Path) -> None:
    assert elf.read_header("/bin/true")[:4] == b"\x7fELF"
    assert elf.program_interpreter("/bin/true") is not None
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        elf.read_header(odd / "loop")


def test_a_file_replaced_by_a_fifo_after_the_directory_was_read(odd: Path) -> None:
    """scan's fast path (d_type said regular) still never waits on a FIFO or opens a socket."""
    with pytest.raises(elf.NotRegularFileError, match=r"a FIFO"):
        elf.open_regular_fd(odd / "fifo", follow=False, seen_regular=True)
    with pytest.raises(OSError, match="No such device or address"):
        elf.open_regular_fd(odd / "sock", follow=False, seen_regular=True)


# -- find / why ------------------------------------------------------------------


def test_find_says_not_a_regular_file_and_never_blocks(odd: Path) -> None:
    paths = [str(odd / n) for n in ("fifo", "to-fifo", "sock", "loop", "dangling")]
    proc = binfmtctl("find", *paths, "/dev/zero", "/bin/true")
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.splitlines()[:12] == [
        f"{odd}/fifo: not a regular file",
        "  -> a FIFO: the kernel execs only regular files",
        f"{odd}/to-fifo: not a regular file",
        "  -> a FIFO: the kernel execs only regular files",
        f"{odd}/sock: not a regular file",
        "  -> a socket: the kernel execs only regular files",
        f"{odd}/loop: missing",
        "  -> a symlink that leads nowhere: Too many levels of symbolic links",
        f"{odd}/dangling: missing",
        "  -> a symlink that leads nowhere: No such file or directory",
        "/dev/zero: not a regular file",
        "  -> a character device: the kernel execs only regular files",
    ]
    assert proc.stdout.splitlines()[12].startswith("/bin/true: ELF 64-bit LSB")
    data = envelope(binfmtctl("find", "--json", str(odd / "fifo"), "/dev/zero"))["data"]
    assert [(f["verdict"], f["summary"], f["elf"]) for f in data["files"]] == [
        ("not_regular", "not a regular file", None),
        ("not_regular", "not a regular file", None),
    ]


WHY = [
    ("fifo", "FIFO"),
    ("sock", "socket"),
    ("dir", "directory"),
    ("/dev/zero", "character device"),
]


@pytest.mark.parametrize(("name", "kind"), WHY)
def test_why_of_what_is_not_a_regular_file(odd: Path, name: str, kind: str) -> None:
    path = str(odd / name)
    for mode in (0o755, 0o644):  # with and without exec bits: the kind decides
        if name != "/dev/zero":
            os.chmod(path, mode)
        proc = binfmtctl("why", "--json", path)
        assert proc.returncode == 1
        cause = envelope(proc)["data"]["cause"]
        assert cause == {
            "code": "not_executable",
            "message": f"{path} is not a regular file (a {kind}), so exec fails with "
            "'permission denied'.",
            "fix": "run a regular executable file",
        }


@pytest.mark.parametrize(
    ("name", "reason"),
    [("loop", "Too many levels of symbolic links"), ("dangling", "No such file or directory")],
)
def test_why_of_a_symlink_that_leads_nowhere(odd: Path, name: str, reason: str) -> None:
    path = str(odd / name)
    proc = binfmtctl("why", "--json", path)
    assert proc.returncode == 1
    assert envelope(proc)["data"]["cause"] == {
        "code": "not_found",
        "message": f"{path} is a symlink that leads nowhere ({reason}).",
        "fix": None,
    }


# -- as an ordinary user: unreadable files and directories ------------------------


@functools.cache
def _user_src() -> Path:
    """A world-readable copy of src/ (the checkout may be below /root)."""
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-src-"))
    atexit.register(shutil.rmtree, top, True)
    shutil.copytree(ROOT / "src", top / "src", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [top, *top.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o444 | (0o111 if path.is_dir() else 0))
    return top / "src"


def as_user(*args: str) -> subprocess.CompletedProcess[str]:
    if os.geteuid() != 0:
        pytest.fail("these cases switch to the user binfmtctl-test: run the suite as root")
    entry = pwd.getpwnam(USER)  # scripts/test-deps creates it
    argv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            "--", "env", f"PYTHONPATH={_user_src()}", f"HOME={entry.pw_dir}",
            SYSTEM_PYTHON, "-m", "binfmtctl", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=HANG)


def test_scan_as_a_user_lists_what_it_cannot_read_and_goes_on(odd: Path) -> None:
    tree = odd / "tree"
    tree.mkdir()
    shutil.copy("/bin/true", tree / "native")  # runs natively: exit 0 whatever is registered
    shutil.copy(foreign_busybox("arm64"), tree / "secret")
    (tree / "secret").chmod(0o000)
    (tree / "locked").mkdir()
    shutil.copy("/bin/true", tree / "locked" / "hidden")
    (tree / "locked").chmod(0o000)
    for name in ("fifo", "sock", "loop", "dangling", "to-fifo"):
        (tree / name).symlink_to(odd / name)
    os.mkfifo(tree / "fifo2")
    (tree / "zero").symlink_to("/dev/zero")
    tree.chmod(0o755)

    proc = as_user("scan", str(tree))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines()[:4] == [
        f"{tree}: 2 files, 1 ELF",
        "cannot read 2 file(s) or directories (skipped):",
        f"  {tree}/locked: Permission denied",
        f"  {tree}/secret: Permission denied",
    ]
    data = envelope(as_user("scan", "--json", str(tree)))["data"]
    assert (data["files"], data["elf_files"], data["unreadable"]) == (2, 1, 2)
    assert data["problems"] == [
        {"path": f"{tree}/locked", "reason": "Permission denied"},
        {"path": f"{tree}/secret", "reason": "Permission denied"},
    ]
    assert [(g["arch"], g["verdict"], g["files"]) for g in data["groups"]] == [
        ("x86_64", "native", [f"{tree}/native"])
    ]


def test_why_as_a_user_of_an_execute_only_program(odd: Path) -> None:
    """The kernel can exec a file mode 0711; binfmtctl cannot read it: a cause, not a crash."""
    path = odd / "exec-only"
    shutil.copy("/bin/true", path)
    path.chmod(0o711)
    proc = as_user("why", "--json", str(path))
    assert proc.returncode == 1, proc.stderr
    assert envelope(proc)["data"]["cause"] == {
        "code": "not_readable",
        "message": f"{path} cannot be read (Permission denied), so which handler the kernel "
        "would choose for it cannot be told.",
        "fix": "run `binfmtctl why` as a user who can read it",
    }
    found = as_user("find", str(path))
    assert (found.returncode, found.stdout) == (
        1,
        f"{path}: missing\n  -> cannot read it: Permission denied\n",
    )


# -- status: an interpreter that became a FIFO -----------------------------------


def test_status_with_an_interpreter_replaced_by_a_fifo(sb: sandbox.Sandbox, odd: Path) -> None:
    """F opened the emulator at registration; the path is a FIFO now: a problem, no hang."""
    emulator = odd / "qemu-aarch64-static"
    shutil.copy(qemu("qemu-aarch64"), emulator)
    entry = plan.build_entry(_arch.resolve("arm64"), str(emulator), "F", _arch.Profile.QEMU)

    def put() -> None:  # runs inside the private instance
        fd = os.open(f"{MP}/register", os.O_WRONLY)
        try:
            os.write(fd, entry.register_bytes())
        finally:
            os.close(fd)

    sb.run(put)
    emulator.unlink()
    os.mkfifo(emulator)
    proc = binfmtctl("status", "--json", box=sb)
    assert proc.returncode == 0, proc.stderr
    [mine] = [e for e in envelope(proc)["data"]["entries"] if e["name"] == "qemu-aarch64"]
    assert mine["problems"] == [
        f"interpreter {emulator} cannot run on this machine: not a regular file"
    ]
