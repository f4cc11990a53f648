"""The ``binfmtctl`` command line: one module per verb, one renderer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from binfmtctl.cli.output import Result, render
from binfmtctl.errors import EXIT_INTERRUPTED, EXIT_USAGE, BinfmtError, UsageError
from binfmtctl.instance import DEFAULT_MOUNTPOINT

EPILOG = """\
exit codes: 0 all done, 1 failed, 2 usage error, 3 partly done (some arches
failed), 4 needs privileges, 130 interrupted.

examples:
  binfmtctl install                 register every foreign arch whose QEMU is found
  binfmtctl install arm64 armhf     by Debian, OCI (linux/arm/v7) or uname -m names
  binfmtctl status --json           everything registered, for scripts
  binfmtctl explain aarch64         which ELF header byte each magic byte checks
"""


def _verbs() -> list[ModuleType]:
    # `run` and `shell` live in cli/rootless.py: a submodule named `run` would
    # replace the run() entry point below as soon as it is imported.
    from binfmtctl.cli import apply as apply_verb
    from binfmtctl.cli import (
        arches,
        entries,
        explain,
        export,
        find,
        install,
        rootless,
        scan,
        status,
        why,
    )
    from binfmtctl.cli import test as test_verb

    return [
        *[status, arches, install, entries, explain, export, find, why, scan, test_verb],
        *[rootless, apply_verb],
    ]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _common() -> argparse.ArgumentParser:
    """Options every verb accepts, before or after the verb."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print a versioned JSON envelope on stdout instead of text",
    )
    common.add_argument(
        "--mountpoint",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=f"the binfmt_misc instance to use (default {DEFAULT_MOUNTPOINT})",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = _Parser(
        prog="binfmtctl",
        description="Run foreign-architecture Linux programs transparently, through "
        "the kernel's binfmt_misc and QEMU user-mode emulation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    for module in _verbs():
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Words after `--` belong to the command `binfmtctl run` starts, not to us.
    ours = args_list[: args_list.index("--")] if "--" in args_list else args_list
    as_json = "--json" in ours
    try:
        parser = build_parser()
        args = parser.parse_args(args_list)
        if getattr(args, "verb", None) is None:
            args = parser.parse_args([*args_list, "status"])
        args.json = getattr(args, "json", False)
        args.mountpoint = getattr(args, "mountpoint", DEFAULT_MOUNTPOINT)
        result: Result = args.handler(args)
    except BinfmtError as err:
        result = Result(command=_verb_of(args_list))
        result.fail(err)
    except KeyboardInterrupt:
        sys.stderr.write("binfmtctl: interrupted\n")
        return EXIT_INTERRUPTED
    render(result, as_json)
    return result.exit_code


def _verb_of(argv: list[str]) -> str:
    words = [a for a in argv if not a.startswith("-")]
    return words[0] if words else "status"


def run() -> None:
    """Console-script entry point."""
    try:
        code = main()
    except BrokenPipeError:
        code = 0
    sys.exit(code if code is not None else EXIT_USAGE)
