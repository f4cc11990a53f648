"""Build a foreign Debian or Ubuntu root file system, never touching the host's handlers.

The engine (mmdebstrap, unshare mode) runs inside binfmtctl's own private
binfmt_misc instance (:class:`binfmtctl.sandbox.Sandbox` with ids 0..65535
mapped: the caller's subordinate range through newuidmap, or the identity for
real root without one), with an F handler for the arch registered there. The
same namespace packs tarballs and removes partial roots, because only inside
it do the root's files belong to ids the caller controls.

Decisions (suite, mirror, argv) come from :mod:`binfmtctl.rootfs_plan`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from binfmtctl import (
    __version__,
    interpreters,
    native,
    rootfs_checks,
    rootfs_image,
    rootless,
    runplan,
    sandbox,
    signals,
)
from binfmtctl import arch as _arch
from binfmtctl import rootfs_plan as rp
from binfmtctl.errors import (
    RootfsError,
)
from binfmtctl.rootfs_report import CreateReport, EngineTool, Provenance, QemuTool, Smoke

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any, TextIO

TAIL_LINES = 20


# -- running in the private namespace ---------------------------------------------


def _emulated(spec: rp.Spec) -> list[str]:
    """The arches to register: none when this machine runs the arch natively."""
    row = _arch.CATALOG[spec.arch]
    here = {a.name for a in native.native_arches()}
    return [] if row.name in here else [row.name]


def _register(arches: list[str]) -> None:
    if arches:
        runplan.register_handlers(arches)


def _engine_child(box: sandbox.Sandbox, argv: list[str], log_fd: int, result_fd: int) -> None:
    """In a forked child of its own process group: the engine, its output into the log."""
    os.setpgid(0, 0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    try:
        status: Any = box.run(subprocess.call, argv, env={**os.environ, "LC_ALL": "C.UTF-8"})
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        status = str(exc)
    with os.fdopen(result_fd, "wb") as out:
        out.write(pickle.dumps(status))
    os._exit(0)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise signals.Interrupted(signum)


def _set_signals(handler: Any, only: Any = None) -> dict[int, Any]:
    """Set ``handler`` for SIGINT, SIGTERM and SIGHUP (those in ``only``, if given)."""
    return {
        sig: signal.signal(sig, handler) for sig in signals.HANDLED if only is None or sig in only
    }


def run_engine(
    box: sandbox.Sandbox,
    argv: list[str],
    log_path: str,
    on_line: Callable[[str], None],
) -> int:
    """Run ``argv`` in ``box``, its output into ``log_path``; each line goes to ``on_line``.

    The engine runs in a process group of its own, so a terminal's Ctrl-C
    reaches binfmtctl only: binfmtctl then sends SIGTERM to the whole group and
    waits for it, so nothing keeps writing into the root being removed.
    """
    read_r, result_w = os.pipe()
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_r)
        _engine_child(box, argv, log_fd, result_w)
    os.close(result_w)
    os.close(log_fd)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # both sides set it: no race with the child's exec
    status: Any = None
    try:
        with open(log_path, "rb") as log:
            buffered = b""
            while True:
                done, _ = os.waitpid(pid, os.WNOHANG)
                chunk = log.read()
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    on_line(line.decode("utf-8", "replace"))
                if done:
                    break
                if not chunk:
                    time.sleep(0.2)
            if buffered:
                on_line(buffered.decode("utf-8", "replace"))
        with os.fdopen(read_r, "rb") as pipe:
            payload = pipe.read()
        status = pickle.loads(payload) if payload else "the engine's launcher died"  # noqa: S301
    except BaseException:
        _stop_group(pid)
        raise
    if isinstance(status, str):
        raise RootfsError(f"cannot start {argv[0]} in a private instance: {status}")
    return int(status)


def _group_alive(pgid: int, proc: str = "/proc") -> bool:
    """Whether a process of group ``pgid`` still runs (zombies do not count)."""
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc}/{name}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


STOP_GRACE = 5.0  # seconds the engine gets after SIGTERM before SIGKILL


def _stop_group(pgid: int) -> None:
    """SIGTERM the engine's whole process group and wait until none of it runs.

    Waiting for our own child is not enough: mmdebstrap's processes (some in a
    PID namespace of their own) outlive it, and must be gone before the partial
    root is removed. The init of that PID namespace ignores a SIGTERM sent from
    outside, so after a grace period the group gets SIGKILL.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, 0)
    deadline = time.monotonic() + STOP_GRACE
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
        time.sleep(0.1)


