"""Running probe programs through the kernel, and judging what came of each run.

A probe (:mod:`binfmtctl.probes`) is run by a plain exec of its file, so the
kernel picks the runner exactly as it would for any program: a binfmt_misc
entry, or its own ELF loader for the host's native kinds. What went wrong is
then told from the exec's errno, the exit status and the output, read against
the snapshot of the entries taken when the run started.
:func:`binfmtctl.prove.prove` is the ``test`` verb built on it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from binfmtctl import probes, signals
from binfmtctl.arch import CATALOG, resolve
from binfmtctl.instance import Snapshot

DEFAULT_TIMEOUT = 10.0
_CHROOT_FAILED = 125  # exit status of a child whose chroot() failed (before exec)


class OutcomeCode(str, Enum):
    """What one probe run came to; every code but OK and NATIVE is a failure."""

    OK = "ok"
    NATIVE = "native"
    NO_HANDLER = "no_handler"
    DISABLED = "disabled"
    INSTANCE_DISABLED = "instance_disabled"
    INTERPRETER_MISSING = "interpreter_missing"
    NOT_IN_CHROOT = "interpreter_not_in_chroot"
    WRONG_EMULATOR = "wrong_emulator"
    WRONG_OUTPUT = "wrong_output"
    SIGNALED = "signal"
    TIMED_OUT = "timeout"
    EXEC_FAILED = "exec_failed"
    CHROOT_REFUSED = "chroot_refused"
    NO_PROBE = "no_probe"  # the catalog has the arch, but no probe program was written


@dataclass(frozen=True)
class Outcome:
    """One probe run through the kernel: what ran it, what it printed, what is wrong."""

    arch: str
    ok: bool
    code: OutcomeCode
    seconds: float
    entry: str | None = None  # the binfmt_misc entry that handled it (None: native/none)
    interpreter: str | None = None
    output: str = ""  # stdout, decoded
    stderr: str = ""
    error: str | None = None  # what went wrong, in words
    chroot: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "arch": self.arch,
            "entry": self.entry,
            "ok": self.ok,
            "output": self.output,
            "seconds": round(self.seconds, 4),
            "error": self.error,
            "code": self.code.value,
            "interpreter": self.interpreter,
            "stderr": self.stderr,
            "chroot": self.chroot,
        }


def claimed(snapshot: Snapshot) -> list[str]:
    """Probe arches some registered entry (enabled or not) would claim."""
    return [a for a in probes.available() if snapshot.matching(probes.build(a))]


def no_probe(arch: str) -> Outcome:
    """The outcome for a catalog arch that has no probe program: a failure that says why."""
    reason = probes.NO_PROBE.get(arch, "none was written")
    error = f"no probe program for {arch}: {reason}"
    return Outcome(arch, False, OutcomeCode.NO_PROBE, 0.0, error=error)


@dataclass(frozen=True)
class _Raw:
    errno: int | None  # the exec failed with this
    returncode: int | None
    stdout: bytes
    stderr: bytes
    seconds: float
    timed_out: bool = False


def _enter_chroot(root: str) -> None:  # pragma: no cover - runs in the forked child
    try:
        os.chroot(root)
        os.chdir("/")
    except OSError as err:
        os.write(2, f"chroot {root}: {err.strerror}\n".encode())
        os._exit(_CHROOT_FAILED)


class _Children:
    """The probe processes running now, so an interrupt can stop every one of them.

    Each probe runs in a process group of its own (a new session), so killing
    the group also stops what its runner started: an emulator that is a
    script, the script's children. A probe started after :meth:`stop_all`
    is stopped as soon as it is known.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen[bytes]] = set()
        self._stopped = False

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.add(proc)
            stopped = self._stopped
        if stopped:
            _kill_group(proc)

    def remove(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._running.discard(proc)

    @property
    def stopped(self) -> bool:
        return self._stopped

    def stop_all(self) -> None:
        with self._lock:
            self._stopped = True
            running = list(self._running)
        for proc in running:
            _kill_group(proc)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the probe's process group (the group is named after the probe's pid)."""
    if proc.returncode is not None:
        return  # reaped: its pid (and so the group's number) may belong to another now
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


_DRAIN_SECONDS = 1.0  # for what a killed probe had written, if its pipes stay open


def _drain(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """The output of a killed probe; pipes a stray process keeps open are given up."""
    try:
        return proc.communicate(timeout=_DRAIN_SECONDS)
    except subprocess.TimeoutExpired as err:
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
        out = err.stdout if isinstance(err.stdout, bytes) else b""
        return out, err.stderr if isinstance(err.stderr, bytes) else b""


def _execute(path: Path, timeout: float, chroot: bool, children: _Children | None = None) -> _Raw:
    start = time.perf_counter()
    argv = [f"/{path.name}"] if chroot else [str(path)]
    root = str(path.parent)
    children = children or _Children()
    if children.stopped:
        return _Raw(None, None, b"", b"", 0.0, timed_out=True)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=root,
            start_new_session=True,
            # chroot()+chdir() in the child: no lock is taken there, so threads are no risk.
            preexec_fn=(lambda: _enter_chroot(root)) if chroot else None,  # noqa: PLW1509
        )
    except OSError as err:
        return _Raw(err.errno, None, b"", b"", time.perf_counter() - start)
    children.add(proc)
    try:
        try:
            out, errb = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The whole group: a runner's own children would otherwise keep the
            # output pipes open, and communicate() would wait for them.
            _kill_group(proc)
            out, errb = _drain(proc)
            return _Raw(None, None, out, errb, time.perf_counter() - start, timed_out=True)
    finally:
        if proc.returncode is None:
            _kill_group(proc)
            proc.wait()
        children.remove(proc)
    return _Raw(None, proc.returncode, out, errb, time.perf_counter() - start)


def scratch_dir() -> str | None:
    """Where to write probes: a RAM file system that allows exec, else the default.

    $XDG_RUNTIME_DIR or /dev/shm (tmpfs: writing 36 probes there is ~10x
    faster than on a disk file system), unless mounted noexec; None means
    ``tempfile``'s choice ($TMPDIR, /tmp).
    """
    for candidate in (os.environ.get("XDG_RUNTIME_DIR"), "/dev/shm"):
        if not candidate:
            continue
        try:
            usable = not os.statvfs(candidate).f_flag & os.ST_NOEXEC
        except OSError:
            continue
        if usable and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return None


def _emulator_of(interpreter: str) -> str | None:
    """The catalog arch an interpreter's file name says it emulates (qemu-arm-static: arm)."""
    base = os.path.basename(interpreter).removesuffix("-static")
    for row in CATALOG.values():
        if base == row.emulator_name:
            return row.name
    return None


