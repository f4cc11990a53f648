"""files.write_atomic under SIGKILL: the old file or the new one, never a mix."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from binfmtctl import binfmt_d, files
from binfmtctl.errors import ConfigError

WRITER = """
import sys
from binfmtctl import files
files.write_atomic(sys.argv[1], bytes([int(sys.argv[2])]) * int(sys.argv[3]))
"""


def test_a_writer_killed_at_any_point_leaves_the_old_or_the_new_file(tmp_path: Path) -> None:
    size = 16 << 20
    target = tmp_path / "qemu-arm.conf"
    target.write_bytes(b"A" * size)
    for attempt in range(24):
        old = target.read_bytes()[:1]
        new = b"A" if old == b"B" else b"B"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(new[0]), str(size)])
        time.sleep((attempt % 12) * 0.01)  # varied kill points, not a timing assertion
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = target.read_bytes()
        assert len(data) == size
        assert data in (old * size, new * size)
        leftovers = [p.name for p in tmp_path.iterdir() if p.name != target.name]
        assert all(n.startswith(".qemu-arm.conf.") and n.endswith(".tmp") for n in leftovers)
        assert binfmt_d.list_binfmt_d([str(tmp_path)])[0].path == str(target)
    # Which of the two each kill leaves varies by design; a writer left alone writes.
    old = target.read_bytes()[:1]
    new = b"A" if old == b"B" else b"B"
    subprocess.run([sys.executable, "-c", WRITER, str(target), str(new[0]), str(size)], check=True)
    assert target.read_bytes() == new * size
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == [target.name]


DIE_AT = """
import os, signal, sys
from binfmtctl import files
point, nth = sys.argv[4], int(sys.argv[5])
real, calls = getattr(os, point), []
def die(*args, **kwargs):
    calls.append(1)
    if len(calls) == nth:
        if point == "write":  # half of the data reaches the temporary file
            real(args[0], args[1][: len(args[1]) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(os, point, die)
files.write_atomic(sys.argv[1], bytes([int(sys.argv[2])]) * int(sys.argv[3]))
"""


@pytest.mark.parametrize(
    ("point", "nth", "expect"),
    [("write", 1, b"A"), ("fsync", 1, b"A"), ("replace", 1, b"A"), ("fsync", 2, b"B")],
)
def test_a_writer_killed_at_each_step_leaves_a_whole_file(
    tmp_path: Path, point: str, nth: int, expect: bytes
) -> None:
    # Killed mid-write, at the file's fsync, before the rename: the old file; killed
    # at the directory's fsync (after the rename): the new one. Never a mix.
    size = 4 << 20
    target = tmp_path / "qemu-arm.conf"
    target.write_bytes(b"A" * size)
    argv = [str(target), str(ord("B")), str(size), point, str(nth)]
    proc = subprocess.run([sys.executable, "-c", DIE_AT, *argv], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == expect * size


def test_write_atomic_failure_says_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"cannot write {tmp_path}/missing/x.conf"):
        files.write_atomic(tmp_path / "missing" / "x.conf", b"x")
    assert os.listdir(tmp_path) == []
