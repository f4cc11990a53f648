"""The boot configuration beside the running kernel, as data.

For every entry name: which binfmt.d lines define it and the role each plays
at boot, which one wins, what binfmt-support's database holds, and how the
running kernel differs from what boot would register. Roles and problems are
typed (:class:`Role`, :class:`ProblemCode`): callers filter by code, never by
the words of a message. ``to_dict`` is the ``status --json`` shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from binfmtctl.binfmt_d import (
    ConfFile,
    Rule,
    boot_problem,
    list_binfmt_d,
    load_all,
    simulate,
)
from binfmtctl.binfmts import BinfmtsFormat, read_binfmts_admin
from binfmtctl.entry import Entry, Handler
from binfmtctl.persist import Layout
from binfmtctl.records import NamedTuple


class Role(str, Enum):
    """What one binfmt.d line does for its name at boot."""

    IGNORED = "ignored"  # its file is masked by a same-named one that takes precedence
    WINS = "wins"
    REGISTERS_NOTHING = "registers_nothing"  # applied last, but refused (the name ends unset)
    INVALID = "invalid"
    REPLACED = "replaced"  # a later line for the name replaces it


class ProblemCode(str, Enum):
    """What is wrong with one name's configuration."""

    MANY_FILES = "many_files"  # defined in several files; one wins
    DISABLED_NOW = "disabled_now"  # boot registers it enabled
    DIFFERENT_INTERPRETER = "different_interpreter"  # or flags
    DIFFERENT_BYTES = "different_bytes"  # magic, mask or offset
    LOST_AT_BOOT = "lost_at_boot"  # registered now, its boot line is refused
    NOT_PERSISTED = "not_persisted"  # registered now, nothing registers it at boot
    BINFMT_SUPPORT = "binfmt_support"  # binfmt-support registers it at boot
    NOT_REGISTERED = "not_registered"  # boot registers it, the kernel has not now
    REGISTERS_NOTHING = "registers_nothing"  # its last boot line is refused


class Problem(NamedTuple):
    code: ProblemCode
    message: str


class Definer(NamedTuple):
    """One line that defines a name, and its role at boot."""

    rule: Rule
    role: Role
    ours: bool  # its file carries binfmtctl's header
    masked_by: str | None = None  # IGNORED: the file that takes precedence

    @property
    def role_text(self) -> str:
        if self.role is Role.IGNORED:
            return f"ignored: {self.masked_by} has the same file name"
        if self.role is Role.INVALID:
            assert self.rule.error is not None
            return f"invalid: {self.rule.error.reason}"
        return _ROLE_TEXT[self.role]

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.rule.path,
            "line": self.rule.line,
            "role": self.role_text,
            "ours": self.ours,
        }


_ROLE_TEXT = {
    Role.WINS: "wins at boot",
    Role.REGISTERS_NOTHING: "applied last, but registers nothing",
    Role.REPLACED: "replaced at boot by a later line",
}


class NameReport(NamedTuple):
    """One entry name: its definers, boot's winner, the running entry, the problems."""

    name: str
    files: tuple[Definer, ...]
    boot: Rule | None  # the line that registers it at boot
    running: Handler | None
    binfmt_support: BinfmtsFormat | None
    differs: bool
    problems: tuple[Problem, ...]

    def to_dict(self) -> dict[str, object]:
        boot = self.boot
        now = self.running
        return {
            "name": self.name,
            "files": [d.to_dict() for d in self.files],
            "boot": None
            if boot is None
            else {
                "path": boot.path,
                "line": boot.line,
                "entry": boot.entry.to_dict() if boot.entry else None,
            },
            "running": None if now is None else {**now.entry.to_dict(), "enabled": now.enabled},
            "binfmt_support": self.binfmt_support.to_dict() if self.binfmt_support else None,
            "differs": self.differs,
            "problems": [p.message for p in self.problems],
        }


class FileReport(NamedTuple):
    """One binfmt.d file: masked or not, ours or not, its bad lines, or why it is unreadable."""

    path: str
    overridden_by: str | None
    conf: ConfFile

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "overridden_by": self.overridden_by,
            "ours": self.conf.ours,
            "errors": [r.to_dict() for r in self.conf.errors],
            "problem": self.conf.problem,
        }


class BootReport(NamedTuple):
    """The whole boot configuration against the running kernel."""

    layout: Layout
    files: tuple[FileReport, ...]
    unreadable: tuple[str, ...]  # directories and database entries that could not be read
    names: tuple[NameReport, ...]
    boot: tuple[Rule, ...]  # what boot registers, newest first (the order the kernel tries)

    def problems(self, *codes: ProblemCode) -> list[Problem]:
        """Every name's problems, in order; only those with one of ``codes`` when given."""
        return [p for n in self.names for p in n.problems if not codes or p.code in codes]

    def file_problems(self) -> list[str]:
        """Files and directories that could not be read (each registers nothing at boot)."""
        return [f.conf.problem for f in self.files if f.conf.problem] + list(self.unreadable)

    def to_dict(self) -> dict[str, object]:
        return {
            "dirs": list(self.layout.binfmt_d),
            "binfmts_admindir": self.layout.binfmts_admindir,
            "files": [f.to_dict() for f in self.files],
            "unreadable": list(self.unreadable),
            "names": [n.to_dict() for n in self.names],
            "boot": [
                {"name": r.name, "path": r.path, "line": r.line, "entry": r.entry.to_dict()}
                for r in self.boot
                if r.entry is not None
            ],
        }


