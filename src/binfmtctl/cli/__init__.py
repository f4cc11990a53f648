"""The ``binfmtctl`` command line: one module per verb, one renderer."""

from __future__ import annotations

import sys

from binfmtctl import __version__, signals
from binfmtctl.errors import EXIT_USAGE, BinfmtError, InterruptError, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from types import ModuleType

    from binfmtctl.cli.output import Result

# The binfmt_misc every verb uses by default (instance.DEFAULT_MOUNTPOINT; not
# imported from there: `run` starts without the instance module's imports).
DEFAULT_MOUNTPOINT = "/proc/sys/fs/binfmt_misc"

EPILOG = """\
exit codes: 0 all done, 1 failed, 2 usage error, 3 partly done (some arches
failed), 4 needs privileges, 128+N stopped by signal N (130 SIGINT, 143
SIGTERM, 129 SIGHUP: what it started is stopped, its temporary files removed).

examples:
  binfmtctl install                 register every foreign arch whose QEMU is found
  binfmtctl install arm64 armhf     by Debian, OCI (linux/arm/v7) or uname -m names
  binfmtctl status --json           everything registered, for scripts
  binfmtctl explain aarch64         which ELF header byte each magic byte checks
"""


# Verb -> the module that defines it. `run` and `shell` live in cli/rootless.py:
# a submodule named `run` would replace the run() entry point below once imported.
VERBS = {
    "status": "status", "arches": "arches", "install": "install", "uninstall": "install",
    "enable": "entries", "disable": "entries", "explain": "explain", "export": "export",
    "find": "find", "why": "why", "scan": "scan", "test": "test", "run": "rootless",
    "shell": "rootless", "apply": "apply",
    "rootfs": "rootfs",
    "agent": "agent",
}  # fmt: skip
_OPTIONS_WITH_VALUE = frozenset({"--mountpoint"})
# Verbs whose --json output is JSON Lines: their envelope is one compact line, even when
# it reports a usage error found before the verb starts.
_JSON_LINES = frozenset({"agent"})
# Verbs whose plain forms binfmtctl.cli.quick reads from their module's QUICK table.
QUICK_VERBS = frozenset({"status", "install", "uninstall", "enable", "disable"})


def _verbs(argv: Sequence[str] = ()) -> list[ModuleType]:
    """The verb modules to load: only the named verb's (start-up time), else all of them.

    Every verb module imports what it needs; loading one instead of fifteen keeps
    `binfmtctl status --json` and `scan` quick to start. With no verb (or a
    word that is not one, or --help) all are loaded so help and errors list them.
    """
    wanted = _verb_in(argv)
    names = [VERBS[wanted]] if wanted else list(dict.fromkeys(VERBS.values()))
    modules = []
    for name in names:  # __import__, not importlib's: one import fewer at start-up
        __import__(f"binfmtctl.cli.{name}")
        modules.append(sys.modules[f"binfmtctl.cli.{name}"])
    return modules


def _verb_in(argv: Sequence[str]) -> str | None:
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        if word in _OPTIONS_WITH_VALUE:
            skip = True
            continue
        if word == "--":
            return None
        if not word.startswith("-"):
            return word if word in VERBS else None
    return None if {"-h", "--help"} & set(argv) else "status"


