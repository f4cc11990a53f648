"""The command line: envelope, exit codes, usage errors, explain and arches."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import conftest
from binfmtctl.cli import main


def run(*args: str, stdin: bytes | None = None) -> tuple[int, dict[str, Any] | None, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "binfmtctl", *args],
        capture_output=True,
        input=stdin,
        check=False,
    )
    data = json.loads(proc.stdout) if "--json" in args and proc.stdout else None
    return proc.returncode, data, proc.stderr.decode()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["install", "--profile", "loose"], "invalid choice: 'loose'"),
        (["enable"], "name the entries or ARCHes to enable, or use --instance"),
        (["explain", "nonsense"], "unknown architecture 'nonsense'"),
        (["uninstall"], "name the ARCHes or entries to remove, or use --all"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, tmp_path: Any) -> None:
    code, data, _ = run(*argv, "--mountpoint", str(tmp_path), "--json")
    assert code == 2
    assert data is not None
    assert data["ok"] is False
    assert message in data["errors"][0]["message"]


def test_uninstall_when_not_mounted_says_how(tmp_path: Any) -> None:
    code, _, err = run("uninstall", "--all", "--mountpoint", str(tmp_path))
    assert code == 1
    assert f"binfmt_misc is not mounted at {tmp_path}" in err


def test_help_teaches() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    for word in ("install", "status", "explain", "exit codes", "examples"):
        assert word in proc.stdout


def test_explain_arch_json() -> None:
    code, data, _ = run("explain", "arm64", "--json")
    assert code == 0 and data is not None
    entry = data["data"]["entry"]
    assert entry == {
        "name": "qemu-aarch64",
        "type": "M",
        "offset": 0,
        "magic": "7f454c460201010000000000000000000200b700",
        "mask": "ffffffffffffff00fffffffffffffffffeffffff",
        "extension": None,
        "interpreter": "/usr/bin/qemu-aarch64-static",
        "flags": "F",
    }
    assert data["data"]["arch"] == "aarch64"
    fields = [b["field"] for b in data["data"]["bytes"]]
    assert len(fields) == 20


def test_explain_register_string_from_stdin_normalises_flags() -> None:
    code, data, _ = run("explain", "-", "--json", stdin=b":x:M:2:\\x41B:\\xff\\xdf:/bin/sh:FC")
    assert code == 0 and data is not None
    assert data["data"]["entry"] == {
        "name": "x",
        "type": "M",
        "offset": 2,
        "magic": "4142",
        "mask": "ffdf",
        "extension": None,
        "interpreter": "/bin/sh",
        "flags": "OCF",
    }


@pytest.mark.parametrize(
    ("spec", "code"),
    [
        (":x:M::\\x4::/bin/sh:", "invalid_entry"),
        (":x:Q::abc::/bin/sh:", "invalid_entry"),
        (":" + "n" * 256 + ":M::abc::/bin/sh:", "name_too_long"),
    ],
)
def test_explain_invalid_strings(spec: str, code: str) -> None:
    status, data, _ = run("explain", spec, "--json")
    assert status == 1 and data is not None
    assert data["ok"] is False
    assert data["errors"][0]["code"] == code


@conftest.x86_64_host
def test_arches_lists_the_catalog(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    assert main(["arches", "--json", "--mountpoint", str(tmp_path)]) == 0
    rows = json.loads(capsys.readouterr().out)["data"]["arches"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["aarch64"]["aliases"]["debian"] == ["arm64"]
    assert by_name["x86_64"]["native"] is True
    assert by_name["aarch64"]["registered"] is False
    if by_name["aarch64"]["emulator"] is not None:
        assert by_name["aarch64"]["emulator"]["static"] is True


@pytest.mark.parametrize(
    ("argv", "verb"),
    [
        ([], "status"),
        (["--json"], "status"),
        (["--mountpoint", "install", "--json"], "status"),
        (["--mountpoint", "/x", "scan", "/y"], "scan"),
        (["run", "--", "install"], "run"),
        (["--", "install"], None),
        (["--help"], None),
        (["frob"], None),
        (["uninstall", "--all"], "uninstall"),
    ],
)
def test_only_the_named_verb_is_loaded(argv: list[str], verb: str | None) -> None:
    from binfmtctl.cli import VERBS, _verb_in, _verbs

    assert _verb_in(argv) == verb
    loaded = {m.__name__.rsplit(".", 1)[-1] for m in _verbs(argv)}
    assert loaded == ({VERBS[verb]} if verb else set(VERBS.values()))


# -- plain `status` is read without argparse: the same answer as argparse's ----------


def _argparse_status(argv: list[str]) -> dict[str, object] | None:
    """What the argparse path gives the handler for ``argv`` (None: a usage error)."""
    from test_quick_args import argparse_reading

    return argparse_reading(argv)


def _quick_status(argv: list[str]) -> dict[str, object] | None:
    """What the quick reader makes of ``argv`` with status's table (None: left to argparse)."""
    from binfmtctl.cli import quick, status

    read = quick.read(status.QUICK["status"], argv)
    return None if read is None else vars(read)


@pytest.mark.parametrize(
    "argv",
    [
        [], ["status"], ["--json"], ["status", "--json"], ["--json", "status"],
        ["status", "--boot"], ["status", "--root", "/srv/r"], ["status", "--root=/srv/r"],
        ["--mountpoint", "/m", "status"], ["status", "--mountpoint=/m", "--json"],
        ["status", "--mountpoint", "/a", "--mountpoint", "/b"], ["status", "--root="],
        ["status", "--boot", "--root", "status"],
    ],
)  # fmt: skip
def test_quick_status_reads_what_argparse_reads(argv: list[str]) -> None:
    quick = _quick_status(argv)
    assert quick is not None
    assert quick == _argparse_status(argv)


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--help"], ["status", "-h"], ["status", "--js"], ["status", "--root"],
        ["status", "--root", "--json"], ["status", "--json=1"], ["status", "extra"],
        ["status", "status"], ["status", "--", "x"], ["status", "--boot=yes"],
        ["status", "--mount", "/m"],
    ],
)  # fmt: skip
def test_quick_status_leaves_everything_else_to_argparse(argv: list[str]) -> None:
    """Help, prefixes, missing values and strays go to argparse (its own messages)."""
    assert _quick_status(argv) is None