SMOKE_SCRIPT = 'echo "shell ok"; dpkg --print-architecture'


def smoke_test(root: str, spec: rp.Spec) -> Smoke:
    """A shell and dpkg run through the handler inside the root; RootfsError if not right."""
    argv = ["/bin/sh", "-c", SMOKE_SCRIPT]
    status, out, err = rootless.call_captured(
        argv, rootless.RunOptions(arches=_emulated(spec), rootfs=root, uid_map="auto")
    )
    expected = f"shell ok\n{spec.deb_arch}\n"
    if status != 0 or out != expected:
        raise RootfsError(
            f"the new root does not run here: `{' '.join(argv[:2])} '{SMOKE_SCRIPT}'` "
            f"exited {status} and printed {out!r} (expected {expected!r}); {err.strip()}",
        )
    return Smoke(SMOKE_SCRIPT, tuple(out.splitlines()))


# -- provenance ---------------------------------------------------------------------


def _first_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else None


def provenance(spec: rp.Spec, engine: str, created: datetime.datetime) -> Provenance:
    """What was built, from what, with which tools: kept with the root."""
    found = interpreters.find(_arch.CATALOG[spec.arch])
    emulated = bool(_emulated(spec))
    qemu = None
    if emulated and found is not None:
        qemu = QemuTool(found.path, _first_line([found.path, "--version"]))
    return Provenance(
        arch=spec.arch,
        debian_arch=spec.deb_arch,
        oci_platform=spec.oci_platform,
        distro=spec.distro,
        suite=spec.suite,
        mirror=spec.mirror,
        variant=spec.variant,
        components=tuple(spec.components),
        include=tuple(spec.include),
        format=spec.format,
        engine=EngineTool(engine, _first_line([engine, "--version"])),
        qemu=qemu,
        created=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        binfmtctl=__version__,
    )


def _write_json(path: str, record: Provenance) -> None:
    with open(path, "x") as fh:
        json.dump(record.to_dict(), fh, indent=2, sort_keys=True)
        fh.write("\n")


def image_tag(spec: rp.Spec) -> str:
    return f"localhost/{spec.distro.value}-{spec.deb_arch}:{spec.suite}"


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def _empty_dir(path: str) -> None:
    for name in os.listdir(path):
        _remove(os.path.join(path, name))


# -- the build ------------------------------------------------------------------------------


