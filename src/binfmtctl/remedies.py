"""The root commands that fix what ``find``, ``scan`` and ``test`` found (``why``'s are in causes).

Each function maps typed findings (a :class:`~binfmtctl.find.Verdict`, a
scan's uncovered groups, ``test``'s :class:`~binfmtctl.proving.OutcomeCode`)
to an :class:`~binfmtctl.advice.Remedy`; :func:`binfmtctl.advice.advise` turns
it into advice that fits the caller. Pure: data in, data out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from binfmtctl.advice import Remedy, binfmtctl
from binfmtctl.find import Finding, Verdict
from binfmtctl.instance import Snapshot
from binfmtctl.scan import Group

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from binfmtctl.proving import Outcome


def _combine(remedies: Iterable[Remedy | None]) -> Remedy | None:
    """One remedy running each of ``remedies``' commands in turn (None when there are none)."""
    found = [r for r in remedies if r is not None]
    if not found:
        return None
    commands = tuple(dict.fromkeys(c for r in found for c in r.commands))
    return Remedy(commands, rootless=all(r.rootless for r in found))


def _install(snapshot: Snapshot, arches: Sequence[str], *extra: str) -> Remedy | None:
    """``binfmtctl install ARCH...``; on a switched-off instance, switching it on first."""
    if snapshot.mounted and not snapshot.enabled:
        return binfmtctl("enable", "--instance", mountpoint=snapshot.mountpoint)
    if not arches:
        return None
    # install mounts binfmt_misc itself when it is not mounted
    return binfmtctl("install", *arches, *extra, mountpoint=snapshot.mountpoint)


def for_finding(snapshot: Snapshot, finding: Finding) -> Remedy | None:
    """What makes the kernel run a file ``find`` says nothing runs (None: not a handler matter)."""
    facts = finding.facts
    found = facts.ident.arch if facts is not None and facts.ident is not None else None
    if finding.verdict is Verdict.DISABLED:
        return binfmtctl("enable", "--instance", mountpoint=snapshot.mountpoint)
    if finding.verdict not in (Verdict.NO_HANDLER, Verdict.NOT_MOUNTED) or facts is None:
        return None
    if finding.verdict is Verdict.NO_HANDLER:
        off = snapshot.matching(facts.header, facts.path)
        if off:  # registered but disabled
            return binfmtctl("enable", off[0].name, mountpoint=snapshot.mountpoint)
    return _install(snapshot, [found.name] if found else [])


def for_scan(snapshot: Snapshot, uncovered: Sequence[Group]) -> Remedy | None:
    """One install of every arch whose programs nothing runs (known arches only)."""
    arches = list(dict.fromkeys(g.arch for g in uncovered if g.arch is not None))
    return _install(snapshot, arches)


def for_outcomes(snapshot: Snapshot, outcomes: Iterable[Outcome]) -> Remedy | None:
    """The commands that fix ``test``'s failed probes (crashes, timeouts: none known)."""
    # Start-up speed: find and scan never load the probe runner; test has it already.
    from binfmtctl.proving import OutcomeCode

    # What fixes a failed probe, by its outcome: a fresh registration, or --replace.
    installs = {OutcomeCode.NO_HANDLER}
    replaces = {
        OutcomeCode.INTERPRETER_MISSING,
        OutcomeCode.NOT_IN_CHROOT,
        OutcomeCode.WRONG_EMULATOR,
    }
    failed = [o for o in outcomes if not o.ok]
    if any(o.code is OutcomeCode.INSTANCE_DISABLED for o in failed):
        return binfmtctl("enable", "--instance", mountpoint=snapshot.mountpoint)
    mp = snapshot.mountpoint
    disabled = list(dict.fromkeys(o.entry for o in failed if o.code is OutcomeCode.DISABLED))
    install = list(dict.fromkeys(o.arch for o in failed if o.code in installs))
    replace = list(dict.fromkeys(o.arch for o in failed if o.code in replaces))
    return _combine(
        [
            binfmtctl("enable", *(e for e in disabled if e), mountpoint=mp) if disabled else None,
            binfmtctl("install", *install, mountpoint=mp) if install else None,
            binfmtctl("install", *replace, "--replace", mountpoint=mp) if replace else None,
        ]
    )