def _show(data: bytes, limit: int = 200) -> str:
    text = data.decode(errors="replace").strip()
    return repr(text[:limit] + ("..." if len(text) > limit else ""))


@dataclass(frozen=True)
class _Runner:
    """Who the kernel would send a probe to, read from the snapshot when the run started."""

    name: str | None  # the entry that claims the probe (None: the kernel itself)
    interpreter: str | None
    fixed: bool  # the entry has the F flag: its emulator was opened at registration


def judge(
    arch: str, raw: _Raw, snapshot: Snapshot, *, chroot: bool = False, timeout: float = 0
) -> Outcome:
    """Read one run against the entries registered: ok, or what went wrong in words.

    An exec that failed is read from its errno (:func:`_exec_failed`); a
    program that ran, from its exit status and output (:func:`_exited`).
    """
    found = snapshot.winner(probes.build(arch))
    runner = (
        _Runner(found.name, found.entry.interpreter, "F" in found.entry.flags)
        if found
        else _Runner(None, None, False)
    )

    def out(
        code: OutcomeCode, error: str | None = None, entry: str | None = runner.name
    ) -> Outcome:
        return Outcome(
            arch,
            error is None,
            code,
            raw.seconds,
            entry,
            runner.interpreter if entry == runner.name else None,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
            error,
            chroot,
        )

    if raw.errno is not None:
        failed, why, about = _exec_failed(arch, raw.errno, snapshot, runner, chroot=chroot)
        return out(failed, why, about)
    return out(*_exited(arch, raw, runner, chroot=chroot, timeout=timeout))


def _exec_failed(
    arch: str, number: int, snapshot: Snapshot, runner: _Runner, *, chroot: bool
) -> tuple[OutcomeCode, str, str | None]:
    """Why the exec itself failed (the errno), and which entry the failure is about."""
    name, interp = runner.name, runner.interpreter
    if number == errno.ENOEXEC:
        if not snapshot.mounted:
            return (
                OutcomeCode.NO_HANDLER,
                f"exec format error: nothing is registered for {arch} (binfmt_misc is not "
                f"mounted at {snapshot.mountpoint})",
                name,
            )
        if not snapshot.enabled and snapshot.handlers:
            return (
                OutcomeCode.INSTANCE_DISABLED,
                f"exec format error: binfmt_misc is switched off in {snapshot.mountpoint} "
                "(its status is disabled)",
                name,
            )
        header = probes.build(arch)
        off = next((h.name for h in snapshot.matching(header) if not h.enabled), None)
        if name is None and off is not None:
            return (
                OutcomeCode.DISABLED,
                f"exec format error: the handler {off} for {arch} is disabled",
                off,
            )
        if name is None:
            return (
                OutcomeCode.NO_HANDLER,
                f"exec format error: nothing is registered for {arch}",
                name,
            )
        return (
            OutcomeCode.EXEC_FAILED,
            f"exec format error although {name} matches: its interpreter {interp} is "
            "not a program this kernel can run",
            name,
        )
    if number in (errno.ENOENT, errno.ENOTDIR) and name is not None:
        if chroot and not runner.fixed and interp is not None and os.path.exists(interp):
            return (
                OutcomeCode.NOT_IN_CHROOT,
                f"{name} has no F flag, so the kernel looks its interpreter {interp} up "
                "inside the chroot, where it is missing; re-register it with F",
                name,
            )
        return (
            OutcomeCode.INTERPRETER_MISSING,
            f"the interpreter of {name}, {interp}, does not exist; install it or re-register",
            name,
        )
    reason = os.strerror(number)
    hint = (
        " (is the temporary directory mounted noexec? set TMPDIR)" if number == errno.EACCES else ""
    )
    via = f" through {name} ({interp})" if name is not None else ""
    where = " (in an empty chroot)" if chroot else ""
    return OutcomeCode.EXEC_FAILED, f"exec failed{via}{where}: {reason}{hint}", name


