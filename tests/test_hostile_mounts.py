"""Hostile mount points: binfmtctl writes only into a real binfmt_misc file system.

A ``--mountpoint`` that is a plain directory may hold a file or a symlink named
``register`` (or named like an entry) planted by another user; writing there
would write wherever the link points. Every case runs the real command in a
private instance and checks the exact refusal and that the victim is unchanged.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from binfmtctl import sandbox
from conftest import cli, qemu

USER = "binfmtctl-test"
MP = "/proc/sys/fs/binfmt_misc"


def refusal(mountpoint: Path | str) -> str:
    return (
        f"binfmtctl: error: {mountpoint} is not a binfmt_misc file system; nothing was "
        "written there (--mountpoint must name a mounted binfmt_misc, or an empty "
        "directory for binfmtctl to mount one on)\n"
    )


def _chown_to_user(*paths: Path) -> None:
    entry = pwd.getpwnam(USER)
    for path in paths:
        os.lchown(path, entry.pw_uid, entry.pw_gid)


@pytest.fixture
def plain(tmp_path: Path) -> tuple[Path, Path]:
    """A plain directory of the test user's with ``register`` and ``qemu-aarch64``
    symlinks to a victim file the user owns, and a plain ``status`` file."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    directory = tmp_path / "plain"
    directory.mkdir()
    (directory / "register").symlink_to(victim)
    (directory / "qemu-aarch64").symlink_to(victim)
    (directory / "status").write_text("enabled\n")
    _chown_to_user(victim, directory, *directory.iterdir())
    return directory, victim


def _snapshot(directory: Path, victim: Path) -> tuple[list[tuple[str, str]], str]:
    files = sorted(
        (p.name, os.readlink(p) if p.is_symlink() else p.read_text()) for p in directory.iterdir()
    )
    return files, victim.read_text()


@pytest.mark.parametrize(
    "argv",
    [
        ["install", "arm64"],
        ["install", "arm64", "--replace"],
        ["disable", "qemu-aarch64"],
        ["enable", "arm64"],
        ["uninstall", "arm64"],
        ["uninstall", "--all"],
        ["disable", "--instance"],
        ["enable", "--instance"],
    ],
)
def test_a_plain_directory_with_planted_symlinks_is_never_written(
    sb: sandbox.Sandbox, plain: tuple[Path, Path], argv: list[str]
) -> None:
    qemu("qemu-aarch64")
    directory, victim = plain
    before = _snapshot(directory, victim)
    proc = cli(sb, *argv, "--mountpoint", str(directory))
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == refusal(directory)
    assert _snapshot(directory, victim) == before == (before[0], "precious\n")
    # The real instance was not touched either.
    assert sorted(sb.run(os.listdir, MP)) == ["register", "status"]


def test_a_plain_register_file_is_never_written(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    qemu("qemu-aarch64")
    directory = tmp_path / "plain"
    directory.mkdir()
    (directory / "register").write_text("")
    _chown_to_user(directory, directory / "register")
    proc = cli(sb, "install", "arm64", "--mountpoint", str(directory))
    assert (proc.returncode, proc.stderr) == (1, refusal(directory))
    assert (directory / "register").read_text() == ""


def test_apply_into_a_plain_directory_is_refused(
    sb: sandbox.Sandbox, plain: tuple[Path, Path], tmp_path: Path
) -> None:
    directory, victim = plain
    conf = tmp_path / "x.conf"
    conf.write_text(":x:M::abc::/bin/true:\n")
    before = _snapshot(directory, victim)
    proc = cli(sb, "apply", str(conf), "--mountpoint", str(directory))
    assert (proc.returncode, proc.stderr) == (1, refusal(directory))
    assert _snapshot(directory, victim) == before


def test_a_file_as_mountpoint_is_refused(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    qemu("qemu-aarch64")
    target = tmp_path / "file"
    target.write_text("data\n")
    proc = cli(sb, "install", "arm64", "--mountpoint", str(target))
    assert (proc.returncode, proc.stderr) == (1, refusal(target))
    assert target.read_text() == "data\n"


def test_status_of_a_plain_directory_says_not_mounted(
    sb: sandbox.Sandbox, plain: tuple[Path, Path]
) -> None:
    directory, victim = plain
    proc = cli(sb, "status", "--mountpoint", str(directory))
    assert proc.returncode == 0, proc.stderr
    assert f"binfmt_misc: not mounted at {directory}" in proc.stdout
    assert victim.read_text() == "precious\n"


def test_an_empty_directory_gets_binfmt_misc_mounted(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    """The commands that mount do so only on an empty directory, then use it."""
    qemu("qemu-aarch64")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = cli(sb, "install", "arm64", "--mountpoint", str(empty))
    assert proc.returncode == 0, proc.stderr
    # The same instance (one per user namespace), seen through both mounts.
    assert "qemu-aarch64" in sb.run(os.listdir, str(empty))
    assert "qemu-aarch64" in sb.run(os.listdir, MP)
    assert os.listdir(empty) == []  # outside the sandbox: an empty directory still


def test_a_non_empty_directory_is_not_mounted_over(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    qemu("qemu-aarch64")
    directory = tmp_path / "data"
    directory.mkdir()
    (directory / "notes").write_text("mine\n")
    proc = cli(sb, "install", "arm64", "--mountpoint", str(directory))
    assert (proc.returncode, proc.stderr) == (1, refusal(directory))
    assert sb.run(os.listdir, str(directory)) == ["notes"]  # nothing mounted on top


def test_a_symlink_to_the_real_instance_is_the_real_instance(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    """What is checked is the file system written to, not the spelling of the path."""
    qemu("qemu-aarch64")
    link = tmp_path / "link"
    link.symlink_to(MP)
    proc = cli(sb, "install", "arm64", "--mountpoint", str(link))
    assert proc.returncode == 0, proc.stderr
    assert "qemu-aarch64" in sb.run(os.listdir, MP)
