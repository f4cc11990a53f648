"""``binfmtctl install`` and ``binfmtctl uninstall``."""

from __future__ import annotations

from binfmtctl import arch as _arch
from binfmtctl import install, interpreters, plan
from binfmtctl.cli import quick
from binfmtctl.cli.output import Result, outcome_code, table
from binfmtctl.errors import EXIT_OK, EXIT_PRIVILEGES, PermissionDeniedError, UsageError
from binfmtctl.instance import Instance
from binfmtctl.plan import Action

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from binfmtctl import persist

#: persist.STORES, spelled here so that a plain install loads no persistence code
#: (tests/test_quick_args.py checks they are the same).
PERSIST_KINDS = ("systemd", "binfmt-support")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    import argparse  # start-up speed: only when the parser is built (see QUICK)

    p = sub.add_parser(
        "install",
        parents=[common],
        help="register QEMU handlers for foreign architectures",
        description="Register a binfmt_misc handler for each ARCH (QEMU name, Debian "
        "arch, OCI platform or uname -m). With no ARCH: every foreign arch whose "
        "emulator is found. Re-running is a no-op. Arches the host runs natively are "
        "refused.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="flags: F open the interpreter now (works in chroots/containers)\n"
        "       P pass argv[0] too (login shells, exec -a)   O pass an open fd\n"
        "       C run with the program's credentials (setuid; implies O)\n"
        "       auto (the default): FP where a probe shows the emulator honours P, else F",
    )
    p.add_argument("arches", nargs="*", metavar="ARCH")
    p.add_argument("--flags", default=plan.AUTO_FLAGS, help=FLAGS_HELP)
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


#: --flags' help, one text for every verb that registers handlers.
FLAGS_HELP = (
    "entry flags, e.g. F or FP (default auto: FP where a probe, once per boot, shows the "
    "emulator keeps argv[0] behind P; F otherwise)"
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


def persist_from(args: argparse.Namespace) -> persist.Store | None:
    """The store ``--persist`` names, or None without it."""
    if not args.persist:
        if args.binfmt_d:
            raise UsageError("--binfmt-d only makes sense with --persist")
        return None
    from binfmtctl import persist  # start-up speed: only --persist writes configuration

    return persist.store(
        args.persist,
        persist.Layout.under(args.root),
        args.binfmt_d,
        overwrite_foreign=args.overwrite_foreign,
    )


def install_result(report: install.InstallReport) -> Result:
    """The install report as a command result: data, errors, warnings, exit code."""
    result = Result("install", report.to_dict(), human=_human_install)
    result.errors = [f.to_dict() for f in report.errors]
    result.warnings = list(report.warnings)
    result.exit_code = outcome_code(report.done, report.failed)
    denied = all(f.code == PermissionDeniedError.code for f in report.errors)
    if report.failed and not report.done and denied:
        result.exit_code = EXIT_PRIVILEGES
    return result


def _human_install(data: dict[str, Any]) -> str:
    verbs: dict[str, str] = {
        Action.REGISTER: "would register" if data["dry_run"] else "registered",
        Action.REPLACE: "would replace" if data["dry_run"] else "replaced",
        Action.ENABLE: "would enable" if data["dry_run"] else "enabled",
        Action.UNCHANGED: "already registered",
        Action.KEPT: "kept",
        Action.REFUSED: "refused",
        Action.MISSING: "no emulator",
        install.FAILED: "failed",
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
    report = install.install(
        instance, args.arches, options_from(args), args.dry_run, store=persist_from(args)
    )
    result = install_result(report)
    if not args.test:
        return result
    if args.dry_run:
        result.warnings.append("--test does nothing with --dry-run: nothing was installed")
        return result
    return _and_test(instance, report, result, args.json)


def _and_test(
    instance: Instance, report: install.InstallReport, result: Result, as_json: bool
) -> Result:
    """Run `test` on every arch install left with a handler; one exit code for both."""
    import sys

    # Start-up speed: the test verb (probes, threads) only for install --test.
    from binfmtctl.cli import test as test_verb

    ready = [r.step.arch.name for r in report.rows if r.ready]
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
    good = sum(r.step.arch.name in passed for r in report.rows)
    if result.exit_code != EXIT_PRIVILEGES:
        result.exit_code = outcome_code(good, len(report.rows) - good)
    result.human = _human_install_and_test
    return result


def _human_install_and_test(data: dict[str, Any]) -> str:
    from binfmtctl.cli import test as test_verb  # start-up speed, as in _and_test

    return _human_install(data) + "\n\n" + test_verb.human(data["test"])


def handle_uninstall(args: argparse.Namespace) -> Result:
    report = install.uninstall(
        Instance(args.mountpoint),
        args.targets,
        every_qemu=args.all,
        store=persist_from(args),
        dry_run=args.dry_run,
    )
    result = Result("uninstall", report.to_dict(), human=_human_uninstall)
    result.errors = [f.to_dict() for f in report.errors]
    result.exit_code = outcome_code(report.done, report.failed) if report.failed else EXIT_OK
    codes = {f.exit_code for f in report.errors}
    if report.failed and not report.done and len(codes) == 1:
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


#: --persist and the options that go with it (install's and uninstall's), for :data:`QUICK`.
PERSIST_QUICK = {
    "--persist": quick.Option(quick.OPTIONAL, choices=PERSIST_KINDS, const="systemd"),
    "--binfmt-d": quick.Option(quick.VALUE),
    "--root": quick.Option(quick.VALUE),
    "--overwrite-foreign": quick.Option(quick.FLAG),
}

#: install's and uninstall's options as :mod:`binfmtctl.cli.quick` reads their plain
#: forms without argparse (the same as :func:`register`'s; tests/test_quick_args.py).
QUICK = {
    "install": quick.Verb(
        "install",
        "arches",
        {
            "--flags": quick.Option(quick.VALUE, default=plan.AUTO_FLAGS),
            "--interpreter-dir": quick.Option(quick.APPEND),
            "--interpreter": quick.Option(quick.VALUE),
            "--force-interpreter": quick.Option(quick.FLAG),
            "--profile": quick.Option(
                quick.VALUE,
                choices=[p.value for p in _arch.Profile],
                default=_arch.Profile.QEMU.value,
            ),
            "--replace": quick.Option(quick.FLAG),
            "--force": quick.Option(quick.FLAG),
            "--dry-run": quick.Option(quick.FLAG),
            "--test": quick.Option(quick.FLAG),
            **PERSIST_QUICK,
        },
        {"handler": handle_install},
    ),
    "uninstall": quick.Verb(
        "uninstall",
        "targets",
        {
            "--all": quick.Option(quick.FLAG),
            "--dry-run": quick.Option(quick.FLAG),
            **PERSIST_QUICK,
        },
        {"handler": handle_uninstall},
    ),
}