def _flags_words(flags: str) -> str:
    return flags or "no flags"


def _difference(name: str, now: Entry, enabled: bool, rule: Rule) -> Problem | None:
    boot = rule.entry
    assert boot is not None
    if boot == now:
        if not enabled:
            return Problem(
                ProblemCode.DISABLED_NOW,
                f"{name}: disabled now, but at boot {rule.path} registers it enabled",
            )
        return None
    if (boot.interpreter, boot.flags) != (now.interpreter, now.flags):
        return Problem(
            ProblemCode.DIFFERENT_INTERPRETER,
            f"{name}: running entry uses {now.interpreter} with {_flags_words(now.flags)}, "
            f"but at boot {rule.path} will register {boot.interpreter} with "
            f"{_flags_words(boot.flags)}",
        )
    return Problem(
        ProblemCode.DIFFERENT_BYTES,
        f"{name}: running entry matches different bytes (magic/mask/offset) than the one "
        f"{rule.path} will register at boot",
    )


def describe(
    layout: Layout,
    running: Sequence[Handler] = (),
    check_interpreter: bool = True,
) -> BootReport:
    """For every entry name: which files define it, which wins at boot, and
    whether the running kernel state differs from what boot will produce.

    ``running`` is what the kernel holds now (a snapshot's handlers, newest first).
    """
    root = layout.root
    unreadable: list[str] = []
    candidates = list_binfmt_d(layout.binfmt_d, root, unreadable)
    parsed = load_all([c.path for c in candidates], root)
    boot = simulate(
        [c.path for c in candidates if c.overridden_by is None], check_interpreter, root, parsed
    )
    formats = {f.name: f for f in read_binfmts_admin(layout.binfmts_admindir, root, unreadable)}
    now = {h.name: h for h in running}
    names: dict[str, None] = {}
    for c in candidates:
        names.update((r.name, None) for r in parsed[c.path].rules if r.name)
    names.update((n, None) for n in now)
    reports = []
    for name in names:
        definers = []
        for c in candidates:
            for rule in parsed[c.path].rules:
                if rule.name != name:
                    continue
                if c.overridden_by is not None:
                    role = Role.IGNORED
                elif boot.entries.get(name) == rule:
                    role = Role.WINS
                elif rule.error is not None:
                    role = Role.INVALID
                elif boot.dropped.get(name) == rule:
                    role = Role.REGISTERS_NOTHING
                else:
                    role = Role.REPLACED
                definers.append(Definer(rule, role, parsed[c.path].ours, c.overridden_by))
        reports.append(
            _name_report(
                name,
                tuple(definers),
                boot.entries.get(name),
                boot.dropped.get(name),
                now.get(name),
                formats.get(name),
                root,
            )
        )
    return BootReport(
        layout,
        tuple(FileReport(c.path, c.overridden_by, parsed[c.path]) for c in candidates),
        tuple(unreadable),
        tuple(reports),
        tuple(boot.entries[n] for n in boot.order_newest_first()),
    )


def _name_report(
    name: str,
    definers: tuple[Definer, ...],
    winner: Rule | None,
    dropped: Rule | None,
    now: Handler | None,
    fmt: BinfmtsFormat | None,
    root: str,
) -> NameReport:
    """One name's problems: what boot does with it beside what the kernel holds now."""
    problems: list[Problem] = []
    # A file masked by a same-named one is the admin override working: not a problem.
    files = {d.rule.path for d in definers if d.role is not Role.IGNORED}
    if len(files) > 1 and winner is not None:
        problems.append(
            Problem(
                ProblemCode.MANY_FILES,
                f"{name}: defined in {len(files)} files; {winner.path} wins at boot "
                "(files are applied in order of file name, the last one wins)",
            )
        )
    differs = (now is None) != (winner is None)
    if now is not None and winner is not None:
        diff = _difference(name, now.entry, now.enabled, winner)
        if diff:
            differs = True
            problems.append(diff)
    elif now is not None:
        if dropped is not None:
            code, why = ProblemCode.LOST_AT_BOOT, f"at boot {boot_problem(dropped, root)}"
        else:
            keep = (
                f" (`binfmtctl install --persist {name.removeprefix('qemu-')}` keeps it)"
                if name.startswith("qemu-")
                else ""
            )
            code = ProblemCode.NOT_PERSISTED
            why = "no binfmt.d file registers it at boot: it will be gone after a reboot" + keep
        problems.append(Problem(code, f"{name}: registered now, but {why}"))
        if fmt is not None:
            problems.append(
                Problem(
                    ProblemCode.BINFMT_SUPPORT,
                    f"{name}: binfmt-support's database has it (package "
                    f"{fmt.package}); binfmt-support.service registers it at boot",
                )
            )
    elif winner is not None:
        problems.append(
            Problem(
                ProblemCode.NOT_REGISTERED,
                f"{name}: not registered now; at boot {winner.path} will register it "
                f"(`binfmtctl apply {winner.path}` does it now)",
            )
        )
    elif dropped is not None:
        problems.append(
            Problem(
                ProblemCode.REGISTERS_NOTHING,
                f"{name}: registers nothing at boot: {boot_problem(dropped, root)}",
            )
        )
    return NameReport(name, definers, winner, now, fmt, differs, tuple(problems))
