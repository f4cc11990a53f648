"""``binfmtctl apply``: register from binfmt.d files, the way systemd-binfmt does
(:mod:`binfmtctl.apply`)."""

from __future__ import annotations

import argparse
from typing import Any

from binfmtctl import apply, binfmt_d
from binfmtctl.cli.output import Result, outcome_code, table
from binfmtctl.instance import Instance
from binfmtctl.persist import Layout


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "apply",
        parents=[common],
        help="register the entries binfmt.d files define (what boot would do)",
        description="Register every line of each binfmt.d FILE, in order, the way "
        "systemd-binfmt does -- a path, or a file name looked up in /etc/binfmt.d, "
        "/run/binfmt.d, /usr/local/lib/binfmt.d and /usr/lib/binfmt.d. With no FILE: "
        "every file boot would apply, in boot order. Only the names those files "
        "define are touched (no global flush: WSLInterop and other foreign entries "
        "stay). Works without systemd (containers, WSL).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  binfmtctl apply qemu-aarch64.conf\n"
        "  binfmtctl apply ./my-handlers.conf --dry-run\n"
        "  binfmtctl apply                    everything boot would register",
    )
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--dry-run", action="store_true", help="check the files; register nothing")
    p.add_argument(
        "--root",
        metavar="DIR",
        help="look FILE names up (and list files) below DIR instead of /; every path, FILE "
        "paths too, is resolved inside DIR as a chroot would (symlinks never lead out)",
    )
    p.set_defaults(handler=handle)


def apply_result(report: apply.ApplyReport) -> Result:
    """The apply report as a command result."""
    result = Result("apply", report.to_dict(), human=human)
    result.errors = [f.to_dict() for f in report.errors]
    result.exit_code = outcome_code(report.done, len(report.lines) - report.done)
    codes = {f.exit_code for f in report.errors}
    if codes and not report.done and len(codes) == 1:
        result.exit_code = codes.pop()  # one reason for everything, e.g. 4: privileges
    return result


def human(data: dict[str, Any]) -> str:
    if not data["lines"]:
        return "no register lines in those files"
    rows = [
        [f"{r['path']}:{r['line'] or '-'}", r["name"] or "-", r["action"], r["reason"] or ""]
        for r in data["lines"]
    ]
    return table(rows, ["LINE", "ENTRY", "RESULT", "DETAIL"])


def handle(args: argparse.Namespace) -> Result:
    layout = Layout.under(args.root)
    if args.files:
        paths = [binfmt_d.find_conf(word, layout.binfmt_d, layout.root) for word in args.files]
    else:
        # A directory boot reads that cannot be listed: stop before touching the kernel.
        paths = binfmt_d.boot_files(layout.binfmt_d, layout.root)
    return apply_result(
        apply.apply_files(Instance(args.mountpoint), paths, args.dry_run, layout.root)
    )
