"""``binfmtctl export``: print (or write) the entries install would register."""

from __future__ import annotations

import argparse
from typing import Any

from binfmtctl import arch as _arch
from binfmtctl import plan
from binfmtctl.cli.install import options_from
from binfmtctl.cli.output import Result
from binfmtctl.errors import UsageError

FORMATS = ("register",)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "export",
        parents=[common],
        help="print the register lines install would write",
        description="Print, for each ARCH (default: every foreign arch whose emulator "
        "is found), exactly what install would write to binfmt_misc's register file.",
    )
    p.add_argument("arches", nargs="*", metavar="ARCH")
    p.add_argument("--format", choices=FORMATS, default="register")
    p.add_argument("--flags", default=plan.DEFAULT_FLAGS)
    p.add_argument("--interpreter-dir", action="append", metavar="DIR")
    p.add_argument("--interpreter", metavar="PATH")
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
            result.errors.append({"code": step.action, "message": step.reason, "arch": step.arch.name})
            continue
        entries.append({"arch": step.arch.name, "register": str(step.entry), **step.entry.to_dict()})
    if not entries and result.errors:
        raise UsageError(result.errors[0]["message"])
    result.data = {"format": args.format, "entries": entries}
    result.exit_code = 3 if result.errors else 0
    return result
