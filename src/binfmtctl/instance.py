"""A binfmt_misc instance, given by its mountpoint: read it and change it.

This is the only module that writes to binfmt_misc, so its two guards cannot
be bypassed: every name is checked by :func:`check_name` (only names the
kernel could have created), and every access goes through a directory fd
whose file system is proved to be binfmt_misc (statfs magic) first, so a
``--mountpoint`` that is a plain directory, or a symlink planted in one, is
never written to.  Every OSError is turned into a domain error by
:func:`errors.from_oserror`, with the action named.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress

from binfmtctl import namespaces
from binfmtctl.arch import resolve
from binfmtctl.entry import Entry, Handler, parse_proc_entry
from binfmtctl.errors import (
    BinfmtError,
    EntryExistsError,
    InvalidNameError,
    NoSuchEntryError,
    NotBinfmtMiscError,
    NotMountedError,
    UnknownArchError,
    entry_error,
    from_oserror,
    register_error,
)
from binfmtctl.namespaces import changes_reach_host
from binfmtctl.records import NamedTuple
from binfmtctl.syscalls import mount

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from pathlib import Path

DEFAULT_MOUNTPOINT = namespaces.DEFAULT_MOUNTPOINT  # defined there, the one copy
CONTROL_FILES = ("register", "status")
BINFMTFS_MAGIC = 0x42494E4D  # statfs f_type of binfmt_misc ("BINM")
NAME_MAX = 255  # bytes; the kernel answers ENAMETOOLONG above it
RACE_RETRIES = 8  # how often a change is retried when another process races it


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an entry the kernel created; None when it can be.

    The kernel's own rule (fs/binfmt_misc.c): not empty, not ``.``/``..``, no
    ``/``, no NUL, at most 255 bytes, and not one of the control files.
    """
    shown = repr(name)
    if name == "status":
        return (
            "'status' is a control file of binfmt_misc (the switch of the whole "
            "instance), not an entry; use `binfmtctl disable --instance` or "
            "`binfmtctl enable --instance` to switch the instance"
        )
    if name == "register":
        return "'register' is a control file of binfmt_misc (it adds entries), not an entry"
    if not name:
        return "an entry name cannot be empty"
    if name in (".", ".."):
        return f"{shown} is not an entry name: it names a directory"
    if "/" in name:
        return f"{shown} is not an entry name: entry names never contain '/'"
    if "\0" in name:
        return f"{shown} is not an entry name: entry names never contain a NUL byte"
    size = len(os.fsencode(name))
    if size > NAME_MAX:
        return f"entry name too long: {size} bytes, the kernel allows at most {NAME_MAX}"
    return None


def check_name(name: str) -> str:
    """``name`` itself, or InvalidNameError (exit 2) saying why it cannot be an entry."""
    problem = name_problem(name)
    if problem is not None:
        raise InvalidNameError(problem, entry=name)
    return name


def entry_name(word: str, present: Collection[str]) -> str:
    """The entry a command-line word names: a registered name as given, else an
    arch's qemu-ARCH entry, else the word itself, checked (exit 2) as an entry name."""
    if word in present:
        return word
    try:
        return resolve(word).entry_name
    except UnknownArchError:
        return check_name(word)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def fs_type(fd: int) -> int:
    """The statfs ``f_type`` of the file system ``fd`` is on (os.statvfs lacks it).

    ``f_type`` is the first member of struct statfs on every Linux ABI: a
    long, except on s390x where it is an unsigned int.
    """
    libc = _libc()
    buf = ctypes.create_string_buffer(256)  # larger than any struct statfs
    if libc.fstatfs(fd, buf) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    kind = ctypes.c_uint if os.uname().machine == "s390x" else ctypes.c_ulong
    return int(kind.from_buffer(buf).value) & 0xFFFFFFFF


