"""Configuration files on disk: one atomic writer, one safe reader, one ownership rule.

Every configuration file binfmtctl reads or writes goes through here, whatever
its format (:mod:`binfmtctl.binfmt_d`, :mod:`binfmtctl.binfmts`).

Paths are resolved inside a root (``--root``) as a chroot would see them
(:mod:`binfmtctl.rootpath`). Only regular files are read: a FIFO never blocks
a reader.

Writes are atomic: a hidden temporary file in the same directory, fsync,
rename, fsync of the directory -- a reader (or a boot) sees the old file or
the new one, never a mix. The temporary name starts with ``.`` and does not
end in ``.conf``, so systemd ignores a leftover one.

One ownership rule (:func:`examine`): binfmtctl replaces or removes only a
file that carries its marker (the format's ``ours`` test) or that already
holds exactly what it would write. Anything else -- an administrator's file, a
package's, a symlink, a FIFO -- is refused, naming who seems to own it, unless
the caller passes ``overwrite_foreign``. A symlink at the target is never
followed: it is replaced by a regular file only when overriding.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from enum import Enum

from binfmtctl import rootpath
from binfmtctl.errors import ConfigError, ForeignFileError, config_error
from binfmtctl.namespaces import in_initial_user_namespace
from binfmtctl.records import NamedTuple

EXAMINE_BYTES = 1 << 16  # what examine reads of a file at most (beyond what would be written)
DPKG_INFO = "/var/lib/dpkg/info"
_OVERFLOW_UID = 65534  # what an unmapped owner shows as inside a user namespace


# -- reading and writing ---------------------------------------------------------


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that nobody ever sees a partial file."""
    from pathlib import Path  # only writers pay for it (start-up time)

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


def read(path: str | os.PathLike[str], root: str = "/") -> bytes:
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


def read_regular(dir_fd: int, name: str, path: str) -> bytes | None:
    """``name`` in the open directory ``dir_fd`` when it is a plain regular file that
    reads without error; else None, for :func:`read` to read or refuse in full.

    Reading many files of one directory through one fd saves a walk from the
    root per file (start-up time); anything unusual (a symlink, a device, a
    FIFO, a file that vanished or cannot be read) takes the full path.
    """
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return None
        return rootpath.read_at(dir_fd, name, path)
    except OSError:
        return None


@contextlib.contextmanager
def open_dir(root: str, directory: str, *, create: bool = False) -> Iterator[int]:
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


class Ownership(str, Enum):
    """What sits at a path binfmtctl is about to write or remove."""

    ABSENT = "absent"
    SAME = "same"  # exactly what would be written
    OURS = "ours"  # carries binfmtctl's marker
    FOREIGN = "foreign"


ABSENT, SAME, OURS, FOREIGN = Ownership.ABSENT, Ownership.SAME, Ownership.OURS, Ownership.FOREIGN


class Existing(NamedTuple):
    """What sits where binfmtctl is about to write or remove a file."""

    state: Ownership
    what: str = ""  # foreign: what it is, as a predicate ("was not written by binfmtctl")
    owner: str = ""  # foreign: who seems to own it ("package qemu-user-static")


def examine(
    dir_fd: int,
    name: str,
    path: str,
    *,
    ours: Callable[[bytes], bool],
    root: str = "/",
    content: bytes | None = None,
) -> Existing:
    """Whether binfmtctl may replace or remove ``name`` in ``dir_fd`` (``path`` on this system).

    ``ours`` tells binfmtctl's files of this format by their content.
    """
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
        import pwd  # here, not at the top: asked only when refusing a user's file

        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            user = f"uid {uid}"
        return f"the user {user} (who owns it)"
    return "an administrator"


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


# -- what a write or removal did -----------------------------------------------------


class SavedAction(str, Enum):
    """What persisting (or forgetting) one entry did; refusals raise instead."""

    WRITTEN = "written"
    UNCHANGED = "unchanged"
    REMOVED = "removed"
    ABSENT = "absent"
    WOULD_WRITE = "would write"
    WOULD_REMOVE = "would remove"


class Saved(NamedTuple):
    """What persisting (or forgetting) one entry did."""

    name: str
    target: str  # the file, or the database entry
    action: SavedAction
    reason: str = ""
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "target": self.target,
            "action": self.action.value,
            "reason": self.reason or None,
            "warnings": list(self.warnings),
        }


def put(
    directory: str,
    name: str,
    content: bytes,
    *,
    ours: Callable[[bytes], bool],
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
        with open_dir(root, directory, create=not dry_run) as fd:
            have = examine(fd, name, path, root=root, content=content, ours=ours)
            if have.state == FOREIGN and not overwrite_foreign:
                raise refuse(path, have)
            if have.state == SAME:
                action = SavedAction.UNCHANGED
            elif dry_run:
                action = SavedAction.WOULD_WRITE
            else:
                action = SavedAction.WRITTEN
                write_at(fd, name, content, path)
    except ConfigError as err:
        if not dry_run or err.context.get("errno") != "ENOENT":
            raise
        action = SavedAction.WOULD_WRITE  # the directory is missing: it would be made
    return Saved(entry_name or name, path, action)
