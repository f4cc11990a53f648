"""``binfmtctl shell DIR [-- CMD ...]``: a command, a script on stdin, a prompt on a terminal.

The roots are real: the extracted busybox-static:arm64 package (its sh is
busybox's ash) and the session's Debian arm64 minbase root (root's login
shell bash, /bin/sh dash). The prompt is checked on a real pseudo-terminal,
where the shells print it (a pipe on stdin makes them read a script, without
one).
"""

from __future__ import annotations

import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from binfmtctl import rootless
from conftest import _NO_SANDBOX, foreign_busybox

pytestmark = [
    pytest.mark.skipif(
        _NO_SANDBOX is not None or os.geteuid() != 0,
        reason=f"needs root and private binfmt_misc instances ({_NO_SANDBOX or 'not root'})",
    ),
    pytest.mark.usefixtures("host_binfmt_unchanged"),
]


@pytest.fixture
def busybox_root() -> Iterator[Path]:
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-shell-"))
    root = top / "arm64-rootfs"
    shutil.copytree(foreign_busybox("arm64").parent.parent, root, symlinks=True)
    (root / "bin" / "sh").symlink_to("busybox")
    yield root
    shutil.rmtree(top)


def shell(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "binfmtctl", "shell", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env=env,
    )


def test_a_command_after_dashes_runs_in_the_root_with_its_status(busybox_root: Path) -> None:
    proc = shell(
        str(busybox_root),
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        'uname -m; echo "$HOME $PWD $debian_chroot"; exit 6',
    )
    assert proc.returncode == 6, proc.stderr
    assert proc.stdout == "aarch64\n/root / aarch64 arm64-rootfs\n"


def test_shell_options_after_the_root_go_to_the_roots_shell(busybox_root: Path) -> None:
    proc = shell(str(busybox_root), "-c", 'echo "$0" "$SHELL"; uname -m')
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "/bin/sh /bin/sh\naarch64\n"


def test_a_here_doc_is_a_script_not_an_interactive_session(busybox_root: Path) -> None:
    proc = shell(
        str(busybox_root), stdin="uname -m\ncase $- in *i*) echo interactive;; esac\nexit 4\n"
    )
    assert proc.returncode == 4, proc.stderr
    assert proc.stdout == "aarch64\n"  # no prompt, not interactive
    assert proc.stderr == ""


def test_binfmtctls_options_still_come_before_the_command(busybox_root: Path) -> None:
    proc = shell(
        str(busybox_root),
        "--env",
        "GREETING=hi",
        "--workdir",
        "/bin",
        "--",
        "/bin/busybox",
        "sh",
        "-c",
        'echo "$GREETING $PWD"',
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hi /bin\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "the following arguments are required: ROOTFS (see `binfmtctl shell --help`)"),
        (["/no/such/root"], "ROOTFS /no/such/root: not a directory"),
        (["--frob", "/"], "unrecognized arguments: --frob (see `binfmtctl --help`)"),
        (["--uid-map"], "argument --uid-map: expected one argument (see `binfmtctl shell --help`)"),
    ],
)
def test_shell_usage_errors(args: list[str], message: str) -> None:
    proc = shell(*args)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"binfmtctl: error: {message}\n"


# -- the prompt, on a real terminal ---------------------------------------------------


def on_a_terminal(argv: list[str], typed: str) -> tuple[int, str]:
    """Run ``argv`` on a pseudo-terminal, type ``typed``: (exit status, what was shown)."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, cwd="/", start_new_session=True
    )
    os.close(slave)
    os.write(master, typed.encode())
    screen = b""
    while True:
        # Not a timing assertion: only a bound so a broken shell cannot hang the suite.
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    return proc.wait(), screen.decode(errors="replace")


def test_busybox_ash_shows_the_directory_in_its_prompt(busybox_root: Path) -> None:
    status, screen = on_a_terminal(
        [sys.executable, "-m", "binfmtctl", "shell", str(busybox_root)], "cd /bin\nexit 3\n"
    )
    assert status == 3, screen
    assert "(aarch64) arm64-rootfs:/# " in screen
    assert "(aarch64) arm64-rootfs:/bin# " in screen
    assert "\\w" not in screen


def test_dash_gets_a_prompt_without_escapes(arm64_root: tuple[Path, dict[str, object]]) -> None:
    root, _ = arm64_root
    status, screen = on_a_terminal(
        [sys.executable, "-m", "binfmtctl", "shell", str(root), "--", "/bin/sh", "-i"],
        "echo $((6*7))\nexit 5\n",
    )
    assert status == 5, screen
    assert "(aarch64) debian-arm64# " in screen  # /bin/sh is dash: no \w it cannot expand
    assert "42" in screen
    assert "\\w" not in screen


def test_bash_login_shell_prompt_names_the_root(arm64_root: tuple[Path, dict[str, object]]) -> None:
    root, _ = arm64_root
    assert rootless.login_shell(str(root)) == "/bin/bash"
    status, screen = on_a_terminal(
        [sys.executable, "-m", "binfmtctl", "shell", str(root)], "echo $((6*7))\nexit 7\n"
    )
    assert status == 7, screen
    # Debian's bash.bashrc puts debian_chroot in front of its own prompt.
    assert re.search(r"\(aarch64 debian-arm64\)root@[^ ]*:/# ", screen), screen
    assert "42" in screen
    assert "\\w" not in screen
