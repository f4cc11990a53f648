"""``binfmtctl run`` and ``binfmtctl shell``: foreign programs, no root, no change to the host.

Both enter a private user + mount namespace with its own binfmt_misc
(Linux 6.7+), register F handlers there and then *exec* the command in this
very process (:func:`binfmtctl.rootless.exec_command`): its stdin, stdout,
stderr, signals and exit status are its own, and nothing is left behind.

Their options are one table (:data:`binfmtctl.cli.run_options.OPTIONS`),
read by a small parser of their own (``run`` is paid per foreign command, and
argparse costs more to import than the rest of the run takes) and turned into
the argparse parsers that print ``--help`` (:func:`register`), so the two
never disagree.
"""

from __future__ import annotations

import os

from binfmtctl import rootless, rootpath, signals
from binfmtctl.chroot import Bind
from binfmtctl.cli.run_options import _COMMON, OPTIONS, Args, parse
from binfmtctl.errors import UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from binfmtctl.cli.output import Result

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

ids: by default uids and gids 0..65535 are mapped when you have a subordinate
range (65536 ids in /etc/subuid and /etc/subgid) and newuidmap/newgidmap
(package uidmap), so package managers in a root can change file owners; root
gets the same ids as outside. Where that cannot be, only uid 0 (you) is mapped,
and binfmtctl says so once per boot on stderr, with the fix (not inside a user
namespace that lacks the ids, as in a container: nothing to fix there). --uid-map auto
insists on the full range (an error if it cannot be had); --uid-map none maps
uid 0 alone, silently.

With --rootfs the root gets the host's /proc, /dev and /sys (recursive binds),
a fresh /tmp and the host's /etc/resolv.conf (bound read-only); empty
mountpoints it lacks are created in it, and one that is a symlink is refused
(it could lead out of the root). --bind SRC[:DST][:ro] brings a host directory
or file in at DST (default: the same path), found inside the root (symlinks
followed there, never out of it; a DST that is itself a symlink is refused;
a missing one is created); :ro makes it read-only; `:` separates the parts, so
a path with `:` in it cannot be bound (bind a symlink to it instead); /proc,
/dev, /sys and /tmp are binfmtctl's own. The command starts in --workdir
(default /) with root's environment: HOME=/root, USER=LOGNAME=root, PWD, SHELL
(root's login shell in the root's /etc/passwd, else /bin/sh), the standard
PATH, and of yours only TERM, LANG, LANGUAGE, LC_* and the proxy variables
(http_proxy, https_proxy, ftp_proxy, no_proxy, all_proxy, lower or upper
case). Without --rootfs the command keeps your environment and directory
(--workdir changes it). --env K=V sets a variable (repeatable); --env K passes
your own K (nothing if you have none). As in the shell, a PATH directory you
may not search is skipped.

examples:
  binfmtctl run -- ./hello-arm64                  every foreign arch with an emulator
  binfmtctl run --arch arm64 -- arm64/busybox uname -m
  binfmtctl run --rootfs ./arm64-rootfs -- /bin/sh -c 'uname -m'
  binfmtctl run --rootfs ./debian-armhf -- apt-get install -y hello
  binfmtctl run --rootfs ./arm64-rootfs --bind .:/src:ro --workdir /src -- /bin/sh -c pwd
