"""``binfmtctl agent``: parse options, print one event per line, exit 0 on SIGTERM."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from binfmtctl import agent, plan, proving, signals
from binfmtctl import arch as _arch
from binfmtctl.cli import install as install_cli
from binfmtctl.cli.output import Result, escape_lines
from binfmtctl.cli.seconds import seconds
from binfmtctl.errors import BinfmtError, InterruptError
from binfmtctl.instance import Instance

#: --interval: a finite number of seconds within MIN_INTERVAL..MAX_INTERVAL.
_interval = seconds(agent.MIN_INTERVAL, agent.MAX_INTERVAL, "one day")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "agent",
        parents=[common],
        help="keep this node's handlers registered and proven (a long-running reconciler)",
        description="Register the handlers for each ARCH (with no ARCH: every foreign arch "
        "whose emulator is found, as install does), then every --interval seconds and on "
        "SIGHUP re-register what someone removed or flushed and prove every arch with its "
        "probe. One JSON object per event on stdout (human lines on a terminal). SIGTERM "
        "and SIGINT end it with exit 0, leaving the handlers in place.",
    )
    p.add_argument("arches", nargs="*", metavar="ARCH")
    p.add_argument(
        "--interval",
        type=_interval,
        default=agent.DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"seconds between checks (default {agent.DEFAULT_INTERVAL:g})",
    )
    p.add_argument("--ready-file", metavar="PATH", help="exists exactly while every arch is proven")
    p.add_argument(
        "--feature-file",
        metavar="PATH",
        help="Node Feature Discovery feature file (features.d) of the proven arches: "
        f"{agent.LABEL_PREFIX}ARCH=true",
    )
    p.add_argument(
        "--enforce",
        action="store_true",
        help="re-enable entries, and the instance, that someone disabled (default: report)",
    )
    p.add_argument(
        "--remove-on-exit",
        action="store_true",
        help="on SIGTERM/SIGINT remove the entries this agent registered (never others)",
    )
    p.add_argument(
        "--allow-private-instance",
        action="store_true",
        help="run in a user namespace other than the host's (keeps a private instance); "
        "without it that is refused with exit 4",
    )
    p.add_argument("--flags", default=plan.AUTO_FLAGS, help=install_cli.FLAGS_HELP)
    p.add_argument("--interpreter-dir", action="append", metavar="DIR")
    p.add_argument("--interpreter", metavar="PATH", help="use this emulator (one ARCH only)")
    install_cli.add_force_interpreter(p)
    p.add_argument(
        "--profile", choices=[x.value for x in _arch.Profile], default=_arch.Profile.QEMU.value
    )
    p.add_argument("--replace", action="store_true", help="replace a same-named entry that differs")
    p.add_argument("--force", action="store_true", help="allow arches this host runs natively")
    install_cli._persist_options(p, "also write the configuration that registers them at boot")
    p.set_defaults(handler=handle_agent)


def _printer(as_json: bool) -> Callable[[agent.Event], None]:
    human = not as_json and sys.stdout.isatty()

    def emit(event: agent.Event) -> None:
        if human:
            sys.stdout.write(escape_lines(event.human()) + "\n")
        else:
            sys.stdout.write(json.dumps(event.to_dict()) + "\n")
        sys.stdout.flush()

    return emit


def handle_agent(args: argparse.Namespace) -> Result:
    """Run the agent; its result (an error too) is one compact line after the events.

    Errors are caught here rather than in the generic handler, so that under
    --json stdout stays JSON Lines: every line one object, the envelope last.
    """
    result = Result("agent", compact=True)
    try:
        settings = agent.Settings(
            words=tuple(args.arches),
            options=install_cli.options_from(args),
            store=install_cli.persist_from(args),
            interval=args.interval,
            enforce=args.enforce,
            allow_private=args.allow_private_instance,
            remove_on_exit=args.remove_on_exit,
            ready_file=args.ready_file,
            feature_file=args.feature_file,
            timeout=proving.DEFAULT_TIMEOUT,
        )
        agent.Agent(Instance(args.mountpoint), settings, _printer(args.json)).run()
    except BinfmtError as err:
        result.fail(err)
    except signals.Interrupted as stop:  # one the loop does not end on (SIGHUP at start)
        result.fail(InterruptError(stop.name, stop.signum))
    return result
