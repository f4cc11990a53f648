"""``binfmtctl agent --json``: stdout is JSON Lines, the envelope its last, compact line.

Golden files (tests/golden/agent-*.jsonl) hold the whole stdout of a real
agent in a private binfmt_misc instance (real kernel, real QEMU), byte for
byte except each event's ``time`` (checked, then replaced by ``<TIME>``).
``BINFMTCTL_UPDATE_GOLDEN=1`` rewrites them, as for tests/test_golden_json.py.
On a terminal without --json the agent prints human lines instead (tested
through a real pseudo-terminal).
"""

from __future__ import annotations

import datetime
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from binfmtctl import sandbox
from conftest import qemu

GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE = os.environ.get("BINFMTCTL_UPDATE_GOLDEN") == "1"
WAIT = 60.0  # a bound on waiting for the agent, never an expectation
TIME = re.compile(r'"time": "([^"]+)"')
AGENT = [sys.executable, "-m", "binfmtctl", "agent"]


def _normalise(text: str) -> str:
    """Each event's time must be an ISO 8601 UTC time; it becomes <TIME>."""
    for stamp in TIME.findall(text):
        parsed = datetime.datetime.fromisoformat(stamp)
        assert parsed.utcoffset() == datetime.timedelta(0), stamp
    return TIME.sub('"time": "<TIME>"', text)


def _golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.jsonl"
    if UPDATE:
        path.write_text(text)
    assert path.exists(), f"{path} is missing: record it with BINFMTCTL_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def _until_ready_then_sigterm(tmp: Path, *args: str) -> tuple[int, str, str]:
    out = tmp / "stdout"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([*AGENT, *args], stdout=sink, stderr=subprocess.PIPE)
    deadline = time.monotonic() + WAIT
    while '"event": "ready"' not in out.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=WAIT)
    return proc.returncode, out.read_text(), err.decode()


def test_json_stream_ends_with_one_line_envelope(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    qemu("qemu-aarch64")
    code, out, err = sb.run(
        _until_ready_then_sigterm, tmp_path, "--json", "--allow-private-instance",
        "--interval", "1", "arm64",
    )  # fmt: skip
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert all(isinstance(json.loads(line), dict) for line in lines)  # JSON Lines, every one
    assert json.loads(lines[-1])["command"] == "agent"
    _golden("agent-json-stream", _normalise(out))


def test_json_refusal_is_one_line(sb: sandbox.Sandbox) -> None:
    """Refused before any event: the envelope alone, still one line, exit 4."""
    done = sb.run(
        subprocess.run, [*AGENT, "--json", "arm64"], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stderr) == (4, "")
    assert len(done.stdout.splitlines()) == 1
    _golden("agent-json-refused", done.stdout)


def _on_a_terminal(*args: str) -> tuple[int, str]:
    """The agent with stdout (and stderr) a real pseudo-terminal, until ready, then SIGTERM."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([*AGENT, *args], stdout=follower, stderr=follower)
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + WAIT
    signalled = False
    while True:
        if not signalled and (b" ready\r" in seen or b'"event": "ready"' in seen):
            proc.send_signal(signal.SIGTERM)
            signalled = True
        assert time.monotonic() < deadline, seen
        ready, _, _ = select.select([leader], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the agent has exited and closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return proc.wait(timeout=WAIT), seen.decode()


@pytest.mark.parametrize("json_flag", [False, True])
def test_terminal_gets_human_lines_unless_json(sb: sandbox.Sandbox, json_flag: bool) -> None:
    qemu("qemu-aarch64")
    extra = ["--json"] if json_flag else []
    code, text = sb.run(_on_a_terminal, *extra, "--allow-private-instance", "arm64")
    assert code == 0, text
    lines = text.replace("\r\n", "\n").splitlines()
    if json_flag:
        assert [json.loads(line).get("event") for line in lines] == [
            "registered", "started", "proven", "ready", "stopped", None,
        ]  # fmt: skip
        return
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+\+00:00 "
    assert all(re.match(stamp, line) for line in lines), lines
    assert [re.sub(stamp, "", line) for line in lines] == [
        "registered aarch64 (qemu-aarch64)",
        "started: watching aarch64",
        "proven aarch64 (qemu-aarch64)",
        "ready",
        "stopped",
    ]


@pytest.mark.parametrize("args", [["--interval", "soon"], ["--no-such-option"], ["--mountpoint"]])
def test_a_usage_error_is_one_compact_line_too(args: list[str]) -> None:
    """Found before the agent starts (by the parser), still JSON Lines' one line."""
    done = subprocess.run([*AGENT, "--json", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    envelope = json.loads(lines[0])
    assert (envelope["command"], envelope["ok"]) == ("agent", False)
    assert envelope["errors"][0]["code"] == "usage"
