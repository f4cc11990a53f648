"""Never lose a working handler: a replacement the kernel refuses leaves the old one running.

The old entry in these tests is F-pinned to a copy of QEMU in a temporary
directory that is deleted after registration, as a package upgrade does:
the entry keeps working (the kernel holds the file open), but it could never
be registered again. A replace that removed it first would lose it for good.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from binfmtctl import sandbox
from binfmtctl.arch import Profile, resolve
from binfmtctl.entry import Entry
from binfmtctl.errors import BinfmtError, InterpreterError
from binfmtctl.instance import Instance
from binfmtctl.plan import build_entry
from conftest import cli, foreign_busybox, qemu, run_in

MP = "/proc/sys/fs/binfmt_misc"
ARM64 = resolve("arm64")


def pinned_then_deleted(sb: sandbox.Sandbox, tmp_path: Path) -> Path:
    """Register qemu-aarch64 F-pinned to a copy of QEMU, then delete the copy."""
    copy = tmp_path / "old" / "qemu-aarch64-static"
    copy.parent.mkdir()
    shutil.copy2(qemu("qemu-aarch64"), copy)
    proc = cli(sb, "install", "arm64", "--interpreter", str(copy))
    assert proc.returncode == 0, proc.stderr
    copy.unlink()
    return copy


def runs_foreign(sb: sandbox.Sandbox) -> str:
    """What the foreign busybox prints for `uname -m`, or the exec error's name."""
    try:
        return run_in(sb, str(foreign_busybox("arm64")), "uname", "-m").stdout
    except OSError as err:
        return errno.errorcode[err.errno or 0]


def state(sb: sandbox.Sandbox) -> tuple[list[str], str]:
    def read() -> tuple[list[str], str]:
        return sorted(os.listdir(MP)), Path(f"{MP}/qemu-aarch64").read_text()

    return sb.run(read)


def test_a_pinned_entry_outlives_its_deleted_interpreter(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    copy = pinned_then_deleted(sb, tmp_path)
    assert not copy.exists()
    assert runs_foreign(sb) == "aarch64\n"


def test_apply_of_a_refused_line_keeps_the_old_entry_running(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    copy = pinned_then_deleted(sb, tmp_path)
    before = state(sb)
    missing = tmp_path / "new" / "qemu-aarch64-static"
    line = str(build_entry(ARM64, str(missing), "F", Profile.QEMU))
    conf = tmp_path / "qemu-aarch64.conf"
    conf.write_text(f"# the emulator moved\n{line}\n")
    proc = cli(sb, "apply", str(conf))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"binfmtctl: error: {conf}:2: cannot register qemu-aarch64: the interpreter "
        f"{missing} does not exist; with the F flag the kernel opens it at registration; "
        "qemu-aarch64 stays registered as it was (enabled)\n"
    )
    assert state(sb) == before
    assert f"interpreter {copy}\n" in before[1]
    assert runs_foreign(sb) == "aarch64\n"


def test_apply_keeps_a_disabled_old_entry_disabled(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    pinned_then_deleted(sb, tmp_path)
    assert cli(sb, "disable", "arm64").returncode == 0
    before = state(sb)
    conf = tmp_path / "x.conf"
    conf.write_text(str(build_entry(ARM64, "/nonexistent/qemu", "F", Profile.QEMU)) + "\n")
    proc = cli(sb, "apply", str(conf), "--json")
    assert proc.returncode == 1
    (error,) = json.loads(proc.stdout)["errors"]
    assert (error["code"], error["path"], error["line"]) == ("interpreter", str(conf), 1)
    assert error["message"].endswith("; qemu-aarch64 stays registered as it was (disabled)")
    assert state(sb) == before
    assert before[1].startswith("disabled\n")


def test_apply_of_an_accepted_replacement_leaves_no_temporary_entry(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    pinned_then_deleted(sb, tmp_path)
    real = qemu("qemu-aarch64")
    conf = tmp_path / "x.conf"
    conf.write_text(str(build_entry(ARM64, real, "F", Profile.QEMU)) + "\n")
    proc = cli(sb, "apply", str(conf), "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["action"] for r in json.loads(proc.stdout)["data"]["lines"]] == ["replaced"]
    names, text = state(sb)
    assert names == ["qemu-aarch64", "register", "status"]
    assert f"interpreter {real}\n" in text
    assert runs_foreign(sb) == "aarch64\n"


class VanishingInterpreter(Instance):
    """An Instance whose new interpreter file is deleted right after the kernel accepted
    it under the temporary name: the moment between the two registers that no real
    process can hit on purpose. Only that timing is staged; the kernel's refusal of
    the real register (ENOENT at the F open) is real."""

    def __init__(self, doomed: Path) -> None:
        super().__init__()
        self.doomed = doomed

    def _register(self, entry: Entry, shown: str) -> None:
        super()._register(entry, shown)
        if entry.name != shown and self.doomed.exists():
            self.doomed.unlink()


def _replace_while_interpreter_vanishes(doomed: Path, new: Entry) -> tuple[str, list[str]]:
    inst = VanishingInterpreter(doomed)
    try:
        inst.replace(new)
    except BinfmtError as err:
        return err.message, sorted(inst.names())
    return "", sorted(inst.names())


def test_when_the_final_register_fails_the_handler_stays(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    """Old entry unrestorable (its interpreter is gone): the temporary entry stays."""
    pinned_then_deleted(sb, tmp_path)
    doomed = tmp_path / "new-qemu"
    shutil.copy2(qemu("qemu-aarch64"), doomed)
    new = build_entry(ARM64, str(doomed), "F", Profile.QEMU)
    message, names = sb.run(_replace_while_interpreter_vanishes, doomed, new)
    (temp,) = [n for n in names if n.startswith("qemu-aarch64.binfmtctl-new-")]
    assert names == [temp]
    assert message == (
        f"cannot register qemu-aarch64: the interpreter {doomed} does not exist; with "
        "the F flag the kernel opens it at registration; the new definition stays "
        f"registered as {temp} so files qemu-aarch64 handled still run"
    )
    assert runs_foreign(sb) == "aarch64\n"


def test_when_the_final_register_fails_the_old_entry_is_put_back(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    old_interpreter = qemu("qemu-aarch64")
    assert cli(sb, "install", "arm64").returncode == 0
    before = state(sb)
    doomed = tmp_path / "new-qemu"
    shutil.copy2(old_interpreter, doomed)
    new = build_entry(ARM64, str(doomed), "F", Profile.QEMU)
    message, names = sb.run(_replace_while_interpreter_vanishes, doomed, new)
    assert message.startswith(f"cannot register qemu-aarch64: the interpreter {doomed} does")
    assert names == ["qemu-aarch64"]
    assert state(sb) == before
    assert runs_foreign(sb) == "aarch64\n"


@pytest.mark.parametrize("enabled", [True, False])
def test_library_replace_refused_by_the_kernel_changes_nothing(
    sb: sandbox.Sandbox, tmp_path: Path, enabled: bool
) -> None:
    pinned_then_deleted(sb, tmp_path)
    if not enabled:
        assert cli(sb, "disable", "arm64").returncode == 0
    before = state(sb)

    def scenario() -> str:
        try:
            Instance().replace(build_entry(ARM64, "/nonexistent", "F", Profile.QEMU))
        except InterpreterError as err:
            return err.message
        return ""

    assert sb.run(scenario).startswith("cannot register qemu-aarch64: the interpreter ")
    assert state(sb) == before
    assert runs_foreign(sb) == ("aarch64\n" if enabled else "ENOEXEC")
