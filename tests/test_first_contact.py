"""What a newcomer meets first: ``--version``, errors raised through ``rootless.call``,
``run --json`` and ``run --help``, ``status`` without binfmt_misc and ``status --help``."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from binfmtctl import __version__, rootless, sandbox
from binfmtctl.cli import build_parser
from binfmtctl.errors import (
    BinfmtError,
    CommandNotFoundError,
    EntryParseError,
    UnknownArchError,
)
from conftest import _NO_SANDBOX, ROOT, foreign_busybox


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
        rootless.call(["true"], rootless.RunOptions(arches=["nosucharch"]))
    assert str(caught.value) == ("unknown architecture 'nosucharch'; `binfmtctl arches` lists them")
    assert caught.value.to_dict() == {
        "code": "unknown_arch",
        "message": "unknown architecture 'nosucharch'; `binfmtctl arches` lists them",
        "arch": "nosucharch",
    }


# -- run --json, run --help -----------------------------------------------------------


def binfmtctl(*args: str, cwd: str = "/") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "binfmtctl", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


needs_sandbox = pytest.mark.skipif(
    _NO_SANDBOX is not None, reason=f"no private binfmt_misc: {_NO_SANDBOX}"
)


@needs_sandbox
def test_run_json_prints_the_envelope_with_the_commands_output() -> None:
    busybox = str(foreign_busybox("arm64"))
    script = "uname -m; echo to-stderr >&2; printf '\\377\\n'; exit 3"
    proc = binfmtctl("run", "--json", "--arch", "arm64", "--", busybox, "sh", "-c", script)
    assert proc.returncode == 3
    assert proc.stderr == ""
    assert json.loads(proc.stdout) == {
        "version": 1,
        "command": "run",
        "ok": False,
        "data": {
            "argv": [busybox, "sh", "-c", script],
            "rootfs": None,
            "exit_status": 3,
            "signal": None,
            "stdout": "aarch64\n\ufffd\n",
            "stderr": "to-stderr\n",
        },
        "errors": [],
        "warnings": [],
    }


@needs_sandbox
def test_run_json_success_and_signal() -> None:
    busybox = str(foreign_busybox("arm64"))
    ok = binfmtctl("run", "--json", "--arch", "arm64", "--", busybox, "true")
    assert ok.returncode == 0
    envelope = json.loads(ok.stdout)
    assert (envelope["ok"], envelope["data"]["exit_status"], envelope["data"]["stdout"]) == (
        True,
        0,
        "",
    )
    killed = binfmtctl("run", "--json", "--arch", "arm64", "--", busybox, "sh", "-c", "kill -9 $$")
    assert killed.returncode == 128 + 9
    data = json.loads(killed.stdout)["data"]
    assert (data["exit_status"], data["signal"]) == (None, "SIGKILL")


def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser(["run"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    run = sub.choices["run"]
    assert isinstance(run, argparse.ArgumentParser)
    return run


def test_run_usage_line_names_every_option() -> None:
    run = _run_parser()
    usage = run.format_usage()
    options = {s for a in run._actions for s in a.option_strings if s.startswith("--")}
    assert options == {"--help", "--json", "--mountpoint", "--arch", "--flags",
                       "--interpreter-dir", "--uid-map", "--rootfs", "--bind", "--workdir",
                       "--env"}  # fmt: skip
    assert [o for o in sorted(options - {"--help"}) if o not in usage] == []


def test_run_help_states_the_exit_code_a_bad_root_gets(tmp_path: Path) -> None:
    proc = binfmtctl("run", "--rootfs", str(tmp_path / "missing"), "--", "true")
    assert (proc.returncode, proc.stderr) == (
        2,
        f"binfmtctl: error: --rootfs {tmp_path / 'missing'}: not a directory\n",
    )
    assert "2 usage (also a --rootfs that is not a directory)" in " ".join(
        _run_parser().format_help().split()
    )


# -- status -----------------------------------------------------------------------


def test_status_says_how_to_mount_binfmt_misc(tmp_path: Path) -> None:
    proc = binfmtctl("status", "--mountpoint", str(tmp_path))
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[1:7] == [
        f"binfmt_misc: not mounted at {tmp_path}; mount it as root with",
        f"  mount -t binfmt_misc binfmt_misc {tmp_path}",
        "(systemd mounts it at boot; `binfmtctl install` and `apply` mount it themselves).",
        "In a container run with --privileged that is the",
        "host's instance: what is registered there runs on the host too. Without",
        "--privileged the mount is refused; `binfmtctl run` needs no mount at all.",
    ]


@needs_sandbox
def test_status_help_names_the_sections_status_prints(sb: sandbox.Sandbox) -> None:
    from conftest import cli

    helped = cli(sb, "status", "--help").stdout
    assert cli(sb, "install", "arm64").returncode == 0
    shown = cli(sb, "status").stdout
    for heading in ("host:", "binfmt_misc:", "container engines:", "boot configuration:"):
        assert f"\n  {heading} " in helped, heading
        assert any(line.startswith(heading) for line in shown.splitlines()), heading
    assert "ENTRY         ARCH     ENABLED  FLAGS  INTERPRETER" in shown
    assert "  entry table         ENTRY ARCH ENABLED FLAGS INTERPRETER" in helped
