"""``binfmtctl apply``: register from binfmt.d files, the way systemd-binfmt does.

Unlike ``systemd-binfmt`` at boot, nothing is flushed: only the names the
files define are touched. Each line replaces a same-named entry; if the kernel
refuses the new line, the old entry stays registered (systemd-binfmt would
leave the name unregistered).
"""

from __future__ import annotations

import argparse
from typing import Any

from binfmtctl import binfmt_d, plan
from binfmtctl.cli.output import Result, outcome_code, table
from binfmtctl.entry import Entry, Handler
from binfmtctl.errors import BinfmtError, ConfigError, RefusedError
from binfmtctl.instance import Instance, name_problem
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


def apply_files(
    instance: Instance, paths: list[str], dry_run: bool = False, root: str = "/"
) -> Result:
    """Register every line of ``paths`` (resolved inside ``root``); the library form of the verb.

    Only regular files are read: a FIFO, device or dangling link is a failed row.
    Every file is read and every line parsed before the kernel is touched, so
    an unreadable file or a bad line is known up front (and never half-applied
    after a register). Each valid line then goes through
    :meth:`Instance.replace`: the kernel proves the new definition before the
    old entry is removed, so a line it refuses leaves the working handler as
    it was, and the error names the file and line.
    """
    result = Result("apply", human=human)
    rows: list[dict[str, Any]] = []
    work: list[tuple[dict[str, Any], Entry]] = []
    codes: set[int] = set()
    for path in paths:
        try:
            conf = binfmt_d.read_binfmt_d(path, root)
        except BinfmtError as err:
            codes.add(err.exit_code)
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
            rows.append(row)
            if rule.entry is None:
                assert rule.error is not None
                bad = binfmt_d.rule_error(rule)
                codes.add(bad.exit_code)
                result.errors.append(bad.to_dict())
                row.update(action="invalid", reason=f"{rule.error.field}: {rule.error.reason}")
            elif (problem := name_problem(rule.entry.name)) is not None:
                bad = ConfigError(f"{rule.where}: {problem}", path=path, line=rule.line)
                codes.add(bad.exit_code)
                result.errors.append(bad.to_dict())
                row.update(action="invalid", reason=problem)
            elif "C" in rule.entry.flags and (
                unsafe := plan.credentials_problem(rule.entry.interpreter)
            ):
                refused = RefusedError(f"{rule.where}: {unsafe}", path=path, line=rule.line)
                codes.add(refused.exit_code)
                result.errors.append(refused.to_dict())
                row.update(action="refused", reason=unsafe)
            elif dry_run:
                row.update(action="would register", reason=None)
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
            codes.add(err.exit_code)
            message = f"{row['path']}:{row['line']}: {err.message}{_kept(instance, before)}"
            result.errors.append({**err.to_dict(), "message": message, **_at(row)})
            row.update(action="failed", reason=err.message)
            continue
        action = "registered" if old is None else "replaced"
        if old is not None and old.entry == entry:
            action = "re-registered"
        row.update(action=action, reason=None)
    done = sum(r["action"] in DONE for r in rows)
    result.data = {"dry_run": dry_run, "mountpoint": instance.mountpoint, "lines": rows}
    result.exit_code = outcome_code(done, len(rows) - done)
    if codes and not done and len(codes) == 1:
        result.exit_code = codes.pop()  # one reason for everything, e.g. 4: privileges
    return result


DONE = frozenset({"registered", "replaced", "re-registered", "would register"})


def _at(row: dict[str, Any]) -> dict[str, Any]:
    return {"path": row["path"], "line": row["line"]}


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
    return apply_files(Instance(args.mountpoint), paths, args.dry_run, layout.root)
