"""files.py: the one ownership rule, on real files, symlinks and FIFOs (no kernel needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from binfmtctl import files
from binfmtctl.errors import ConfigError, ForeignFileError
from binfmtctl.files import Ownership, SavedAction

MARK = b"# mine\n"


def ours(data: bytes) -> bool:
    return data.startswith(MARK)


def _examine(directory: Path, name: str, content: bytes | None = None) -> files.Existing:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return files.examine(fd, name, str(directory / name), content=content, ours=ours)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("make", "state", "what"),
    [
        (lambda p: None, Ownership.ABSENT, ""),
        (lambda p: p.write_bytes(MARK + b"old"), Ownership.OURS, ""),
        (lambda p: p.write_bytes(MARK + b"new"), Ownership.SAME, ""),
        (lambda p: p.write_bytes(b"admin"), Ownership.FOREIGN, "was not written by binfmtctl"),
        (lambda p: p.symlink_to("/dev/null"), Ownership.FOREIGN, "is a symbolic link to /dev/null"),
        (os.mkfifo, Ownership.FOREIGN, "is not a regular file but a FIFO"),
    ],
)
def test_examine_tells_ours_same_absent_and_foreign(
    tmp_path: Path, make: object, state: Ownership, what: str
) -> None:
    assert callable(make)
    make(tmp_path / "x.conf")
    have = _examine(tmp_path, "x.conf", MARK + b"new")
    assert (have.state, have.what) == (state, what)


def test_put_writes_ours_keeps_same_and_refuses_foreign_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "d" / "x.conf"
    saved = files.put(str(tmp_path / "d"), "x.conf", MARK + b"1", ours=ours)
    assert (saved.action, target.read_bytes()) == (SavedAction.WRITTEN, MARK + b"1")
    again = files.put(str(tmp_path / "d"), "x.conf", MARK + b"1", ours=ours)
    assert again.action is SavedAction.UNCHANGED
    target.write_bytes(b"an administrator's")
    with pytest.raises(ForeignFileError) as err:
        files.put(str(tmp_path / "d"), "x.conf", MARK + b"2", ours=ours)
    assert "binfmtctl does not replace it (pass --overwrite-foreign" in err.value.message
    assert target.read_bytes() == b"an administrator's"
    forced = files.put(
        str(tmp_path / "d"), "x.conf", MARK + b"2", ours=ours, overwrite_foreign=True
    )
    assert (forced.action, target.read_bytes()) == (SavedAction.WRITTEN, MARK + b"2")
    assert sorted(os.listdir(tmp_path / "d")) == ["x.conf"]  # no temporary file left


def test_a_dry_run_writes_nothing_not_even_the_directory(tmp_path: Path) -> None:
    saved = files.put(str(tmp_path / "new"), "x.conf", MARK, ours=ours, dry_run=True)
    assert saved.action is SavedAction.WOULD_WRITE
    assert saved.to_dict()["action"] == "would write"
    assert not (tmp_path / "new").exists()


def test_read_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError) as err:
        files.read(tmp_path / "fifo")
    assert err.value.message.endswith(
        "configuration files must be regular files (or symlinks to them)"
    )
    (tmp_path / "ok").write_bytes(b"data")
    assert files.read(tmp_path / "ok") == b"data"
