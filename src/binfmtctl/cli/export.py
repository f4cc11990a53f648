"""``binfmtctl export``: print (or write) the entries install would register.

Formats: ``register`` (the raw lines), ``systemd`` (binfmt.d files),
``binfmt-support`` (update-binfmts format files for ``--import``), ``json``.
With ``-o DIR`` one file per entry is written atomically; without, everything
is printed (for ``systemd`` the printout is itself one valid binfmt.d file).
"""

from __future__ import annotations

import argparse
from typing import Any

from binfmtctl import arch as _arch
from binfmtctl import binfmt_d, binfmts, files, plan
from binfmtctl.cli.install import add_force_interpreter, options_from
from binfmtctl.cli.output import Result, outcome_code
from binfmtctl.entry import Entry
from binfmtctl.errors import EXIT_OK, EXIT_PARTIAL, BinfmtError, UsageError

FORMATS = ("register", "systemd", "binfmt-support", "json")


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
    p.add_argument("--flags", default=plan.DEFAULT_FLAGS)
    p.add_argument("--interpreter-dir", action="append", metavar="DIR")
    p.add_argument("--interpreter", metavar="PATH")
    add_force_interpreter(p)
    p.add_argument(
        "--profile", choices=[x.value for x in _arch.Profile], default=_arch.Profile.QEMU.value
    )
    p.set_defaults(handler=handle, force=True, replace=False)


def handle(args: argparse.Namespace) -> Result:
    options = options_from(args)
    arches = _arch.resolve_all(args.arches) if args.arches else plan.default_arches(options)
    steps = plan.plan_install(arches, {}, options)
    result = Result("export", human=lambda d: "\n".join(e["register"] for e in d["entries"]))
    entries: list[dict[str, Any]] = []
    for step in steps:
        if step.entry is None:
            result.errors.append(
                {"code": step.action, "message": step.reason, "arch": step.arch.name}
            )
            continue
        entries.append(
            {"arch": step.arch.name, "register": str(step.entry), **step.entry.to_dict()}
        )
    if not entries and result.errors:
        raise UsageError(result.errors[0]["message"])
    result.data = {"format": args.format, "entries": entries, "files": []}
    built = [step.entry for step in steps if step.entry is not None]
    rendered = render_files(built, args.format)
    if args.output_dir:
        written, refused = [], 0
        ours = OWNER_MARKS.get(args.format, _nothing_ours)
        for name, content in rendered.items():
            try:
                saved = files.put(
                    args.output_dir.rstrip("/") or "/",
                    name,
                    content,
                    ours=ours,
                    overwrite_foreign=args.overwrite_foreign,
                )
            except BinfmtError as err:
                result.errors.append(err.to_dict())
                refused += 1
                continue
            written.append(saved.target)
        result.data["files"] = written
        result.human = lambda d: "\n".join(f"wrote {p}" for p in d["files"])
        if refused:
            result.exit_code = outcome_code(len(written), refused)
    elif args.format != "register":
        text = printout(rendered, args.format)
        result.human = lambda d: text
    if result.errors and result.exit_code == EXIT_OK:
        result.exit_code = EXIT_PARTIAL
    return result


# Files that carry binfmtctl's mark, per format; register lines and JSON cannot carry one,
# so an existing file of those is replaced only when it already holds the same bytes.
OWNER_MARKS = {"systemd": binfmt_d.marked_binfmt_d, "binfmt-support": binfmts.marked_binfmts}


def _nothing_ours(data: bytes) -> bool:
    return False


def render_files(entries: list[Entry], fmt: str) -> dict[str, bytes]:
    """File name -> content, one file per entry, in ``fmt``."""
    import json

    out: dict[str, bytes] = {}
    for entry in entries:
        if fmt == "systemd":
            out[binfmt_d.conf_name(entry.name)] = binfmt_d.format_binfmt_d([entry])
        elif fmt == "binfmt-support":
            out[entry.name] = binfmts.format_binfmts(entry)
        elif fmt == "json":
            out[f"{entry.name}.json"] = (json.dumps(entry.to_dict(), indent=2) + "\n").encode()
        else:
            out[entry.name] = entry.register_bytes() + b"\n"
    return out


def printout(files: dict[str, bytes], fmt: str) -> str:
    """Everything on stdout: one binfmt.d file, or the format files one after another."""
    import json
    import os

    if fmt == "systemd":
        lines = [line for c in files.values() for line in c.splitlines(keepends=True)]
        body = b"".join(line for line in lines if not line.startswith(b"#"))
        return os.fsdecode(binfmt_d.HEADER + body)
    if fmt == "json":
        return json.dumps([json.loads(c) for c in files.values()], indent=2)
    return "\n".join(f"# {name}\n{os.fsdecode(c)}" for name, c in files.items())
