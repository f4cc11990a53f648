"""What a newcomer meets first: ``--version``, and errors raised through ``sandbox.call``."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from binfmtctl import __version__, sandbox
from binfmtctl.errors import (
    BinfmtError,
    CommandNotFoundError,
    EntryParseError,
    UnknownArchError,
)
from conftest import _NO_SANDBOX, ROOT


def _pyproject_version_is_dynamic() -> bool:
    text = (ROOT / "pyproject.toml").read_text()
    return 'dynamic = ["version"]' in text and 'attr = "binfmtctl.__version__"' in text


def test_version_prints_the_package_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"binfmtctl {__version__}\n", "")
    # One source of truth: the installed metadata is the same string.
    assert _pyproject_version_is_dynamic()
    from importlib.metadata import version

    assert version("binfmtctl") == __version__


@pytest.mark.parametrize(
    "error",
    [
        UnknownArchError("nosucharch", ["arm64"]),
        EntryParseError("unknown flag 'Z'", b":qemu-x:M::\\x7f:/q:Z", 19, "flags"),
        CommandNotFoundError("cannot run ./x: no such file or directory", program="./x"),
        BinfmtError("plain", path="/p"),
    ],
)
def test_errors_survive_pickling_unchanged(error: BinfmtError) -> None:
    back = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(back) is type(error)
    assert (str(back), back.to_dict(), back.exit_code) == (
        str(error),
        error.to_dict(),
        error.exit_code,
    )


@pytest.mark.skipif(_NO_SANDBOX is not None, reason=f"no private binfmt_misc: {_NO_SANDBOX}")
def test_error_raised_through_call_reads_as_raised() -> None:
    with pytest.raises(UnknownArchError) as caught:
        sandbox.call(["true"], arches=["nosucharch"])
    assert str(caught.value) == ("unknown architecture 'nosucharch'; `binfmtctl arches` lists them")
    assert caught.value.to_dict() == {
        "code": "unknown_arch",
        "message": "unknown architecture 'nosucharch'; `binfmtctl arches` lists them",
        "arch": "nosucharch",
    }
