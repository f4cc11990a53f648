"""``binfmtctl agent``: keep one node's handlers registered and proven.

A reconciler: :func:`decide` is pure (a :class:`~binfmtctl.instance.Snapshot`
and the desired entries in, the fixes and reports out); :class:`Agent` is the
thin loop around it that carries fixes out, runs the probes, keeps the ready
and feature files, and tells each event to a callback. Bad states (an
emulator missing, the kernel refusing an entry, an administrator disabling
the instance) are events, never the end of the loop: a node agent that dies
on the first surprise heals nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import re
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from binfmtctl import install, persist, plan, proving, signals
from binfmtctl.entry import Entry
from binfmtctl.errors import EXIT_PRIVILEGES, BinfmtError
from binfmtctl.files import write_atomic
from binfmtctl.instance import Instance, Snapshot
from binfmtctl.namespaces import in_initial_user_namespace

DEFAULT_INTERVAL = 30.0
MIN_INTERVAL, MAX_INTERVAL = 0.1, 86400.0  # a tenth of a second .. one day
#: NFD allows every sub-namespace of feature.node.kubernetes.io by default.
LABEL_PREFIX = "binfmtctl.feature.node.kubernetes.io/"
# A Kubernetes label key's name part: at most 63 characters, alphanumeric at
# both ends, dashes, underscores and dots inside.
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")

PRIVATE_REFUSAL = (
    "this process is not in the host's user namespace: the binfmt_misc it would keep is "
    "a private one that the node's other programs never consult; run the agent privileged "
    "in the host's user namespace (a privileged container with hostUsers), or pass "
    "--allow-private-instance to keep a private instance on purpose"
)


class PrivateInstanceError(BinfmtError):
    """The agent would keep a private instance and report the node ready: refused."""

    code = "private_instance"
    exit_code = EXIT_PRIVILEGES


class EventCode(str, Enum):
    """What one JSON event line reports (the ``event`` key)."""

    STARTED = "started"
    REGISTERED = "registered"  # by the first install
    PRESENT = "present"  # already registered when the agent started
    REREGISTERED = "reregistered"  # back after someone removed or flushed it
    DISABLED = "disabled"  # an entry someone disabled (re-enabled only with --enforce)
    ENABLED = "enabled"  # re-enabled (--enforce)
    INSTANCE_DISABLED = "instance_disabled"
    INSTANCE_ENABLED = "instance_enabled"  # re-enabled (--enforce)
    MISSING = "missing"  # no emulator for an asked arch
    REFUSED = "refused"  # planning or the kernel refused the entry
    PROVEN = "proven"  # first proof of an arch
    PROBE_FAILED = "probe_failed"
    RECOVERED = "recovered"  # proven again after a failure
    READY = "ready"  # every desired arch proven
    NOT_READY = "not_ready"
    REMOVED = "removed"  # --remove-on-exit: one of its own entries
    STOPPED = "stopped"


@dataclass(frozen=True)
class Event:
    code: EventCode
    arch: str | None = None
    entry: str | None = None
    detail: str = ""
    time: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat()
    )

    def to_dict(self) -> dict[str, object]:
        return {
            "time": self.time,
            "event": self.code.value,
            "arch": self.arch,
            "entry": self.entry,
            "detail": self.detail or None,
        }

    def human(self) -> str:
        what = " ".join(x for x in (self.arch, f"({self.entry})" if self.entry else None) if x)
        tail = f": {self.detail}" if self.detail else ""
        return f"{self.time} {self.code.value.replace('_', ' ')} {what}".rstrip() + tail


class Fix(str, Enum):
    """What :func:`decide` asks the loop to do."""

    REGISTER = "register"
    ENABLE = "enable"
    REPORT_DISABLED = "report_disabled"
    ENABLE_INSTANCE = "enable_instance"
    REPORT_INSTANCE_DISABLED = "report_instance_disabled"


REPORTS = frozenset({Fix.REPORT_DISABLED, Fix.REPORT_INSTANCE_DISABLED})  # told once per change


@dataclass(frozen=True)
class Decision:
    fix: Fix
    arch: str | None = None
    entry: Entry | None = None


def decide(snapshot: Snapshot, desired: Mapping[str, Entry], enforce: bool) -> list[Decision]:
    """The fixes that bring ``snapshot`` back to ``desired`` (arch -> entry), in order.

    A missing entry is registered again; a disabled one, and a disabled
    instance, are only reported unless ``enforce``: disabling is an
    administrator's act, and silently undoing it would fight them.
    """
    out: list[Decision] = []
    if snapshot.mounted and not snapshot.enabled:
        out.append(Decision(Fix.ENABLE_INSTANCE if enforce else Fix.REPORT_INSTANCE_DISABLED))
    present = {h.name: h for h in snapshot.handlers}
    for arch, entry in desired.items():
        handler = present.get(entry.name)
        if handler is None:
            out.append(Decision(Fix.REGISTER, arch, entry))
        elif not handler.enabled:
            out.append(Decision(Fix.ENABLE if enforce else Fix.REPORT_DISABLED, arch, entry))
    return out


def judge(arches: Sequence[str], proven: frozenset[str] | None, ok: frozenset[str]) -> list[Event]:
    """Events for one round of probes; ``proven`` is the last round's (None: first round)."""
    events: list[Event] = []
    for arch in arches:
        if arch in ok and (proven is None or arch not in proven):
            first = proven is None
            events.append(Event(EventCode.PROVEN if first else EventCode.RECOVERED, arch))
        elif arch not in ok and (proven is None or arch in proven):
            events.append(Event(EventCode.PROBE_FAILED, arch))
    return events


