"""systemd's binfmt.d: its files, their precedence, and what boot would register.

binfmt.d, as systemd-binfmt (systemd 252) reads it:

- files named ``*.conf`` (not starting with ``.``) in /etc/binfmt.d,
  /run/binfmt.d, /usr/local/lib/binfmt.d and /usr/lib/binfmt.d; a file in an
  earlier directory replaces every same-named file in the later ones (an empty
  file or a symlink to /dev/null thereby masks a packaged one);
- the surviving files are applied in order of their *file name* alone,
  whatever directory they sit in;
- each line is stripped of whitespace; empty lines and lines starting with
  ``#`` or ``;`` are skipped; every other line is written, with a newline, to
  ``register`` after removing any entry of the same name (the text between the
  first two delimiters). So a later line for a name replaces an earlier one,
  and a later line that the kernel rejects leaves the name unregistered;
- at boot every entry is flushed first (``status`` gets ``-1``); with file
  arguments nothing is flushed.

Every directory is a parameter; with a root (``--root``) every path is
resolved inside it (:mod:`binfmtctl.files`). One file that cannot be read is a
problem reported with its name, not the end of a listing.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping, Sequence

from binfmtctl import files, rootpath
from binfmtctl.entry import Entry
from binfmtctl.errors import BinfmtError, ConfigError, EntryParseError, config_error
from binfmtctl.records import NamedTuple

BINFMT_D_DIRS = ("/etc/binfmt.d", "/run/binfmt.d", "/usr/local/lib/binfmt.d", "/usr/lib/binfmt.d")
ADMIN_BINFMT_D = BINFMT_D_DIRS[0]
SUFFIX = ".conf"
COMMENTS = b"#;"
WHITESPACE = b" \t\r\n"
OWNER_MARK = b"# Written by binfmtctl"
HEADER = (
    OWNER_MARK + b"; `binfmtctl uninstall --persist` removes it.\n"
    b"# systemd-binfmt registers it at boot; see binfmt.d(5).\n"
)
MARKER_LINE = HEADER.split(b"\n", 1)[0]  # the exact first line of every binfmt.d file we write


def marked_binfmt_d(data: bytes) -> bool:
    """Whether a binfmt.d file is binfmtctl's: its first line is our marker."""
    return data.split(b"\n", 1)[0] == MARKER_LINE


class Rule(NamedTuple):
    """One register line of a binfmt.d file (or why it cannot be registered)."""

    path: str
    line: int  # 1-based
    text: bytes  # the stripped line, as systemd-binfmt writes it (without newline)
    name: str | None  # what systemd-binfmt removes before registering (None: no name)
    entry: Entry | None
    error: EntryParseError | None = None

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "line": self.line,
            "name": self.name,
            "register": os.fsdecode(self.text),
            "entry": self.entry.to_dict() if self.entry else None,
            "error": self.error.to_dict() | {"message": self.error.reason} if self.error else None,
        }


class ConfFile(NamedTuple):
    path: str
    rules: tuple[Rule, ...]
    ours: bool  # carries binfmtctl's header
    problem: str | None = None  # why it could not be read (then it has no rules)

    @property
    def errors(self) -> list[Rule]:
        return [r for r in self.rules if r.error is not None]


def rule_name(line: bytes) -> str | None:
    """The name systemd-binfmt derives from a line: text up to the second delimiter."""
    if len(line) < 2:
        return None
    end = line.find(line[:1], 1)
    name = line[1:] if end < 0 else line[1:end]
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        return None
    return os.fsdecode(name)


def parse_binfmt_d(data: bytes, path: str = "<string>") -> ConfFile:
    """Parse a binfmt.d file; bad lines are kept, with their error and line number."""
    rules: list[Rule] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        line = raw.strip(WHITESPACE)
        if not line or line[0] in COMMENTS:
            continue
        try:
            entry: Entry | None = Entry.parse(line + b"\n")
            error = None
        except EntryParseError as err:
            entry, error = None, err
        rules.append(Rule(path, number, line, rule_name(line), entry, error))
    return ConfFile(path, tuple(rules), ours=marked_binfmt_d(data))


def read_binfmt_d(path: str | os.PathLike[str], root: str = "/") -> ConfFile:
    """Parse the binfmt.d file ``path`` (resolved inside ``root``); raise if unreadable."""
    return parse_binfmt_d(files.read(path, root), str(path))


def load_binfmt_d(path: str, root: str = "/") -> ConfFile:
    """Like :func:`read_binfmt_d`, but a file that cannot be read is a reported problem."""
    try:
        return read_binfmt_d(path, root)
    except BinfmtError as err:
        return ConfFile(path, (), ours=False, problem=err.message)


