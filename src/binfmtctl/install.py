"""Install and uninstall: the use-cases behind the verbs, returning typed reports.

``install`` plans every arch (:mod:`binfmtctl.plan`), carries the plan out on
an :class:`~binfmtctl.instance.Instance` and, given a
:class:`~binfmtctl.persist.Store`, keeps each entry that is (or already was)
registered as ours across reboots. ``uninstall`` removes entries by name or
arch, or every QEMU handler, and forgets what binfmtctl persisted. Neither
prints nor sees a command line: the CLI parses arguments into these calls and
renders the reports.
"""

from __future__ import annotations

from collections.abc import Sequence

from binfmtctl import arch as _arch
from binfmtctl import plan
from binfmtctl.errors import EXIT_FAILED, BinfmtError, NoSuchEntryError, UsageError
from binfmtctl.failures import Failure
from binfmtctl.instance import Instance, disabled_warning, entry_name
from binfmtctl.namespaces import changes_reach_host
from binfmtctl.records import NamedTuple

# Start-up speed: persistence (persist, files, binfmts, binfmt_d) is loaded by the
# caller that makes a store, and only with --persist; here it is only named.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from binfmtctl import persist
    from binfmtctl.files import Saved

# Steps after which the entry is ours and registered: those are persisted.
PERSISTED = frozenset({plan.REGISTER, plan.REPLACE, plan.ENABLE, plan.UNCHANGED})
FAILED = "failed"  # what a row says when carrying its step out failed

PRIVATE_WARNING = (
    "this process is not in the host's user namespace: the binfmt_misc it changes is "
    "a private one, and the host's handlers stay as they were"
)
NO_EMULATOR = f"no foreign emulator found; {plan.INSTALL_EMULATORS} or name ARCHes"


class InstallRow(NamedTuple):
    """One arch: its planned step, what carrying it out did, and what persisting it did."""

    step: plan.Step
    action: str  # the step's action, what plan.apply did, or FAILED
    reason: str  # why it failed, when it did
    saved: Saved | None = None
    persist_error: str | None = None  # registered, but not persisted: why
    argv0: dict[str, object] | None = None  # why the default flags have P or not

    @property
    def ready(self) -> bool:
        """Whether the arch is left with a handler (one `test` can prove)."""
        return self.action not in (plan.REFUSED, plan.MISSING, FAILED)

    def to_dict(self) -> dict[str, object]:
        out = self.step.to_dict()
        out["action"] = self.action
        out["reason"] = self.reason or None
        if self.saved is not None:
            out["persist"] = self.saved.to_dict()
        elif self.persist_error is not None:
            out["persist"] = {"action": FAILED, "target": None, "reason": self.persist_error}
        out["argv0"] = self.argv0
        return out


class InstallReport(NamedTuple):
    dry_run: bool
    mountpoint: str
    rows: tuple[InstallRow, ...]
    errors: tuple[Failure, ...]
    warnings: tuple[str, ...]
    done: int  # arches carried out (or that would be, in a dry run)
    failed: int  # arches refused, failed, or registered but not persisted

    def to_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "mountpoint": self.mountpoint,
            "steps": [r.to_dict() for r in self.rows],
        }


def install(
    instance: Instance,
    words: Sequence[str],
    options: plan.Options,
    dry_run: bool = False,
    store: persist.Store | None = None,
) -> InstallReport:
    """Plan and carry out an install of ``words`` (every foreign arch found when empty).

    With ``store`` every entry that is (or already was) registered as ours is
    also written to the boot configuration.
    """
    from binfmtctl import hostfacts  # start-up speed: uninstall needs no host facts

    searched: plan.Searched = {}  # each arch's emulator is looked for once
    arches = (
        _arch.resolve_all(list(words)) if words else hostfacts.default_arches(options, searched)
    )
    if not arches:
        raise UsageError(NO_EMULATOR)
    if not dry_run:
        instance.mount()
    current = {h.name: h for h in instance.entries()} if instance.mounted else {}
    steps = plan.plan_install(arches, current, options, hostfacts.gather(arches, options, searched))
    why_flags = argv0_decisions(steps, options)
    done, failed = 0, 0
    rows: list[InstallRow] = []
    errors: list[Failure] = []
    warnings: list[str] = []
    for step in steps:
        arch = step.arch.name
        action: str = step.action
        if step.failed:
            failed += 1
            errors.append(Failure(step.action.value, step.reason, EXIT_FAILED, (("arch", arch),)))
        elif not dry_run:
            try:
                action = plan.apply(instance, step)
            except BinfmtError as err:
                failed += 1
                errors.append(Failure.of(err, arch=arch))
                rows.append(InstallRow(step, FAILED, err.message, argv0=why_flags.get(arch)))
                continue
            done += 1
        else:
            done += 1
        warnings.extend(f"{arch}: {w}" for w in step.warnings)
        saved, persist_error = None, None
        if store is not None and step.entry is not None and step.action in PERSISTED:
            try:
                saved = store.save(step.entry, dry_run)
                warnings.extend(f"{arch}: {w}" for w in saved.warnings)
            except BinfmtError as err:
                failed += 1  # registered, not persisted: partly done (3)
                persist_error = err.message
                errors.append(Failure.of(err, arch=arch))
        rows.append(
            InstallRow(step, action, step.reason, saved, persist_error, why_flags.get(arch))
        )
    if not changes_reach_host():
        warnings.append(PRIVATE_WARNING)
    if instance.mounted and not instance.enabled():
        warnings.append(disabled_warning(instance.mountpoint))
    return InstallReport(
        dry_run,
        instance.mountpoint,
        tuple(rows),
        tuple(errors),
        tuple(warnings),
        done,
        failed,
    )


