"""binfmtctl agent: the pure reconcile step, and the real loop on the real kernel.

The loop tests run ``python -m binfmtctl agent`` as a process inside a private
binfmt_misc instance (tests/conftest.py's ``sb``), change the instance behind
its back (by hand, and with the real systemd-binfmt), and wait (bounded) for
the events and files that say it healed. Nothing is mocked.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from binfmtctl import agent, sandbox
from binfmtctl.arch import CATALOG, Profile, resolve
from binfmtctl.entry import Handler
from binfmtctl.instance import Snapshot
from binfmtctl.plan import build_entry
from conftest import cli, qemu

MP = "/proc/sys/fs/binfmt_misc"
SYSTEMD_BINFMT = "/usr/lib/systemd/systemd-binfmt"
WAIT = 60.0  # a bound on waiting for the agent, never a measured expectation

# -- pure -------------------------------------------------------------------------

AARCH64 = build_entry(resolve("aarch64"), "/usr/bin/qemu-aarch64-static", "F", Profile.QEMU)
ARM = build_entry(resolve("arm"), "/usr/bin/qemu-arm-static", "F", Profile.QEMU)
DESIRED = {"aarch64": AARCH64, "arm": ARM}


def _snap(*present: tuple[str, bool], enabled: bool = True) -> Snapshot:
    entries = {"qemu-aarch64": AARCH64, "qemu-arm": ARM}
    handlers = tuple(Handler(entries[name], on) for name, on in present)
    return Snapshot(MP, True, enabled, True, handlers)


R, E, RD = agent.Fix.REGISTER, agent.Fix.ENABLE, agent.Fix.REPORT_DISABLED
EI, RI = agent.Fix.ENABLE_INSTANCE, agent.Fix.REPORT_INSTANCE_DISABLED


@pytest.mark.parametrize(
    ("snapshot", "enforce", "expected"),
    [
        (_snap(("qemu-aarch64", True), ("qemu-arm", True)), False, []),
        (_snap(("qemu-arm", True)), False, [(R, "aarch64")]),
        (_snap(), False, [(R, "aarch64"), (R, "arm")]),
        (_snap(("qemu-aarch64", False), ("qemu-arm", True)), False, [(RD, "aarch64")]),
        (_snap(("qemu-aarch64", False), ("qemu-arm", True)), True, [(E, "aarch64")]),
        (_snap(("qemu-aarch64", True), ("qemu-arm", True), enabled=False), False, [(RI, None)]),
        (_snap(("qemu-aarch64", True), enabled=False), True, [(EI, None), (R, "arm")]),
    ],
)
def test_decide(
    snapshot: Snapshot, enforce: bool, expected: list[tuple[agent.Fix, str | None]]
) -> None:
    got = agent.decide(snapshot, DESIRED, enforce)
    assert [(d.fix, d.arch) for d in got] == expected
    assert all(d.entry is DESIRED[d.arch] for d in got if d.arch)


@pytest.mark.parametrize(
    ("proven", "ok", "expected"),
    [
        (None, {"arm"}, [("aarch64", "probe_failed"), ("arm", "proven")]),
        ({"arm"}, {"arm"}, []),
        ({"arm", "aarch64"}, {"arm"}, [("aarch64", "probe_failed")]),
        ({"arm"}, {"arm", "aarch64"}, [("aarch64", "recovered")]),
    ],
)
def test_judge(proven: set[str] | None, ok: set[str], expected: list[tuple[str, str]]) -> None:
    before = None if proven is None else frozenset(proven)
    events = agent.judge(["aarch64", "arm"], before, frozenset(ok))
    assert [(e.arch, e.code.value) for e in events] == expected


WRITTEN = datetime.datetime(2026, 11, 28, 5, 30, 0, 250000, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize(
    ("interval", "timeout", "expires"),
    [
        (30.0, 10.0, "2026-11-28T05:32:01Z"),  # 120 s after 05:30:00.25, rounded up
        (1.0, 10.0, "2026-11-28T05:30:34Z"),
        (0.1, 0.15, "2026-11-28T05:30:01Z"),  # 0.75 s: exactly 05:30:01
        (86400.0, 10.0, "2026-12-01T05:30:31Z"),  # three days and 30 s,
    ],
)
def test_feature_expiry(interval: float, timeout: float, expires: str) -> None:
    got = agent.feature_expiry(WRITTEN, interval, timeout)
    assert got.strftime("%Y-%m-%dT%H:%M:%SZ") == expires and got.microsecond == 0


def test_feature_file_text() -> None:
    """NFD's directive first (it applies to the lines after it), in UTC, RFC 3339."""
    later = datetime.datetime(2026, 11, 28, 7, 1, 2, tzinfo=datetime.timezone(
        datetime.timedelta(hours=1)))  # fmt: skip
    assert agent.feature_text(["arm", "aarch64"], later) == (
        "# +expiry-time=2026-11-28T06:01:02Z\n"
        "# written by binfmtctl agent: arches proven to run on this node\n"
        "binfmtctl.feature.node.kubernetes.io/aarch64=true\n"
        "binfmtctl.feature.node.kubernetes.io/arm=true\n"
    )
    assert agent.feature_text([], later) == (
        "# +expiry-time=2026-11-28T06:01:02Z\n"
        "# written by binfmtctl agent: arches proven to run on this node\n"
    )


