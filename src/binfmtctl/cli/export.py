"""``binfmtctl export``: print (or write) the entries install would register
(:mod:`binfmtctl.export`)."""

from __future__ import annotations

import argparse
from typing import Any

from binfmtctl import arch as _arch
from binfmtctl import export, plan
from binfmtctl.cli.install import FLAGS_HELP, add_force_interpreter, options_from
from binfmtctl.cli.output import Result, outcome_code
from binfmtctl.errors import EXIT_OK, EXIT_PARTIAL

FORMATS = export.FORMATS


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export",
        parents=[common],
        help="print or write the entries install would register, in a persistent format",
        description="Print, for each ARCH (default: every foreign arch whose emulator "
        "is found), exactly what install would write to binfmt_misc's register file -- "
        "as register lines, as systemd binfmt.d files (registered at boot by "
        "systemd-binfmt), as binfmt-support format files (for `update-binfmts "
        "--import`), or as JSON.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  binfmtctl export arm64 --format systemd -o /etc/binfmt.d\n"
        "      writes /etc/binfmt.d/qemu-aarch64.conf (then: systemd-binfmt qemu-aarch64.conf)\n"
        "  binfmtctl export arm64 --format binfmt-support -o /usr/share/binfmts\n"
        "      then: update-binfmts --import qemu-aarch64",
    )
    p.add_argument("arches", nargs="*", metavar="ARCH")
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="register",
        help="register (default), systemd, binfmt-support or json",
    )
    p.add_argument(
        "-o",
        "--output-dir",
        metavar="DIR",
        help="write one file per entry into DIR (atomically; DIR and its parents are "
        "created if missing) instead of printing: NAME.conf (systemd), NAME "
        "(binfmt-support, register), NAME.json (json). An existing file is replaced only "
        "if binfmtctl wrote it (binfmt.d: its marker line; binfmt-support: 'package "
        "binfmtctl') or it already holds the same bytes (register, json)",
    )
    p.add_argument(
        "--overwrite-foreign",
        action="store_true",
        help="with -o, also replace files binfmtctl did not write (an administrator's, a "
        "package's, a symlink); without it they are left alone and export fails naming them",
    )
    p.add_argument("--flags", default=plan.AUTO_FLAGS, help=FLAGS_HELP)
    p.add_argument("--interpreter-dir", action="append", metavar="DIR")
    p.add_argument("--interpreter", metavar="PATH")
    add_force_interpreter(p)
    p.add_argument(
        "--profile", choices=[x.value for x in _arch.Profile], default=_arch.Profile.QEMU.value
    )
    p.set_defaults(handler=handle, force=True, replace=False)


def handle(args: argparse.Namespace) -> Result:
    report = export.export(
        args.arches,
        options_from(args),
        args.format,
        args.output_dir,
        overwrite_foreign=args.overwrite_foreign,
    )
    result = Result("export", report.to_dict())
    result.errors = [f.to_dict() for f in report.errors]
    if args.output_dir:
        result.human = lambda d: "\n".join(f"wrote {p}" for p in d["files"])
        if report.refused:
            result.exit_code = outcome_code(len(report.written), report.refused)
    elif args.format != "register":
        text = export.printout(report.rendered, args.format)
        result.human = lambda d: text
    else:
        result.human = lambda d: "\n".join(e["register"] for e in d["entries"])
    if result.errors and result.exit_code == EXIT_OK:
        result.exit_code = EXIT_PARTIAL
    return result
