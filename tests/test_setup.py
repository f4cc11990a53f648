"""scripts/setup installs a binfmtctl every user can run.

The real script runs, as root, on a copy of this checkout, into a private prefix
and bin directory under a world-readable temporary directory (``--prefix``,
``--bindir``; ``--no-apt`` because the packages it would install are already
there, which test-deps guarantees). Then the unprivileged user ``binfmtctl-test``
runs what it installed: ``--version`` and a foreign busybox through ``binfmtctl
run`` (a private binfmt_misc instance: the host's handlers are not touched).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from binfmtctl import __version__
from conftest import _NO_SANDBOX, ROOT, _host_binfmt_state, foreign_busybox

USER = "binfmtctl-test"


def _problem() -> str | None:
    if os.geteuid() != 0:
        return "scripts/setup needs root"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER}: run scripts/test-deps as root"
    for path in ("/usr/bin/python3", "/usr/bin/setpriv"):
        if not os.path.exists(path):
            return f"{path} missing"
    check = ["/usr/bin/python3", "-c", "import ensurepip, setuptools"]
    if subprocess.run(check, capture_output=True, check=False).returncode != 0:
        return "the distro's python3 lacks venv or setuptools: run scripts/test-deps"
    return None


pytestmark = pytest.mark.skipif(_problem() is not None, reason=str(_problem()))


def as_user(*argv: str) -> subprocess.CompletedProcess[str]:
    entry = pwd.getpwnam(USER)
    return subprocess.run(
        ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
         "env", "-i", f"HOME={entry.pw_dir}", "PATH=/usr/bin:/bin", *argv],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """scripts/setup run into a fresh world-readable directory; yields that directory."""
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-setup-"))
    top.chmod(0o755)
    source = top / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    shutil.copytree(ROOT / "scripts", source / "scripts")
    before = _host_binfmt_state()
    tree = sorted(str(p.relative_to(source)) for p in source.rglob("*"))
    try:
        proc = subprocess.run(
            [str(source / "scripts" / "setup"), "--prefix", str(top / "opt"),
             "--bindir", str(top / "bin"), "--no-apt"],
            capture_output=True, text=True, check=False,
            # The environment a root shell with pyenv has: its python3 first on PATH.
            env={**os.environ, "PATH": f"{Path(sys.base_prefix) / 'bin'}:{os.environ['PATH']}"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout == (
            f"binfmtctl installed: {top / 'bin' / 'binfmtctl'} (binfmtctl {__version__})\n"
        )
        # Nothing written into the checkout it was run from (pip builds from a copy).
        assert sorted(str(p.relative_to(source)) for p in source.rglob("*")) == tree
        yield top
    finally:
        shutil.rmtree(top)
    assert _host_binfmt_state() == before


def test_the_venv_uses_the_system_interpreter(installed: Path) -> None:
    cfg = (installed / "opt" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin\n" in cfg
    assert os.path.realpath(installed / "opt" / "bin" / "python3").startswith("/usr/bin/")


def test_an_ordinary_user_can_run_version(installed: Path) -> None:
    proc = as_user(str(installed / "bin" / "binfmtctl"), "--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"binfmtctl {__version__}\n", "")


@pytest.mark.skipif(_NO_SANDBOX is not None, reason=f"no private binfmt_misc: {_NO_SANDBOX}")
def test_an_ordinary_user_can_run_a_foreign_program(installed: Path) -> None:
    (installed / "arm64").mkdir()
    busybox = installed / "arm64" / "busybox"
    shutil.copy2(foreign_busybox("arm64"), busybox)
    busybox.chmod(0o755)
    proc = as_user(
        str(installed / "bin" / "binfmtctl"), "run", "--arch", "arm64", "--", str(busybox),
        "uname", "-m",
    )  # fmt: skip
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "aarch64\n", "")


def test_every_installed_file_is_readable_by_others(installed: Path) -> None:
    unreadable = [
        str(p)
        for p in (installed / "opt").rglob("*")
        if not p.is_symlink() and not (p.stat().st_mode & 0o004)
    ]
    assert unreadable == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefix"], "usage: "),
        (["--prefix", "relative/dir"], "setup: --prefix must be an absolute path\n"),
        (["--bindir", "bin"], "setup: --bindir must be an absolute path\n"),
        (["--frobnicate"], "usage: "),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(
    args: list[str], message: str, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [str(ROOT / "scripts" / "setup"), *args], capture_output=True, text=True, check=False,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith(message)
    assert list(tmp_path.iterdir()) == []