@dataclass
class Output:
    """Where progress goes: a live line on a TTY, the whole log with verbose, nothing for JSON."""

    stream: TextIO | None = None
    live: bool = False
    verbose: bool = False

    def __post_init__(self) -> None:
        self.progress = rp.Progress()
        self.started = time.monotonic()
        self._shown = 0.0

    def line(self, text: str) -> None:
        changed = self.progress.feed(text)
        if self.stream is None:
            return
        if self.verbose:
            self.stream.write(text + "\n")
            self.stream.flush()
        elif self.live and changed and time.monotonic() - self._shown >= 0.2:
            self.show()

    def show(self) -> None:
        if self.stream is not None and self.live and not self.verbose:
            self._shown = time.monotonic()
            text = self.progress.line(time.monotonic() - self.started)
            self.stream.write(f"\r\x1b[K{text}")
            self.stream.flush()

    def phase(self, text: str) -> None:
        self.progress.phase = text
        self.show()

    def done(self) -> None:
        if self.stream is not None and self.live and not self.verbose:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def create(
    spec: rp.Spec,
    target: str,
    *,
    output: Output | None = None,
    keep_partial: bool = False,
    check_network: bool = True,
) -> CreateReport:
    """Build ``spec`` at ``target`` (a directory, or a file for tar and docker-archive).

    Checks first (programs, ids, target, mirror), so bad input leaves nothing.
    On failure or interruption everything written is removed, unless
    ``keep_partial``; the engine's log is kept then and named in the error.
    Returns the provenance record plus where it is and the smoke test.
    """
    output = output or Output()
    engine = rootfs_checks.check_programs(spec)
    rootfs_checks.check_ids()
    rootfs_checks.check_target(target, spec.format)
    if check_network:
        output.phase(f"checking {spec.mirror}")
        rootfs_checks.check_mirror(spec)
    target = os.path.abspath(target)
    parent = os.path.dirname(target)
    is_dir = spec.format == rp.Format.DIR
    created_dir = is_dir and not os.path.exists(target)
    staging = (
        target if is_dir else tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.", dir=parent)
    )
    fd, log_path = tempfile.mkstemp(prefix="binfmtctl-rootfs-", suffix=".log")
    os.close(fd)
    when = datetime.datetime.now(datetime.timezone.utc)
    record = provenance(spec, engine, when)
    beside = f"{target}{rp.PROVENANCE_SUFFIX}"
    finished = False
    # The namespace's holder process is forked with SIGINT and SIGTERM ignored, so a
    # terminal's Ctrl-C (sent to the whole process group) leaves it to remove the
    # partial root; binfmtctl itself turns them into signals.Interrupted once it is up
    # (the CLI then exits 128+N, as for every verb).
    saved = _set_signals(signal.SIG_IGN)
    try:
        with sandbox.Sandbox(full_ids=True) as box:
            # A signal ignored when binfmtctl started (nohup) stays ignored.
            _set_signals(_raise_interrupt, [s for s, h in saved.items() if h != signal.SIG_IGN])
            try:
                if created_dir:
                    box.run(os.mkdir, staging, 0o755)
                box.run(_register, _emulated(spec))
                output.phase("starting mmdebstrap")
                argv = rp.engine_argv(spec, staging, engine=engine)
                engine_started = time.monotonic()
                status = run_engine(box, argv, log_path, output.line)
                engine_seconds = time.monotonic() - engine_started
                output.done()
                if status != 0:
                    raise _engine_failed(status, output.progress.tail, log_path)
                output.phase("smoke test")
                smoke = smoke_test(staging, spec)
                box.run(_write_json, os.path.join(staging, rp.PROVENANCE_PATH), record)
                if spec.format == rp.Format.TAR:
                    output.phase("packing tar")
                    box.run(rootfs_image.tar_dir, staging, target)
                elif spec.format == rp.Format.DOCKER_ARCHIVE:
                    output.phase("packing image archive")
                    pack = rootfs_image.docker_archive
                    box.run(pack, staging, target, spec.oci_platform, image_tag(spec),
                            record.created)  # fmt: skip
                if not is_dir:
                    _write_json(beside, record)
                    box.run(_remove, staging)
                output.done()
                finished = True
            finally:
                _set_signals(signal.SIG_IGN)  # a second Ctrl-C does not stop the cleanup
                output.done()
                if not finished and not keep_partial:
                    _cleanup(box, target, staging, created_dir, is_dir, beside)
    except signals.Interrupted:
        kept = (
            f"kept the partial root at {staging} and the log at {log_path}"
            if keep_partial
            else "removed the partial root"
        )
        if not keep_partial:
            with contextlib.suppress(OSError):
                os.unlink(log_path)
        sys.stderr.write(f"binfmtctl: interrupted; {kept}\n")
        raise
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    if finished:
        with contextlib.suppress(OSError):
            os.unlink(log_path)
    provenance_at = os.path.join(target, rp.PROVENANCE_PATH) if is_dir else beside
    return CreateReport(
        path=target,
        provenance_path=provenance_at,
        provenance=record,
        smoke=smoke,
        image=image_tag(spec) if spec.format == rp.Format.DOCKER_ARCHIVE else None,
        seconds=round(time.monotonic() - output.started, 1),
        engine_seconds=round(engine_seconds, 1),
    )


def _cleanup(
    box: sandbox.Sandbox, target: str, staging: str, created_dir: bool, is_dir: bool, beside: str
) -> None:
    """Remove what this build wrote (inside the namespace: the files belong to its ids)."""
    with contextlib.suppress(Exception):
        if is_dir:
            if created_dir:
                box.run(_remove, target)
            elif os.path.isdir(target):
                box.run(_empty_dir, target)
        else:
            box.run(_remove, staging)
            box.run(_remove, target)
            box.run(_remove, beside)


def _engine_failed(status: int, tail: list[str], log_path: str) -> RootfsError:
    last = "\n  ".join(tail[-TAIL_LINES:]) or "(no output)"
    return RootfsError(
        f"{rp.ENGINE} failed (exit status {status}); nothing was kept; its last lines:\n"
        f"  {last}\n  the whole log: {log_path}",
        log=log_path,
        status=status,
    )
