"""``binfmtctl why CMD [ARGS]``: why a program will not run, and the command that fixes it."""

from __future__ import annotations

import argparse
import os
from typing import Any

from binfmtctl import diagnose
from binfmtctl.cli.advising import fix_lines
from binfmtctl.cli.output import Result
from binfmtctl.errors import EXIT_FAILED, EXIT_OK
from binfmtctl.instance import Instance

CAUSES = """\
causes, checked in this order (the first that applies is reported):
  not_found, not_executable     CMD is not there (PATH searched inside --rootfs)
                                or not a regular executable file (a FIFO, a device)
  not_readable                  CMD cannot be read, so its format cannot be told
  not_mounted                   binfmt_misc is not mounted
  instance_disabled             the whole instance is switched off (status 0)
  private_instance              a handler exists only in another user namespace's instance
  handler_disabled              the matching entry is disabled
  wrong_abi                     right CPU, other ABI/endianness (armel/armhf, o32/n32, BE/LE)
  no_handler, unknown_format    no entry matches
  shadowed                      a newer entry matches first and is not this arch's emulator
  interpreter_missing           no F flag: the emulator is looked up inside the root
  interpreter_unusable          the emulator is not an ELF executable for this machine
  wrong_emulator                the emulator's name says another arch (qemu-arm for aarch64)
  interpreter_dynamic           the emulator is dynamically linked; its libs are not in the root
  loader_missing                the program's PT_INTERP (e.g. /lib/ld-linux-aarch64.so.1) is absent
  script_interpreter_missing    the #! interpreter does not exist in the root
exit status: 0 it will run, 1 it will not.

examples:
  binfmtctl why ./hello-arm64
  binfmtctl why --rootfs ./arm64-rootfs ls -l      (as `chroot ./arm64-rootfs ls -l`)
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "why",
        parents=[common],
        help="explain 'exec format error' / 'no such file or directory' for a command",
        description="Resolve CMD like execvp (along PATH, inside --rootfs when given), "
        "follow #! chains, and report the first reason it will not run, with the command "
        "that fixes it; or, when nothing is wrong, what will run it.",
        epilog=CAUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--rootfs",
        metavar="DIR",
        help="the root CMD runs in (a chroot or container filesystem); paths, PATH, "
        "#! interpreters and loaders are looked up inside it",
    )
    p.add_argument("cmd", metavar="CMD", help="a command name or a path")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="its arguments")
    p.set_defaults(handler=handle)


def human(data: dict[str, Any]) -> str:
    lines = [f"{link['path']}: {link['what']}\n  run by {link['runner']}" for link in data["chain"]]
    cause = data["cause"]
    if cause is None:
        lines.append(f"{data['command']} will run.")
    else:
        lines.append(f"{data['command']} will not run [{cause['code']}]: {cause['message']}")
        lines.extend(fix_lines(data.get("advice", []), cause["fix"]))
    lines.extend(f"note: {n}" for n in data["notes"])
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> Result:
    root = os.path.abspath(args.rootfs) if args.rootfs else "/"
    ctx = diagnose.default_context(Instance(args.mountpoint), root)
    path_env = None if root != "/" else os.environ.get("PATH", diagnose.DEFAULT_PATH)
    found = diagnose.diagnose(ctx, args.cmd, path_env, args.args, args.rootfs)
    data = found.to_dict()
    data["args"] = list(args.args)
    data["instance"] = ctx.snapshot.to_dict()
    # The cause is the answer, not an error of binfmtctl: it is in data.cause and on stdout.
    return Result("why", data, human=human, exit_code=EXIT_OK if found.ok else EXIT_FAILED)
