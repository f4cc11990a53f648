"""``binfmtctl arches``: the catalog, with aliases, registration and emulators."""

from __future__ import annotations

import argparse
from typing import Any

from binfmtctl import interpreters
from binfmtctl.arch import CATALOG
from binfmtctl.cli.output import Result, table
from binfmtctl.instance import Instance
from binfmtctl.native import native_arches


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "arches",
        parents=[common],
        help="list every architecture binfmtctl knows, with aliases and emulators",
        description="List the architecture catalog: QEMU target name, the aliases "
        "you can type instead (Debian arch, OCI platform, uname -m, GOARCH), "
        "whether it is registered in the instance and whether its emulator is found.",
    )
    p.set_defaults(handler=handle)


def collect(instance: Instance) -> dict[str, Any]:
    registered = set(instance.names()) if instance.mounted else set()
    native = {a.name for a in native_arches()}
    rows = []
    for arch in CATALOG.values():
        found = interpreters.find(arch)
        rows.append(
            {
                "name": arch.name,
                "description": arch.description,
                "bits": arch.bits,
                "endian": "big" if arch.big_endian else "little",
                "machine": arch.machine,
                "aliases": {
                    "debian": list(arch.debian),
                    "oci": list(arch.oci),
                    "uname": list(arch.uname),
                    "go": list(arch.go),
                },
                "native": arch.name in native,
                "registered": arch.entry_name in registered,
                "emulator": found.to_dict() if found else None,
            }
        )
    return {"arches": rows}


def human(data: dict[str, Any]) -> str:
    rows = []
    for a in data["arches"]:
        aliases = [*a["aliases"]["debian"], *a["aliases"]["oci"], *a["aliases"]["uname"]]
        emulator = a["emulator"]["path"] if a["emulator"] else "-"
        state = "native" if a["native"] else ("yes" if a["registered"] else "no")
        rows.append([a["name"], state, emulator, ", ".join(dict.fromkeys(aliases)) or "-"])
    return table(rows, ["ARCH", "REGISTERED", "EMULATOR", "ALIASES"])


def handle(args: argparse.Namespace) -> Result:
    return Result("arches", collect(Instance(args.mountpoint)), human=human)
