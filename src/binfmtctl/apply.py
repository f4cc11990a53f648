"""Apply binfmt.d files now, the way systemd-binfmt does at boot: the use-case.

Unlike ``systemd-binfmt`` at boot, nothing is flushed: only the names the
files define are touched. Each line replaces a same-named entry; if the kernel
refuses the new line, the old entry stays registered (systemd-binfmt would
leave the name unregistered).
"""

from __future__ import annotations

from collections.abc import Sequence

from binfmtctl import binfmt_d, hostfacts
from binfmtctl.entry import Entry, Handler
from binfmtctl.errors import BinfmtError, ConfigError, RefusedError
from binfmtctl.failures import Failure
from binfmtctl.instance import Instance, name_problem
from binfmtctl.records import NamedTuple

# What became of a line; the first four count as done.
REGISTERED, REPLACED, RE_REGISTERED = "registered", "replaced", "re-registered"
WOULD_REGISTER = "would register"
INVALID, REFUSED, FAILED = "invalid", "refused", "failed"
DONE = frozenset({REGISTERED, REPLACED, RE_REGISTERED, WOULD_REGISTER})


class LineResult:
    """One register line of a file (or the file itself, when it cannot be read).

    A small mutable ``__slots__`` class, not a NamedTuple: :func:`apply_files`
    fills in ``action`` and ``reason`` as the line is applied.
    """

    __slots__ = ("action", "line", "name", "path", "reason")

    def __init__(
        self,
        path: str,
        line: int | None,  # None: the whole file
        name: str | None,
        action: str = "",
        reason: str | None = None,
    ) -> None:
        self.path = path
        self.line = line
        self.name = name
        self.action = action
        self.reason = reason

    def _key(self) -> tuple[object, ...]:
        return (self.path, self.line, self.name, self.action, self.reason)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LineResult):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable: unhashable, as before

    def __repr__(self) -> str:
        return "LineResult(path={!r}, line={!r}, name={!r}, action={!r}, reason={!r})".format(
            *self._key()
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "name": self.name,
            "action": self.action,
            "reason": self.reason,
        }


class ApplyReport(NamedTuple):
    dry_run: bool
    mountpoint: str
    lines: tuple[LineResult, ...]
    errors: tuple[Failure, ...]

    @property
    def done(self) -> int:
        return sum(r.action in DONE for r in self.lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "mountpoint": self.mountpoint,
            "lines": [r.to_dict() for r in self.lines],
        }


def apply_files(
    instance: Instance, paths: Sequence[str], dry_run: bool = False, root: str = "/"
) -> ApplyReport:
    """Register every line of ``paths`` (resolved inside ``root``).

    Only regular files are read: a FIFO, device or dangling link is a failed row.
    Every file is read and every line parsed before the kernel is touched, so
    an unreadable file or a bad line is known up front (and never half-applied
    after a register). Each valid line then goes through
    :meth:`Instance.replace`: the kernel proves the new definition before the
    old entry is removed, so a line it refuses leaves the working handler as
    it was, and the error names the file and line.
    """
    rows: list[LineResult] = []
    errors: list[Failure] = []
    work: list[tuple[LineResult, Entry]] = []
    for path in paths:
        try:
            conf = binfmt_d.read_binfmt_d(path, root)
        except BinfmtError as err:
            errors.append(Failure.of(err))
            rows.append(LineResult(path, None, None, FAILED, err.message))
            continue
        for rule in conf.rules:
            row = LineResult(path, rule.line, rule.name)
            rows.append(row)
            if rule.entry is None:
                assert rule.error is not None
                errors.append(Failure.of(binfmt_d.rule_error(rule)))
                row.action, row.reason = INVALID, f"{rule.error.field}: {rule.error.reason}"
            elif (problem := name_problem(rule.entry.name)) is not None:
                bad = ConfigError(f"{rule.where}: {problem}", path=path, line=rule.line)
                errors.append(Failure.of(bad))
                row.action, row.reason = INVALID, problem
            elif "C" in rule.entry.flags and (
                unsafe := hostfacts.credentials_problem(rule.entry.interpreter)
            ):
                refused = RefusedError(f"{rule.where}: {unsafe}", path=path, line=rule.line)
                errors.append(Failure.of(refused))
                row.action, row.reason = REFUSED, unsafe
            elif dry_run:
                row.action = WOULD_REGISTER
            else:
                work.append((row, rule.entry))
    if work:
        instance.mount()
    for row, entry in work:
        before: Handler | None = None
        try:
            before = instance.find(entry.name)
            old = instance.replace(entry)
        except BinfmtError as err:
            message = f"{row.path}:{row.line}: {err.message}{_kept(instance, before)}"
            errors.append(Failure.of(err, message, path=row.path, line=row.line))
            row.action, row.reason = FAILED, err.message
            continue
        action = REGISTERED if old is None else REPLACED
        if old is not None and old.entry == entry:
            action = RE_REGISTERED
        row.action = action
    return ApplyReport(dry_run, instance.mountpoint, tuple(rows), tuple(errors))


def _kept(instance: Instance, before: Handler | None) -> str:
    """Say so when the entry a refused line would have replaced is still there, unchanged."""
    if before is None:
        return ""
    try:
        still = instance.find(before.entry.name) == before
    except BinfmtError:
        return ""
    state = "enabled" if before.enabled else "disabled"
    return f"; {before.entry.name} stays registered as it was ({state})" if still else ""
