"""binfmt-support: its format files, its database, and update-binfmts.

Format files (update-binfmts(8), FORMAT FILES): one ``key value`` pair per
line: package, interpreter, magic, offset, mask, extension, detector,
credentials, preserve, fix_binary. Its database in /var/lib/binfmts holds one
file per format: ten lines, in a fixed order.

binfmtctl writes the database only through update-binfmts itself, given the
directory it resolved (inside ``--root``) as /proc/self/fd/N. An entry is
encoded once (:func:`fields`), for both a format file and update-binfmts'
arguments, so the two can never disagree.
"""

from __future__ import annotations

import os

from binfmtctl import files, rootpath
from binfmtctl.entry import Entry
from binfmtctl.errors import ConfigError, EntryParseError, config_error
from binfmtctl.files import ABSENT, FOREIGN, OURS, Existing, Saved, SavedAction
from binfmtctl.records import NamedTuple
from binfmtctl.register_string import unescape

BINFMTS_ADMINDIR = "/var/lib/binfmts"
BINFMTS_IMPORTDIR = "/usr/share/binfmts"
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
# The database file's lines, in order (update-binfmts writes them so).
ADMIN_KEYS = (
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
UPDATE_BINFMTS = "update-binfmts"


def marked_binfmts(data: bytes) -> bool:
    """Whether a format file is binfmtctl's: it names our package."""
    return f"package {PACKAGE}".encode() in (line.strip() for line in data.split(b"\n"))


class BinfmtsFormat(NamedTuple):
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


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def fields(entry: Entry) -> list[tuple[str, str]]:
    """``entry`` as binfmt-support's fields after the interpreter, in its order.

    The one encoder of an entry for binfmt-support: a format file writes each
    as ``key value``, update-binfmts gets each as ``--key value``. Refuses what
    binfmt-support cannot express: O without C (its 'credentials yes' sets
    both), a newline in a value.
    """
    if "O" in entry.flags and "C" not in entry.flags:
        raise ConfigError(
            f"{entry.name}: binfmt-support cannot express the O flag without C "
            "(its 'credentials yes' sets both); drop O or add C",
            entry=entry.name,
        )
    if any("\n" in v for v in (entry.interpreter, entry.extension or "")):
        raise ConfigError(
            f"{entry.name}: binfmt-support files cannot hold a newline", entry=entry.name
        )
    out: list[tuple[str, str]] = []
    if entry.kind == "M":
        out += [("magic", _escape(entry.magic)), ("offset", str(entry.offset))]
        if entry.mask is not None:
            out.append(("mask", _escape(entry.mask)))
    else:
        out.append(("extension", entry.extension or ""))
    return [
        *out,
        ("credentials", _yes("C" in entry.flags)),
        ("preserve", _yes("P" in entry.flags)),
        ("fix_binary", _yes("F" in entry.flags)),
    ]


def format_binfmts(entry: Entry, package: str = PACKAGE) -> bytes:
    """An update-binfmts format file (for ``--import``) registering ``entry``.

    binfmt-support has no way to ask for O without C: credentials=yes gives OC.
    """
    lines = [f"package {package}", f"interpreter {entry.interpreter}"]
    lines += [f"{key} {value}" for key, value in fields(entry)]
    return os.fsencode("\n".join(lines) + "\n")


def install_args(entry: Entry) -> list[str]:
    """update-binfmts' arguments installing ``entry`` as package binfmtctl."""
    args = ["--package", PACKAGE, "--install", entry.name, entry.interpreter]
    for key, value in fields(entry):
        args += [f"--{key.replace('_', '-')}", value]
    return args


def _decode_field(value: str) -> bytes:
    """binfmt-support magic/mask text: passed to the kernel as is, so decoded as it does."""
    return unescape(os.fsencode(value))


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
    keys = ADMIN_KEYS
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
            read = {
                name: files.read_regular(fd, name, os.path.join(admindir, name))
                for name in names
                if not name.startswith(".")
            }
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        error = config_error(err, "list", admindir)
        if problems is None:
            raise error from err
        problems.append(error.message)
        return []
    out = []
    for name, data in read.items():
        path = os.path.join(admindir, name)
        try:
            found = files.read(path, root) if data is None else data
            out.append(parse_binfmts_admin(found, name, path))
        except ConfigError as err:
            if problems is not None:
                problems.append(err.message)
    return out


def _update_binfmts(admindir: tuple[int, str], *args: str) -> None:
    """Run update-binfmts on the database directory held open as ``admindir`` (fd, name).

    It gets the directory as /proc/self/fd/N: the one binfmtctl resolved inside
    the root, whatever links are swapped in meanwhile.
    """
    import subprocess  # here, not at the top: only persisting with binfmt-support runs it

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


def _admin_state(fd: int, name: str, path: str, root: str) -> tuple[Existing, BinfmtsFormat | None]:
    """Who owns binfmt-support's database entry ``name``, and the format, if readable."""
    have = files.examine(
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
        files.remove_at(admindir[0], name, path)


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
    args = install_args(entry)
    try:
        with files.open_dir(root, admindir, create=not dry_run) as fd:
            have, fmt = _admin_state(fd, entry.name, target, root)
            if have.state == FOREIGN and not overwrite_foreign:
                raise files.refuse(target, have)
            if have.state == OURS and fmt is not None and fmt.entry == entry:
                return Saved(entry.name, target, SavedAction.UNCHANGED)
            if dry_run:
                return Saved(entry.name, target, SavedAction.WOULD_WRITE)
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
        return Saved(entry.name, target, SavedAction.WOULD_WRITE)
    return Saved(entry.name, target, SavedAction.WRITTEN)


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
        with files.open_dir(root, admindir) as fd:
            have, fmt = _admin_state(fd, name, target, root)
            if have.state == ABSENT:
                return Saved(name, target, SavedAction.ABSENT)
            if have.state == FOREIGN and not overwrite_foreign:
                raise files.refuse(target, have, "remove")
            if dry_run:
                return Saved(name, target, SavedAction.WOULD_REMOVE)
            if have.state == FOREIGN:
                _drop_foreign((fd, admindir), name, target, fmt)
            elif fmt is not None:
                _update_binfmts(
                    (fd, admindir), "--package", PACKAGE, "--remove", name, fmt.entry.interpreter
                )
    except ConfigError as err:
        if err.context.get("errno") != "ENOENT":
            raise
        return Saved(name, target, SavedAction.ABSENT)
    return Saved(name, target, SavedAction.REMOVED)