def test_feature_file_lines_are_valid_label_keys() -> None:
    text = agent.feature_text(["arm", "aarch64"], WRITTEN)
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "binfmtctl.feature.node.kubernetes.io/aarch64=true",
        "binfmtctl.feature.node.kubernetes.io/arm=true",
    ]
    for a in CATALOG.values():  # every catalog arch makes a valid key (prefix <= 253, name <= 63)
        prefix, name = agent.label_key(a.name).split("/")
        assert len(prefix) <= 253 and 0 < len(name) <= 63


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "not a number of seconds: 'abc'"),
        ("nan", "not a finite number of seconds: 'nan'"),
        ("0", "must be from 0.1 to 86400 seconds (one day): '0'"),
        ("86401", "must be from 0.1 to 86400 seconds (one day): '86401'"),
    ],
)
def test_interval_is_bounded(value: str, message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "agent", "--interval", value],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert (
        done.stderr == "binfmtctl: error: argument --interval: "
        f"{message} (see `binfmtctl agent --help`)\n"
    )


# -- the real loop ----------------------------------------------------------------


def _events(log: Path) -> list[dict[str, object]]:
    text = log.read_text() if log.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _wait(what: str, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def _count(log: Path, code: str, arch: str | None = None) -> int:
    return sum(e["event"] == code and (arch is None or e["arch"] == arch) for e in _events(log))


def _start(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "binfmtctl", "agent", "--allow-private-instance", *args],
            stdout=out,
            stderr=subprocess.PIPE,
        )


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=WAIT)
    return proc.returncode, err.decode()


def _status(name: str) -> str:
    return Path(MP, name).read_text().splitlines()[0]


def _heals(tmp: Path) -> dict[str, object]:
    log, ready, feats = tmp / "log", tmp / "ready", tmp / "features"
    proc = _start(
        log, "--interval", "1", "--ready-file", str(ready), "--feature-file", str(feats),
        "arm64", "armhf",
    )  # fmt: skip
    _wait("ready file", ready.exists)
    first_features = feats.read_text()
    # Rewritten every round (a new file each time), whether anything changed or not.
    first_inode = feats.stat().st_ino
    _wait("the feature file rewritten", lambda: feats.stat().st_ino != first_inode)
    # Removed by hand: written -1 to its own file.
    Path(MP, "qemu-aarch64").write_text("-1")
    _wait("aarch64 back", lambda: _count(log, "reregistered", "aarch64") == 1)
    _wait("ready again", lambda: _count(log, "ready") == 2)
    # Flushed by the real systemd-binfmt, acting on this namespace's instance.
    unreg = subprocess.run([SYSTEMD_BINFMT, "--unregister"], capture_output=True, check=False)
    assert unreg.returncode == 0, unreg.stderr
    _wait("both back", lambda: _count(log, "reregistered") == 3)
    _wait("ready a third time", lambda: _count(log, "ready") == 3 and ready.exists())
    code, err = _stop(proc)
    return {
        "code": code,
        "stderr": err,
        "events": [(e["event"], e["arch"]) for e in _events(log)],
        "features": first_features,
        "ready_after": ready.exists(),
        "features_after": feats.exists(),
        "left": sorted(os.listdir(MP)),
    }


def _expiry(text: str) -> datetime.datetime:
    first = text.splitlines()[0]
    assert re.fullmatch(r"# \+expiry-time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", first), first
    return datetime.datetime.strptime(first, "# +expiry-time=%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=datetime.timezone.utc
    )


def _utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


# --interval 1 and the default probe timeout: the file outlives its writing by this.
GRACE = datetime.timedelta(seconds=agent.FEATURE_ROUNDS * (1 + 10))