def load_all(paths: Sequence[str], root: str = "/") -> dict[str, ConfFile]:
    """:func:`load_binfmt_d` of each path; the files of one directory are read
    through one fd of it (:func:`files.read_regular`), any other the full way."""
    by_dir: dict[str, list[str]] = {}
    for path in paths:
        by_dir.setdefault(os.path.dirname(path), []).append(path)
    data: dict[str, bytes | None] = {}
    for directory, members in by_dir.items():
        try:
            with rootpath.open_dir(root, rootpath.inside(root, directory)) as fd:
                for path in members:
                    data[path] = files.read_regular(fd, os.path.basename(path), path)
        except OSError:
            continue
    out = {}
    for path in paths:
        read = data.get(path)
        out[path] = load_binfmt_d(path, root) if read is None else parse_binfmt_d(read, path)
    return out


def rule_error(rule: Rule) -> ConfigError:
    """The error for a line that does not parse, with its file and line number."""
    assert rule.error is not None
    return ConfigError(
        f"{rule.where}: {rule.error.message}",
        path=rule.path,
        line=rule.line,
        field=rule.error.field,
        position=rule.error.position,
    )


def check_binfmt_d(conf: ConfFile) -> None:
    """Raise for the first bad line, with its file and line number."""
    for rule in conf.errors:
        raise rule_error(rule)


def format_binfmt_d(entries: Iterable[Entry], header: bool = True) -> bytes:
    """A binfmt.d file registering ``entries``, marked as binfmtctl's."""
    lines = []
    for entry in entries:
        line = entry.register_bytes() + b"\n"
        _check_line(entry, line)
        lines.append(line)
    return (HEADER if header else b"") + b"".join(lines)


def _check_line(entry: Entry, line: bytes) -> None:
    text = line.strip(WHITESPACE)
    if b"\n" in line[:-1] or b"\r" in line or b"\0" in line or text[:1] in COMMENTS:
        raise ConfigError(
            f"{entry.name}: its register string cannot be written as one binfmt.d line "
            "(it needs a newline, NUL, '#' or ';' delimiter)",
            entry=entry.name,
        )
    if Entry.parse(text + b"\n") != entry:
        raise ConfigError(
            f"{entry.name}: systemd-binfmt strips whitespace from each line, which "
            "would change this entry",
            entry=entry.name,
        )


def conf_name(entry_name: str) -> str:
    return f"{entry_name}{SUFFIX}"


class Candidate(NamedTuple):
    """A binfmt.d file and whether a higher-precedence same-named file replaces it."""

    name: str
    path: str
    overridden_by: str | None


def list_binfmt_d(
    dirs: Sequence[str], root: str = "/", problems: list[str] | None = None
) -> list[Candidate]:
    """Every ``*.conf`` in ``dirs`` (highest precedence first), winners and losers.

    Sorted the way systemd applies them: by file name, then by directory
    precedence. A missing directory is simply empty. A directory that cannot
    be listed is added to ``problems`` (raised without it).
    """
    winner: dict[str, str] = {}
    found: list[Candidate] = []
    for directory in dirs:
        try:
            with rootpath.open_dir(root, rootpath.inside(root, directory)) as fd:
                names = sorted(os.listdir(fd))
                dirs_here = {n for n in names if _is_dir(fd, n, root, directory)}
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as err:
            error = config_error(err, "list", directory)
            if problems is None:
                raise error from err
            problems.append(error.message)
            continue
        for name in names:
            if name.startswith(".") or not name.endswith(SUFFIX) or name in dirs_here:
                continue
            path = os.path.join(directory, name)
            found.append(Candidate(name, path, winner.get(name)))
            winner.setdefault(name, path)
    order = {d: i for i, d in enumerate(dirs)}
    found.sort(key=lambda c: (os.fsencode(c.name), order[os.path.dirname(c.path)]))
    return found


