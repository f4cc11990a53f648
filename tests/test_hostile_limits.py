"""Numbers and emulators: out-of-range options, files that are no emulator, wrong targets.

Every numeric option is bounded with a usage error (exit 2); an emulator
candidate that is not an ELF executable for this machine (an empty file, a
script, a copy of a foreign busybox, an object file, a FIFO) is never chosen
and is refused when named; an emulator whose name says it is for another arch
is refused unless forced; and ``why`` never says "will run" for an entry whose
interpreter cannot run the program. Everything registers in a private
instance; the real kernel and the real QEMU show the diagnosis is right.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from binfmtctl import interpreters, plan, sandbox
from binfmtctl.arch import CATALOG, Profile
from binfmtctl.instance import Instance
from conftest import cli, exec_result, foreign_busybox, qemu

# -- every numeric option -------------------------------------------------------

# (value, the message after "argument --timeout: "); found with
# `grep -n "type=" src/binfmtctl/cli/*.py`: --timeout is the only numeric option.
TIMEOUTS = [
    ("nan", "not a finite number of seconds: 'nan'"),
    ("NaN", "not a finite number of seconds: 'NaN'"),
    ("inf", "not a finite number of seconds: 'inf'"),
    ("-inf", "not a finite number of seconds: '-inf'"),
    ("1e999", "not a finite number of seconds: '1e999'"),
    ("0", "must be more than 0 seconds: '0'"),
    ("-0.0", "must be more than 0 seconds: '-0.0'"),
    ("-1", "must be more than 0 seconds: '-1'"),
    ("3600.5", "must be at most 3600 seconds (one hour): '3600.5'"),
    ("1e9", "must be at most 3600 seconds (one hour): '1e9'"),
    ("abc", "not a number of seconds: 'abc'"),
    ("", "not a number of seconds: ''"),
    ("0x10", "not a number of seconds: '0x10'"),
]


@pytest.mark.parametrize(("value", "message"), TIMEOUTS, ids=[t[0] or "empty" for t in TIMEOUTS])
def test_timeout_out_of_range_is_a_usage_error(
    sb: sandbox.Sandbox, value: str, message: str
) -> None:
    proc = cli(sb, "test", f"--timeout={value}", "arm64")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"binfmtctl: error: argument --timeout: {message} (see `binfmtctl test --help`)\n"
    )


@pytest.mark.parametrize("value", ["3600", "0.5", "1e-3"])
def test_timeout_in_range_is_accepted(sb: sandbox.Sandbox, value: str) -> None:
    """Accepted: the verb runs (exit 1: no handler registered), not a usage error."""
    proc = cli(sb, "test", f"--timeout={value}", "arm64", "--json")
    assert proc.returncode == 1, proc.stderr
    (result,) = json.loads(proc.stdout)["data"]["results"]
    assert (result["arch"], result["ok"]) == ("aarch64", False)


def test_install_help_documents_force_interpreter() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "install", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert (
        "--force-interpreter accept an --interpreter whose name says it emulates another "
        "arch (qemu-arm for aarch64 is refused without it); a file that is not an ELF "
        "executable for this machine is refused always"
    ) in " ".join(proc.stdout.split())


# -- files that are no emulator -------------------------------------------------


def _empty(path: Path) -> str:
    path.write_bytes(b"")
    path.chmod(0o755)
    return "an empty file, not an ELF executable"


def _script(path: Path) -> str:
    path.write_text(f'#!/bin/sh\nexec {qemu("qemu-aarch64")} "$@"\n')
    path.chmod(0o755)
    return "a #! script, not an ELF executable"


def _text(path: Path) -> str:
    path.write_text("qemu-aarch64 lives elsewhere\n")
    path.chmod(0o755)
    return "not an ELF executable"


def _foreign_busybox(path: Path) -> str:
    shutil.copy(foreign_busybox("arm64"), path)
    path.chmod(0o755)
    return "built for aarch64, not for this machine's CPU"


def _object_file(path: Path) -> str:
    # A real emulator with e_type patched to ET_REL: the header is all the judge reads.
    data = bytearray(Path(qemu("qemu-aarch64")).read_bytes())
    data[16:18] = (1).to_bytes(2, "little")
    path.write_bytes(bytes(data))
    path.chmod(0o755)
    return "an ELF file of type ET_REL, not an executable"


def _fifo(path: Path) -> str:
    os.mkfifo(path, 0o755)  # nobody ever writes: reading it would block forever
    return "not a regular file"


def _not_executable(path: Path) -> str:
    shutil.copy(qemu("qemu-aarch64"), path)
    path.chmod(0o644)
    return "not executable"


def _dangling(path: Path) -> str:
    path.symlink_to(path.parent / "gone")
    return "cannot read it: No such file or directory"


UNFIT = {
    "empty": _empty,
    "script": _script,
    "text": _text,
    "arm64-busybox": _foreign_busybox,
    "object": _object_file,
    "fifo": _fifo,
    "not-executable": _not_executable,
    "dangling": _dangling,
}


def registered(box: sandbox.Sandbox) -> list[str]:
    return sorted(box.run(os.listdir, box.mountpoint))


def install_json(box: sandbox.Sandbox, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli(box, "install", "--json", *args)
    return proc.returncode, json.loads(proc.stdout)["data"]["steps"][0]


@pytest.mark.parametrize("kind", list(UNFIT))
def test_unfit_candidate_in_an_interpreter_dir_is_never_chosen(
    sb: sandbox.Sandbox, tmp_path: Path, kind: str
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    why = UNFIT[kind](bad / "qemu-aarch64-static")
    rc, step = install_json(sb, "--interpreter-dir", str(bad), "arm64")
    assert rc == 1
    assert step["action"] == "missing"
    hint = interpreters.install_hint(CATALOG["aarch64"])
    assert step["reason"] == (
        f"no emulator for aarch64 (qemu-aarch64-static or qemu-aarch64 in {bad}); "
        f"unusable: {bad}/qemu-aarch64-static: {why}; {hint}"
    )
    assert registered(sb) == ["register", "status"]


@pytest.mark.parametrize("kind", list(UNFIT))
def test_a_good_emulator_after_an_unfit_one_is_chosen(
    sb: sandbox.Sandbox, tmp_path: Path, kind: str
) -> None:
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    good.mkdir()
    UNFIT[kind](bad / "qemu-aarch64-static")
    shutil.copy(qemu("qemu-aarch64"), good / "qemu-aarch64-static")
    rc, step = install_json(
        sb, "--interpreter-dir", str(bad), "--interpreter-dir", str(good), "arm64"
    )
    assert rc == 0
    assert (step["action"], step["entry"]["interpreter"]) == (
        "register",
        f"{good}/qemu-aarch64-static",
    )


@pytest.mark.parametrize("kind", list(UNFIT))
def test_unfit_interpreter_named_explicitly_is_refused(
    sb: sandbox.Sandbox, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "qemu-aarch64-static"
    why = UNFIT[kind](path)
    rc, step = install_json(sb, "--interpreter", str(path), "arm64")
    assert rc == 1
    assert (step["action"], step["reason"]) == (
        "refused",
        f"{path} cannot be an emulator here: {why}",
    )
    assert registered(sb) == ["register", "status"]


def test_rootless_run_skips_an_unfit_candidate(tmp_path: Path) -> None:
    """binfmtctl run (its own private instance) picks emulators the same way."""
    _foreign_busybox(tmp_path / "qemu-aarch64-static")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "binfmtctl", "run", "--interpreter-dir", str(tmp_path)),
            *("--arch", "arm64", "--", "true"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert (
        f"unusable: {tmp_path}/qemu-aarch64-static: built for aarch64, not for this "
        "machine's CPU" in proc.stderr
    )


# -- an emulator for another arch -------------------------------------------------


MISMATCH = (
    "{path} is, by its name, the emulator for arm, not aarch64: aarch64 programs would "
    "crash or misbehave under it; pass qemu-aarch64's path, or --force-interpreter if "
    "this file really runs them"
)


def test_emulator_for_another_arch_is_refused(sb: sandbox.Sandbox) -> None:
    arm = qemu("qemu-arm")
    rc, step = install_json(sb, "--interpreter", arm, "arm64")
    assert rc == 1
    assert (step["action"], step["reason"]) == ("refused", MISMATCH.format(path=arm))
    assert registered(sb) == ["register", "status"]


def test_force_interpreter_registers_it_anyway(sb: sandbox.Sandbox) -> None:
    arm = qemu("qemu-arm")
    rc, step = install_json(sb, "--interpreter", arm, "--force-interpreter", "arm64")
    assert rc == 0
    assert (step["action"], step["entry"]["interpreter"]) == ("register", arm)
    assert registered(sb) == ["qemu-aarch64", "register", "status"]


def test_export_refuses_an_emulator_for_another_arch(tmp_path: Path) -> None:
    arm = qemu("qemu-arm")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "binfmtctl", "export", "arm64", "--interpreter", arm),
            *("--format", "systemd", "-o", str(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"binfmtctl: error: {MISMATCH.format(path=arm)}\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("path", "meant"),
    [
        ("/usr/bin/qemu-aarch64-static", ["aarch64"]),
        ("/usr/bin/qemu-aarch64", ["aarch64"]),
        ("/usr/libexec/qemu-binfmt/aarch64-binfmt-P", ["aarch64"]),
        ("/usr/bin/qemu-i386-static", ["i386", "i486"]),
        ("/usr/bin/qemu-arm", ["arm"]),
        ("/usr/bin/qemu-armeb", ["armeb"]),
        ("/usr/bin/qemu-mipsn32el", ["mipsn32el"]),
        ("/opt/box64/box64", []),  # the name says nothing: not judged
        ("/usr/bin/qemu-system-aarch64", []),
    ],
)
def test_targets_by_file_name(path: str, meant: list[str]) -> None:
    assert [a.name for a in interpreters.targets(path)] == meant


def test_i486_accepts_the_i386_emulator() -> None:
    """qemu-i386 runs EM_486 programs too: the catalog says so, not a special case."""
    assert CATALOG["i486"] in interpreters.targets("/usr/bin/qemu-i386-static")


# -- why never says "will run" for an interpreter that cannot run it ------------


def register(box: sandbox.Sandbox, arch: str, interpreter: str, flags: str = "F") -> None:
    entry = plan.build_entry(CATALOG[arch], interpreter, flags, Profile.QEMU)
    box.run(Instance().register, entry)


def why(box: sandbox.Sandbox, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli(box, "why", "--json", *args)
    data: dict[str, Any] = json.loads(proc.stdout)["data"]
    return proc.returncode, data


def test_why_wrong_emulator(sb: sandbox.Sandbox) -> None:
    busybox, arm = str(foreign_busybox("arm64")), qemu("qemu-arm")
    register(sb, "aarch64", arm)
    rc, data = why(sb, busybox, "true")
    assert rc == 1
    assert data["cause"] == {
        "code": "wrong_emulator",
        "message": f"qemu-aarch64 runs this aarch64 program with {arm}, which by its name "
        "emulates arm, not aarch64: QEMU refuses it ('Invalid ELF image for this "
        "architecture').",
        "fix": "binfmtctl install aarch64 --replace",
    }
    real = exec_result(sb, busybox, "true")
    assert isinstance(real, str)
    assert "Invalid ELF image for this architecture" in real


@pytest.mark.parametrize(
    ("kind", "flags", "error", "real"),
    [
        ("empty", "F", "exec format error", errno.ENOEXEC),
        ("empty", "", "exec format error", errno.ENOEXEC),
        ("text", "F", "exec format error", errno.ENOEXEC),
        ("arm64-busybox", "F", "exec format error", errno.ENOEXEC),
        ("object", "", "exec format error", errno.ENOEXEC),
        ("not-executable", "", "permission denied", errno.EACCES),
    ],
)
def test_why_interpreter_unusable(
    sb: sandbox.Sandbox, tmp_path: Path, kind: str, flags: str, error: str, real: int
) -> None:
    """The armhf busybox run by an interpreter that is no emulator for this machine."""
    busybox = str(foreign_busybox("armhf"))
    path = tmp_path / "qemu-arm-static"
    words = UNFIT[kind](path)
    register(sb, "arm", str(path), flags)
    rc, data = why(sb, busybox, "true")
    assert rc == 1
    assert data["cause"] == {
        "code": "interpreter_unusable",
        "message": f"the interpreter {path} of qemu-arm cannot run on this machine: it is "
        f"{words}, so exec fails with '{error}'.",
        "fix": "binfmtctl install arm --replace",
    }
    assert exec_result(sb, busybox, "true") == real


def test_why_script_interpreter_still_runs(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    """A #! wrapper is refused as an emulator at install, but the kernel does run it."""
    busybox = str(foreign_busybox("arm64"))
    path = tmp_path / "qemu-aarch64-static"
    _script(path)
    register(sb, "aarch64", str(path), "")
    rc, data = why(sb, busybox, "true")
    assert (rc, data["cause"]) == (0, None)
    assert exec_result(sb, busybox, "echo", "ran") == "ran\n"


