"""``binfmtctl run`` and ``binfmtctl shell``: foreign programs, no root, no change to the host.

Both enter a private user + mount namespace with its own binfmt_misc
(Linux 6.7+), register F handlers there and then *exec* the command in this
very process (:func:`binfmtctl.rootless.exec_command`): its stdin, stdout,
stderr, signals and exit status are its own, and nothing is left behind.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from binfmtctl import interpreters, plan, rootless, rootpath
from binfmtctl.cli.output import Result
from binfmtctl.errors import UsageError

RUN_EPILOG = """\
The command replaces binfmtctl (no fork): its exit status is binfmtctl's, and a
command killed by signal N looks to your shell exactly like it (128+N); binfmtctl
itself prints nothing. With --json (before --) the command runs as a child
instead, its stdout and stderr are captured (as UTF-8, undecodable bytes
replaced) and one envelope is printed: data.argv, data.exit_status (or
data.signal), data.stdout, data.stderr; the exit status is still the command's.
binfmtctl's own failures: 1 failed (no emulator for an arch: the message names
the package), 2 usage (also a --rootfs that is not a directory), 4 no rootless
mode here (kernel older than 6.7, user namespaces disabled or their limit
reached: the message names the setting), 126 cannot execute, 127 command not
found; binfmtctl itself stopped by signal N before the command started: 128+N.

With --rootfs the root gets the host's /proc, /dev and /sys (recursive binds),
a fresh /tmp and the host's /etc/resolv.conf (bound read-only); empty
mountpoints it lacks are created in it, and one that is a symlink is refused
(it could lead out of the root). PATH is the standard one of a Linux root;
as in the shell, a PATH directory you may not search is skipped.

examples:
  binfmtctl run -- ./hello-arm64                  every foreign arch with an emulator
  binfmtctl run --arch arm64 -- arm64/busybox uname -m
  binfmtctl run --rootfs ./arm64-rootfs -- /bin/sh -c 'uname -m'
  binfmtctl run --rootfs ./debian-armhf --uid-map auto -- apt-get install -y hello