"""

SHELL_EPILOG = """\
The shell is root's login shell in the root's /etc/passwd if the root has it,
else /bin/sh. With CMD (after --) it runs CMD instead, in the same root and
environment; words after ROOTFS that start with - (and are not binfmtctl's own
options) go to the shell: `binfmtctl shell DIR -c 'apt-get update'`. With no CMD
and stdin a terminal the shell is interactive; with stdin not a terminal (a
pipe, a here-doc) it reads its commands from stdin as a script. The prompt (PS1,
and debian_chroot for Debian's bash.bashrc) names the root's architecture and
directory: `(aarch64) arm64-rootfs:/# ` where the shell expands \\w (bash,
busybox), `(aarch64) arm64-rootfs# ` where it does not (dash). Environment, ids,
--bind and --workdir: as `binfmtctl run --rootfs` (see `binfmtctl run --help`).

examples:
  binfmtctl shell ./arm64-rootfs
  binfmtctl shell ./debian-riscv64 -- apt-get install -y hello
  binfmtctl shell ./arm64-rootfs -c 'uname -m'
"""


def main(argv: list[str]) -> Result | None:
    """Run ``run``/``shell`` from the command line; None: let argparse answer (--help)."""
    args = parse(argv)
    if args is None:
        return None
    if args.verb == "run":
        return handle_run(args)
    return handle_shell(args)


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """The argparse parsers of ``run`` and ``shell``, made from :data:`OPTIONS` (for --help)."""
    import argparse

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
        "[--interpreter-dir DIR ...] [--uid-map {auto,none}] [--bind SRC[:DST][:ro] ...] "
        "[--workdir DIR] [--env K=V ...] [--json] [--mountpoint PATH] -- CMD [ARG ...]",
    )
    _add_options(p, "run")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command")
    p.set_defaults(handler=handle_run)

    s = sub.add_parser(
        "shell",
        parents=[common],
        help="a shell (or CMD) in a foreign root file system (no root needed)",
        description="Open a shell in ROOTFS, chrooted, with QEMU handlers registered in a "
        "private binfmt_misc (the same machinery as `binfmtctl run --rootfs`), or run "
        "CMD there.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=SHELL_EPILOG,
        usage="%(prog)s [--arch ARCH ...] [--flags FLAGS] [--interpreter-dir DIR ...] "
        "[--uid-map {auto,none}] [--bind SRC[:DST][:ro] ...] [--workdir DIR] "
        "[--env K=V ...] ROOTFS [-- CMD [ARG ...]]",
    )
    _add_options(s, "shell")
    s.add_argument("rootfs_arg", metavar="ROOTFS")
    s.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD", help="the command")
    s.set_defaults(handler=handle_shell)


def _add_options(parser: argparse.ArgumentParser, verb: str) -> None:
    from binfmtctl import interpreters  # start-up speed: only --help shows defaults

    defaults = {
        "default_dirs": " ".join(interpreters.DEFAULT_DIRS),
    }
    for option in OPTIONS:
        if verb not in option.verbs or option.flag in _COMMON:
            continue  # the common ones come from the parent parser
        parser.add_argument(
            option.flag,
            dest=option.dest,
            metavar=option.metavar,
            action="append" if option.repeat else "store",
            choices=option.choices or None,
            default=option.default,
            help=option.help.format(**defaults),
        )


def _env_pairs(specs: list[str] | None) -> list[tuple[str, str]]:
    """``--env K=V`` and ``--env K`` (the caller's own K, if set) as pairs; names checked."""
    pairs = []
    for spec in specs or ():
        name, eq, value = spec.partition("=")
        if not name:
            raise UsageError(f"--env {spec}: the variable name before `=` is empty")
        if not (name[0].isascii() and (name[0].isalpha() or name[0] == "_")) or not all(
            c.isascii() and (c.isalnum() or c == "_") for c in name
        ):
            raise UsageError(
                f"--env {spec}: {name!r} is not a variable name (ASCII letters, digits "
                "and _, not starting with a digit)"
            )
        if eq:
            pairs.append((name, value))
        elif name in os.environ:
            pairs.append((name, os.environ[name]))
    return pairs


def parse_bind(spec: str) -> Bind:
    """``SRC[:DST][:ro]`` (also ``:rw``); a path with ``:`` in it is refused, not guessed at."""
    parts = spec.split(":")
    read_only = False
    if len(parts) >= 2 and parts[-1] in ("ro", "rw"):
        read_only = parts.pop() == "ro"
    if len(parts) > 2:
        raise UsageError(
            f"--bind {spec}: too many `:`; `:` separates SRC, DST and ro, so a path with "
            "`:` in it cannot be bound: bind a symlink to it whose name has none"
        )
    source = parts[0]
    if not source:
        raise UsageError(f"--bind {spec}: SRC is empty")
    target = parts[1] if len(parts) == 2 else None
    if target == "":
        raise UsageError(f"--bind {spec}: DST is empty")
    return Bind(source, target, read_only)


def _options(args: Args, rootfs: str | None) -> rootless.RunOptions:
    uid_map = args.uid_map or "default"
    binds = [parse_bind(spec) for spec in args.binds or ()]
    if binds and rootfs is None:
        raise UsageError("--bind needs --rootfs: outside a root every host path is there already")
    return rootless.RunOptions(
        arches=args.arches or None,
        flags=args.flags,
        rootfs=rootfs,
        uid_map=uid_map,
        mountpoint=args.mountpoint,
        interpreter_dirs=args.interpreter_dir or None,
        binds=binds,
        workdir=args.workdir,
        env=_env_pairs(args.env),
    )


def handle_run(args: Args) -> Result:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("no command given: `binfmtctl run [OPTIONS] -- CMD [ARG ...]`")
    if args.rootfs is not None and not os.path.isdir(args.rootfs):
        raise UsageError(f"--rootfs {args.rootfs}: not a directory")
    options = _options(args, args.rootfs)
    if args.json:
        return run_captured(command, args.rootfs, options)
    rootless.exec_command(command, options)


def run_captured(
    command: list[str],
    rootfs: str | None,
    options: rootless.RunOptions,
    env: dict[str, str] | None = None,
    verb: str = "run",
) -> Result:
    """``run --json``: the command in a child with its stdout and stderr captured.

    An exec'd command would leave nothing to print the envelope, so with --json
    it runs through ``rootless.call_captured`` instead. stdin stays the command's
    own. SIGINT, SIGTERM and SIGHUP are passed on to the command, as a shell
    would; its status is the answer.
    """
    from binfmtctl.cli.output import Result  # start-up speed: only --json renders here

    status, out, err = rootless.call_captured(command, options, env=env, forward_signals=True)
    data: dict[str, Any] = {
        "argv": command,
        "rootfs": rootfs,
        "exit_status": status if status >= 0 else None,
        "signal": signals.signal_name(-status) if status < 0 else None,
        "stdout": out,
        "stderr": err,
    }
    return Result(verb, data, exit_code=status if status >= 0 else 128 - status)


def shell_for(rootfs: str, user_shell: str | None = None) -> str:
    """The shell ``binfmtctl shell`` starts: root's login shell in the root, else /bin/sh.

    ``user_shell`` is no longer consulted (root's own login shell is what a
    root login gets); it is kept so older callers still work.
    """
    shell = rootless.login_shell(rootfs)
    found = rootpath.resolve_in(rootfs, shell)
    if found and os.path.isfile(found) and os.access(found, os.X_OK):
        return shell
    raise UsageError(
        f"{rootfs} has no shell: neither root's login shell in its /etc/passwd nor "
        "/bin/sh is an executable file in it"
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


def _program_in(rootfs: str, name: str) -> str:
    """The path inside ``rootfs`` a command name runs (PATH searched there), for the prompt."""
    if "/" in name:
        return name
    for directory in rootless.ROOTFS_PATH.split(":"):
        if rootpath.resolve_in(rootfs, f"{directory}/{name}"):
            return f"{directory}/{name}"
    return name


def handle_shell(args: Args) -> Result:
    rootfs = str(args.rootfs_arg)
    if not os.path.isdir(rootfs):
        raise UsageError(f"ROOTFS {rootfs}: not a directory")
    shell = shell_for(rootfs)
    command = list(args.command or ())
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        # A terminal gets an interactive shell; a pipe or a here-doc is a script.
        argv = [shell, "-i"] if os.isatty(0) else [shell]
    elif command[0].startswith("-"):
        argv = [shell, *command]  # the shell's own options: `shell DIR -c 'CMD'`
    else:
        argv = command
    program = _program_in(rootfs, argv[0])
    label = arch_label(rootfs, program)
    name = prompt_safe(os.path.basename(os.path.realpath(rootfs)))
    options = _options(args, rootfs)
    env = rootless.environment(options, shell)
    env["PS1"] = shell_prompt(rootfs, program, f"({label}) {name}")
    env["debian_chroot"] = f"{label} {name}"
    if args.json:
        return run_captured(argv, rootfs, options, env, verb="shell")
    rootless.exec_command(argv, options, env=env)