def _exited(
    arch: str, raw: _Raw, runner: _Runner, *, chroot: bool, timeout: float
) -> tuple[OutcomeCode, str | None]:
    """What a program that ran came to: its exit status and output against the expected."""
    name, interp = runner.name, runner.interpreter
    where = " (in an empty chroot)" if chroot else ""
    if chroot and raw.returncode == _CHROOT_FAILED and raw.stderr.startswith(b"chroot "):
        return (
            OutcomeCode.CHROOT_REFUSED,
            f"chroot is not permitted here ({raw.stderr.decode(errors='replace').strip()}); "
            "--chroot needs root (CAP_SYS_CHROOT), or run it inside `binfmtctl run`",
        )
    who = f"{interp} (entry {name})" if name is not None else "the host kernel (natively)"
    if raw.timed_out:
        return OutcomeCode.TIMED_OUT, f"timed out after {timeout:g} s{where}: {who} did not finish"
    assert raw.returncode is not None
    if raw.returncode < 0:
        sig = _signal_name(-raw.returncode)
        said = f"; it said {_show(raw.stderr)}" if raw.stderr.strip() else ""
        return OutcomeCode.SIGNALED, f"crashed with signal {sig}{where}: {who}{said}"
    expected = probes.expected_output(arch)
    if raw.stdout == expected and raw.returncode == 0:
        return (OutcomeCode.OK if name is not None else OutcomeCode.NATIVE), None
    printed = f"printed {_show(raw.stdout + raw.stderr)} and exited {raw.returncode}"
    want = f"expected {_show(expected)} and exit 0"
    emulates = _emulator_of(interp) if interp else None
    if name is not None and emulates != arch:
        kind = f"an emulator for {emulates}" if emulates else "not a known emulator"
        return (
            OutcomeCode.WRONG_EMULATOR,
            f"wrong emulator: {name} sends {arch} programs to {interp} ({kind}), which "
            f"{printed}; {want}",
        )
    return OutcomeCode.WRONG_OUTPUT, f"wrong output{where}: {who} {printed}; {want}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def run(
    arches: Sequence[str],
    snapshot: Snapshot,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    chroot: bool = False,
    on_done: Callable[[Outcome], None] | None = None,
    workers: int | None = None,
) -> list[Outcome]:
    """Exec each arch's probe through the kernel, in parallel; one Outcome per run.

    The probes are written to one fresh directory that holds nothing else and
    doubles as the empty root for ``chroot``.  With ``chroot`` each arch is
    run twice: plainly, then chrooted (the chrooted outcomes come second).
    """
    names = [resolve(a).name for a in arches]
    jobs = [(a, False) for a in names] + ([(a, True) for a in names] if chroot else [])
    if not jobs:
        return []
    with signals.deferred():  # the directory exists only with the try that removes it
        top = tempfile.mkdtemp(prefix="binfmtctl-probes-", dir=scratch_dir())
        children = _Children()
        pool = ThreadPoolExecutor(max_workers=workers or min(len(jobs), 4 * (os.cpu_count() or 1)))
    try:
        paths: dict[str, Path] = {}
        for name in names:  # a private directory: no need for write()'s atomic rename
            paths[name] = Path(top) / name
            fd = os.open(paths[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
            with os.fdopen(fd, "wb") as f:
                f.write(probes.build(name))

        def one(job: tuple[str, bool]) -> Outcome:
            name, in_chroot = job
            raw = _execute(paths[name], timeout, in_chroot, children)
            result = judge(name, raw, snapshot, chroot=in_chroot, timeout=timeout)
            if on_done is not None and not children.stopped:
                on_done(result)
            return result

        futures = [pool.submit(one, job) for job in jobs]
        return [future.result() for future in futures]
    except BaseException:
        # Interrupted (a signal in the main thread) or failed: nothing may outlive us.
        children.stop_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(top, ignore_errors=True)