def argv0_decisions(
    steps: Sequence[plan.Step], options: plan.Options
) -> dict[str, dict[str, object]]:
    """By arch: the argv[0] verdict behind each planned entry's default flags (JSON ``argv0``).

    Only with the default flags, and only for entries of ours; the verdicts
    were found while gathering the facts, so this reads nothing new.
    """
    if options.flags != plan.AUTO_FLAGS:
        return {}
    from binfmtctl import argv0  # start-up speed: only the default flags need it

    out = {}
    for step in steps:
        if step.entry is None or step.failed or step.action == plan.KEPT:
            continue
        found = argv0.row(step.arch.name, step.entry.interpreter)
        if found is not None:
            out[step.arch.name] = dict(found)
    return out


# -- uninstall -------------------------------------------------------------------

REMOVED, ABSENT = "removed", "absent"


def is_qemu_handler(name: str, arch_name: str | None, interpreter: str) -> bool:
    """Entries binfmtctl may remove with --all: recognised arch AND a QEMU name/interpreter."""
    base = interpreter.rsplit("/", 1)[-1]
    return arch_name is not None and (name.startswith("qemu-") or "qemu" in base)


class Removal(NamedTuple):
    name: str
    action: str  # REMOVED (or would be, in a dry run), ABSENT, FAILED
    reason: str | None = None  # FAILED: why

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "action": self.action}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


class UninstallReport(NamedTuple):
    dry_run: bool
    removed: tuple[Removal, ...]
    forgotten: tuple[Saved, ...] | None  # None: no store was given
    errors: tuple[Failure, ...]
    done: int
    failed: int

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "dry_run": self.dry_run,
            "removed": [r.to_dict() for r in self.removed],
        }
        if self.forgotten:
            out["persist"] = [s.to_dict() for s in self.forgotten]
        return out


def uninstall(
    instance: Instance,
    targets: Sequence[str],
    *,
    every_qemu: bool = False,
    store: persist.Store | None = None,
    dry_run: bool = False,
) -> UninstallReport:
    """Remove the entries ``targets`` name (entry names or arches); with
    ``every_qemu`` every QEMU handler too, never foreign ones. With ``store``
    what binfmtctl persisted for them is forgotten as well (with ``every_qemu``:
    everything it persisted there).
    """
    if not every_qemu and not targets:
        raise UsageError("name the ARCHes or entries to remove, or use --all")
    instance.require_mounted()
    names: list[str] = []
    if every_qemu and store is not None:
        names.extend(store.ours())
    if every_qemu:
        from binfmtctl.explain import recognise  # start-up speed: only --all recognises

        for item in instance.entries():
            found = recognise(item.entry)
            if is_qemu_handler(item.name, found.name if found else None, item.entry.interpreter):
                names.append(item.name)
    present = set(instance.names())
    # Every word is resolved before anything is removed: a bad one is exit 2.
    names.extend(entry_name(word, present) for word in targets)
    rows: list[Removal] = []
    forgotten: list[Saved] = []
    errors: list[Failure] = []
    done, failed = 0, 0
    for name in dict.fromkeys(names):
        if store is not None:
            was_present = name in present
            try:
                forgotten.append(store.forget(name, dry_run))
            except BinfmtError as err:
                failed += 1
                errors.append(Failure.of(err))
            present = set(instance.names())  # update-binfmts --remove also unregisters
            if was_present and name not in present:
                rows.append(Removal(name, REMOVED))  # by update-binfmts
                done += 1
                continue
        if name not in present:
            rows.append(Removal(name, ABSENT))
            continue
        try:
            if not dry_run:
                instance.remove(name)
            rows.append(Removal(name, REMOVED))
            done += 1
        except NoSuchEntryError:
            rows.append(Removal(name, ABSENT))  # another process removed it
        except BinfmtError as err:
            failed += 1
            errors.append(Failure.of(err))
            rows.append(Removal(name, FAILED, err.message))
    return UninstallReport(
        dry_run,
        tuple(rows),
        None if store is None else tuple(forgotten),
        tuple(errors),
        done,
        failed,
    )
