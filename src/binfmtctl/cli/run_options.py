"""The options of ``binfmtctl run`` and ``shell``: one table, and the parser that reads it.

``run`` wraps every foreign command in scripts and CI loops, so its start-up
is paid per command; importing argparse alone costs more than the rest of the
run. :func:`parse` reads :data:`OPTIONS` the way argparse would (unique
prefixes, ``--opt=value``, the command starting at the first word that is not
an option, the same usage errors word for word), and
:func:`binfmtctl.cli.rootless.register` turns the same table into the argparse
parsers that print ``--help``: one definition, so they cannot drift.
"""

from __future__ import annotations

from binfmtctl.errors import UsageError


class Option:
    """One option of ``run``/``shell``: how it is written, where it goes, what it takes."""

    __slots__ = ("choices", "default", "dest", "flag", "help", "metavar", "repeat", "verbs")

    def __init__(
        self,
        flag: str,
        dest: str,
        metavar: str | None,
        help: str,
        *,
        repeat: bool = False,
        choices: tuple[str, ...] = (),
        default: object = None,
        verbs: tuple[str, ...] = ("run", "shell"),
    ) -> None:
        self.flag, self.dest, self.metavar, self.help = flag, dest, metavar, help
        self.repeat, self.choices, self.default, self.verbs = repeat, choices, default, verbs


#: The one definition of run's and shell's options (metavar None: a switch).
OPTIONS = (
    Option(
        "--arch", "arches", "ARCH",
        "register a handler for ARCH (repeatable; QEMU, Debian, OCI or uname -m name; "
        "default: every foreign arch whose emulator is found)",
        repeat=True,
    ),
    Option(
        "--flags", "flags", "FLAGS",
        "entry flags (default auto: FP where the emulator keeps argv[0] behind P, else "
        "F; F opens the emulator now, so it works in the root)",
        default="auto",  # plan.AUTO_FLAGS; plan is not imported here (start-up speed)
    ),
    Option(
        "--interpreter-dir", "interpreter_dir", "DIR",
        "where to look for qemu-ARCH[-static] (repeatable; default {default_dirs})",
        repeat=True,
    ),
    Option(
        "--uid-map", "uid_map", "{auto,none}",
        "ids 0..65535 from your /etc/subuid and /etc/subgid range (newuidmap, package "
        "uidmap), so package managers in the root can chown: by default when that can "
        "work here; auto: always (an error if it cannot); none: uid 0 (you) alone",
        choices=("auto", "none"),
    ),
    Option("--rootfs", "rootfs", "DIR", "chroot into DIR", verbs=("run",)),
    Option(
        "--bind", "binds", "SRC[:DST][:ro]",
        "bind the host's SRC at DST in the root (default: the same path; repeatable; "
        ":ro read-only; needs a root)",
        repeat=True,
    ),
    Option(
        "--workdir", "workdir", "DIR",
        "start the command in DIR (inside the root; default / there, else the current "
        "directory)",
    ),
    Option(
        "--env", "env", "K=V",
        "set variable K to V for the command (repeatable); K alone passes your own K",
        repeat=True,
    ),
    Option(
        "--json", "json", None,
        "print a versioned JSON envelope on stdout instead of text",
        default=False,
    ),
    Option(
        "--mountpoint", "mountpoint", "PATH",
        "the binfmt_misc instance to use (default /proc/sys/fs/binfmt_misc)",
        default="/proc/sys/fs/binfmt_misc",
    ),
)  # fmt: skip
_COMMON = frozenset({"--json", "--mountpoint"})  # also taken before the verb
_HELP = ("-h", "--help")


class Args:
    """Parsed ``run``/``shell`` words: one attribute per option's dest, the verb and command."""

    __slots__ = ("command", "rootfs_arg", "verb", *(o.dest for o in OPTIONS))

    arches: list[str] | None
    flags: str
    interpreter_dir: list[str] | None
    uid_map: str | None
    rootfs: str | None
    binds: list[str] | None
    workdir: str | None
    env: list[str] | None
    json: bool
    mountpoint: str

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.command: list[str] = []
        self.rootfs_arg: str | None = None  # shell's ROOTFS
        for option in OPTIONS:
            setattr(self, option.dest, [] if option.repeat else option.default)