def _is_dir(dir_fd: int, name: str, root: str, directory: str) -> bool:
    """Whether ``name`` is a directory, symlinks followed inside ``root`` (systemd skips those)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    if stat.S_ISDIR(info.st_mode):
        return True
    if not stat.S_ISLNK(info.st_mode):
        return False
    found = rootpath.resolve_in(root, rootpath.inside(root, os.path.join(directory, name)))
    return found is not None and os.path.isdir(found)


def boot_files(
    dirs: Sequence[str], root: str = "/", problems: list[str] | None = None
) -> list[str]:
    """The files systemd-binfmt applies at boot, in order."""
    return [c.path for c in list_binfmt_d(dirs, root, problems) if c.overridden_by is None]


def find_conf(word: str, dirs: Sequence[str], root: str = "/") -> str:
    """A FILE argument as systemd-binfmt takes it: a path, or a name searched in ``dirs``.

    With a root, a path is inside it too.
    """
    if "/" in word:
        return word if rootpath.is_host(root) else rootpath.shown(root, word)
    for directory in dirs:
        path = os.path.join(directory, word)
        try:
            with rootpath.locate(root, rootpath.inside(root, path), follow=False) as (fd, name):
                os.stat(name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            continue
        return path
    raise ConfigError(
        f"no {word} in {', '.join(dirs)}; give a path or a file name from those directories",
        path=word,
    )


class BootState:
    """What systemd-binfmt would leave registered, name by name.

    A small mutable ``__slots__`` class, not a NamedTuple: :func:`simulate`
    fills it in, file by file.
    """

    __slots__ = ("dropped", "entries", "files", "rules")

    def __init__(self) -> None:
        self.entries: dict[str, Rule] = {}  # in registration order
        self.dropped: dict[str, Rule] = {}  # last line for a name failed
        self.rules: list[Rule] = []  # every line, in the order applied
        self.files: list[ConfFile] = []

    def order_newest_first(self) -> list[str]:
        return list(reversed(self.entries))


def simulate(
    paths: Sequence[str],
    check_interpreter: bool = True,
    root: str = "/",
    loaded: Mapping[str, ConfFile] | None = None,
) -> BootState:
    """Apply ``paths`` in order the way systemd-binfmt does, without a kernel.

    A line the kernel would refuse (bad syntax; with F, a missing interpreter
    inside ``root``) still removes the same-named entry first, so the name ends
    up unregistered. A file that cannot be read registers nothing. ``loaded``:
    files the caller has already read (by path), so none is parsed twice.
    """
    state = BootState()
    for path in paths:
        conf = loaded[path] if loaded is not None and path in loaded else load_binfmt_d(path, root)
        state.files.append(conf)
        for rule in conf.rules:
            state.rules.append(rule)
            if rule.name is None:
                continue
            state.entries.pop(rule.name, None)
            state.dropped.pop(rule.name, None)
            ok = rule.entry is not None
            if ok and check_interpreter and rule.entry is not None and "F" in rule.entry.flags:
                found = rootpath.resolve_in(root, rule.entry.interpreter)
                ok = found is not None and os.access(found, os.X_OK)
            if ok:
                state.entries[rule.name] = rule
            else:
                state.dropped[rule.name] = rule
    return state


def boot_problem(rule: Rule, root: str = "/") -> str:
    """Why a line registers nothing at boot."""
    if rule.error is not None:
        return f"{rule.where}: {rule.error.reason} (in the {rule.error.field})"
    assert rule.entry is not None
    inside = "" if rootpath.is_host(root) else f" inside {root}"
    return (
        f"{rule.where}: the interpreter {rule.entry.interpreter} is missing or not "
        f"executable{inside}, and with F the kernel refuses the entry"
    )


def boot_definers(
    name: str, dirs: Sequence[str], extra: str | None = None, root: str = "/"
) -> list[Rule]:
    """Every line that registers ``name`` at boot, in the order systemd applies them.

    ``extra`` is a file to count as present (what a dry run would write).
    """
    paths = boot_files(dirs, root, problems=[])
    if extra is not None and extra not in paths:
        base = os.path.basename(extra)
        shadow = [p for p in paths if os.path.basename(p) == base]
        if not shadow or _precedence(extra, dirs) < _precedence(shadow[0], dirs):
            paths = [p for p in paths if p not in shadow] + [extra]
            paths.sort(key=lambda p: os.fsencode(os.path.basename(p)))
    out: list[Rule] = []
    for path in paths:
        out.extend(r for r in load_binfmt_d(path, root).rules if r.name == name)
    return out


def _precedence(path: str, dirs: Sequence[str]) -> int:
    parent = os.path.dirname(path)
    return list(dirs).index(parent) if parent in dirs else len(dirs)


def override_warnings(name: str, path: str, dirs: Sequence[str], root: str = "/") -> list[str]:
    """Why ``path`` will not be what registers ``name`` at boot, if it won't."""
    directory = os.path.dirname(path)
    if directory not in dirs:
        return [f"{directory} is not read by systemd-binfmt at boot (it reads {', '.join(dirs)})"]
    shadow = [
        c.path
        for c in list_binfmt_d(dirs, root, problems=[])
        if c.name == os.path.basename(path) and _precedence(c.path, dirs) < _precedence(path, dirs)
    ]
    if shadow:
        return [
            f"{shadow[0]} has the same file name in a directory that takes precedence: "
            f"{path} is ignored at boot"
        ]
    rules = boot_definers(name, dirs, extra=path, root=root)
    others = [r for r in rules if r.path != path]
    last = rules[-1] if rules else None
    if last is not None and last.path != path:
        return [
            f"at boot {last.path} also registers {name} and wins: it is applied after "
            f"{os.path.basename(path)} (files are applied in order of file name)"
        ]
    if others:
        return [
            f"{', '.join(sorted({r.path for r in others}))} also define {name} but are "
            "applied earlier; yours wins"
        ]
    return []