def label_key(arch: str) -> str:
    """The node label NFD makes for a proven arch: ``binfmtctl.feature.node.kubernetes.io/ARCH``."""
    if not _LABEL_NAME.fullmatch(arch):  # pragma: no cover - catalog names all fit
        raise ValueError(f"{arch!r} is not a valid label name")
    return LABEL_PREFIX + arch


#: How many rounds the feature file outlives its writing: NFD drops the labels
#: once that many rounds (each at most one interval plus one probe timeout)
#: have passed without a rewrite, i.e. the agent died without removing it.
FEATURE_ROUNDS = 3


def feature_expiry(
    written: datetime.datetime, interval: float, timeout: float
) -> datetime.datetime:
    """When NFD should stop trusting a feature file written at ``written`` (UTC, whole seconds).

    Every round rewrites the file with a later time, so while the agent lives
    the labels never expire; when it dies (SIGKILL, OOM, node crash) they go
    within ``FEATURE_ROUNDS * (interval + timeout)`` plus nfd-worker's rescan.
    """
    expires = written + datetime.timedelta(seconds=FEATURE_ROUNDS * (interval + timeout))
    if expires.microsecond:  # rounded up: never earlier than promised
        expires = expires.replace(microsecond=0) + datetime.timedelta(seconds=1)
    return expires


def feature_text(proven: Sequence[str], expires: datetime.datetime) -> str:
    """NFD's local feature file: its expiry, then one ``KEY=VALUE`` line per proven arch.

    NFD's ``# +expiry-time=RFC3339`` directive applies to the lines after it,
    so it comes first; an expired file's labels are dropped by nfd-worker.
    """
    when = expires.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = (
        f"# +expiry-time={when}\n# written by binfmtctl agent: arches proven to run on this node\n"
    )
    return head + "".join(f"{label_key(a)}=true\n" for a in sorted(proven))


def trigger_automount(mountpoint: str) -> None:
    """A stat of ``register`` makes systemd's automount mount binfmt_misc first."""
    with contextlib.suppress(OSError):
        os.stat(os.path.join(mountpoint, "register"))


