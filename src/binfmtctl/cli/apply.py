"""``binfmtctl apply``: register from binfmt.d files, the way systemd-binfmt does.

Unlike ``systemd-binfmt`` at boot, nothing is flushed: only the names the
files define are touched. Each line replaces a same-named entry; if the kernel
refuses the new line, the old entry is put back (systemd-binfmt would leave
the name unregistered).
"""

from __future__ import annotations

import argparse
from typing import Any

from binfmtctl import config, plan
from binfmtctl.cli.output import Result, outcome_code, table
from binfmtctl.errors import BinfmtError, ConfigError, RefusedError
from binfmtctl.instance import Instance


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


def apply_files(
    instance: Instance, paths: list[str], dry_run: bool = False, root: str = "/"
) -> Result:
    """Register every line of ``paths`` (resolved inside ``root``); the library form of the verb.

    Only regular files are read: a FIFO, device or dangling link is a failed row.
    """
    result = Result("apply", human=human)
    if not dry_run:
        instance.mount()
    rows: list[dict[str, Any]] = []
    done = failed = 0
    for path in paths:
        try:
            conf = config.read_binfmt_d(path, root)
        except BinfmtError as err:
            failed += 1
            result.fail(err)
            rows.append(
                {
                    "path": path,
                    "line": None,
                    "name": None,
                    "action": "failed",
                    "reason": err.message,
                }
            )
            continue
        for rule in conf.rules:
            row: dict[str, Any] = {"path": path, "line": rule.line, "name": rule.name}
            if rule.entry is None:
                assert rule.error is not None
                failed += 1
                bad = ConfigError(
                    f"{rule.where}: {rule.error.message}",
                    path=path,
                    line=rule.line,
                    field=rule.error.field,
                    position=rule.error.position,
                )
                result.errors.append(bad.to_dict())
                row.update(action="invalid", reason=f"{rule.error.field}: {rule.error.reason}")
            elif "C" in rule.entry.flags and (
                unsafe := plan.credentials_problem(rule.entry.interpreter)
            ):
                failed += 1
                refused = RefusedError(f"{rule.where}: {unsafe}", path=path, line=rule.line)
                result.errors.append(refused.to_dict())
                row.update(action="refused", reason=unsafe)
            elif dry_run:
                done += 1
                row.update(action="would register", reason=None)
            else:
                try:
                    old = instance.replace(rule.entry)
                except BinfmtError as err:
                    failed += 1
                    result.errors.append({**err.to_dict(), "path": path, "line": rule.line})
                    row.update(action="failed", reason=err.message)
                else:
                    done += 1
                    action = "registered" if old is None else "replaced"
                    if old is not None and old.entry == rule.entry:
                        action = "re-registered"
                    row.update(action=action, reason=None)
            rows.append(row)
    result.data = {"dry_run": dry_run, "mountpoint": instance.mountpoint, "lines": rows}
    result.exit_code = outcome_code(done, failed)
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
    layout = config.Layout.under(args.root)
    if args.files:
        paths = [config.find_conf(word, layout.binfmt_d, layout.root) for word in args.files]
    else:
        # A directory boot reads that cannot be listed: stop before touching the kernel.
        paths = config.boot_files(layout.binfmt_d, layout.root)
    return apply_files(Instance(args.mountpoint), paths, args.dry_run, layout.root)