def test_agent_registers_proves_and_heals_removal_and_flush(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    qemu("qemu-aarch64")
    qemu("qemu-arm")
    started = _utc()
    got = sb.run(_heals, tmp_path)
    assert got["code"] == 0, got["stderr"]
    events = got["events"]
    assert isinstance(events, list)
    assert events[:6] == [
        ("registered", "aarch64"),
        ("registered", "arm"),
        ("started", None),
        ("proven", "aarch64"),
        ("proven", "arm"),
        ("ready", None),
    ]
    codes = [e[0] for e in events]
    # Readiness dropped and came back after each change, and the last word is "stopped".
    assert codes.count("not_ready") == 2 and codes.count("ready") == 3
    assert codes.index("not_ready") < codes.index("reregistered")
    assert codes[-1] == "stopped"
    features = str(got["features"])
    assert started + GRACE <= _expiry(features) <= _utc() + GRACE + datetime.timedelta(seconds=1)
    assert features.split("\n", 1)[1] == (
        "# written by binfmtctl agent: arches proven to run on this node\n"
        "binfmtctl.feature.node.kubernetes.io/aarch64=true\n"
        "binfmtctl.feature.node.kubernetes.io/arm=true\n"
    )
    # SIGTERM: exit 0, the ready and feature files gone, the handlers left in place.
    assert got["ready_after"] is False
    assert got["features_after"] is False
    assert got["left"] == ["qemu-aarch64", "qemu-arm", "register", "status"]


def _killed(tmp: Path) -> dict[str, object]:
    log, feats = tmp / "log", tmp / "features"
    proc = _start(log, "--interval", "1", "--feature-file", str(feats), "arm64")
    _wait("ready", lambda: _count(log, "ready") == 1)
    proc.kill()  # no clean exit: the file stays behind
    proc.communicate(timeout=WAIT)
    return {"code": proc.returncode, "features": feats.read_text(), "killed": _utc()}


def test_feature_file_of_a_killed_agent_expires(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    """SIGKILL leaves the file, but NFD drops its labels within three rounds of the death."""
    qemu("qemu-aarch64")
    got = sb.run(_killed, tmp_path)
    assert got["code"] == -signal.SIGKILL
    features = str(got["features"])
    assert features.endswith("\nbinfmtctl.feature.node.kubernetes.io/aarch64=true\n")
    killed = got["killed"]
    assert isinstance(killed, datetime.datetime)
    assert killed < _expiry(features) <= killed + GRACE + datetime.timedelta(seconds=1)


def _disabled(tmp: Path, enforce: bool) -> dict[str, object]:
    log = tmp / f"log-{enforce}"
    extra = ["--enforce"] if enforce else []
    proc = _start(log, "--interval", "1", *extra, "arm64")
    _wait("proven", lambda: _count(log, "proven", "aarch64") == 1)
    Path(MP, "qemu-aarch64").write_text("0")
    code = "enabled" if enforce else "disabled"
    _wait(code, lambda: _count(log, code, "aarch64") >= 1)
    status = _status("qemu-aarch64")
    rc, err = _stop(proc)
    return {"code": rc, "stderr": err, "status": status, "after": _status("qemu-aarch64")}


def test_disabled_entry_is_reported_and_enabled_only_with_enforce(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    qemu("qemu-aarch64")
    left = sb.run(_disabled, tmp_path, False)
    assert left == {"code": 0, "stderr": "", "status": "disabled", "after": "disabled"}
    fixed = sb.run(_disabled, tmp_path, True)
    assert fixed == {"code": 0, "stderr": "", "status": "enabled", "after": "enabled"}


def _hangup(tmp: Path) -> dict[str, object]:
    log = tmp / "log"
    proc = _start(log, "--interval", "86400", "arm64")
    _wait("ready", lambda: _count(log, "ready") == 1)
    Path(MP, "qemu-aarch64").write_text("-1")
    proc.send_signal(signal.SIGHUP)
    _wait("aarch64 back", lambda: _count(log, "reregistered", "aarch64") == 1)
    rc, err = _stop(proc)
    return {"code": rc, "stderr": err, "left": sorted(os.listdir(MP))}


def test_sighup_checks_at_once(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    qemu("qemu-aarch64")
    got = sb.run(_hangup, tmp_path)
    assert got == {"code": 0, "stderr": "", "left": ["qemu-aarch64", "register", "status"]}


def _remove_own(tmp: Path) -> dict[str, object]:
    log = tmp / "log"
    proc = _start(log, "--interval", "1", "--remove-on-exit", "arm64", "armhf")
    _wait("ready", lambda: _count(log, "ready") == 1)
    rc, err = _stop(proc, signal.SIGINT)  # SIGINT ends it as SIGTERM does
    return {
        "code": rc,
        "stderr": err,
        "events": [(e["event"], e["entry"]) for e in _events(log) if e["event"] != "proven"],
        "left": sorted(os.listdir(MP)),
    }


def test_remove_on_exit_removes_only_its_own(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    qemu("qemu-aarch64")
    qemu("qemu-arm")
    before = cli(sb, "install", "armhf")  # another tool's (or an earlier run's) handler
    assert before.returncode == 0, before.stderr
    got = sb.run(_remove_own, tmp_path)
    assert got["code"] == 0, got["stderr"]
    assert got["events"] == [
        ("registered", "qemu-aarch64"),
        ("present", "qemu-arm"),
        ("started", None),
        ("ready", None),
        ("removed", "qemu-aarch64"),
        ("stopped", None),
    ]
    assert got["left"] == ["qemu-arm", "register", "status"]


def test_private_instance_is_refused_without_the_flag(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    done = cli(sb, "agent", "--interval", "1", "arm64")
    assert done.returncode == 4
    assert done.stdout == ""
    assert done.stderr == f"binfmtctl: error: {agent.PRIVATE_REFUSAL}\n"
    assert sb.run(os.listdir, MP) == ["register", "status"]  # nothing registered


def _missing(tmp: Path, emulators: Path) -> dict[str, object]:
    log, ready, feats = tmp / "log", tmp / "ready", tmp / "features"
    proc = _start(
        log, "--interval", "1", "--interpreter-dir", str(emulators),
        "--ready-file", str(ready), "--feature-file", str(feats), "arm64", "armhf",
    )  # fmt: skip
    _wait("aarch64 proven", lambda: _count(log, "proven", "aarch64") == 1)
    _wait("not ready", lambda: _count(log, "not_ready") == 1)
    alive = proc.poll() is None
    features = feats.read_text()
    rc, err = _stop(proc)
    return {
        "alive": alive,
        "code": rc,
        "stderr": err,
        "events": [(e["event"], e["arch"]) for e in _events(log)],
        "ready": ready.exists(),
        "features": features,
        "features_after": feats.exists(),
        "left": sorted(os.listdir(MP)),
    }


def test_missing_emulator_is_reported_not_fatal(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    emulators = tmp_path / "emulators"  # holds aarch64's emulator only
    emulators.mkdir()
    (emulators / "qemu-aarch64-static").symlink_to(qemu("qemu-aarch64"))
    got = sb.run(_missing, tmp_path, emulators)
    assert got["alive"] is True and got["code"] == 0, got["stderr"]
    assert got["events"] == [
        ("registered", "aarch64"),
        ("missing", "arm"),
        ("started", None),
        ("proven", "aarch64"),
        ("probe_failed", "arm"),
        ("not_ready", None),
        ("stopped", None),
    ]
    assert got["ready"] is False  # armhf was asked for and cannot run
    assert str(got["features"]).endswith("\nbinfmtctl.feature.node.kubernetes.io/aarch64=true\n")
    assert got["features_after"] is False  # removed on a clean exit
    assert got["left"] == ["qemu-aarch64", "register", "status"]


def test_agent_benchmark_quick() -> None:
    """benchmarks/agent.py's smoke run: it runs and reports its shape (timings not judged)."""
    qemu("qemu-aarch64")
    qemu("qemu-arm")
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "agent.py"), "--quick"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"arches proven: 2 \(load average .*\)", lines[0]), lines
    assert re.fullmatch(
        r"cpu per round: [\d.]+ ms \(agent [\d.]+ ms, probes [\d.]+ ms\), wall \d+ ms", lines[1]
    ), lines
    assert re.fullmatch(r"at the default 30 s interval: [\d.]+% of one core", lines[2]), lines
    assert re.fullmatch(r"peak RSS: [\d.]+ MiB", lines[3]), lines


def _refused_then_healed(tmp: Path, emulators: Path) -> dict[str, object]:
    log, ready = tmp / "log", tmp / "ready"
    emulator = emulators / "qemu-aarch64-static"
    kept = tmp / "kept-emulator"
    proc = _start(
        log, "--interval", "1", "--interpreter-dir", str(emulators),
        "--ready-file", str(ready), "arm64",
    )  # fmt: skip
    _wait("ready", ready.exists)
    emulator.rename(kept)  # gone: the kernel refuses an F entry whose emulator is missing
    Path(MP, "qemu-aarch64").write_text("-1")
    _wait("refused", lambda: _count(log, "refused", "aarch64") >= 1)
    _wait("ready file gone", lambda: not ready.exists())
    alive = proc.poll() is None
    kept.rename(emulator)
    _wait("aarch64 back", lambda: _count(log, "reregistered", "aarch64") == 1)
    _wait("ready again", ready.exists)
    rc, err = _stop(proc)
    refusal = next(e for e in _events(log) if e["event"] == "refused")
    return {"alive": alive, "code": rc, "stderr": err, "refusal": refusal}


def test_kernel_refusal_is_reported_and_retried(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    emulators = tmp_path / "emulators"
    emulators.mkdir()
    (emulators / "qemu-aarch64-static").write_bytes(Path(qemu("qemu-aarch64")).read_bytes())
    (emulators / "qemu-aarch64-static").chmod(0o755)
    got = sb.run(_refused_then_healed, tmp_path, emulators)
    assert got["alive"] is True and got["code"] == 0, got["stderr"]
    refusal = got["refusal"]
    assert isinstance(refusal, dict)
    assert (refusal["arch"], refusal["entry"]) == ("aarch64", "qemu-aarch64")
    assert str(emulators / "qemu-aarch64-static") in str(refusal["detail"])


def _through_links(tmp: Path) -> dict[str, object]:
    log, ready, feats = tmp / "log", tmp / "ready", tmp / "features"
    proc = _start(
        log, "--interval", "1", "--ready-file", str(ready), "--feature-file", str(feats), "arm64"
    )
    _wait("ready", lambda: _count(log, "ready") == 1)
    kinds = (ready.is_symlink(), feats.is_symlink())
    rc, err = _stop(proc)
    return {"code": rc, "stderr": err, "links": kinds, "ready_left": os.path.lexists(ready)}


def test_ready_and_feature_files_replace_links_never_follow_them(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    qemu("qemu-aarch64")
    victims = {name: tmp_path / f"victim-{name}" for name in ("ready", "features")}
    for name, victim in victims.items():
        victim.write_text("keep me\n")
        (tmp_path / name).symlink_to(victim)
    got = sb.run(_through_links, tmp_path)
    assert got == {"code": 0, "stderr": "", "links": (False, False), "ready_left": False}
    assert all(v.read_text() == "keep me\n" for v in victims.values())


@pytest.mark.parametrize(
    ("event", "line"),
    [
        (agent.Event(agent.EventCode.READY, time="T"), "T ready"),
        (
            agent.Event(agent.EventCode.REREGISTERED, "aarch64", "qemu-aarch64", time="T"),
            "T reregistered aarch64 (qemu-aarch64)",
        ),
        (
            agent.Event(agent.EventCode.PROBE_FAILED, "arm", None, "no handler", time="T"),
            "T probe failed arm: no handler",
        ),
    ],
)
def test_human_lines(event: agent.Event, line: str) -> None:
    assert event.human() == line
    assert event.to_dict()["event"] == event.code.value


def _instance_off(tmp: Path, enforce: bool) -> dict[str, object]:
    log = tmp / f"instance-{enforce}"
    Path(MP, "status").write_text("1")  # each run starts with the instance on
    proc = _start(log, "--interval", "1", *(["--enforce"] if enforce else []), "arm64")
    _wait("ready", lambda: _count(log, "ready") == 1)
    Path(MP, "status").write_text("0")  # the administrator switches the instance off
    code = "instance_enabled" if enforce else "instance_disabled"
    _wait(code, lambda: _count(log, code) == 1)
    if enforce:
        _wait("ready again", lambda: _count(log, "ready") == 2)
    else:
        _wait("not ready", lambda: _count(log, "not_ready") == 1)
    rc, err = _stop(proc)
    return {"code": rc, "stderr": err, "status": _status("status")}


def test_disabled_instance_is_reported_and_enabled_only_with_enforce(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    qemu("qemu-aarch64")
    left = sb.run(_instance_off, tmp_path, False)
    assert left == {"code": 0, "stderr": "", "status": "disabled"}
    fixed = sb.run(_instance_off, tmp_path, True)
    assert fixed == {"code": 0, "stderr": "", "status": "enabled"}
