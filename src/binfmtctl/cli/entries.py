"""``binfmtctl enable`` / ``disable``: switch entries, or the whole instance, on and off."""

from __future__ import annotations

from binfmtctl.cli import quick
from binfmtctl.cli.output import Result, outcome_code
from binfmtctl.errors import EXIT_FAILED, UsageError
from binfmtctl.instance import Instance
from binfmtctl.switch import switch

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import argparse
    from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    for verb, what in (("enable", "switch entries on"), ("disable", "switch entries off")):
        p = sub.add_parser(
            verb,
            parents=[common],
            help=what,
            description=f"{what.capitalize()} by entry NAME or ARCH (its qemu-ARCH entry). "
            "A disabled entry stays registered but the kernel skips it. "
            f"`binfmtctl {verb} --instance` switches the whole binfmt_misc instance "
            "(its status file) instead: "
            + (
                "every enabled entry runs again."
                if verb == "enable"
                else "no entry runs until `binfmtctl enable --instance`."
            ),
        )
        p.add_argument("names", nargs="*", metavar="NAME|ARCH")
        p.add_argument(
            "--instance",
            action="store_true",
            help=f"{verb} the whole instance (binfmt_misc's status file), not entries",
        )
        p.set_defaults(handler=handle, on=verb == "enable")


def handle(args: argparse.Namespace) -> Result:
    verb = "enable" if args.on else "disable"
    if args.instance and args.names:
        raise UsageError(f"`{verb} --instance` switches the whole instance: name no entries")
    if not args.instance and not args.names:
        raise UsageError(f"name the entries or ARCHes to {verb}, or use --instance")
    instance = Instance(args.mountpoint)
    if args.instance:
        instance.require_mounted()
        instance.set_enabled(args.on)
        return Result(
            verb,
            {"changed": [], "instance": f"{verb}d"},
            human=lambda d: f"binfmt_misc at {instance.mountpoint}: {d['instance']}",
        )
    report = switch(instance, args.names, args.on)
    result = Result(verb, report.to_dict(), human=lambda d: "\n".join(_lines(d, verb)))
    result.errors = [f.to_dict() for f in report.errors]
    codes = {f.exit_code for f in report.errors}
    result.exit_code = failure_code(len(report.changed) + len(report.absent), codes)
    return result


def failure_code(done: int, codes: set[int]) -> int:
    """outcome_code, except that when nothing was done for one reason (4: privileges), say it."""
    code = outcome_code(done, len(codes))
    if code == EXIT_FAILED and len(codes) == 1:
        return codes.pop()
    return code


def _lines(data: dict[str, Any], verb: str) -> list[str]:
    return [f"{n}: {verb}d" for n in data["changed"]] + [
        f"{n}: already absent (removed meanwhile)" for n in data["absent"]
    ]


#: enable's and disable's options as :mod:`binfmtctl.cli.quick` reads their plain
#: forms without argparse (the same as :func:`register`'s; tests/test_quick_args.py).
QUICK = {
    verb: quick.Verb(
        verb,
        "names",
        {"--instance": quick.Option(quick.FLAG)},
        {"handler": handle, "on": verb == "enable"},
    )
    for verb in ("enable", "disable")
}
