"""Real SIGTERM, SIGHUP and SIGINT sent to a running ``binfmtctl``.

A long command that is stopped by a signal must stop everything it started,
remove its temporary files and exit 128+N (with a JSON envelope saying
"interrupted" under --json). ``binfmtctl run`` execs the user's command in
place, so the command itself receives the signal and its status is ours.

The hang is real: inside a private binfmt_misc instance, arm64 programs are
sent to a shell script that starts a sleeper (a link to the host's sleep whose
name carries a marker), reports the sleeper's pid through a FIFO and waits.
Nothing here is timed: the test waits for that report, then signals.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pty
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from binfmtctl import proving, sandbox, signals
from binfmtctl.arch import Profile, resolve
from binfmtctl.errors import SandboxError
from binfmtctl.instance import Instance
from binfmtctl.plan import build_entry
from conftest import _NO_SANDBOX, foreign_busybox

pytestmark = pytest.mark.skipif(
    _NO_SANDBOX is not None, reason=f"no private binfmt_misc here: {_NO_SANDBOX}"
)

SIGNALS = [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
SIGKILL_BIT = 1 << (signal.SIGKILL - 1)


def _living(marker: str) -> list[int]:
    """Processes whose argv holds ``marker`` and that are not dead or dying (SIGKILL pending)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue  # gone meanwhile
        if marker.encode() not in cmdline:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        state = fields.get("State", "").split()[0:1]
        pending = int(fields.get("SigPnd", "0"), 16) | int(fields.get("ShdPnd", "0"), 16)
        if state in (["Z"], ["X"]) or pending & SIGKILL_BIT:
            continue
        alive.append(int(entry))
    return alive


class Hang:
    """A handler for arm64 whose 'emulator' starts a marked sleeper and waits for it."""

    def __init__(self, tmp_path: Path) -> None:
        self.marker = f"binfmtctl-sleeper-{secrets.token_hex(6)}"
        self.sleeper = tmp_path / self.marker
        self.sleeper.symlink_to("/bin/sleep")
        self.fifo = tmp_path / "started"
        os.mkfifo(self.fifo)
        self.runner = tmp_path / "slow-runner"
        self.runner.write_text(f"#!/bin/sh\n{self.sleeper} 1000 &\necho $! > {self.fifo}\nwait\n")
        self.runner.chmod(0o755)
        self.scratch = tmp_path / "scratch"  # where the probes go ($XDG_RUNTIME_DIR)
        self.scratch.mkdir()
        self.entry = build_entry(resolve("arm64"), str(self.runner), "", Profile.QEMU)


def _wait_for_fifo(fifo: Path, proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> str:
    """What is written to ``fifo``; '' if ``proc`` closed its stdout (ended) first."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([fd, proc.stdout.fileno()], [], [])
        if fd not in ready:
            return ""
        os.set_blocking(fd, True)
        data = b""
        while chunk := os.read(fd, 100):
            data += chunk
        return data.decode()
    finally:
        os.close(fd)


def _signal_when_started(
    argv: list[str], hang: Hang, signum: int, env: dict[str, str]
) -> tuple[int, str, str, str]:
    """Start argv, wait for the sleeper, send ``signum`` to argv's process; its outcome."""
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    started = _wait_for_fifo(hang.fifo, proc)
    if started:
        os.kill(proc.pid, signum)
    out, err = proc.communicate()
    return proc.returncode, out, err, started


def _interrupt_test(
    box: sandbox.Sandbox, hang: Hang, signum: int, *args: str
) -> tuple[int, str, str, str, list[int], list[str]]:
    def body() -> tuple[int, str, str, str, list[int], list[str]]:
        Instance().register(hang.entry)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(hang.scratch)}
        argv = [sys.executable, "-m", "binfmtctl", *args]
        code, out, err, started = _signal_when_started(argv, hang, signum, env)
        return code, out, err, started, _living(hang.marker), os.listdir(hang.scratch)

    return box.run(body)


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_a_signal_stops_test_its_probes_and_removes_them(
    sb: sandbox.Sandbox, tmp_path: Path, signum: int, code: int
) -> None:
    hang = Hang(tmp_path)
    status, out, err, started, living, left = _interrupt_test(sb, hang, signum, "test", "arm64")
    assert started.strip().isdigit(), err  # the probe really was running
    name = signal.Signals(signum).name
    assert (status, out, err) == (code, "", f"binfmtctl: error: interrupted by {name}\n")
    assert living == [], "the slow runner's sleeper outlived binfmtctl"
    assert left == [], "probe files were left in the scratch directory"


