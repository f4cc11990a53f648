"""A root file system made ready inside a private namespace, and entered (chroot).

/proc, /dev and /sys are recursive binds of the host's, /tmp a fresh tmpfs,
and the host's resolv.conf is bound read-only; every mountpoint is opened
without following symlinks, so nothing leads out of the root. Why binds
rather than fresh mounts: see :mod:`binfmtctl.sandbox`. The caller's own
directories and files come in as :class:`Bind` (``run --bind``): the place
they go is found inside the root (symlinks resolved there, never out of it)
and its last component must not be a symlink, like the mountpoints above.
"""

from __future__ import annotations

import os
import stat

from binfmtctl import rootpath
from binfmtctl.errors import SandboxError, UsageError
from binfmtctl.syscalls import (
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


def _refuse(root: str, what: str, **context: Any) -> SandboxError:
    return SandboxError(f"--rootfs {root}: {what}", path=root, **context)


def _open_mountpoint(parent: int, name: str, root: str, shown: str, *, is_dir: bool) -> int:
    """An O_PATH descriptor of ``name`` in the directory ``parent``, created if missing.

    Never through a symlink: the root may belong to someone else, and R/proc ->
    /home/victim would otherwise make us create and mount over a host path.
    The descriptor (mounted on as /proc/self/fd/N) is the very file checked,
    so swapping the name for a link afterwards changes nothing.
    """
    try:
        if is_dir:
            os.mkdir(name, 0o755, dir_fd=parent)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            os.close(os.open(name, flags, 0o644, dir_fd=parent))
    except FileExistsError:
        pass
    except OSError as err:
        raise _refuse(
            root,
            f"{shown} is missing and cannot be created ({err.strerror}); create it "
            "or use a writable copy of the root",
        ) from err
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        _check_mountpoint(os.fstat(fd), parent, name, root, shown, is_dir=is_dir)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_mountpoint(
    info: os.stat_result, parent: int, name: str, root: str, shown: str, *, is_dir: bool
) -> None:
    """Refuse a mountpoint that is a symlink, or not a directory (not a file)."""
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(name, dir_fd=parent)
        raise _refuse(
            root,
            f"{shown} is a symlink (to {target}); binfmtctl mounts nothing through a "
            f"symlink in a root (it could lead out of it): make {shown} a "
            f"{'directory' if is_dir else 'file'}",
            mountpoint=shown,
        )
    if stat.S_ISDIR(info.st_mode) != is_dir:
        kind = "a directory" if is_dir else "a regular file"
        raise _refuse(root, f"{shown} is not {kind}", mountpoint=shown)


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


# statvfs flags -> the mount flags a read-only remount must keep (a user namespace
# may not drop the flags of a mount it did not create: EPERM).
_KEPT_FLAGS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: 1024,  # MS_NOATIME
    os.ST_NODIRATIME: 2048,  # MS_NODIRATIME
    os.ST_RELATIME: 1 << 21,  # MS_RELATIME
}


def _bind_read_only(source: str, parent: int, name: str, target_fd: int, root: str) -> None:
    """Bind ``source`` over ``name`` (open as ``target_fd``) in ``parent``, read-only.

    Read-only so the command, root in its namespace, cannot change the host's
    file through the bind; checked after the remount, never assumed.
    """
    mount(source, _fd_path(target_fd), None, MS_BIND)
    bound = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        here, there = os.fstat(bound), os.stat(source)
        if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
            raise _refuse(root, f"{name} changed while it was being set up")
        kept = os.fstatvfs(bound).f_flag
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY
        flags |= sum(ms for st, ms in _KEPT_FLAGS.items() if kept & st)
        mount(None, _fd_path(bound), None, flags)
        if not os.fstatvfs(bound).f_flag & os.ST_RDONLY:
            raise _refuse(root, f"could not make the bind of {source} read-only")
    finally:
        os.close(bound)