def test_why_foreign_emulator_run_by_another_entry_still_runs(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    """An aarch64 build of an emulator runs when an entry emulates aarch64 itself."""
    busybox = str(foreign_busybox("armhf"))
    register(sb, "aarch64", qemu("qemu-aarch64"))
    path = tmp_path / "qemu-arm-static"
    _foreign_busybox(path)  # an aarch64 ELF: the kernel hands it to qemu-aarch64
    register(sb, "arm", str(path), "")
    rc, data = why(sb, busybox, "true")
    assert (rc, data["cause"]) == (0, None)
    # exec succeeds: the aarch64 busybox runs (and, named qemu-arm-static, finds no applet)
    real = exec_result(sb, busybox, "true")
    assert isinstance(real, str)
    assert "applet not found" in real


def test_relative_interpreter_is_refused(sb: sandbox.Sandbox) -> None:
    """Without F the kernel would resolve it from each program's working directory."""

    def install_from_usr_bin() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(sys.executable, "-m", "binfmtctl", "install", "--json"),
                *("--interpreter", "qemu-aarch64-static", "arm64"),
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd="/usr/bin",
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )

    qemu("qemu-aarch64")
    proc = sb.run(install_from_usr_bin)
    assert proc.returncode == 1, proc.stderr
    (step,) = json.loads(proc.stdout)["data"]["steps"]
    assert (step["action"], step["reason"]) == (
        "refused",
        "qemu-aarch64-static is not an absolute path: the kernel would look it up from the "
        "working directory of every program it runs (and boot configuration would too); "
        "give the full path, e.g. /usr/bin/qemu-aarch64-static",
    )
    assert registered(sb) == ["register", "status"]


# -- status says so too -----------------------------------------------------------


def status_problems(box: sandbox.Sandbox) -> dict[str, list[str]]:
    proc = cli(box, "status", "--json")
    entries = json.loads(proc.stdout)["data"]["entries"]
    return {e["name"]: e["problems"] for e in entries}


def test_status_names_unusable_and_mismatched_interpreters(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    arm, empty = qemu("qemu-arm"), tmp_path / "qemu-riscv64-static"
    _empty(empty)
    register(sb, "aarch64", arm)
    register(sb, "riscv64", str(empty), "")
    register(sb, "s390x", qemu("qemu-s390x"))
    assert status_problems(sb) == {
        "qemu-aarch64": [f"interpreter {arm} emulates arm, not aarch64"],
        "qemu-riscv64": [
            f"interpreter {empty} cannot run on this machine: an empty file, not an ELF executable"
        ],
        "qemu-s390x": [],
    }
