"""proving: how one probe run is judged, without a kernel.

``judge`` reads a run (the exec's errno, or the exit status and output)
against a snapshot of the registered entries. Both are built here by hand:
the runs stand in for what the kernel would do, so every branch is reached
on any host. The real runs through a real kernel are in test_test_command.py.
"""

from __future__ import annotations

import errno
import sys

import pytest

from binfmtctl import probes, proving
from binfmtctl.arch import Profile, resolve
from binfmtctl.entry import Handler
from binfmtctl.instance import Snapshot
from binfmtctl.plan import build_entry
from binfmtctl.proving import OutcomeCode, _Raw

ARCH = "aarch64"
OUT = probes.expected_output(ARCH)
QEMU = "/usr/bin/qemu-aarch64-static"


def _handler(interpreter: str = QEMU, *, flags: str = "F", enabled: bool = True) -> Handler:
    entry = build_entry(resolve(ARCH), interpreter, flags, Profile.QEMU)
    return Handler(entry, enabled)


def _snapshot(*handlers: Handler, mounted: bool = True, enabled: bool = True) -> Snapshot:
    return Snapshot(mountpoint="/mnt/b", mounted=mounted, enabled=enabled, handlers=handlers)


def _exec_error(number: int) -> _Raw:
    return _Raw(number, None, b"", b"", 0.25)


def _exit(code: int, stdout: bytes = b"", stderr: bytes = b"", *, timed_out: bool = False) -> _Raw:
    return _Raw(None, code if not timed_out else None, stdout, stderr, 0.25, timed_out)


EMPTY = _snapshot()
ONE = _snapshot(_handler())
NO_F = _snapshot(_handler(sys.executable, flags=""))  # an interpreter that exists outside
WRONG = _snapshot(_handler("/usr/bin/qemu-arm-static"))
CASES = [
    (
        "not mounted",
        _exec_error(errno.ENOEXEC),
        _snapshot(mounted=False),
        False,
        (OutcomeCode.NO_HANDLER, None),
        "exec format error: nothing is registered for aarch64 (binfmt_misc is not mounted "
        "at /mnt/b)",
    ),
    (
        "instance switched off",
        _exec_error(errno.ENOEXEC),
        _snapshot(_handler(), enabled=False),
        False,
        (OutcomeCode.INSTANCE_DISABLED, None),  # a switched-off instance runs nothing
        "exec format error: binfmt_misc is switched off in /mnt/b (its status is disabled)",
    ),
    (
        "handler disabled",
        _exec_error(errno.ENOEXEC),
        _snapshot(_handler(enabled=False)),
        False,
        (OutcomeCode.DISABLED, "qemu-aarch64"),
        "exec format error: the handler qemu-aarch64 for aarch64 is disabled",
    ),
    (
        "nothing registered",
        _exec_error(errno.ENOEXEC),
        EMPTY,
        False,
        (OutcomeCode.NO_HANDLER, None),
        "exec format error: nothing is registered for aarch64",
    ),
    (
        "interpreter not runnable",
        _exec_error(errno.ENOEXEC),
        ONE,
        False,
        (OutcomeCode.EXEC_FAILED, "qemu-aarch64"),
        f"exec format error although qemu-aarch64 matches: its interpreter {QEMU} is not a "
        "program this kernel can run",
    ),
    (
        "interpreter missing",
        _exec_error(errno.ENOENT),
        ONE,
        False,
        (OutcomeCode.INTERPRETER_MISSING, "qemu-aarch64"),
        f"the interpreter of qemu-aarch64, {QEMU}, does not exist; install it or re-register",
    ),
    (
        "no F flag in a chroot",
        _exec_error(errno.ENOENT),
        NO_F,
        True,
        (OutcomeCode.NOT_IN_CHROOT, "qemu-aarch64"),
        f"qemu-aarch64 has no F flag, so the kernel looks its interpreter {sys.executable} up "
        "inside the chroot, where it is missing; re-register it with F",
    ),
    (
        "exec refused",
        _exec_error(errno.EACCES),
        EMPTY,
        True,
        (OutcomeCode.EXEC_FAILED, None),
        "exec failed (in an empty chroot): Permission denied (is the temporary directory "
        "mounted noexec? set TMPDIR)",
    ),
    (
        "exec failed through a handler",
        _exec_error(errno.E2BIG),
        ONE,
        False,
        (OutcomeCode.EXEC_FAILED, "qemu-aarch64"),
        f"exec failed through qemu-aarch64 ({QEMU}): Argument list too long",
    ),
    (
        "chroot refused",
        _exit(125, stderr=b"chroot /tmp/x: Operation not permitted\n"),
        ONE,
        True,
        (OutcomeCode.CHROOT_REFUSED, "qemu-aarch64"),
        "chroot is not permitted here (chroot /tmp/x: Operation not permitted); --chroot "
        "needs root (CAP_SYS_CHROOT), or run it inside `binfmtctl run`",
    ),
    (
        "timed out",
        _exit(0, timed_out=True),
        EMPTY,
        False,
        (OutcomeCode.TIMED_OUT, None),
        "timed out after 2 s: the host kernel (natively) did not finish",
    ),
    (
        "killed",
        _exit(-9, stderr=b"qemu: uncaught target signal\n"),
        ONE,
        False,
        (OutcomeCode.SIGNALED, "qemu-aarch64"),
        f"crashed with signal SIGKILL: {QEMU} (entry qemu-aarch64); it said "
        "'qemu: uncaught target signal'",
    ),
    ("ran through the handler", _exit(0, OUT), ONE, False, (OutcomeCode.OK, "qemu-aarch64"), None),
    ("ran natively", _exit(0, OUT), EMPTY, False, (OutcomeCode.NATIVE, None), None),
    (
        "wrong emulator",
        _exit(1, b"hello\n"),
        WRONG,
        False,
        (OutcomeCode.WRONG_EMULATOR, "qemu-aarch64"),
        "wrong emulator: qemu-aarch64 sends aarch64 programs to /usr/bin/qemu-arm-static (an "
        "emulator for arm), which printed 'hello' and exited 1; expected "
        "'binfmtctl-probe aarch64' and exit 0",
    ),
    (
        "wrong output",
        _exit(0, b"binfmtctl-probe x\n"),
        EMPTY,
        True,
        (OutcomeCode.WRONG_OUTPUT, None),
        "wrong output (in an empty chroot): the host kernel (natively) printed "
        "'binfmtctl-probe x' and exited 0; expected 'binfmtctl-probe aarch64' and exit 0",
    ),
]