def _bind_resolv_conf(root_fd: int, root: str, host_resolv_conf: str) -> None:
    """The host's resolv.conf over the root's, read-only, so DNS works inside (apt).

    Left alone when the root has no /etc directory of its own (a symlink
    included) or the host has no resolv.conf. A symlinked /etc/resolv.conf
    (systemd-resolved roots) is followed *inside* the root (rootpath); if it
    names no regular file there, nothing is bound.
    """
    if not os.path.exists(host_resolv_conf):
        return
    try:
        etc = os.open(
            "etc", os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=root_fd
        )
    except OSError:
        return  # no /etc, or a symlink: nothing to bind over that is surely the root's
    try:
        try:
            mode: int | None = os.stat("resolv.conf", dir_fd=etc, follow_symlinks=False).st_mode
        except FileNotFoundError:
            mode = None  # an empty mountpoint is created, as for /proc
        if mode is None or stat.S_ISREG(mode):
            _bind_file(host_resolv_conf, etc, "resolv.conf", root)
        elif stat.S_ISLNK(mode):
            with rootpath.locate(root, "/etc/resolv.conf") as (parent, name):
                found = os.stat(name, dir_fd=parent, follow_symlinks=False) if name else None
                if found is not None and stat.S_ISREG(found.st_mode):
                    _bind_file(host_resolv_conf, parent, name, root)
    except FileNotFoundError:
        return  # a symlink to nothing inside the root: nothing to bind over
    finally:
        os.close(etc)


def _bind_file(source: str, parent: int, name: str, root: str) -> None:
    target = _open_mountpoint(parent, name, root, "/etc/resolv.conf", is_dir=False)
    try:
        _bind_read_only(source, parent, name, target, root)
    finally:
        os.close(target)


_MOUNTPOINTS = ("proc", "dev", "sys", "tmp")
# Where a bind would be hidden by binfmtctl's own mounts (or would reach the host's).
_COVERED = frozenset(_MOUNTPOINTS)


class Bind:
    """A host directory or file made visible at ``target`` inside the root (``--bind``)."""

    __slots__ = ("read_only", "source", "target")

    def __init__(self, source: str, target: str | None = None, read_only: bool = False) -> None:
        self.source = source
        self.target = target if target is not None else os.path.abspath(source)
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"Bind({self.source!r}, {self.target!r}, read_only={self.read_only})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bind):
            return NotImplemented
        return (self.source, self.target, self.read_only) == (
            other.source,
            other.target,
            other.read_only,
        )

    def __hash__(self) -> int:
        return hash((self.source, self.target, self.read_only))

    @property
    def shown(self) -> str:
        """How the user wrote it, for messages."""
        return f"{self.source}:{self.target}{':ro' if self.read_only else ''}"


def _bind_refusal(bind: Bind, what: str) -> UsageError:
    return UsageError(f"--bind {bind.shown}: {what}")