def disabled_warning(mountpoint: str) -> str:
    """What install and status say when the whole instance is switched off."""
    return (
        f"binfmt_misc at {mountpoint} is disabled as a whole: no handler runs until "
        "`binfmtctl enable --instance`"
    )


class Snapshot(NamedTuple):
    """An instance at one moment, and the kernel's rule for which entry runs a file.

    The default is an empty, enabled instance: what an exec sees with no
    handler in the way.
    """

    mountpoint: str = DEFAULT_MOUNTPOINT
    mounted: bool = True
    enabled: bool = True
    host: bool = True  # changes here reach the host (initial user namespace)
    handlers: tuple[Handler, ...] = ()  # newest first, the order the kernel tries them

    def matching(self, header: bytes, path: str = "") -> list[Handler]:
        """Every entry that matches, enabled or not, newest first."""
        return [h for h in self.handlers if h.entry.matches(header, path)]

    def winner(self, header: bytes, path: str = "") -> Handler | None:
        """The entry the kernel uses: the newest enabled one that matches, if any."""
        if not (self.mounted and self.enabled):
            return None
        return next((h for h in self.matching(header, path) if h.enabled), None)

    def to_dict(self) -> dict[str, object]:
        return {
            "mountpoint": self.mountpoint,
            "mounted": self.mounted,
            "enabled": self.enabled,
            "host": self.host,
        }