def _parser_class() -> type[argparse.ArgumentParser]:
    """The parser class whose errors are UsageErrors (argparse imported only here)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"{message} (see `{self.prog} --help`)")

    return _Parser


def _common() -> argparse.ArgumentParser:
    """Options every verb accepts, before or after the verb."""
    import argparse

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


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the verb it names is set up (see :func:`_verbs`)."""
    import argparse

    parser_class = _parser_class()
    common = _common()
    parser = parser_class(
        prog="binfmtctl",
        description="Run foreign-architecture Linux programs transparently, through "
        "the kernel's binfmt_misc and QEMU user-mode emulation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"binfmtctl {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND", parser_class=parser_class)
    for module in _verbs(argv):
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; SIGINT, SIGTERM and SIGHUP end it cleanly with 128+N.

    Inside :func:`signals.interruptible` those signals raise an exception, so
    every verb's ``finally:`` blocks stop the processes it started and remove
    its temporary files; the result then says "interrupted" (an envelope with
    ``ok: false`` under --json).
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Words after `--` belong to the command `binfmtctl run` starts, not to us.
    ours = args_list[: args_list.index("--")] if "--" in args_list else args_list
    as_json = "--json" in ours
    with signals.interruptible():
        try:
            result = _dispatch(args_list, ours)
        except BinfmtError as err:
            _back_to_the_host()
            from binfmtctl.cli.output import Result

            verb = _verb_of(args_list)
            result = Result(command=verb, compact=verb in _JSON_LINES)
            result.fail(err)
        except KeyboardInterrupt as stop:
            return _interrupted(stop, _verb_of(args_list), as_json)
        from binfmtctl.cli.output import render

        try:
            with signals.deferred():  # one whole envelope, never half of one
                render(result, as_json)
        except signals.Interrupted as stop:
            return stop.exit_code
    return result.exit_code


def _dispatch(args_list: list[str], ours: list[str]) -> Result:
    """Parse and run the verb: `run`, `shell` and the plain forms of `status`,
    `install`, `uninstall`, `enable` and `disable` without argparse.

    `run` is paid per foreign command, `status` is what scripts poll and the
    others are what provisioning runs, so they skip argparse, which is built
    only for the other verbs, for their
    --help (run's from the same table of options,
    :data:`binfmtctl.cli.run_options.OPTIONS`) and for every word the quick
    readers leave to it (so its usage errors stay word for word).
    """
    verb = _verb_in(ours)
    if verb in ("run", "shell"):
        from binfmtctl.cli import rootless

        done = rootless.main(args_list)
        if done is not None:
            return done
    if verb in QUICK_VERBS:  # their plain forms from a table: scripts and prompts run them
        from binfmtctl.cli.quick import read

        module = f"binfmtctl.cli.{VERBS[verb]}"
        __import__(module)  # as in _verbs: one import fewer at start-up
        table = sys.modules[module].QUICK[verb]
        plain = read(table, args_list)
        if plain is not None:
            handled: Result = plain.handler(plain)
            return handled
    parser = build_parser(ours)
    args = parser.parse_args(args_list)
    if getattr(args, "verb", None) is None:
        args = parser.parse_args([*args_list, "status"])
    args.json = getattr(args, "json", False)
    args.mountpoint = getattr(args, "mountpoint", DEFAULT_MOUNTPOINT)
    result: Result = args.handler(args)
    return result


def _back_to_the_host() -> None:
    """After a failed `run --rootfs`/`shell`, leave the root: the renderer loads from the host."""
    chroot = sys.modules.get("binfmtctl.chroot")
    if chroot is not None:
        chroot.leave_rootfs()


def _interrupted(stop: KeyboardInterrupt, verb: str, as_json: bool) -> int:
    """Report an interrupt (best effort: the terminal may be gone after SIGHUP)."""
    _back_to_the_host()
    from binfmtctl.cli.output import Result, render

    signum = stop.signum if isinstance(stop, signals.Interrupted) else signals.SIGINT
    result = Result(command=verb, compact=verb in _JSON_LINES)
    result.fail(InterruptError(signals.signal_name(signum), signum))
    try:
        render(result, as_json)
        sys.stdout.flush()
    except OSError:
        pass
    return result.exit_code


def _verb_of(argv: list[str]) -> str:
    """The envelope's ``command``: the verb, not an option's value (``--mountpoint X``)."""
    known = _verb_in(argv)
    if known:
        return known
    words = [a for a in argv if not a.startswith("-")]
    return words[0] if words else "status"


def run() -> None:
    """Console-script entry point."""
    try:
        code = main()
    except BrokenPipeError:
        code = 0
    sys.exit(code if code is not None else EXIT_USAGE)