def _usage(verb: str, message: str) -> UsageError:
    return UsageError(f"{message} (see `binfmtctl {verb} --help`)")


def _looks_like_option(word: str) -> bool:
    """As argparse sees it: starts with - and is not - alone or a negative number."""
    if not word.startswith("-") or word == "-":
        return False
    return not word[1:].replace(".", "", 1).isdigit()


def _match(word: str, verb: str, before_verb: bool) -> Option | str | None:
    """The option ``word`` (a --long name, exact or a unique prefix) names; "help"; or None."""
    if word in _HELP:
        return "help"
    known = [o for o in OPTIONS if verb in o.verbs and (not before_verb or o.flag in _COMMON)]
    for option in known:
        if option.flag == word:
            return option
    if not word.startswith("--") or len(word) < 3:
        return None
    found = [o for o in known if o.flag.startswith(word)]
    if "--help".startswith(word):
        return "help" if not found else "ambiguous"
    if len(found) > 1:
        raise _usage(
            verb,
            f"ambiguous option: {word} could match {', '.join(o.flag for o in found)}",
        )
    return found[0] if found else None


def parse(argv: list[str]) -> Args | None:
    """``binfmtctl [--json] [--mountpoint P] run|shell ...`` as argparse would read it.

    None when argparse must answer instead: --help, --version, or anything
    before the verb but the common options.
    """
    i, verb = 0, ""
    before: list[tuple[Option, object]] = []
    while i < len(argv) and not verb:
        word = argv[i]
        if word in ("run", "shell"):
            verb = word
            break
        name, eq, value = word.partition("=")
        found = _match(name, "run", before_verb=True)
        if not isinstance(found, Option):
            return None
        if found.metavar is None:
            if eq:
                return None
            before.append((found, True))
        else:
            if not eq:
                if i + 1 >= len(argv) or _looks_like_option(argv[i + 1]):
                    return None
                i += 1
                value = argv[i]
            before.append((found, value))
        i += 1
    if not verb:
        return None
    args = Args(verb)
    for option, given in before:
        setattr(args, option.dest, given)
    extras: list[str] = []
    i += 1
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest = argv[i + 1 :]
            if verb == "shell" and args.rootfs_arg is None and rest:
                args.rootfs_arg, rest = rest[0], rest[1:]
                rest = rest[1:] if rest[:1] == ["--"] else rest
            args.command = rest
            break
        if not _looks_like_option(word):
            if verb == "shell" and args.rootfs_arg is None:
                args.rootfs_arg = word
                i += 1
                continue
            args.command = argv[i:]
            break
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        found = _match(name, verb, before_verb=False)
        if found == "help":
            return None
        if not isinstance(found, Option):
            if verb == "shell" and args.rootfs_arg is not None:
                args.command = argv[i:]  # the shell's own options: `shell DIR -c CMD`
                break
            extras.append(word)
            i += 1
            continue
        if found.metavar is None:
            if eq:
                raise _usage(verb, f"argument {found.flag}: ignored explicit argument {value!r}")
            setattr(args, found.dest, True)
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv) or _looks_like_option(argv[i + 1]):
                raise _usage(verb, f"argument {found.flag}: expected one argument")
            i += 1
            value = argv[i]
        if found.choices and value not in found.choices:
            choices = ", ".join(repr(c) for c in found.choices)
            raise _usage(
                verb, f"argument {found.flag}: invalid choice: {value!r} (choose from {choices})"
            )
        if found.repeat:
            getattr(args, found.dest).append(value)
        else:
            setattr(args, found.dest, value)
        i += 1
    if verb == "shell" and args.rootfs_arg is None:
        raise _usage(verb, "the following arguments are required: ROOTFS")
    if extras:
        raise UsageError(f"unrecognized arguments: {' '.join(extras)} (see `binfmtctl --help`)")
    return args