@pytest.mark.parametrize(
    ("raw", "snapshot", "chroot", "expected", "error"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_judge_reads_every_run(
    raw: _Raw,
    snapshot: Snapshot,
    chroot: bool,
    expected: tuple[OutcomeCode, str | None],
    error: str | None,
) -> None:
    outcome = proving.judge(ARCH, raw, snapshot, chroot=chroot, timeout=2.0)
    assert (outcome.code, outcome.entry) == expected
    assert outcome.error == error
    assert outcome.ok is (error is None)
    assert (outcome.arch, outcome.seconds, outcome.chroot) == (ARCH, 0.25, chroot)
    assert outcome.output == raw.stdout.decode() and outcome.stderr == raw.stderr.decode()
    # The interpreter is reported only for the entry that ran the probe.
    claimed = snapshot.winner(probes.build(ARCH))
    runs = claimed is not None and outcome.entry == claimed.name
    assert outcome.interpreter == (claimed.entry.interpreter if runs and claimed else None)


def test_outcome_codes_are_the_json_contract() -> None:
    assert {c.name: c.value for c in OutcomeCode} == {
        "OK": "ok",
        "NATIVE": "native",
        "NO_HANDLER": "no_handler",
        "DISABLED": "disabled",
        "INSTANCE_DISABLED": "instance_disabled",
        "INTERPRETER_MISSING": "interpreter_missing",
        "NOT_IN_CHROOT": "interpreter_not_in_chroot",
        "WRONG_EMULATOR": "wrong_emulator",
        "WRONG_OUTPUT": "wrong_output",
        "SIGNALED": "signal",
        "TIMED_OUT": "timeout",
        "EXEC_FAILED": "exec_failed",
        "CHROOT_REFUSED": "chroot_refused",
        "NO_PROBE": "no_probe",
    }


def test_an_arch_without_a_probe_is_a_failed_outcome_that_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(probes.NO_PROBE, "or1k", "QEMU's or1k needs X")
    assert proving.no_probe("or1k").to_dict() == {
        "arch": "or1k",
        "entry": None,
        "ok": False,
        "output": "",
        "seconds": 0.0,
        "error": "no probe program for or1k: QEMU's or1k needs X",
        "code": "no_probe",
        "interpreter": None,
        "stderr": "",
        "chroot": False,
    }
