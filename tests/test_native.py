"""native: which arches the kernel runs itself, and the per-boot cache of that answer.

The cache is read with hostile files in its place (a FIFO, a symlink, a
directory, foreign JSON); the user case runs the real CLI as the unprivileged
test user.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from binfmtctl import bootcache, host, native
from conftest import qemu

TEST_USER = "binfmtctl-test"  # created by scripts/test-deps

# -- another machine: only the family rule can answer ------------------------------


@pytest.mark.parametrize(
    ("uname_m", "expected"),
    [
        ("x86_64", ["i386", "i486", "x86_64"]),
        ("aarch64", ["arm", "aarch64"]),
        ("armv7l", ["arm", "aarch64"]),
        ("riscv64", ["riscv64"]),
        ("nosuch", []),
    ],
)
def test_another_machine_is_answered_by_its_family(uname_m: str, expected: list[str]) -> None:
    assert [a.name for a in native.native_arches(uname_m)] == expected


# -- once per boot, for every user --------------------------------


def _key() -> str:
    return bootcache.key()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (lambda: json.dumps({"key": _key(), "native": ["x86_64", "i386"]}), ("x86_64", "i386")),
        (lambda: json.dumps({"key": "another boot", "native": ["x86_64"]}), None),
        (lambda: json.dumps({"key": _key(), "native": "x86_64"}), None),
        (lambda: json.dumps({"key": _key(), "native": [1, 2]}), None),
        (lambda: json.dumps(["x86_64"]), None),
        (lambda: "{not json", None),
        (lambda: "", None),
    ],
)
def test_cache_answers_only_for_this_boot_and_a_list_of_names(
    tmp_path: Path, content: Callable[[], str], expected: tuple[str, ...] | None
) -> None:
    path = tmp_path / "native.json"
    path.write_text(content())
    assert native._read_cache(str(path)) == expected


def test_cache_that_is_a_fifo_symlink_or_directory_is_not_read(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"key": _key(), "native": ["x86_64"]}))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # a blocking open would hang here
    link = tmp_path / "link.json"
    link.symlink_to(good)
    assert native._read_cache(str(good)) == ("x86_64",)
    for path in (fifo, link, tmp_path, tmp_path / "missing.json"):
        assert native._read_cache(str(path)) is None, path


def test_cache_of_another_user_is_not_read(tmp_path: Path) -> None:
    """A right answer in a file someone else owns is not believed (a shared directory)."""
    theirs = tmp_path / "native.json"
    theirs.write_text(json.dumps({"key": _key(), "native": ["x86_64"]}))
    assert native._read_cache(str(theirs)) == ("x86_64",)
    os.chown(theirs, pwd.getpwnam(TEST_USER).pw_uid, -1)
    assert native._read_cache(str(theirs)) is None


@pytest.mark.parametrize(
    ("uid_map", "euid", "outside"),
    [
        ("         0          0 4294967295\n", 0, 0),
        ("         0       1001          1\n", 0, 1001),
        ("         0     100000      65536\n", 33, 100033),
        ("         0       1001          1\n", 5, None),
        ("garbage\n", 0, None),
    ],
)
def test_outside_uid_reads_the_namespace_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uid_map: str, euid: int, outside: int | None
) -> None:
    path = tmp_path / "uid_map"
    path.write_text(uid_map)
    monkeypatch.setattr(os, "geteuid", lambda: euid)  # another uid than the test's own
    assert bootcache._outside_uid(str(path)) == outside


def test_cache_file_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """$XDG_RUNTIME_DIR first; /run for real root; else the user's cache directory.

    Which uid is outside the namespace is replaced by a stand-in for the user
    case: the test runs as one uid only.
    """
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1001")
    assert native._cache_file() == "/run/user/1001/binfmtctl/native.json"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(bootcache, "_outside_uid", lambda: 0)
    assert native._cache_file() == "/run/binfmtctl/native.json"
    monkeypatch.setattr(bootcache, "_outside_uid", lambda: 1001)
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert native._cache_file() == "/home/someone/.cache/binfmtctl/native.json"
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/someone")
    assert native._cache_file() == "/var/cache/someone/binfmtctl/native.json"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert native._cache_file() is None
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME")
    assert native._cache_file() is None


def test_run_as_a_user_without_a_runtime_dir_detects_native_arches_once() -> None:
    """The rootless case of CI jobs: no $XDG_RUNTIME_DIR, and uid 0 inside the namespace.

    The answer is stored in the user's cache directory by the first run; the
    second run must find it (the file is not written again: same inode).
    """
    from test_run import SYSTEM_PYTHON, USER, _as_user, _user_problem, _user_tree, program

    problem = _user_problem()
    if problem:
        pytest.skip(problem)
    qemu("qemu-aarch64")
    home = Path(tempfile.mkdtemp(prefix="binfmtctl-home-"))
    try:
        entry = pwd.getpwnam(USER)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        argv = _as_user(
            "env", "-u", "XDG_RUNTIME_DIR", "-u", "XDG_CACHE_HOME", f"HOME={home}",
            f"PYTHONPATH={_user_tree() / 'src'}", SYSTEM_PYTHON, "-m", "binfmtctl",
            "run", "--arch", "arm64", "--", program("user", "arm64"), "true",
        )  # fmt: skip
        first = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        assert (first.returncode, first.stderr) == (0, "")
        cache = home / ".cache" / "binfmtctl" / "native.json"
        before = cache.stat()
        assert before.st_uid == entry.pw_uid
        me = host.host_arch()
        stored = json.loads(cache.read_text())  # the user's file: binfmtctl reads only its own
        assert me is not None and stored["key"] == bootcache.key() and me.name in stored["native"]
        second = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        assert (second.returncode, second.stderr) == (0, "")
        after = cache.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    finally:
        shutil.rmtree(home)