"""

SHELL_EPILOG = """\
The shell is $SHELL if the root has it, else /bin/sh; the prompt (PS1, and
debian_chroot for Debian's bash.bashrc) names the root's architecture and
directory: `(aarch64) arm64-rootfs:/# ` where the shell expands \\w (bash, busybox),
`(aarch64) arm64-rootfs# ` where it does not (dash).

examples:
  binfmtctl shell ./arm64-rootfs
  binfmtctl shell --uid-map auto ./debian-riscv64
"""


def _namespace_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--arch",
        action="append",
        metavar="ARCH",
        dest="arches",
        help="register a handler for ARCH (repeatable; QEMU, Debian, OCI or uname -m "
        "name; default: every foreign arch whose emulator is found)",
    )
    p.add_argument(
        "--flags",
        default=plan.AUTO_FLAGS,
        help="entry flags (default auto: FP where the emulator keeps argv[0] behind P, else "
        "F; F opens the emulator now, so it works in the root)",
    )
    p.add_argument(
        "--interpreter-dir",
        action="append",
        metavar="DIR",
        help=f"where to look for qemu-ARCH[-static] (repeatable; default "
        f"{' '.join(interpreters.DEFAULT_DIRS)})",
    )
    p.add_argument(
        "--uid-map",
        choices=["auto"],
        help="auto: also map ids 1..65535 from your /etc/subuid and /etc/subgid range "
        "(newuidmap, package uidmap), so package managers in the root can chown",
    )


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run",
        parents=[common],
        help="run a command with handlers in a private instance (no root needed)",
        description="Run CMD as any user in a private user + mount namespace with its "
        "own binfmt_misc (Linux 6.7+), where QEMU handlers are registered first. The "
        "host's handlers are never touched; everything goes away when CMD exits.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=RUN_EPILOG,
        usage="%(prog)s [--arch ARCH ...] [--rootfs DIR] [--flags FLAGS] "
        "[--interpreter-dir DIR ...] [--uid-map auto] [--json] [--mountpoint PATH] "
        "-- CMD [ARG ...]",
    )
    _namespace_options(p)
    p.add_argument("--rootfs", metavar="DIR", help="chroot into DIR (working directory /)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command")
    p.set_defaults(handler=handle_run)

    s = sub.add_parser(
        "shell",
        parents=[common],
        help="an interactive shell in a foreign root file system (no root needed)",
        description="Open a shell in ROOTFS, chrooted, with QEMU handlers registered in a "
        "private binfmt_misc (the same machinery as `binfmtctl run --rootfs`).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=SHELL_EPILOG,
    )
    _namespace_options(s)
    s.add_argument("rootfs", metavar="ROOTFS")
    s.set_defaults(handler=handle_shell)


def _options(args: argparse.Namespace, rootfs: str | None) -> rootless.RunOptions:
    return rootless.RunOptions(
        arches=args.arches,
        flags=args.flags,
        rootfs=rootfs,
        uid_map=args.uid_map,
        mountpoint=args.mountpoint,
        interpreter_dirs=args.interpreter_dir,
    )


def handle_run(args: argparse.Namespace) -> Result:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("no command given: `binfmtctl run [OPTIONS] -- CMD [ARG ...]`")
    if args.rootfs is not None and not os.path.isdir(args.rootfs):
        raise UsageError(f"--rootfs {args.rootfs}: not a directory")
    if args.json:
        return run_captured(command, args)
    rootless.exec_command(command, _options(args, args.rootfs))


def run_captured(command: list[str], args: argparse.Namespace) -> Result:
    """``run --json``: the command in a child with its stdout and stderr captured.

    An exec'd command would leave nothing to print the envelope, so with --json
    it runs through ``rootless.call_captured`` instead. stdin stays the command's
    own. SIGINT, SIGTERM and SIGHUP are passed on to the command, as a shell
    would; its status is the answer.
    """
    status, out, err = rootless.call_captured(
        command, _options(args, args.rootfs), forward_signals=True
    )
    data: dict[str, Any] = {
        "argv": command,
        "rootfs": args.rootfs,
        "exit_status": status if status >= 0 else None,
        "signal": _signal_name(-status) if status < 0 else None,
        "stdout": out,
        "stderr": err,
    }
    return Result("run", data, exit_code=status if status >= 0 else 128 - status)


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def shell_for(rootfs: str, user_shell: str | None) -> str:
    """$SHELL if the root has it (an executable file), else /bin/sh."""
    for path in (user_shell, "/bin/sh"):
        if path and path.startswith("/"):
            found = rootpath.resolve_in(rootfs, path)
            if found and os.path.isfile(found) and os.access(found, os.X_OK):
                return path
    raise UsageError(
        f"{rootfs} has no shell: neither $SHELL ({user_shell or 'unset'}) nor /bin/sh "
        "is an executable file in it"
    )


def prompt_safe(text: str) -> str:
    """``text`` with every character a shell could expand in PS1 replaced by ``_``.

    bash expands ``$(...)``, backquotes and backslash escapes in PS1: a root
    directory named ``$(reboot)`` must not run anything.
    """
    return "".join(c if c.isascii() and (c.isalnum() or c in "._+-@") else "_" for c in text)


# Shells whose PS1 understands \w (the working directory); dash and others print it as is.
_PROMPT_ESCAPES = frozenset({"bash", "busybox", "ash"})


def shell_prompt(rootfs: str, shell: str, label: str) -> str:
    """PS1 for the root's ``shell``, judged by the program it really is (sh -> dash?)."""
    program = rootpath.resolve_in(rootfs, shell) or shell
    if os.path.basename(program) in _PROMPT_ESCAPES:
        return f"{label}:\\w# "
    return f"{label}# "


def arch_label(rootfs: str, path: str) -> str:
    """The architecture of the root's program at ``path`` (its uname -m), for the prompt."""
    from binfmtctl import elf  # start-up speed: only `shell` reads an ELF header

    found_path = rootpath.resolve_in(rootfs, path)
    try:
        ident = elf.identity(elf.read_header(found_path)) if found_path else None
    except OSError:
        ident = None
    found = ident.arch if ident else None
    if found is None:
        return "unknown-arch"
    return found.uname[0] if found.uname else found.name


def handle_shell(args: argparse.Namespace) -> Result:
    rootfs = args.rootfs
    if not os.path.isdir(rootfs):
        raise UsageError(f"ROOTFS {rootfs}: not a directory")
    shell = shell_for(rootfs, os.environ.get("SHELL"))
    label = arch_label(rootfs, shell)
    name = prompt_safe(os.path.basename(os.path.realpath(rootfs)))
    env = {
        **os.environ,
        "SHELL": shell,
        "PATH": rootless.ROOTFS_PATH,
        "HOME": "/root",
        "PS1": shell_prompt(rootfs, shell, f"({label}) {name}"),
        "debian_chroot": f"{label} {name}",
    }
    rootless.exec_command([shell, "-i"], _options(args, rootfs), env=env)