class Instance:
    """Operations on the binfmt_misc mounted at ``mountpoint``."""

    def __init__(self, mountpoint: str = DEFAULT_MOUNTPOINT) -> None:
        self.mountpoint = mountpoint

    @property
    def root(self) -> Path:
        """The mountpoint as a Path (pathlib is imported only when asked: start-up time)."""
        from pathlib import Path

        return Path(self.mountpoint)

    def __repr__(self) -> str:
        return f"Instance({self.mountpoint!r})"

    # -- the mount point ----------------------------------------------------

    @contextmanager
    def _opened(self) -> Iterator[int]:
        """A directory fd of the mountpoint, proved to be binfmt_misc.

        Every read and write goes through this fd (``openat``), so the file
        system checked is the one used, even if the path is re-pointed meanwhile.
        """
        try:
            fd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as err:
            raise self._not_mounted() from err
        except NotADirectoryError as err:
            raise self._not_binfmt_misc() from err
        except OSError as err:
            raise from_oserror(err, "open binfmt_misc", self.mountpoint) from err
        try:
            if fs_type(fd) != BINFMTFS_MAGIC:
                # An empty directory is a place to mount one; anything else is refused.
                raise self._not_binfmt_misc() if os.listdir(fd) else self._not_mounted()
            yield fd
        finally:
            os.close(fd)

    def _not_mounted(self) -> NotMountedError:
        return NotMountedError(
            f"binfmt_misc is not mounted at {self.mountpoint}; mount it with "
            f"`sudo mount -t binfmt_misc binfmt_misc {self.mountpoint}` or let "
            "`binfmtctl install` do it",
            path=self.mountpoint,
        )

    def _not_binfmt_misc(self) -> NotBinfmtMiscError:
        return NotBinfmtMiscError(
            f"{self.mountpoint} is not a binfmt_misc file system; nothing was written "
            "there (--mountpoint must name a mounted binfmt_misc, or an empty directory "
            "for binfmtctl to mount one on)",
            path=self.mountpoint,
        )

    # -- reading -----------------------------------------------------------

    @property
    def mounted(self) -> bool:
        """Whether a binfmt_misc file system is mounted there (not merely a ``register`` file)."""
        try:
            with self._opened():
                return True
        except (NotMountedError, NotBinfmtMiscError):
            return False

    def require_mounted(self) -> None:
        with self._opened():
            pass

    def enabled(self) -> bool:
        return self._read("status", "read status").strip() == b"enabled"

    def names(self) -> list[str]:
        """Entry names, newest first: the order the kernel tries them in at exec.

        The kernel lists a binfmt_misc directory newest first (each new entry's
        dentry goes to the head of the directory), the same order it keeps its
        match list in; tests/test_instance.py checks this on the live kernel.
        """
        with self._opened() as fd:
            try:
                listing = os.listdir(fd)
            except OSError as err:
                raise from_oserror(err, "list entries", self.mountpoint) from err
        return [n for n in listing if n not in CONTROL_FILES]

    def snapshot(self) -> Snapshot:
        """What the kernel consults at exec right now, as data."""
        if not self.mounted:
            return Snapshot(self.mountpoint, False, False, changes_reach_host())
        handlers = tuple(self.entries())
        return Snapshot(self.mountpoint, True, self.enabled(), changes_reach_host(), handlers)

    def get(self, name: str) -> Handler:
        raw = self._read(check_name(name), f"read entry {name}")
        return parse_proc_entry(name, raw)

    def entries(self) -> list[Handler]:
        """Every entry, newest first; entries removed while reading are skipped.

        All are read through one fd of the mountpoint, proved binfmt_misc once
        (as :meth:`names` then :meth:`get` of each would, without re-opening it per entry).
        """
        out: list[Handler] = []
        with self._opened() as root:
            try:
                listing = os.listdir(root)
            except OSError as err:
                raise from_oserror(err, "list entries", self.mountpoint) from err
            for name in listing:
                if name in CONTROL_FILES:
                    continue
                try:
                    raw = self._read_in(root, check_name(name), f"read entry {name}")
                except NoSuchEntryError:
                    continue
                out.append(parse_proc_entry(name, raw))
        return out

    def find(self, name: str) -> Handler | None:
        try:
            return self.get(name)
        except NoSuchEntryError:
            return None

    # -- changing ----------------------------------------------------------

    def mount(self) -> None:
        """Mount binfmt_misc at the mountpoint if it is not there yet.

        Only on an empty directory: a directory with files in it is refused
        (:class:`NotBinfmtMiscError`), so nothing of the user's is hidden.
        """
        try:
            self.require_mounted()
            return
        except NotMountedError:
            pass
        try:
            mount("binfmt_misc", self.mountpoint, "binfmt_misc")
        except OSError as err:
            raise from_oserror(err, "mount binfmt_misc", self.mountpoint) from err

    def register(self, entry: Entry) -> None:
        """Register ``entry`` with one write, as the kernel requires.

        Opening ``register`` and writing to it fail for different reasons: a
        refused open is about this process's privileges (or a read-only
        mount), a refused write is about the entry (with F, its interpreter).
        """
        self._register(entry, entry.name)

    def _register(self, entry: Entry, shown: str) -> None:
        """Register ``entry``; errors speak of ``shown`` (the real name of a temporary one)."""
        check_name(entry.name)
        data = entry.register_bytes()
        with self._opened() as root:
            try:
                fd = os.open("register", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
            except OSError as err:
                where = f"{self.mountpoint}/register"
                raise from_oserror(err, f"register {shown}", where, entry=shown) from err
            try:
                os.write(fd, data)
            except OSError as err:
                raise register_error(
                    err, shown, entry.interpreter, fixed="F" in entry.flags
                ) from err
            finally:
                os.close(fd)

    def ensure(self, entry: Entry) -> bool:
        """Register ``entry`` unless the very same entry is already there.

        Returns False when it was there already: two installs racing with one
        definition both succeed. A different same-named entry is EntryExistsError.
        """
        try:
            self.register(entry)
            return True
        except EntryExistsError:
            current = self.find(entry.name)
            if current is None or current.entry != entry:
                raise
            if not current.enabled:
                self.enable(entry.name)
            return False

    def replace(self, entry: Entry) -> Handler | None:
        """Register ``entry`` in place of a same-named one (if any); return that one.

        The kernel has no atomic replace: the old entry must be removed before
        a same-named one can be registered, and a register refused after that
        would leave no handler at all (an F-pinned old entry whose emulator
        file was deleted since cannot be put back). So:

        1. the new definition is registered under a temporary name first; if
           the kernel refuses it (with F it opens the interpreter, so that is
           proved too), nothing else was touched and the old entry stays as it was;
        2. the old entry is removed and the new one registered under its name;
           the temporary entry matches the same files, so a handler is in
           place at every moment;
        3. the temporary entry is removed.

        If step 2 fails, the old entry is put back when it can be; if it
        cannot, the temporary entry stays registered and the error names it.
        Another process replacing the same name meanwhile is not an error.
        """
        for _ in range(RACE_RETRIES):
            old = self.find(entry.name)
            if old is None:
                try:
                    self.register(entry)
                    return None
                except EntryExistsError:
                    continue  # registered meanwhile: replace that one
            self._swap(old, entry)
            return old
        raise EntryExistsError(
            f"cannot replace {entry.name}: other processes keep registering it", entry=entry.name
        )

    def _swap(self, old: Handler, entry: Entry) -> None:
        temp = entry.replace(name=temporary_name(entry.name))
        self._register(temp, entry.name)  # the kernel's verdict on the new definition
        try:
            self._put(entry)
        except BinfmtError as err:
            if self._restore(old):
                self._discard(temp.name)
            else:
                err.message += (
                    f"; the new definition stays registered as {temp.name} so files "
                    f"{entry.name} handled still run"
                )
                err.args = (err.message,)
                err.context["kept"] = temp.name
            raise
        self._discard(temp.name)

    def _put(self, entry: Entry) -> None:
        """Remove whatever holds ``entry.name`` and register ``entry`` there."""
        for _ in range(RACE_RETRIES):
            with suppress(NoSuchEntryError):  # already absent: a racing replace removed it
                self.remove(entry.name)
            try:
                self.ensure(entry)
                return
            except EntryExistsError:
                continue  # another process registered a different one meanwhile
        raise EntryExistsError(
            f"cannot replace {entry.name}: other processes keep registering it", entry=entry.name
        )

    def _restore(self, old: Handler) -> bool:
        """Put ``old`` back (with its enabled state); whether that worked."""
        try:
            self.ensure(old.entry)
            if not old.enabled:
                self.disable(old.entry.name)
        except BinfmtError:
            return False
        return True

    def _discard(self, name: str) -> None:
        with suppress(NoSuchEntryError):
            self.remove(name)

    def enable(self, name: str) -> None:
        self._control(check_name(name), b"1", f"enable {name}")

    def disable(self, name: str) -> None:
        self._control(check_name(name), b"0", f"disable {name}")

    def remove(self, name: str) -> None:
        self._control(check_name(name), b"-1", f"remove {name}")

    def set_enabled(self, on: bool) -> None:
        """Turn the whole instance on or off (the ``status`` file)."""
        self._control("status", b"1" if on else b"0", "change status")

    def _control(self, name: str, value: bytes, action: str) -> None:
        """Write ``value`` to the file ``name``; callers check the name first."""
        with self._opened() as root:
            try:
                fd = os.open(name, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
                try:
                    os.write(fd, value)
                finally:
                    os.close(fd)
            except OSError as err:
                raise entry_error(err, action, name, self.mountpoint) from err

    def _read(self, name: str, action: str) -> bytes:
        with self._opened() as root:
            return self._read_in(root, name, action)

    def _read_in(self, root: int, name: str, action: str) -> bytes:
        """The file ``name`` of the mountpoint open (and proved) as ``root``."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
            try:
                chunks = []
                while chunk := os.read(fd, 65536):
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                os.close(fd)
        except OSError as err:
            raise entry_error(err, action, name, self.mountpoint) from err


def temporary_name(name: str) -> str:
    """The name a replacement is proved under first: unique to this process, <= 255 bytes."""
    suffix = f".binfmtctl-new-{os.getpid()}"
    raw = os.fsencode(name)[: NAME_MAX - len(suffix)]
    return os.fsdecode(raw) + suffix
