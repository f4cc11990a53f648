"""``binfmtctl scan DIR``: every ELF file of a tree, by architecture, and who runs it."""

from __future__ import annotations

import argparse
import os
from typing import Any

from binfmtctl import native, remedies, rootpath, scan
from binfmtctl.advice import advise
from binfmtctl.callerfacts import caller
from binfmtctl.cli.advising import fix_lines
from binfmtctl.cli.output import Result, table
from binfmtctl.errors import EXIT_FAILED, EXIT_OK, UsageError
from binfmtctl.instance import Instance

SHOWN = 10  # files listed per uncovered group in the text view
NEVER_EXECUTED = (
    "never executed, so no handler needed (objects, cores, libraries without an entry point):"
)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "scan",
        parents=[common],
        help="every ELF file under DIR, grouped by arch/ABI, with the handler for each",
        description="Walk DIR (a root filesystem, an unpacked image; symlinks are not "
        "followed), read the first bytes of every regular file, and group the ELF files "
        "by architecture and ABI with what would run them now: a binfmt_misc entry, the "
        "native loader, or nothing. Files no handler covers are listed. Only programs "
        "(ET_EXEC, and ET_DYN with an entry point) need a handler: objects (crt1.o), "
        "core dumps and libraries without an entry point are listed apart. Exit status "
        "1 when some program has no handler.",
        epilog="example:\n  binfmtctl scan ./arm64-rootfs   "
        "# 'this aarch64 tree contains 3 x86_64 files'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(handler=handle)


def _label(group: dict[str, Any]) -> str:
    name = group["arch"] or f"e_machine {group['machine']}"
    return f"{name} ({group['abi']})" if group["abi"] else name


def summary(groups: list[dict[str, Any]]) -> str | None:
    """'this aarch64 tree contains 3 x86_64 files' when a tree holds more than one arch."""
    totals: dict[str, int] = {}
    for g in groups:
        totals[_label(g)] = totals.get(_label(g), 0) + g["count"]
    if len(totals) < 2:
        return None
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    main = ranked[0][0]
    others = ", ".join(f"{n} {label} file{'s' if n != 1 else ''}" for label, n in ranked[1:])
    return f"this {main} tree contains {others}"


def human(data: dict[str, Any]) -> str:
    lines = [f"{data['dir']}: {data['files']} files, {data['elf_files']} ELF"]
    problems = data.get("problems", [])
    if problems:
        lines.append(f"cannot read {len(problems)} file(s) or directories (skipped):")
        lines += [f"  {p['path']}: {p['reason']}" for p in problems[:SHOWN]]
        if len(problems) > SHOWN:
            lines.append(f"  ... and {len(problems) - SHOWN} more (--json lists all)")
    if not data["groups"]:
        return "\n".join(lines)
    programs = [g for g in data["groups"] if g.get("kind", scan.PROGRAM) == scan.PROGRAM]
    others = [g for g in data["groups"] if g not in programs]
    rows = []
    for g in programs:
        if g["match"]:
            runner = f"{g['match']['entry']} ({g['match']['interpreter']})"
        else:
            runner = {"native": "native"}.get(g["verdict"], "NO HANDLER")
        rows.append([_label(g), f"{g['class']}-bit {g['endian']}", str(g["count"]), runner])
    if rows:
        lines += ["", table(rows, ["ARCH", "CLASS", "FILES", "RUN BY"])]
    if others:
        rows = [
            [_label(g), f"{g['class']}-bit {g['endian']}", g["kind"], str(g["count"])]
            for g in others
        ]
        lines += ["", NEVER_EXECUTED, table(rows, ["ARCH", "CLASS", "KIND", "FILES"])]
    said = summary(data["groups"])
    if said:
        lines += ["", said]
    for g in programs:
        if g["verdict"] in ("handled", "native"):
            continue
        lines.append(f"no handler for {g['count']} {_label(g)} file(s):")
        lines += [f"  {f}" for f in g["files"][:SHOWN]]
        if g["count"] > SHOWN:
            lines.append(f"  ... and {g['count'] - SHOWN} more (--json lists all)")
    lines.extend(fix_lines(data.get("advice", [])))
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> Result:
    if not os.path.isdir(args.dir):
        raise UsageError(f"{args.dir} is not a directory; scan walks a tree (see `find`)")
    state = Instance(args.mountpoint).snapshot()
    report = scan.scan(args.dir, state, native.native_arches())
    data = {
        "dir": args.dir,
        "instance": state.to_dict(),
        "files": report.files,
        "unreadable": report.unreadable,
        "problems": [p.to_dict() for p in report.problems],
        "elf_files": report.elf_files,
        "groups": [g.to_dict() for g in report.groups],
        "summary": summary([g.to_dict(0) for g in report.groups]),
    }
    bad = report.uncovered()
    # A tree with a shell is a root file system: its programs run in it (`run --rootfs`).
    is_root = rootpath.resolve_in(args.dir, "/bin/sh") is not None
    fixes = advise(caller(), remedies.for_scan(state, bad), None, args.dir if is_root else None)
    data["advice"] = [a.to_dict() for a in fixes]
    return Result("scan", data, human=human, exit_code=EXIT_FAILED if bad else EXIT_OK)
