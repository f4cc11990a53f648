"""A binfmt_misc instance, given by its mountpoint: read it and change it.

This is the only module that writes to binfmt_misc.  Every OSError is turned
into a domain error by :func:`errors.from_oserror`, with the action named.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from binfmtctl.arch import Arch
from binfmtctl.entry import Entry, EntryState, parse_proc_entry
from binfmtctl.errors import (
    BinfmtError,
    NoSuchEntryError,
    NotMountedError,
    RefusedError,
    entry_error,
    from_oserror,
    register_error,
)

DEFAULT_MOUNTPOINT = "/proc/sys/fs/binfmt_misc"
CONTROL_FILES = ("register", "status")
# The kernel gives the initial user namespace this fixed inode (PROC_USER_INIT_INO).
INITIAL_USERNS_INO = 0xEFFFFFFD


def in_initial_user_namespace(proc: str = "/proc") -> bool:
    """True when this process is in the host's user namespace.

    In any other one (a rootless container, ``unshare -U``), mounting
    binfmt_misc creates a private instance: changing it changes nothing on the host.
    """
    try:
        return os.stat(f"{proc}/self/ns/user").st_ino == INITIAL_USERNS_INO
    except OSError:
        return True  # no namespaces support at all: there is only the host


@dataclass(frozen=True)
class Handler:
    """One registered entry as the kernel consults it at exec."""

    name: str
    entry: Entry
    enabled: bool

    @property
    def arch(self) -> Arch | None:
        """The catalog arch this entry handles, if it is an ELF handler for one."""
        from binfmtctl.explain import recognise

        return recognise(self.entry)

    def to_dict(self) -> dict[str, object]:
        return {
            "entry": self.name,
            "interpreter": self.entry.interpreter,
            "flags": self.entry.flags,
        }

    def describe(self) -> str:
        flags = f", flags {self.entry.flags}" if self.entry.flags else ", no flags"
        return f"{self.name} ({self.entry.interpreter}{flags})"


@dataclass(frozen=True)
class Snapshot:
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


@dataclass(frozen=True)
class Named:
    """An entry as the instance lists it: its file name and parsed state."""

    name: str
    state: EntryState


class Instance:
    """Operations on the binfmt_misc mounted at ``mountpoint``."""

    def __init__(self, mountpoint: str = DEFAULT_MOUNTPOINT) -> None:
        self.mountpoint = mountpoint
        self.root = Path(mountpoint)

    def __repr__(self) -> str:
        return f"Instance({self.mountpoint!r})"

    # -- reading -----------------------------------------------------------

    @property
    def mounted(self) -> bool:
        return (self.root / "register").exists()

    def require_mounted(self) -> None:
        if not self.mounted:
            raise NotMountedError(
                f"binfmt_misc is not mounted at {self.mountpoint}; mount it with "
                f"`sudo mount -t binfmt_misc binfmt_misc {self.mountpoint}` or let "
                "`binfmtctl install` do it",
                path=self.mountpoint,
            )

    @property
    def is_host(self) -> bool:
        """Whether changes here reach the host (we are in the initial user namespace)."""
        return in_initial_user_namespace()

    def enabled(self) -> bool:
        self.require_mounted()
        return self._read("status", "read status").strip() == b"enabled"

    def names(self) -> list[str]:
        """Entry names, newest first: the order the kernel tries them in at exec.

        The kernel lists a binfmt_misc directory newest first (each new entry's
        dentry goes to the head of the directory), the same order it keeps its
        match list in; tests/test_instance.py checks this on the live kernel.
        """
        self.require_mounted()
        try:
            listing = os.listdir(self.root)
        except OSError as err:
            raise from_oserror(err, "list entries", self.mountpoint) from err
        return [n for n in listing if n not in CONTROL_FILES]

    def snapshot(self) -> Snapshot:
        """What the kernel consults at exec right now, as data."""
        if not self.mounted:
            return Snapshot(self.mountpoint, False, False, self.is_host)
        handlers = tuple(Handler(n.name, n.state.entry, n.state.enabled) for n in self.entries())
        return Snapshot(self.mountpoint, True, self.enabled(), self.is_host, handlers)

    def get(self, name: str) -> EntryState:
        raw = self._read(name, f"read entry {name}")
        return parse_proc_entry(name, raw)

    def entries(self) -> list[Named]:
        """Every entry, newest first; entries removed while reading are skipped."""
        out: list[Named] = []
        for name in self.names():
            try:
                out.append(Named(name, self.get(name)))
            except NoSuchEntryError:
                continue
        return out

    def find(self, name: str) -> EntryState | None:
        try:
            return self.get(name)
        except NoSuchEntryError:
            return None

    # -- changing ----------------------------------------------------------

    def mount(self) -> None:
        """Mount binfmt_misc at the mountpoint if it is not there yet."""
        if self.mounted:
            return
        from binfmtctl.sandbox import mount

        try:
            mount("binfmt_misc", self.mountpoint, "binfmt_misc")
        except OSError as err:
            raise from_oserror(err, "mount binfmt_misc", self.mountpoint) from err

    def register(self, entry: Entry) -> None:
        """Register ``entry`` with one write, as the kernel requires."""
        self.require_mounted()
        if entry.name in CONTROL_FILES:
            raise RefusedError(f"{entry.name!r} is a control file of binfmt_misc, not a name")
        data = entry.register_bytes()
        try:
            fd = os.open(self.root / "register", os.O_WRONLY)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        except OSError as err:
            raise register_error(
                err, entry.name, entry.interpreter, fixed="F" in entry.flags
            ) from err

    def replace(self, entry: Entry) -> EntryState | None:
        """Register ``entry`` in place of a same-named one (if any) and return that one.

        If the kernel refuses ``entry``, the old entry is put back as it was.
        """
        old = self.find(entry.name)
        if old is not None:
            self.remove(entry.name)
        try:
            self.register(entry)
        except BinfmtError:
            if old is not None:
                self.register(old.entry)
                if not old.enabled:
                    self.disable(entry.name)
            raise
        return old

    def enable(self, name: str) -> None:
        self._control(name, b"1", f"enable {name}")

    def disable(self, name: str) -> None:
        self._control(name, b"0", f"disable {name}")

    def remove(self, name: str) -> None:
        self._control(name, b"-1", f"remove {name}")

    def set_enabled(self, on: bool) -> None:
        """Turn the whole instance on or off (the ``status`` file)."""
        self._control("status", b"1" if on else b"0", "change status")

    def _control(self, name: str, value: bytes, action: str) -> None:
        self.require_mounted()
        try:
            fd = os.open(self.root / name, os.O_WRONLY)
            try:
                os.write(fd, value)
            finally:
                os.close(fd)
        except OSError as err:
            raise entry_error(err, action, name, self.mountpoint) from err

    def _read(self, name: str, action: str) -> bytes:
        try:
            return (self.root / name).read_bytes()
        except OSError as err:
            raise entry_error(err, action, name, self.mountpoint) from err
