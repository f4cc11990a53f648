"""Persistent configuration: systemd's binfmt.d and binfmt-support's format files.

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

binfmt-support format files (update-binfmts(8), FORMAT FILES): one ``key
value`` pair per line: package, interpreter, magic, offset, mask, extension,
detector, credentials, preserve, fix_binary. Its database in /var/lib/binfmts
holds one file per format: ten lines, in a fixed order.

Every directory is a parameter (:class:`Layout`); nothing here reads a
module-level path directly. With a root (``--root``) every path is resolved
inside it, as a chroot would see it (:mod:`binfmtctl.rootpath`). Only regular
files are read (a FIFO never blocks a reader); one file that cannot be read is
a problem reported with its name, not the end of the report.

Writes are atomic: a hidden temporary file in the same directory, fsync,
rename, fsync of the directory -- a reader (or a boot) sees the old file or
the new one, never a mix. The temporary name starts with ``.`` and does not
end in ``.conf``, so systemd ignores a leftover one.

One ownership rule (:func:`examine`): binfmtctl replaces or removes only a
file that carries its marker (binfmt.d: the first line of :data:`HEADER`;
binfmt-support: ``package binfmtctl``) or that already holds exactly what it
would write. Anything else -- an administrator's file, a package's, a symlink,
a FIFO -- is refused, naming who seems to own it, unless the caller passes
``overwrite_foreign``. A symlink at the target is never followed: it is
replaced by a regular file only when overriding.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from binfmtctl import rootpath
from binfmtctl.entry import Entry
from binfmtctl.errors import (
    BinfmtError,
    ConfigError,
    EntryParseError,
    ForeignFileError,
    config_error,
)
from binfmtctl.instance import in_initial_user_namespace

BINFMT_D_DIRS = ("/etc/binfmt.d", "/run/binfmt.d", "/usr/local/lib/binfmt.d", "/usr/lib/binfmt.d")
ADMIN_BINFMT_D = BINFMT_D_DIRS[0]
BINFMTS_ADMINDIR = "/var/lib/binfmts"
BINFMTS_IMPORTDIR = "/usr/share/binfmts"
SUFFIX = ".conf"
COMMENTS = b"#;"
WHITESPACE = b" \t\r\n"
OWNER_MARK = b"# Written by binfmtctl"
HEADER = (
    OWNER_MARK + b"; `binfmtctl uninstall --persist` removes it.\n"
    b"# systemd-binfmt registers it at boot; see binfmt.d(5).\n"
)
MARKER_LINE = HEADER.split(b"\n", 1)[0]  # the exact first line of every binfmt.d file we write
PACKAGE = "binfmtctl"  # the binfmt-support package name our formats carry
BINFMTS_KEYS = (
    "package",
    "interpreter",
    "magic",
    "offset",
    "mask",
    "extension",
    "detector",
    "credentials",
    "preserve",
    "fix_binary",
)


@dataclass(frozen=True)
class Layout:
    """Where configuration lives; tests and ``--root`` pass their own."""

    binfmt_d: tuple[str, ...] = BINFMT_D_DIRS  # highest precedence first, as named on this system
    binfmts_admindir: str = BINFMTS_ADMINDIR
    root: str = "/"  # every path above is resolved inside it

    @classmethod
    def under(cls, root: str | None) -> Layout:
        """The default layout below ``root`` (like systemd's --root)."""
        if rootpath.is_host(root):
            return cls()
        assert root is not None
        return cls(
            tuple(rootpath.shown(root, d) for d in BINFMT_D_DIRS),
            rootpath.shown(root, BINFMTS_ADMINDIR),
            root,
        )

    @property
    def admin_binfmt_d(self) -> str:
        return self.binfmt_d[0]


# -- atomic writes -----------------------------------------------------------


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that nobody ever sees a partial file."""
    target = Path(path)
    try:
        with rootpath.open_dir("/", str(target.parent)) as dir_fd:
            write_at(dir_fd, target.name, data, str(target), mode)
    except OSError as err:
        raise config_error(err, f"write {target}", str(target.parent)) from err


def write_at(dir_fd: int, name: str, data: bytes, path: str, mode: int = 0o644) -> None:
    """Atomically replace ``name`` in ``dir_fd`` (``path`` names it in errors).

    A symlink at ``name`` is replaced, never followed: rename works on names.
    """
    tmp = f".{name}.{os.urandom(4).hex()}.tmp"  # secrets.token_hex, without its imports
    try:
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
    except OSError as err:
        raise config_error(err, f"write {path}", os.path.dirname(path)) from err
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as err:
        _unlink_quietly(tmp, dir_fd)
        raise config_error(err, f"write {path}", path) from err
    except BaseException:
        _unlink_quietly(tmp, dir_fd)
        raise
    _fsync_fd(dir_fd, os.path.dirname(path))


def remove_at(dir_fd: int, name: str, path: str) -> None:
    """Unlink ``name`` in ``dir_fd`` and make the removal durable."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError as err:
        raise config_error(err, f"remove {path}", path) from err
    _fsync_fd(dir_fd, os.path.dirname(path))


def _fsync_fd(dir_fd: int, shown: str) -> None:
    try:
        os.fsync(dir_fd)
    except OSError as err:
        raise config_error(err, "sync the directory", shown) from err


def _unlink_quietly(name: str, dir_fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(name, dir_fd=dir_fd)


def _read(path: str | os.PathLike[str], root: str = "/") -> bytes:
    """A configuration file's bytes: regular files only, resolved inside ``root``."""
    try:
        return rootpath.read_file(root, rootpath.inside(root, str(path)))
    except rootpath.NotRegularError as err:
        raise ConfigError(
            f"cannot read {path}: {err.strerror}; configuration files must be regular "
            "files (or symlinks to them)",
            path=str(path),
            errno="EINVAL",
        ) from err
    except OSError as err:
        raise config_error(err, "read", str(path)) from err


@contextlib.contextmanager
def _dir(root: str, directory: str, *, create: bool = False) -> Iterator[int]:
    """An fd of ``directory`` (as named on this system) resolved inside ``root``."""
    try:
        with rootpath.open_dir(root, rootpath.inside(root, directory), create=create) as fd:
            yield fd
    except OSError as err:
        if err.errno == errno.ELOOP and not rootpath.is_host(root):
            raise ConfigError(
                f"cannot use {directory}: too many levels of symbolic links inside {root} "
                "(paths there are resolved as a chroot would: an absolute link such as "
                "etc/binfmt.d -> /etc/binfmt.d names itself)",
                path=directory,
                errno="ELOOP",
            ) from err
        raise config_error(err, "write into" if create else "open", directory) from err


# -- who owns a file -------------------------------------------------------------

ABSENT, SAME, OURS, FOREIGN = "absent", "same", "ours", "foreign"
EXAMINE_BYTES = 1 << 16  # what examine reads of a file at most (beyond what would be written)


@dataclass(frozen=True)
class Existing:
    """What sits where binfmtctl is about to write or remove a file."""

    state: str  # absent, same (exactly what would be written), ours (marked), foreign
    what: str = ""  # foreign: what it is, as a predicate ("was not written by binfmtctl")
    owner: str = ""  # foreign: who seems to own it ("package qemu-user-static")


def marked_binfmt_d(data: bytes) -> bool:
    return data.split(b"\n", 1)[0] == MARKER_LINE


def marked_binfmts(data: bytes) -> bool:
    return f"package {PACKAGE}".encode() in (line.strip() for line in data.split(b"\n"))


def examine(
    dir_fd: int,
    name: str,
    path: str,
    *,
    root: str = "/",
    content: bytes | None = None,
    ours: Callable[[bytes], bool] = marked_binfmt_d,
) -> Existing:
    """Whether binfmtctl may replace or remove ``name`` in ``dir_fd`` (``path`` on this system)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return Existing(ABSENT)
    except OSError as err:
        raise config_error(err, "inspect", path) from err
    inner = rootpath.inside(root, path)
    if stat.S_ISLNK(info.st_mode):
        try:
            target = os.readlink(name, dir_fd=dir_fd)
        except OSError:
            target = "?"
        whose = _owner(root, inner, None, info.st_uid)
        return Existing(FOREIGN, f"is a symbolic link to {target}", whose)
    if not stat.S_ISREG(info.st_mode):
        whose = _owner(root, inner, None, info.st_uid)
        return Existing(FOREIGN, f"is {rootpath.kind(info.st_mode)}", whose)
    # Enough to see the marker, or that it differs: a huge file is never read whole.
    cap = max(len(content or b""), EXAMINE_BYTES) + 1
    try:
        data = rootpath.read_at(dir_fd, name, path, limit=cap)
    except OSError as err:
        raise config_error(err, "read", path) from err
    if content is not None and data == content:
        return Existing(SAME)
    if ours(data):
        return Existing(OURS)
    whose = _owner(root, inner, data, info.st_uid)
    return Existing(FOREIGN, "was not written by binfmtctl", whose)


def refuse(path: str, existing: Existing, verb: str = "replace") -> ForeignFileError:
    """The refusal for a file binfmtctl does not own: what it is, whose it seems, the override."""
    return ForeignFileError(
        f"{path} {existing.what} and seems to belong to {existing.owner}; binfmtctl does "
        f"not {verb} it (pass --overwrite-foreign to {verb} it anyway)",
        path=path,
        owner=existing.owner,
    )


def _owner(root: str, inner: str, data: bytes | None, uid: int) -> str:
    """Who seems to own the file at ``inner``: a dpkg package, binfmt-support's, a user."""
    package = dpkg_owner(root, inner)
    if package:
        return f"package {package} (dpkg lists it)"
    if data is not None:
        for line in data.split(b"\n"):
            key, _, value = line.strip().partition(b" ")
            if key == b"package" and value.strip():
                return f"package {os.fsdecode(value.strip())} (its binfmt-support 'package' line)"
    if uid == _OVERFLOW_UID and not in_initial_user_namespace():
        return "a user outside this user namespace (it owns it; unmapped here, shown as 65534)"
    if uid != 0:
        import pwd

        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = f"uid {uid}"
        return f"the user {user} (who owns it)"
    return "an administrator"


_OVERFLOW_UID = 65534  # what an unmapped owner shows as inside a user namespace


DPKG_INFO = "/var/lib/dpkg/info"


def dpkg_owner(root: str, inner: str) -> str | None:
    """The dpkg package whose file list holds ``inner`` (inside ``root``), if any."""
    wanted = os.fsencode(inner)
    try:
        with rootpath.open_dir(root, DPKG_INFO) as fd:
            names = sorted(n for n in os.listdir(fd) if n.endswith(".list"))
            for name in names:
                try:
                    lines = rootpath.read_at(fd, name, name).split(b"\n")
                except OSError:
                    continue
                if wanted in lines:
                    return name.removesuffix(".list").split(":", 1)[0]
    except OSError:
        return None
    return None


# -- binfmt.d ----------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
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


@dataclass(frozen=True)
class ConfFile:
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
    return parse_binfmt_d(_read(path, root), str(path))


def load_binfmt_d(path: str, root: str = "/") -> ConfFile:
    """Like :func:`read_binfmt_d`, but a file that cannot be read is a reported problem."""
    try:
        return read_binfmt_d(path, root)
    except BinfmtError as err:
        return ConfFile(path, (), ours=False, problem=err.message)


def check_binfmt_d(conf: ConfFile) -> None:
    """Raise for the first bad line, with its file and line number."""
    for rule in conf.errors:
        assert rule.error is not None
        raise ConfigError(
            f"{rule.where}: {rule.error.message}",
            path=rule.path,
            line=rule.line,
            field=rule.error.field,
            position=rule.error.position,
        )


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


@dataclass(frozen=True)
class Candidate:
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


@dataclass
class BootState:
    """What systemd-binfmt would leave registered, name by name."""

    entries: dict[str, Rule] = field(default_factory=dict)  # in registration order
    dropped: dict[str, Rule] = field(default_factory=dict)  # last line for a name failed
    rules: list[Rule] = field(default_factory=list)  # every line, in the order applied
    files: list[ConfFile] = field(default_factory=list)

    def order_newest_first(self) -> list[str]:
        return list(reversed(self.entries))


def simulate(paths: Sequence[str], check_interpreter: bool = True, root: str = "/") -> BootState:
    """Apply ``paths`` in order the way systemd-binfmt does, without a kernel.

    A line the kernel would refuse (bad syntax; with F, a missing interpreter
    inside ``root``) still removes the same-named entry first, so the name ends
    up unregistered. A file that cannot be read registers nothing.
    """
    state = BootState()
    for path in paths:
        conf = load_binfmt_d(path, root)
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


# -- binfmt-support ----------------------------------------------------------


@dataclass(frozen=True)
class BinfmtsFormat:
    """One binfmt-support format: its name, owning package and entry."""

    name: str
    package: str
    entry: Entry
    detector: str = ""
    path: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "package": self.package,
            "path": self.path,
            "detector": self.detector or None,
            "entry": self.entry.to_dict(),
        }


def _escape(value: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in value)


def format_binfmts(entry: Entry, package: str = PACKAGE) -> bytes:
    """An update-binfmts format file (for ``--import``) registering ``entry``.

    binfmt-support has no way to ask for O without C: credentials=yes gives OC.
    """
    if "O" in entry.flags and "C" not in entry.flags:
        raise ConfigError(
            f"{entry.name}: binfmt-support cannot express the O flag without C "
            "(its 'credentials yes' sets both); drop O or add C",
            entry=entry.name,
        )
    yes = {True: "yes", False: "no"}
    lines = [f"package {package}", f"interpreter {entry.interpreter}"]
    if entry.kind == "M":
        lines += [
            f"magic {_escape(entry.magic)}",
            f"offset {entry.offset}",
        ]
        if entry.mask is not None:
            lines.append(f"mask {_escape(entry.mask)}")
    else:
        lines.append(f"extension {entry.extension}")
    lines += [
        f"credentials {yes['C' in entry.flags]}",
        f"preserve {yes['P' in entry.flags]}",
        f"fix_binary {yes['F' in entry.flags]}",
    ]
    text = "\n".join(lines) + "\n"
    if any("\n" in v for v in (entry.interpreter, entry.extension or "")):
        raise ConfigError(
            f"{entry.name}: binfmt-support files cannot hold a newline", entry=entry.name
        )
    return os.fsencode(text)


def _decode_field(value: str) -> bytes:
    """binfmt-support magic/mask text: passed to the kernel as is, so decoded as it does."""
    from binfmtctl.entry import _unescape

    return _unescape(os.fsencode(value))


def _flags(values: dict[str, str]) -> str:
    flags = ""
    if values.get("preserve") == "yes":
        flags += "P"
    if values.get("credentials") == "yes":
        flags += "OC"
    if values.get("fix_binary") == "yes":
        flags += "F"
    return flags


def _binfmts_entry(name: str, values: dict[str, str], path: str, line: int) -> Entry:
    interpreter = values.get("interpreter", "")
    if not interpreter:
        raise ConfigError(f"{path}: no interpreter", path=path, line=line)
    try:
        if values.get("type", "magic" if "magic" in values else "extension") == "magic":
            magic = _decode_field(values.get("magic", ""))
            mask_text = values.get("mask", "")
            return Entry(
                name=name,
                kind="M",
                interpreter=interpreter,
                flags=_flags(values),
                offset=int(values.get("offset") or 0),
                magic=magic,
                mask=_decode_field(mask_text) if mask_text else None,
            )
        return Entry(
            name=name,
            kind="E",
            interpreter=interpreter,
            flags=_flags(values),
            extension=values.get("extension", ""),
        )
    except (EntryParseError, ValueError) as err:
        reason = err.message if isinstance(err, EntryParseError) else str(err)
        raise ConfigError(f"{path}: {reason}", path=path, line=line) from err


def parse_binfmts(data: bytes, name: str, path: str = "<string>") -> BinfmtsFormat:
    """Parse a binfmt-support format file (key value lines)."""
    values: dict[str, str] = {}
    last = 0
    for number, raw in enumerate(os.fsdecode(data).split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        key = key.strip()
        if key not in BINFMTS_KEYS:
            raise ConfigError(
                f"{path}:{number}: unknown key {key!r}; binfmt-support knows "
                f"{', '.join(BINFMTS_KEYS)}",
                path=path,
                line=number,
            )
        values[key] = value.strip()
        last = number
    if "magic" in values and "extension" in values:
        raise ConfigError(f"{path}: both magic and extension are set", path=path, line=last)
    entry = _binfmts_entry(name, values, path, last)
    return BinfmtsFormat(name, values.get("package", ""), entry, values.get("detector", ""), path)


def parse_binfmts_admin(data: bytes, name: str, path: str = "<string>") -> BinfmtsFormat:
    """Parse update-binfmts' database file: package, type, offset, magic, mask,
    interpreter, detector, credentials, preserve, fix_binary -- one per line."""
    lines = os.fsdecode(data).split("\n")
    keys = (
        "package",
        "type",
        "offset",
        "magic",
        "mask",
        "interpreter",
        "detector",
        "credentials",
        "preserve",
        "fix_binary",
    )
    if len(lines) < 6:
        raise ConfigError(f"{path}: truncated binfmt-support database entry", path=path)
    values = {k: v for k, v in zip(keys, lines, strict=False)}
    if values["type"] == "extension":
        values["extension"] = values.pop("magic")
    entry = _binfmts_entry(name, values, path, len(lines))
    return BinfmtsFormat(name, values["package"], entry, values.get("detector", ""), path)


def read_binfmts_admin(
    admindir: str, root: str = "/", problems: list[str] | None = None
) -> list[BinfmtsFormat]:
    """Every format in binfmt-support's database (inside ``root``).

    One that cannot be read or parsed is added to ``problems`` (skipped without it).
    """
    try:
        with rootpath.open_dir(root, rootpath.inside(root, admindir)) as fd:
            names = sorted(os.listdir(fd))
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        error = config_error(err, "list", admindir)
        if problems is None:
            raise error from err
        problems.append(error.message)
        return []
    out = []
    for name in names:
        if name.startswith("."):
            continue
        path = os.path.join(admindir, name)
        try:
            out.append(parse_binfmts_admin(_read(path, root), name, path))
        except ConfigError as err:
            if problems is not None:
                problems.append(err.message)
    return out


# -- persisting what install registers ----------------------------------------


@dataclass(frozen=True)
class Saved:
    """What persisting (or forgetting) one entry did."""

    name: str
    target: str  # the file, or "update-binfmts"
    action: str  # written, unchanged, removed, absent, kept, refused, would write, would remove
    reason: str = ""
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "target": self.target,
            "action": self.action,
            "reason": self.reason or None,
            "warnings": list(self.warnings),
        }


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


def save_systemd(
    entry: Entry,
    directory: str,
    dirs: Sequence[str],
    *,
    root: str = "/",
    overwrite_foreign: bool = False,
    dry_run: bool = False,
) -> Saved:
    """Write ``directory/NAME.conf`` registering ``entry`` at boot (inside ``root``).

    The directory is made if missing; a same-named file binfmtctl did not write
    is refused unless ``overwrite_foreign``.
    """
    saved = put(
        directory,
        conf_name(entry.name),
        format_binfmt_d([entry]),
        root=root,
        overwrite_foreign=overwrite_foreign,
        dry_run=dry_run,
        entry_name=entry.name,
    )
    warnings = override_warnings(entry.name, saved.target, dirs, root)
    return Saved(entry.name, saved.target, saved.action, warnings=tuple(warnings))


def put(
    directory: str,
    name: str,
    content: bytes,
    *,
    ours: Callable[[bytes], bool] = marked_binfmt_d,
    root: str = "/",
    overwrite_foreign: bool = False,
    dry_run: bool = False,
    entry_name: str | None = None,
) -> Saved:
    """Write ``directory/name`` (inside ``root``, the directory made if missing) atomically,
    under the ownership rule: a file that is not ``ours`` is refused unless
    ``overwrite_foreign``. Every configuration file binfmtctl writes goes through here.
    """
    path = os.path.join(directory, name)
    try:
        with _dir(root, directory, create=not dry_run) as fd:
            have = examine(fd, name, path, root=root, content=content, ours=ours)
            if have.state == FOREIGN and not overwrite_foreign:
                raise refuse(path, have)
            action = "unchanged" if have.state == SAME else "would write" if dry_run else "written"
            if action == "written":
                write_at(fd, name, content, path)
    except ConfigError as err:
        if not dry_run or err.context.get("errno") != "ENOENT":
            raise
        action = "would write"  # the directory is missing: it would be made
    return Saved(entry_name or name, path, action)


def forget_systemd(
    name: str,
    directory: str,
    *,
    root: str = "/",
    overwrite_foreign: bool = False,
    dry_run: bool = False,
) -> Saved:
    """Remove ``directory/NAME.conf`` if binfmtctl wrote it; refuse anything else."""
    conf = conf_name(name)
    path = os.path.join(directory, conf)
    try:
        with _dir(root, directory) as fd:
            have = examine(fd, conf, path, root=root)
            if have.state == ABSENT:
                return Saved(name, path, "absent")
            if have.state == FOREIGN and not overwrite_foreign:
                raise refuse(path, have, "remove")
            if dry_run:
                return Saved(name, path, "would remove")
            remove_at(fd, conf, path)
    except ConfigError as err:
        if err.context.get("errno") != "ENOENT":
            raise
        return Saved(name, path, "absent")  # no directory, no file
    return Saved(name, path, "removed")


def our_conf_files(directory: str, root: str = "/") -> list[str]:
    """Entry names of every binfmt.d file binfmtctl wrote in ``directory``."""
    try:
        with rootpath.open_dir(root, rootpath.inside(root, directory)) as fd:
            names = sorted(n for n in os.listdir(fd) if n.endswith(SUFFIX))
            ours = []
            for n in names:
                try:
                    data = rootpath.read_at(fd, n, os.path.join(directory, n))
                except OSError:
                    continue  # not ours to remove: not a regular file we can read
                if marked_binfmt_d(data):
                    ours.append(n.removesuffix(SUFFIX))
            return ours
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        raise config_error(err, "list", directory) from err


UPDATE_BINFMTS = "update-binfmts"


def _update_binfmts(admindir: tuple[int, str], *args: str) -> None:
    """Run update-binfmts on the database directory held open as ``admindir`` (fd, name).

    It gets the directory as /proc/self/fd/N: the one binfmtctl resolved inside
    the root, whatever links are swapped in meanwhile.
    """
    import subprocess

    fd, shown = admindir
    handle = f"/proc/self/fd/{fd}"
    cmd = [UPDATE_BINFMTS, "--admindir", handle, *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, pass_fds=(fd,))
    except FileNotFoundError as err:
        raise ConfigError(
            "update-binfmts is not installed; install binfmt-support "
            "(`apt-get install binfmt-support`) or use --persist=systemd",
        ) from err
    if proc.returncode != 0:
        said = " ".join(
            line.removeprefix("update-binfmts: ").replace(handle, shown)
            for line in proc.stderr.splitlines()
        )
        raise ConfigError(
            f"update-binfmts {' '.join(args[:4])} failed: {said or f'exit {proc.returncode}'}",
            command=[UPDATE_BINFMTS, "--admindir", shown, *args],
        )


def _binfmts_install_args(entry: Entry) -> list[str]:
    format_binfmts(entry)  # refuses what binfmt-support cannot express
    yes = {True: "yes", False: "no"}
    args = ["--package", PACKAGE, "--install", entry.name, entry.interpreter]
    if entry.kind == "M":
        args += ["--magic", _escape(entry.magic), "--offset", str(entry.offset)]
        if entry.mask is not None:
            args += ["--mask", _escape(entry.mask)]
    else:
        args += ["--extension", entry.extension or ""]
    return [
        *args,
        "--credentials",
        yes["C" in entry.flags],
        "--preserve",
        yes["P" in entry.flags],
        "--fix-binary",
        yes["F" in entry.flags],
    ]


def _admin_state(fd: int, name: str, path: str, root: str) -> tuple[Existing, BinfmtsFormat | None]:
    """Who owns binfmt-support's database entry ``name``, and the format, if readable."""
    have = examine(
        fd,
        name,
        path,
        root=root,
        ours=lambda data: data.split(b"\n", 1)[0].strip() == PACKAGE.encode(),
    )
    if have.state == ABSENT:
        return have, None
    try:
        fmt = parse_binfmts_admin(rootpath.read_at(fd, name, path), name, path)
    except (OSError, ConfigError) as err:
        if have.state == FOREIGN:
            return have, None
        if isinstance(err, OSError):
            raise config_error(err, "read", path) from err
        raise
    if have.state == FOREIGN:
        owner = f"package {fmt.package} (binfmt-support's database)" if fmt.package else have.owner
        return Existing(FOREIGN, "is not binfmtctl's binfmt-support format", owner), fmt
    return have, fmt


def _drop_foreign(
    admindir: tuple[int, str], name: str, path: str, fmt: BinfmtsFormat | None
) -> None:
    """Remove another owner's database entry (only when told to overwrite foreign files)."""
    if fmt is not None and fmt.package:
        _update_binfmts(admindir, "--package", fmt.package, "--remove", name, fmt.entry.interpreter)
    else:
        remove_at(admindir[0], name, path)


def save_binfmts(
    entry: Entry,
    admindir: str,
    *,
    root: str = "/",
    overwrite_foreign: bool = False,
    dry_run: bool = False,
) -> Saved:
    """Record ``entry`` in binfmt-support's database through update-binfmts itself.

    The database directory is resolved inside ``root`` and made if missing.
    """
    target = os.path.join(admindir, entry.name)
    args = _binfmts_install_args(entry)
    try:
        with _dir(root, admindir, create=not dry_run) as fd:
            have, fmt = _admin_state(fd, entry.name, target, root)
            if have.state == FOREIGN and not overwrite_foreign:
                raise refuse(target, have)
            if have.state == OURS and fmt is not None and fmt.entry == entry:
                return Saved(entry.name, target, "unchanged")
            if dry_run:
                return Saved(entry.name, target, "would write")
            if have.state == FOREIGN:
                _drop_foreign((fd, admindir), entry.name, target, fmt)
            elif fmt is not None:
                _update_binfmts(
                    (fd, admindir),
                    "--package",
                    PACKAGE,
                    "--remove",
                    entry.name,
                    fmt.entry.interpreter,
                )
            _update_binfmts((fd, admindir), *args)
    except ConfigError as err:
        if not dry_run or err.context.get("errno") != "ENOENT":
            raise
        return Saved(entry.name, target, "would write")
    return Saved(entry.name, target, "written")


def forget_binfmts(
    name: str,
    admindir: str,
    *,
    root: str = "/",
    overwrite_foreign: bool = False,
    dry_run: bool = False,
) -> Saved:
    """Remove ``name`` from binfmt-support's database if binfmtctl put it there."""
    target = os.path.join(admindir, name)
    try:
        with _dir(root, admindir) as fd:
            have, fmt = _admin_state(fd, name, target, root)
            if have.state == ABSENT:
                return Saved(name, target, "absent")
            if have.state == FOREIGN and not overwrite_foreign:
                raise refuse(target, have, "remove")
            if dry_run:
                return Saved(name, target, "would remove")
            if have.state == FOREIGN:
                _drop_foreign((fd, admindir), name, target, fmt)
            elif fmt is not None:
                _update_binfmts(
                    (fd, admindir), "--package", PACKAGE, "--remove", name, fmt.entry.interpreter
                )
    except ConfigError as err:
        if err.context.get("errno") != "ENOENT":
            raise
        return Saved(name, target, "absent")
    return Saved(name, target, "removed")


# -- configuration against the running kernel ----------------------------------


def _flags_words(flags: str) -> str:
    return flags or "no flags"


def _difference(name: str, now: Entry, enabled: bool, rule: Rule) -> str | None:
    boot = rule.entry
    assert boot is not None
    if boot == now:
        if not enabled:
            return f"{name}: disabled now, but at boot {rule.path} registers it enabled"
        return None
    if (boot.interpreter, boot.flags) != (now.interpreter, now.flags):
        return (
            f"{name}: running entry uses {now.interpreter} with {_flags_words(now.flags)}, "
            f"but at boot {rule.path} will register {boot.interpreter} with "
            f"{_flags_words(boot.flags)}"
        )
    return (
        f"{name}: running entry matches different bytes (magic/mask/offset) than the one "
        f"{rule.path} will register at boot"
    )


def describe(
    layout: Layout,
    running: dict[str, tuple[Entry, bool]],
    check_interpreter: bool = True,
) -> dict[str, object]:
    """For every entry name: which files define it, which wins at boot, and
    whether the running kernel state differs from what boot will produce.

    ``running`` maps a registered name to its entry and whether it is enabled.
    """
    root = layout.root
    unreadable: list[str] = []  # directories and database entries that could not be read
    candidates = list_binfmt_d(layout.binfmt_d, root, unreadable)
    parsed = {c.path: load_binfmt_d(c.path, root) for c in candidates}
    boot = simulate(
        [c.path for c in candidates if c.overridden_by is None], check_interpreter, root
    )
    binfmts = {f.name: f for f in read_binfmts_admin(layout.binfmts_admindir, root, unreadable)}
    names: dict[str, None] = {}
    for c in candidates:
        names.update((r.name, None) for r in parsed[c.path].rules if r.name)
    names.update((n, None) for n in running)
    out: list[dict[str, object]] = []
    for name in names:
        definers = []
        for c in candidates:
            for rule in parsed[c.path].rules:
                if rule.name != name:
                    continue
                if c.overridden_by is not None:
                    role = f"ignored: {c.overridden_by} has the same file name"
                elif boot.entries.get(name) == rule:
                    role = "wins at boot"
                elif boot.dropped.get(name) == rule:
                    role = "applied last, but registers nothing"
                elif rule.error is not None:
                    role = f"invalid: {rule.error.reason}"
                else:
                    role = "replaced at boot by a later line"
                definers.append(
                    {
                        "path": rule.path,
                        "line": rule.line,
                        "role": role,
                        "ours": parsed[c.path].ours,
                    }
                )
        winner = boot.entries.get(name)
        dropped = boot.dropped.get(name)
        problems: list[str] = []
        # A file masked by a same-named one is the admin override working: not a problem.
        files = {d["path"] for d in definers if not str(d["role"]).startswith("ignored:")}
        if len(files) > 1 and winner is not None:
            problems.append(
                f"{name}: defined in {len(files)} files; {winner.path} wins at boot "
                "(files are applied in order of file name, the last one wins)"
            )
        now = running.get(name)
        differs = (now is None) != (winner is None)
        if now is not None and winner is not None:
            diff = _difference(name, now[0], now[1], winner)
            if diff:
                differs = True
                problems.append(diff)
        elif now is not None:
            why = (
                f"at boot {boot_problem(dropped, root)}"
                if dropped is not None
                else "no binfmt.d file registers it at boot: it will be gone after a reboot"
                + (
                    f" (`binfmtctl install --persist {name.removeprefix('qemu-')}` keeps it)"
                    if name.startswith("qemu-")
                    else ""
                )
            )
            problems.append(f"{name}: registered now, but {why}")
            if name in binfmts:
                problems.append(
                    f"{name}: binfmt-support's database has it (package "
                    f"{binfmts[name].package}); binfmt-support.service registers it at boot"
                )
        elif winner is not None:
            problems.append(
                f"{name}: not registered now; at boot {winner.path} will register it "
                f"(`binfmtctl apply {winner.path}` does it now)"
            )
        elif dropped is not None:
            problems.append(f"{name}: registers nothing at boot: {boot_problem(dropped, root)}")
        out.append(
            {
                "name": name,
                "files": definers,
                "boot": None
                if winner is None
                else {
                    "path": winner.path,
                    "line": winner.line,
                    "entry": winner.entry.to_dict() if winner.entry else None,
                },
                "running": None if now is None else {**now[0].to_dict(), "enabled": now[1]},
                "binfmt_support": binfmts[name].to_dict() if name in binfmts else None,
                "differs": differs,
                "problems": problems,
            }
        )
    return {
        "dirs": list(layout.binfmt_d),
        "binfmts_admindir": layout.binfmts_admindir,
        "files": [
            {
                "path": c.path,
                "overridden_by": c.overridden_by,
                "ours": parsed[c.path].ours,
                "errors": [r.to_dict() for r in parsed[c.path].errors],
                "problem": parsed[c.path].problem,
            }
            for c in candidates
        ],
        "unreadable": unreadable,
        "names": out,
        "boot": [
            {
                "name": n,
                "path": boot.entries[n].path,
                "line": boot.entries[n].line,
                "entry": e.to_dict(),
            }
            for n in boot.order_newest_first()
            if (e := boot.entries[n].entry) is not None
        ],
    }