def test_an_interrupted_json_command_still_prints_its_envelope(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    hang = Hang(tmp_path)
    status, out, err, started, living, left = _interrupt_test(
        sb, hang, signal.SIGTERM, "test", "--json", "arm64"
    )
    assert started and status == 143, err
    assert json.loads(out) == {
        "version": 1,
        "command": "test",
        "ok": False,
        "data": {},
        "errors": [
            {"code": "interrupted", "message": "interrupted by SIGTERM", "signal": "SIGTERM"}
        ],
        "warnings": [],
    }
    assert (err, living, left) == ("", [], [])


def test_chroot_probes_are_stopped_too(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    """--chroot runs each probe twice (plain and in an empty chroot): both kinds go."""
    hang = Hang(tmp_path)
    status, _, err, started, living, left = _interrupt_test(
        sb, hang, signal.SIGHUP, "test", "--chroot", "arm64"
    )
    assert started and status == 129, err
    assert (living, left) == ([], [])


def test_an_interrupt_on_a_terminal_clears_the_progress_line(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    """On a terminal `test` draws a live progress line from a thread; SIGINT ends it cleanly."""
    hang = Hang(tmp_path)

    def body() -> tuple[int, bytes, str]:
        Instance().register(hang.entry)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(hang.scratch)}
        controller, terminal = pty.openpty()
        argv = [sys.executable, "-m", "binfmtctl", "test", "arm64"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=terminal, env=env)
        os.close(terminal)
        started = _wait_for_fifo(hang.fifo, proc)
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate()
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
            while chunk := os.read(controller, 4096):
                shown += chunk
        os.close(controller)
        return proc.returncode, shown, started

    code, shown, started = sb.run(body)
    assert started and code == 130
    # The one error line, no traceback; a progress line (drawn after 0.3 s, so
    # usually) is erased just before it.
    error = b"binfmtctl: error: interrupted by SIGINT\r\n"
    assert shown.endswith(error) and shown.count(b"\n") == 1, shown
    assert b"Traceback" not in shown
    if b"testing:" in shown:
        assert shown.endswith(b"\r\x1b[K" + error), shown


def test_install_test_is_stopped_too(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    """`install --test`: arm64's handler is installed, then a newer slow entry shadows it."""
    hang = Hang(tmp_path)

    def body() -> tuple[int, str, str, list[int], list[str], list[str]]:
        argv = [sys.executable, "-m", "binfmtctl"]
        installed = subprocess.run([*argv, "install", "arm64"], capture_output=True, check=False)
        assert installed.returncode == 0, installed.stderr
        Instance().register(hang.entry.replace(name="slow-arm64"))  # newest: matched first
        env = {**os.environ, "XDG_RUNTIME_DIR": str(hang.scratch)}
        code, _, err, started = _signal_when_started(
            [*argv, "install", "--test", "arm64"], hang, signal.SIGTERM, env
        )
        names = sorted(os.listdir("/proc/sys/fs/binfmt_misc"))
        return code, err, started, _living(hang.marker), os.listdir(hang.scratch), names

    status, err, started, living, left, names = sb.run(body)
    assert started and (status, err) == (143, "binfmtctl: error: interrupted by SIGTERM\n")
    # install also keeps its cache of the host's native arches there (native.py): not a probe.
    assert (living, [n for n in left if n != "binfmtctl"]) == ([], [])
    assert names == ["qemu-aarch64", "register", "slow-arm64", "status"]  # install's work stays


def test_a_timed_out_probe_takes_its_runners_children_with_it(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    """A probe that hangs past --timeout is killed as a group: its runner's sleeper too.

    Before, only the runner was killed; the sleeper kept the output pipe open and
    `test` waited for it (1000 s here) instead of reporting the timeout.
    """
    hang = Hang(tmp_path)

    def body() -> tuple[int, str, list[int]]:
        Instance().register(hang.entry)
        env = {**os.environ, "XDG_RUNTIME_DIR": str(hang.scratch)}
        argv = [sys.executable, "-m", "binfmtctl", "test", "--json", "--timeout", "1", "arm64"]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        _wait_for_fifo(hang.fifo, proc)
        out, _ = proc.communicate()
        return proc.returncode, out, _living(hang.marker)

    status, out, living = sb.run(body)
    (result,) = json.loads(out)["data"]["results"]
    assert (status, result["code"], living) == (1, proving.OutcomeCode.TIMED_OUT, [])


# -- binfmtctl run: the command is the process that gets the signal ----------------

# A command that says it started (through the FIFO in argv[1]), then waits for a
# signal; with "exit7", it handles SIGTERM by exiting 7.
_WAITER = """
import os, signal, sys
if sys.argv[2] == "exit7":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
with open(sys.argv[1], "w") as fifo:
    fifo.write(str(os.getpid()))
while True:
    signal.pause()
"""


def _run_and_signal(
    tmp_path: Path, signum: int, mode: str
) -> tuple[int, str, str, list[int], list[str]]:
    marker = f"binfmtctl-waiter-{secrets.token_hex(6)}"
    hang = Hang(tmp_path)
    argv = [sys.executable, "-m", "binfmtctl", "run", "--arch", "arm64", "--"]
    argv += [sys.executable, "-c", _WAITER, str(hang.fifo), mode, marker]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = _wait_for_fifo(hang.fifo, proc)
    namespace = os.readlink(f"/proc/{proc.pid}/ns/user") if started else ""
    if started:
        os.kill(proc.pid, signum)
    out, err = proc.communicate()
    assert started == str(proc.pid), err  # exec'd in place: the command is our process
    left = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.readlink(f"/proc/{entry}/ns/user") == namespace:
                left.append(entry)
        except OSError:
            continue
    return proc.returncode, out, err, _living(marker), left


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_run_the_command_gets_the_signal_and_nothing_is_left(tmp_path: Path, signum: int) -> None:
    status, out, err, living, in_namespace = _run_and_signal(tmp_path, signum, "plain")
    assert (status, out, err) == (-signum, "", "")  # killed by it, as a shell would see
    assert (living, in_namespace) == ([], [])


def test_run_exits_with_the_commands_own_status(tmp_path: Path) -> None:
    status, _, err, living, in_namespace = _run_and_signal(tmp_path, signal.SIGTERM, "exit7")
    assert (status, err, living, in_namespace) == (7, "", [], [])


@pytest.mark.parametrize(
    ("mode", "code", "outcome"),
    [("plain", 143, (None, "SIGTERM")), ("exit7", 7, (7, None))],
)
def test_run_json_passes_the_signal_on_and_reports_the_commands_status(
    tmp_path: Path, mode: str, code: int, outcome: tuple[int | None, str | None]
) -> None:
    """`run --json` runs the command as a child: the signal goes on to it, as a shell's would."""
    marker = f"binfmtctl-waiter-{secrets.token_hex(6)}"
    hang = Hang(tmp_path)
    argv = [sys.executable, "-m", "binfmtctl", "run", "--json", "--arch", "arm64", "--"]
    argv += [sys.executable, "-c", _WAITER, str(hang.fifo), mode, marker]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = _wait_for_fifo(hang.fifo, proc)
    if started:
        os.kill(proc.pid, signal.SIGTERM)
    out, err = proc.communicate()
    assert started and started != str(proc.pid), err
    data = json.loads(out)["data"]
    assert (proc.returncode, (data["exit_status"], data["signal"]), err) == (code, outcome, "")
    assert _living(marker) == []
    assert not Path(f"/proc/{started}").exists()  # reaped by binfmtctl


_CALL = """
import sys
from binfmtctl import rootless, signals
try:
    with signals.interruptible():
        rootless.call(sys.argv[1:], rootless.RunOptions(arches=["arm64"]))
except signals.Interrupted as stop:
    sys.exit(stop.exit_code)
"""


@pytest.mark.parametrize("mode", ["plain", "exit7"])
def test_sandbox_call_passes_the_signal_on_and_reaps_the_command(tmp_path: Path, mode: str) -> None:
    """The library's call() forks: interrupted, it signals the command and waits for it."""
    marker = f"binfmtctl-waiter-{secrets.token_hex(6)}"
    hang = Hang(tmp_path)
    argv = [sys.executable, "-c", _CALL, sys.executable, "-c", _WAITER, str(hang.fifo), mode]
    proc = subprocess.Popen([*argv, marker], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    started = _wait_for_fifo(hang.fifo, proc)
    if started:
        os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate()
    assert started and started != str(proc.pid), err  # the command is a child here
    assert (proc.returncode, err, _living(marker)) == (143, b"", [])
    assert not Path(f"/proc/{started}").exists()  # reaped by call(), not left to init


def test_an_interrupted_scan_prints_its_envelope(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """scan in-process; the SIGTERM is real, sent from inside its walk.

    Stubbed: only *when* it comes. The walk calls os.scandir, wrapped here to
    signal this process at the second directory, so it lands mid-walk.
    """
    from binfmtctl import cli

    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "file").write_bytes(b"\x7fELF")
    calls = []
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        calls.append(path)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the loop runs the handler here, before an iterator exists
                pass
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # what diagnose's walk calls
    code = cli.main(["--json", "--mountpoint", str(tmp_path / "none"), "scan", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert (code, out["ok"], out["command"], out["errors"]) == (
        143,
        False,
        "scan",
        [{"code": "interrupted", "message": "interrupted by SIGTERM", "signal": "SIGTERM"}],
    )
    assert len(calls) == 2  # it stopped at the signal, not after the walk
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers are restored


# -- the helper itself ----------------------------------------------------------


def test_an_ignored_signal_stays_ignored() -> None:
    """nohup's SIGHUP (or a background job's SIGINT) is left as the caller set it."""
    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with signals.interruptible():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is signals._handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, before)


def test_deferred_holds_a_signal_until_the_block_ends() -> None:
    reached = []
    with pytest.raises(signals.Interrupted) as caught, signals.interruptible():
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            reached.append("after the kill, inside deferred()")
        reached.append("never")
    assert (caught.value.signum, caught.value.exit_code) == (signal.SIGTERM, 143)
    assert reached == ["after the kill, inside deferred()"]


# -- test --engine: the container goes too -------------------------------------------

_VERIFY = """
import json, sys
from binfmtctl import engines, signals
options, run_options, ref = json.loads(sys.argv[1])
eng = engines.Engine("podman", "/usr/bin/podman", options=tuple(options),
                     run_options=tuple(run_options))
try:
    with signals.interruptible():
        engines.verify("podman", ["arm64"], image=ref, engine=eng)
except signals.Interrupted as stop:
    sys.exit(stop.exit_code)
"""


def test_an_interrupted_engine_run_removes_its_container(tmp_path: Path) -> None:
    """`test --engine podman --image`: killing `podman run` leaves its container; we remove it.

    The user's image runs `uname`, here a script that sleeps (arm64 busybox
    through the sandbox's F handler); the signal comes once that sleep runs.
    """
    from test_engines import CRUN_LIMITS, _podman, _prepare_namespace

    short = Path(tempfile.mkdtemp(prefix="binfmtctl-", dir="/tmp"))  # podman: short paths
    try:
        eng = _podman(short)
        duration = str(secrets.randbelow(10**6) + 10**7)  # the marker: a unique sleep
        tar = short / "image.tar"
        with tarfile.open(tar, "w") as archive:
            archive.add(foreign_busybox("arm64"), arcname="bin/busybox")
            for name, data in (("bin/uname", f"#!/bin/sh\nexec /bin/busybox sleep {duration}\n"),):
                info = tarfile.TarInfo(name)
                info.mode, info.size = 0o755, len(data)
                archive.addfile(info, io.BytesIO(data.encode()))
            link = tarfile.TarInfo("bin/sh")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            archive.addfile(link)
        ref = "localhost/binfmtctl-slow-uname:arm64"
        config = json.dumps([list(eng.options), list(CRUN_LIMITS), ref])

        def body() -> tuple[int, list[int], str]:
            _prepare_namespace()
            subprocess.run([sys.executable, "-m", "binfmtctl", "install", "arm64"], check=True)
            made = subprocess.run(
                eng.command("import", "--arch", "arm64", "--os", "linux", "--change",
                            "ENV PATH=/bin", str(tar), ref),
                capture_output=True, check=False,
            )  # fmt: skip
            assert made.returncode == 0, made.stderr
            proc = subprocess.Popen([sys.executable, "-c", _VERIFY, config])
            try:
                for _ in range(1200):  # waits for the container's sleep (not a timing check)
                    if _living(duration) or proc.poll() is not None:
                        break
                    time.sleep(0.1)
                os.kill(proc.pid, signal.SIGTERM)
                status = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            left = subprocess.run(
                eng.command("ps", "-a", "--format", "{{.Names}}"),
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            subprocess.run(eng.command("rmi", "--force", ref), capture_output=True, check=False)
            return status, _living(duration), left

        with sandbox.Sandbox(full_ids=True) as box:
            status, living, left = box.run(body)
        assert (status, living, left) == (143, [], "")
    except SandboxError as err:  # pragma: no cover
        pytest.skip(f"no full-id sandbox here: {err}")
    finally:
        shutil.rmtree(short, ignore_errors=True)