@dataclass
class Settings:
    words: tuple[str, ...] = ()
    options: plan.Options = field(default_factory=plan.Options)
    store: persist.Store | None = None
    interval: float = DEFAULT_INTERVAL
    enforce: bool = False
    allow_private: bool = False
    remove_on_exit: bool = False
    ready_file: str | None = None
    feature_file: str | None = None
    timeout: float = proving.DEFAULT_TIMEOUT


class Agent:
    """The loop: install once, then check, fix, prove, every interval or SIGHUP."""

    def __init__(self, instance: Instance, settings: Settings, emit: Callable[[Event], None]):
        self.instance = instance
        self.settings = settings
        self.emit = emit
        self.desired: dict[str, Entry] = {}  # re-registered when gone
        self.proving: list[str] = []  # every arch asked for (all of them count for ready)
        self.ours: set[str] = set()  # entry names this agent registered
        self.proven: frozenset[str] | None = None
        self.ready: bool | None = None
        self.reported: set[tuple[Fix, str | None]] = set()  # disabled states told once

    def start(self) -> None:
        """Refuse a private instance unless asked; install what was asked for."""
        if not self.settings.allow_private and not in_initial_user_namespace():
            raise PrivateInstanceError(PRIVATE_REFUSAL)
        trigger_automount(self.instance.mountpoint)
        s = self.settings
        report = install.install(self.instance, s.words, s.options, store=s.store)
        for row in report.rows:
            arch, entry = row.step.arch.name, row.step.entry
            name = entry.name if entry else None
            if row.action == plan.MISSING:
                self.emit(Event(EventCode.MISSING, arch, detail=row.reason))
            elif row.action in (plan.REFUSED, install.FAILED):
                self.emit(Event(EventCode.REFUSED, arch, name, row.reason))
            elif row.action in (plan.REGISTER, plan.REPLACE):
                self.emit(Event(EventCode.REGISTERED, arch, name))
                assert name is not None  # a registered step has its entry
                self.ours.add(name)
            else:
                self.emit(Event(EventCode.PRESENT, arch, name, row.action))
            if row.persist_error is not None:
                self.emit(Event(EventCode.REFUSED, arch, name, row.persist_error))
            self.proving.append(arch)  # asked for: ready only once proven, missing or not
            if entry is not None and row.ready and row.action != plan.KEPT:
                self.desired[arch] = entry
            elif entry is not None and row.action == install.FAILED:
                self.desired[arch] = entry  # the kernel refused it now; try again later
        self.emit(
            Event(EventCode.STARTED, detail=f"watching {', '.join(self.desired) or 'nothing'}")
        )

    def check(self) -> None:
        """One round: mount if needed, fix what :func:`decide` says, then prove."""
        trigger_automount(self.instance.mountpoint)
        try:
            self.instance.mount()
            snapshot = self.instance.snapshot()
        except BinfmtError as err:
            self.emit(Event(EventCode.REFUSED, detail=err.message))
            self._set_ready(frozenset())
            return
        decisions = decide(snapshot, self.desired, self.settings.enforce)
        broken = {d.arch for d in decisions if d.fix is not Fix.REPORT_DISABLED and d.arch}
        if any(d.fix is Fix.ENABLE_INSTANCE for d in decisions):
            broken |= set(self.proving) | set(self.desired)  # nothing ran while it was off
        if broken and self.proven is not None:
            # Not proven while gone: readiness drops before the fix, not after.
            self._set_ready(self.proven - broken)
        told = {(d.fix, d.arch) for d in decisions if d.fix in REPORTS}
        for d in decisions:
            if (d.fix, d.arch) not in self.reported:
                self._carry_out(d)
        self.reported = told
        snapshot = self.instance.snapshot()
        arches = sorted(set(self.proving) | set(self.desired))
        outcomes = proving.run(arches, snapshot, timeout=self.settings.timeout) if arches else []
        ok = frozenset(o.arch for o in outcomes if o.ok)
        for event in judge(arches, self.proven, ok):
            self.emit(_with_cause(event, outcomes))
        self.proven = ok
        self._set_ready(ok)

    def _carry_out(self, d: Decision) -> None:
        name = d.entry.name if d.entry else None
        try:
            if d.fix is Fix.REGISTER:
                assert d.entry is not None
                if self.instance.ensure(d.entry):
                    self.ours.add(d.entry.name)
                    self.emit(Event(EventCode.REREGISTERED, d.arch, name))
            elif d.fix is Fix.ENABLE:
                assert name is not None
                self.instance.enable(name)
                self.emit(Event(EventCode.ENABLED, d.arch, name, "disabled by someone else"))
            elif d.fix is Fix.REPORT_DISABLED:
                self.emit(Event(EventCode.DISABLED, d.arch, name, "left disabled (no --enforce)"))
            elif d.fix is Fix.ENABLE_INSTANCE:
                self.instance.set_enabled(True)
                self.emit(Event(EventCode.INSTANCE_ENABLED, detail=self.instance.mountpoint))
            else:
                self.emit(Event(EventCode.INSTANCE_DISABLED, detail="left disabled (no --enforce)"))
        except BinfmtError as err:
            self.emit(Event(EventCode.REFUSED, d.arch, name, err.message))

    def _set_ready(self, ok: frozenset[str]) -> None:
        want = set(self.proving) | set(self.desired)
        ready = bool(want) and want <= ok
        s = self.settings
        if s.feature_file is not None:
            now = datetime.datetime.now(datetime.timezone.utc)
            text = feature_text(sorted(ok), feature_expiry(now, s.interval, s.timeout))
            self._guarded(lambda: write_atomic(s.feature_file or "", text.encode()))
        if s.ready_file is not None:
            if ready:
                self._guarded(lambda: write_atomic(s.ready_file or "", b"ready\n"))
            else:
                self._guarded(lambda: _unlink(s.ready_file or ""))
        if ready != self.ready:
            self.emit(Event(EventCode.READY if ready else EventCode.NOT_READY))
        self.ready = ready

    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except BinfmtError as err:
            self.emit(Event(EventCode.REFUSED, detail=err.message))

    def stop(self) -> None:
        """On the way out: the ready and feature files go; with --remove-on-exit, our entries."""
        with signals.deferred():
            for path in (self.settings.ready_file, self.settings.feature_file):
                if path is not None:
                    self._guarded(functools.partial(_unlink, path))
            if self.settings.remove_on_exit:
                for name in sorted(self.ours):
                    try:
                        self.instance.remove(name)
                        self.emit(Event(EventCode.REMOVED, entry=name))
                    except BinfmtError as err:
                        self.emit(Event(EventCode.REFUSED, entry=name, detail=err.message))
            self.emit(Event(EventCode.STOPPED))

    def run(self) -> None:
        """Start, then check every interval (at once on SIGHUP) until SIGTERM or SIGINT."""
        try:
            self.start()
            with signals.hangup_wakes() as hangups:
                while True:
                    self.check()
                    hangups.sleep(self.settings.interval)
        except signals.Interrupted as stop:
            if stop.signum not in (signal.SIGTERM, signal.SIGINT):
                raise
            self.stop()
        except KeyboardInterrupt:
            self.stop()


def _with_cause(event: Event, outcomes: Sequence[proving.Outcome]) -> Event:
    """A probe event names the entry that ran it; a failure also says what went wrong."""
    why = next((o for o in outcomes if o.arch == event.arch), None)
    if why is None:
        return event
    if event.code is not EventCode.PROBE_FAILED:
        return Event(event.code, event.arch, why.entry)
    return Event(event.code, event.arch, why.entry, why.error or why.code.value)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise BinfmtError(f"cannot remove {path}: {err.strerror}", path=path) from err
