"""``binfmtctl enable`` / ``binfmtctl disable``: switch entries on and off."""

from __future__ import annotations

import argparse
from typing import Any

from binfmtctl import arch as _arch
from binfmtctl.cli.output import Result, outcome_code
from binfmtctl.errors import BinfmtError, UnknownArchError
from binfmtctl.instance import Instance


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    for verb, what in (("enable", "switch entries on"), ("disable", "switch entries off")):
        p = sub.add_parser(
            verb,
            parents=[common],
            help=what,
            description=f"{what.capitalize()} by entry NAME or ARCH (its qemu-ARCH entry). "
            "A disabled entry stays registered but the kernel skips it.",
        )
        p.add_argument("names", nargs="+", metavar="NAME|ARCH")
        p.set_defaults(handler=handle, on=verb == "enable")


def entry_name(instance: Instance, word: str) -> str:
    """An entry name as given, or the qemu-ARCH entry of an arch word."""
    if word in instance.names():
        return word
    try:
        return _arch.resolve(word).entry_name
    except UnknownArchError:
        return word


def handle(args: argparse.Namespace) -> Result:
    instance = Instance(args.mountpoint)
    instance.require_mounted()
    verb = "enable" if args.on else "disable"
    result = Result(verb, human=lambda d: "\n".join(f"{n}: {verb}d" for n in d["changed"]))
    changed: list[str] = []
    failed = 0
    for word in args.names:
        name = entry_name(instance, word)
        try:
            (instance.enable if args.on else instance.disable)(name)
            changed.append(name)
        except BinfmtError as err:
            failed += 1
            result.fail(err)
    result.data = {"changed": changed}
    result.exit_code = outcome_code(len(changed), failed)
    return result