def _open_source(bind: Bind) -> tuple[int, bool]:
    """An O_PATH fd of the bind's source (the caller's own path) and whether it is a directory."""
    try:
        fd = os.open(bind.source, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _bind_refusal(bind, f"{bind.source} does not exist") from None
    except OSError as err:
        raise _bind_refusal(bind, f"cannot open {bind.source} ({err.strerror})") from err
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        os.close(fd)
        what = rootpath.kind(mode).replace("not a regular file but ", "")
        raise _bind_refusal(
            bind, f"{bind.source} is {what}; only a directory or a regular file can be bound"
        )
    return fd, stat.S_ISDIR(mode)


def _check_target(bind: Bind) -> None:
    """The target as written: absolute, no ``..``, not /, not where binfmtctl mounts."""
    target = bind.target
    if not target.startswith("/"):
        raise _bind_refusal(bind, f"{target} is not an absolute path (a place inside the root)")
    parts = [p for p in target.split("/") if p and p != "."]
    if ".." in parts:
        raise _bind_refusal(
            bind, f"{target} contains `..`; name the place inside the root directly"
        )
    if not parts:
        raise _bind_refusal(bind, "cannot bind over the root itself; use --rootfs for that")
    if parts[0] in _COVERED:
        raise _bind_refusal(
            bind,
            f"{target} is inside /{parts[0]}, which binfmtctl covers with its own mount; "
            "choose another place",
        )


def _refuse_covered(root: str, bind: Bind) -> None:
    """Refuse, before creating anything, a target whose existing part leads where we mount.

    The deepest directory of the target that exists is resolved inside the
    root; if a symlink on the way leads into /proc, /dev, /sys or /tmp the bind
    is refused with nothing created. (Even so, binds come before those mounts,
    so anything created is the root's own.)
    """
    parts = [p for p in bind.target.split("/") if p and p != "."]
    for depth in range(len(parts) - 1, -1, -1):
        try:
            fd, _, names = rootpath._walk(
                root, "/".join(parts[:depth]), want_dir=True, follow_last=True, create=False
            )
        except OSError:
            continue
        os.close(fd)
        if names[:1] and names[0] in _COVERED:
            raise _bind_refusal(
                bind,
                f"{bind.target} leads to /{'/'.join(names)} inside the root (through a "
                "symlink), where binfmtctl mounts its own; choose another place",
            )
        return


def _mount_bind(root: str, root_fd: int, bind: Bind, source_fd: int, is_dir: bool) -> None:
    """Mount the source over the bind's target, found inside ``root`` (created if missing)."""
    _refuse_covered(root, bind)
    try:
        parent, name, names = rootpath._walk(
            root, bind.target, want_dir=False, follow_last=False, create=True
        )
    except OSError as err:
        raise _refuse(root, f"--bind {bind.shown}: cannot reach {bind.target} ({err})") from err
    try:
        if not name or (names or [name])[0] in _COVERED:
            where = "/" + "/".join([*names, name]).strip("/")
            raise _bind_refusal(
                bind,
                f"{bind.target} leads to {where} inside the root (through a symlink), "
                "where binfmtctl mounts its own; choose another place",
            )
        target = _open_mountpoint(parent, name, root, bind.target, is_dir=is_dir)
        try:
            if bind.read_only:
                _bind_read_only(_fd_path(source_fd), parent, name, target, root)
            else:
                mount(_fd_path(source_fd), _fd_path(target), None, MS_BIND | MS_REC)
        finally:
            os.close(target)
    finally:
        os.close(parent)


# The root this process had before the chroot (an O_PATH fd, closed at exec).
_HOST_ROOT: list[int] = []


def leave_rootfs() -> None:
    """Go back to the root this process had before :func:`enter_rootfs`, if it chrooted.

    Only for binfmtctl's own way out when the command could not be started:
    the modules that print the error are loaded from the host's file system.
    The command itself never gets the descriptor (close-on-exec).
    """
    if _HOST_ROOT:
        fd = _HOST_ROOT.pop()
        os.fchdir(fd)
        os.chroot(".")
        os.close(fd)


def enter_rootfs(
    root: str,
    *,
    host_resolv_conf: str = "/etc/resolv.conf",
    binds: Sequence[Bind] = (),
    workdir: str = "/",
) -> None:
    """Set up /proc, /dev, /sys, /tmp and /etc/resolv.conf in ``root``, chroot, cd ``workdir``.

    Call it inside a private namespace (after :func:`enter`): the mounts live
    and die with that namespace; the root itself only gains the empty
    mountpoints it lacked. /proc, /dev and /sys are recursive binds of the
    host's (see the module docstring for why), /tmp is a fresh tmpfs, and the
    host's resolv.conf is bound read-only over the root's. A mountpoint that
    is a symlink is refused (SandboxError): it could lead out of the root.

    ``binds`` come first, on the root's own directories (so a target can never
    be reached through the host's /dev bound in): each source must exist and be
    a directory (bound with what is mounted below it) or a regular file; a read-only
    one is bound alone (not its submounts) and remounted read-only, checked.
    """
    root = os.path.realpath(root)
    if not os.path.isdir(root):
        raise UsageError(f"--rootfs {root}: not a directory")
    sources = []
    try:
        for bind in binds:  # every bind checked before anything is mounted
            _check_target(bind)
            sources.append(_open_source(bind))
        _enter(root, binds, sources, host_resolv_conf, workdir)
    finally:
        for fd, _ in sources:
            os.close(fd)


def _enter(
    root: str,
    binds: Sequence[Bind],
    sources: list[tuple[int, bool]],
    host_resolv_conf: str,
    workdir: str,
) -> None:
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise _refuse(root, f"cannot open it ({err.strerror})") from err
    try:
        for name in _MOUNTPOINTS:  # all checked before any is created
            try:
                info = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            _check_mountpoint(info, root_fd, name, root, f"/{name}", is_dir=True)
        for bind, (source_fd, is_dir) in zip(binds, sources, strict=True):
            _mount_bind(root, root_fd, bind, source_fd, is_dir)
        for name in _MOUNTPOINTS:
            fd = _open_mountpoint(root_fd, name, root, f"/{name}", is_dir=True)
            try:
                if name == "tmp":
                    mount("tmpfs", _fd_path(fd), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
                else:
                    mount(f"/{name}", _fd_path(fd), None, MS_BIND | MS_REC)
            finally:
                os.close(fd)
        _bind_resolv_conf(root_fd, root, host_resolv_conf)
        _HOST_ROOT[:] = [os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)]
        os.fchdir(root_fd)
        os.chroot(".")
    except OSError as err:
        raise _refuse(root, f"cannot set it up: {err}") from err
    finally:
        os.close(root_fd)
    try:
        os.chdir(workdir)
    except OSError as err:
        what = {
            FileNotFoundError: "no such directory",
            NotADirectoryError: "not a directory",
        }.get(type(err), err.strerror or str(err))
        raise UsageError(f"--workdir {workdir}: {what} inside the root {root}") from err
