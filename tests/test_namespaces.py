"""namespaces.py: the one mountinfo parser, and what this process's namespace is.

The parser is pure and tested on text; the namespace facts are read from this
process's real /proc and from a fake /proc directory where only a fixed inode
can say "initial user namespace" (that inode cannot be made real).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from binfmtctl import namespaces
from binfmtctl.namespaces import Mount

ROOT = "22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw"


@pytest.mark.parametrize(
    ("text", "mounts"),
    [
        ("", []),
        (ROOT, []),
        (
            "40 22 0:35 / /proc/sys/fs/binfmt_misc rw shared:9 - binfmt_misc binfmt_misc rw",
            [Mount("/proc/sys/fs/binfmt_misc", "0:35")],
        ),
        # optional fields before the separator; a mountpoint spelled with mountinfo's escapes
        (
            "41 22 0:52 / /srv/a\\040b rw shared:3 master:1 - binfmt_misc none rw",
            [Mount("/srv/a\\040b", "0:52")],
        ),
        # a tmpfs whose source is named binfmt_misc is not a binfmt_misc mount
        ("42 22 0:53 / /x rw - tmpfs binfmt_misc rw", []),
        ("garbage\n\n1 2 3 - \n", []),
        ("1 2 0:1 / /a - ", []),
    ],
)
def test_binfmt_mounts_reads_only_binfmt_misc_lines(text: str, mounts: list[Mount]) -> None:
    assert namespaces.binfmt_mounts(text) == mounts


def test_the_same_superblock_is_the_same_instance() -> None:
    text = "\n".join(
        [
            ROOT,
            "40 22 0:35 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw",
            "50 22 0:35 / /mnt/again rw - binfmt_misc binfmt_misc rw",
        ]
    )
    assert {m.dev for m in namespaces.binfmt_mounts(text)} == {"0:35"}


def _fake_proc(tmp_path: Path, userns: Path) -> str:
    (tmp_path / "self" / "ns").mkdir(parents=True)
    (tmp_path / "self" / "ns" / "user").symlink_to(userns)
    return str(tmp_path)


def test_a_process_outside_the_initial_user_namespace_is_not_the_host(tmp_path: Path) -> None:
    other = tmp_path / "target"
    other.write_text("")
    proc = _fake_proc(tmp_path / "proc", other)
    assert os.stat(other).st_ino != namespaces.INITIAL_USERNS_INO
    assert namespaces.in_initial_user_namespace(proc) is False
    assert namespaces.changes_reach_host(proc) is False


def test_without_namespace_support_there_is_only_the_host(tmp_path: Path) -> None:
    assert namespaces.in_initial_user_namespace(str(tmp_path)) is True


def test_this_process_is_the_same_user_namespace_as_itself() -> None:
    assert namespaces.userns_relation(os.getpid()) is namespaces.Relation.SAME


def test_an_unreadable_process_has_an_unknown_relation(tmp_path: Path) -> None:
    assert namespaces.userns_relation(1, str(tmp_path)) is namespaces.Relation.UNKNOWN
