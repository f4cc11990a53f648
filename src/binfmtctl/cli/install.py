"""``binfmtctl install`` and ``binfmtctl uninstall``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from binfmtctl import arch as _arch
from binfmtctl import config, interpreters, plan, rootpath
from binfmtctl.cli.output import Result, outcome_code, table
from binfmtctl.entry import Entry
from binfmtctl.errors import BinfmtError, NoSuchEntryError, UnknownArchError, UsageError
from binfmtctl.instance import Instance, check_name, disabled_warning

PERSIST_KINDS = ("systemd", "binfmt-support")
# Steps after which the entry is ours and registered: those are persisted.
PERSISTED = frozenset({plan.REGISTER, plan.REPLACE, plan.ENABLE, plan.UNCHANGED})

PRIVATE_WARNING = (
    "this process is not in the host's user namespace: the binfmt_misc it changes is "
    "a private one, and the host's handlers stay as they were"
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "install",
        parents=[common],
        help="register QEMU handlers for foreign architectures",
        description="Register a binfmt_misc handler for each ARCH (QEMU name, Debian "
        "arch, OCI platform or uname -m). With no ARCH: every foreign arch whose "
        "emulator is found. Re-running is a no-op. Arches the host runs natively are "
        "refused.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="flags: F open the interpreter now (works in chroots/containers; the "
        "default)\n       P pass argv[0] too   O pass an open fd   C run with the "
        "program's credentials (setuid; implies O)",
    )
    p.add_argument("arches", nargs="*", metavar="ARCH")
    p.add_argument("--flags", default=plan.DEFAULT_FLAGS, help="entry flags (default F)")
    p.add_argument(
        "--interpreter-dir",
        action="append",
        metavar="DIR",
        help=f"where to look for qemu-ARCH[-static] (repeatable; default "
        f"{' '.join(interpreters.DEFAULT_DIRS)})",
    )
    p.add_argument("--interpreter", metavar="PATH", help="use this emulator (one ARCH only)")
    add_force_interpreter(p)
    p.add_argument(
        "--profile",
        choices=[p.value for p in _arch.Profile],
        default=_arch.Profile.QEMU.value,
        help="mask profile: qemu (same as QEMU upstream, the default) or seed "
        "(also ignores EI_ABIVERSION and the e_ident padding)",
    )
    p.add_argument("--replace", action="store_true", help="replace a same-named entry that differs")
    p.add_argument(
        "--force", action="store_true", help="allow arches this host runs natively (i386 on x86_64)"
    )
    p.add_argument("--dry-run", action="store_true", help="say what would be done; change nothing")
    p.add_argument(
        "--test",
        action="store_true",
        help="then prove each handler installed (or already there) runs its arch's "
        "probe, as `binfmtctl test` does; the exit code covers both",
    )
    _persist_options(p, "also write the configuration that registers them at boot")
    p.set_defaults(handler=handle_install)

    u = sub.add_parser(
        "uninstall",
        parents=[common],
        help="remove handlers (only QEMU ones with --all)",
        description="Remove the entries for each ARCH (its qemu-ARCH entry) or entry "
        "NAME. --all removes every entry recognised as a QEMU handler and never "
        "foreign ones (WSLInterop, python3.x, ...).",
    )
    u.add_argument("targets", nargs="*", metavar="ARCH|NAME")
    u.add_argument("--all", action="store_true", help="every QEMU handler in the instance")
    u.add_argument("--dry-run", action="store_true", help="say what would be removed")
    _persist_options(u, "also remove the boot configuration binfmtctl wrote (never other files)")
    u.set_defaults(handler=handle_uninstall)


def add_force_interpreter(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force-interpreter",
        action="store_true",
        help="accept an --interpreter whose name says it emulates another arch "
        "(qemu-arm for aarch64 is refused without it); a file that is not an ELF "
        "executable for this machine is refused always",
    )


def _persist_options(p: argparse.ArgumentParser, what: str) -> None:
    g = p.add_argument_group("persistence (survives reboot)")
    g.add_argument(
        "--persist",
        nargs="?",
        const="systemd",
        choices=PERSIST_KINDS,
        metavar="systemd|binfmt-support",
        help=f"{what}: systemd (default) = a marked NAME.conf in /etc/binfmt.d, which "
        "overrides a same-named packaged /usr/lib/binfmt.d file; binfmt-support = "
        "through update-binfmts' own database (package binfmtctl)",
    )
    g.add_argument(
        "--binfmt-d",
        metavar="DIR",
        help="write/remove NAME.conf here instead of /etc/binfmt.d (inside --root when given)",
    )
    g.add_argument(
        "--root",
        metavar="DIR",
        help="configuration root: DIR/etc/binfmt.d, DIR/usr/lib/binfmt.d, DIR/var/lib/binfmts; "
        "every path is resolved inside DIR as a chroot would (symlinks never lead out)",
    )
    g.add_argument(
        "--overwrite-foreign",
        action="store_true",
        help="also replace or remove a NAME.conf (or binfmt-support format) that binfmtctl "
        "did not write: an administrator's file, a package's, a symlink. Without it such "
        "files are left alone and the command fails naming who seems to own them",
    )


def options_from(args: argparse.Namespace) -> plan.Options:
    return plan.Options(
        flags=args.flags,
        profile=_arch.Profile(args.profile),
        interpreter=args.interpreter,
        interpreter_dirs=tuple(args.interpreter_dir or interpreters.DEFAULT_DIRS),
        force=args.force,
        replace=args.replace,
        force_interpreter=args.force_interpreter,
    )


@dataclass(frozen=True)
class Persist:
    """Where and how install/uninstall make their change survive a reboot."""

    kind: str = "systemd"  # or "binfmt-support"
    layout: config.Layout = field(default_factory=config.Layout)
    binfmt_d: str | None = None  # default: the layout's admin directory (/etc/binfmt.d)
    overwrite_foreign: bool = False  # replace/remove a same-named file binfmtctl did not write

    @property
    def directory(self) -> str:
        """The binfmt.d directory written, as named on this system (inside the layout's root)."""
        if self.binfmt_d is None:
            return self.layout.admin_binfmt_d
        return rootpath.shown(self.layout.root, self.binfmt_d)


def persist_from(args: argparse.Namespace) -> Persist | None:
    if not args.persist:
        if args.binfmt_d:
            raise UsageError("--binfmt-d only makes sense with --persist")
        return None
    return Persist(
        args.persist,
        config.Layout.under(args.root),
        args.binfmt_d,
        overwrite_foreign=args.overwrite_foreign,
    )


def _forget_one(persist: Persist, name: str, dry_run: bool) -> config.Saved:
    root, force = persist.layout.root, persist.overwrite_foreign
    if persist.kind == "binfmt-support":
        return config.forget_binfmts(
            name,
            persist.layout.binfmts_admindir,
            root=root,
            overwrite_foreign=force,
            dry_run=dry_run,
        )
    return config.forget_systemd(
        name, persist.directory, root=root, overwrite_foreign=force, dry_run=dry_run
    )


def _ours_persisted(persist: Persist) -> list[str]:
    """Names binfmtctl persisted: its marked files, or its binfmt-support formats."""
    if persist.kind == "binfmt-support":
        formats = config.read_binfmts_admin(persist.layout.binfmts_admindir, persist.layout.root)
        return [f.name for f in formats if f.package == config.PACKAGE]
    return config.our_conf_files(persist.directory, persist.layout.root)


def _persist_one(persist: Persist, entry: Entry, dry_run: bool) -> config.Saved:
    root, force = persist.layout.root, persist.overwrite_foreign
    if persist.kind == "binfmt-support":
        return config.save_binfmts(
            entry,
            persist.layout.binfmts_admindir,
            root=root,
            overwrite_foreign=force,
            dry_run=dry_run,
        )
    return config.save_systemd(
        entry,
        persist.directory,
        persist.layout.binfmt_d,
        root=root,
        overwrite_foreign=force,
        dry_run=dry_run,
    )


def install(
    instance: Instance,
    words: list[str],
    options: plan.Options,
    dry_run: bool = False,
    persist: Persist | None = None,
) -> Result:
    """Plan and carry out an install; the library form of the verb.

    With ``persist`` every entry that is (or already was) registered as ours is
    also written to the boot configuration.
    """
    result = Result("install", human=_human_install)
    searched: plan.Searched = {}  # each arch's emulator is looked for once
    arches = _arch.resolve_all(words) if words else plan.default_arches(options, searched)
    if not arches:
        raise UsageError(
            "no foreign emulator found; install QEMU's static user-mode emulators "
            "(Debian/Ubuntu: `sudo apt-get install qemu-user-static`) or name ARCHes"
        )
    if not dry_run:
        instance.mount()
    current = {n.name: n.state for n in instance.entries()} if instance.mounted else {}
    steps = plan.plan_install(arches, current, options, searched)
    done, failed, rows = 0, 0, []
    for step in steps:
        row = step.to_dict()
        if step.failed:
            failed += 1
        elif not dry_run:
            try:
                row["action"] = plan.apply(instance, step)
            except BinfmtError as err:
                failed += 1
                row["action"] = "failed"
                row["reason"] = err.message
                result.errors.append({**err.to_dict(), "arch": step.arch.name})
                rows.append(row)
                continue
            done += 1
        else:
            done += 1
        if step.failed:
            result.errors.append(
                {"code": step.action, "message": step.reason, "arch": step.arch.name}
            )
        result.warnings.extend(f"{step.arch.name}: {w}" for w in step.warnings)
        if persist is not None and step.entry is not None and step.action in PERSISTED:
            try:
                saved = _persist_one(persist, step.entry, dry_run)
                row["persist"] = saved.to_dict()
                result.warnings.extend(f"{step.arch.name}: {w}" for w in saved.warnings)
            except BinfmtError as err:
                failed += 1  # registered, not persisted: partly done (3)
                row["persist"] = {"action": "failed", "target": None, "reason": err.message}
                result.errors.append({**err.to_dict(), "arch": step.arch.name})
        rows.append(row)
    if not instance.is_host:
        result.warnings.append(PRIVATE_WARNING)
    if instance.mounted and not instance.enabled():
        result.warnings.append(disabled_warning(instance.mountpoint))
    result.data = {"dry_run": dry_run, "mountpoint": instance.mountpoint, "steps": rows}
    result.exit_code = outcome_code(done, failed)
    if failed and not done and all(e.get("code") == "permission_denied" for e in result.errors):
        result.exit_code = 4
    return result


def _human_install(data: dict[str, Any]) -> str:
    verbs = {
        "register": "would register" if data["dry_run"] else "registered",
        "replace": "would replace" if data["dry_run"] else "replaced",
        "enable": "would enable" if data["dry_run"] else "enabled",
        "unchanged": "already registered",
        "kept": "kept",
        "refused": "refused",
        "missing": "no emulator",
        "failed": "failed",
    }
    rows = []
    for s in data["steps"]:
        entry = s["entry"]
        detail = s["reason"] or (
            f"{entry['interpreter']} [{entry['flags'] or '-'}]" if entry else ""
        )
        rows.append([s["arch"], verbs.get(s["action"], s["action"]), detail])
        saved = s.get("persist")
        if saved:
            where = saved["target"] or saved["reason"] or ""
            rows.append(["", f"boot: {saved['action']}", where])
    return table(rows, ["ARCH", "RESULT", "DETAIL"])


def handle_install(args: argparse.Namespace) -> Result:
    instance = Instance(args.mountpoint)
    result = install(
        instance, args.arches, options_from(args), args.dry_run, persist=persist_from(args)
    )
    if not args.test:
        return result
    if args.dry_run:
        result.warnings.append("--test does nothing with --dry-run: nothing was installed")
        return result
    return _and_test(instance, result, args.json)


def _and_test(instance: Instance, result: Result, as_json: bool) -> Result:
    """Run `test` on every arch install left with a handler; one exit code for both."""
    import sys

    from binfmtctl.cli import test as test_verb
    from binfmtctl.errors import EXIT_PRIVILEGES

    steps = result.data["steps"]
    ready = [s["arch"] for s in steps if s["action"] not in ("refused", "missing", "failed")]
    if not ready:
        return result
    stream = sys.stderr
    tested = test_verb.run_tests(
        instance,
        ready,
        progress=stream if test_verb.wants_progress(as_json, stream) else None,
    )
    result.data["test"] = tested.data
    passed = {r["arch"] for r in tested.data["results"] if r["ok"]}
    good = sum(s["arch"] in passed for s in steps)
    if result.exit_code != EXIT_PRIVILEGES:
        result.exit_code = outcome_code(good, len(steps) - good)
    result.human = _human_install_and_test
    return result


def _human_install_and_test(data: dict[str, Any]) -> str:
    from binfmtctl.cli import test as test_verb

    return _human_install(data) + "\n\n" + test_verb.human(data["test"])


def is_qemu_handler(name: str, arch_name: str | None, interpreter: str) -> bool:
    """Entries binfmtctl may remove with --all: recognised arch AND a QEMU name/interpreter."""
    base = interpreter.rsplit("/", 1)[-1]
    return arch_name is not None and (name.startswith("qemu-") or "qemu" in base)


def handle_uninstall(args: argparse.Namespace) -> Result:
    if not args.all and not args.targets:
        raise UsageError("name the ARCHes or entries to remove, or use --all")
    instance = Instance(args.mountpoint)
    instance.require_mounted()
    result = Result("uninstall", human=_human_uninstall)
    persist = persist_from(args)
    names: list[str] = []
    if args.all and persist is not None:
        names.extend(_ours_persisted(persist))
    if args.all:
        from binfmtctl.explain import recognise

        for item in instance.entries():
            found = recognise(item.state.entry)
            if is_qemu_handler(
                item.name, found.name if found else None, item.state.entry.interpreter
            ):
                names.append(item.name)
    present = set(instance.names())
    for word in args.targets:
        if word in present:
            names.append(word)
            continue
        try:
            names.append(_arch.resolve(word).entry_name)
        except UnknownArchError:
            names.append(check_name(word))  # before anything is removed: exit 2
    rows, done, failed = [], 0, 0
    codes: set[int] = set()
    for name in dict.fromkeys(names):
        if persist is not None:
            was_present = name in present
            try:
                saved = _forget_one(persist, name, args.dry_run)
                result.data.setdefault("persist", []).append(saved.to_dict())
            except BinfmtError as err:
                failed += 1
                codes.add(err.exit_code)
                result.fail(err)
            present = set(instance.names())  # update-binfmts --remove also unregisters
            if was_present and name not in present:
                rows.append({"name": name, "action": "removed"})  # by update-binfmts
                done += 1
                continue
        if name not in present:
            rows.append({"name": name, "action": "absent"})
            continue
        try:
            if not args.dry_run:
                instance.remove(name)
            rows.append({"name": name, "action": "removed"})
            done += 1
        except NoSuchEntryError:
            rows.append({"name": name, "action": "absent"})  # another process removed it
        except BinfmtError as err:
            failed += 1
            codes.add(err.exit_code)
            result.fail(err)
            rows.append({"name": name, "action": "failed", "reason": err.message})
    result.data = {"dry_run": args.dry_run, "removed": rows, **result.data}
    result.exit_code = outcome_code(done, failed) if failed else 0
    if failed and not done and len(codes) == 1:
        result.exit_code = codes.pop()  # one reason for everything, e.g. 4: privileges
    return result


def _human_uninstall(data: dict[str, Any]) -> str:
    if not data["removed"]:
        return "nothing to remove"
    verb = {"removed": "would remove" if data["dry_run"] else "removed", "absent": "not registered"}
    lines = [f"{r['name']}: {verb.get(r['action'], r['action'])}" for r in data["removed"]]
    for saved in data.get("persist", []):
        why = f" ({saved['reason']})" if saved["reason"] else ""
        lines.append(
            f"{saved['name']}: boot configuration {saved['target']}: {saved['action']}{why}"
        )
    return "\n".join(lines)
