"""``binfmtctl explain SPEC``: which ELF field each magic/mask byte checks."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from binfmtctl import arch as _arch
from binfmtctl import interpreters, plan
from binfmtctl.cli.output import Result, table
from binfmtctl.entry import Entry
from binfmtctl.errors import UnknownArchError
from binfmtctl.instance import Instance


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "explain",
        parents=[common],
        help="show, byte by byte, what an entry's magic and mask check",
        description="SPEC is an arch (aarch64, arm64, linux/arm/v7), an entry name in "
        "the instance, a register string (':name:M::magic:mask:interp:flags'), or - "
        "to read one register string as raw bytes from stdin. Invalid register strings "
        "are reported exactly as the kernel would reject them.",
    )
    p.add_argument("spec", metavar="SPEC")
    p.add_argument(
        "--profile",
        choices=[x.value for x in _arch.Profile],
        default=_arch.Profile.QEMU.value,
        help="mask profile for an arch SPEC (default qemu)",
    )
    p.set_defaults(handler=handle)


def resolve_spec(spec: str, instance: Instance, profile: _arch.Profile) -> tuple[Entry, str]:
    """The entry SPEC names, and where it came from (stdin, entry, arch, string)."""
    if spec == "-":
        return Entry.parse(sys.stdin.buffer.read()), "stdin"
    if instance.mounted and spec in instance.names():
        return instance.get(spec).entry, "entry"
    try:
        arch = _arch.resolve(spec)
    except UnknownArchError:
        if len(spec) > 1 and not spec[0].isalnum():
            return Entry.parse(spec), "register string"
        raise
    found = interpreters.find(arch)
    path = found.path if found else f"/usr/bin/{arch.emulator_name}-static"
    return plan.build_entry(arch, path, plan.DEFAULT_FLAGS, profile), "arch"


def collect(entry: Entry, source: str) -> dict[str, Any]:
    # Start-up speed: `binfmtctl --help` loads every verb module; the explain tables
    # are needed only when an entry is explained.
    from binfmtctl.explain import explain, recognise

    found = recognise(entry)
    return {
        "source": source,
        "entry": entry.to_dict(),
        "register": str(entry),
        "arch": found.name if found else None,
        "bytes": [
            {
                "offset": row.offset,
                "magic": f"{row.magic:02x}",
                "mask": f"{row.mask:02x}",
                "field": row.field,
                "meaning": row.meaning,
            }
            for row in explain(entry)
        ],
    }


def human(data: dict[str, Any]) -> str:
    entry = data["entry"]
    lines = [
        data["register"],
        f"name {entry['name']}, type {entry['type']}, interpreter {entry['interpreter']}, "
        f"flags {entry['flags'] or '-'}" + (f", arch {data['arch']}" if data["arch"] else ""),
    ]
    if entry["type"] == "E":
        lines.append(f"matches files whose name ends in .{entry['extension']}")
        return "\n".join(lines)
    rows = [
        [str(b["offset"]), b["magic"], b["mask"], b["field"], b["meaning"]] for b in data["bytes"]
    ]
    lines.append("")
    lines.append(table(rows, ["OFFSET", "MAGIC", "MASK", "FIELD", "MEANING"]))
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> Result:
    entry, source = resolve_spec(args.spec, Instance(args.mountpoint), _arch.Profile(args.profile))
    return Result("explain", collect(entry, source), human=human)
