"""A private user + mount namespace with its own binfmt_misc instance (Linux 6.7+).

Inside it, registering entries changes nothing outside: the host's instance is
never touched, and the instance disappears with the last process that uses it.

Three ways in:

* :func:`enter` moves the calling process in (``binfmtctl run`` uses it, then
  execs the user's command);
* :func:`run` calls a function in a forked child that entered a fresh one and
  returns its result (or re-raises its exception);
* :class:`Sandbox` keeps one namespace alive so several calls share an instance.

And :func:`enter_rootfs` sets up a root file system inside one and chroots.
Running a program with QEMU handlers registered (``binfmtctl run`` and
``binfmtctl shell``) is :mod:`binfmtctl.rootless`, one floor up: this module
knows namespaces and mounts, not handlers or planning.

Why the host's /proc and /sys are bind-mounted into a root file system rather
than mounted afresh: a fresh proc needs a PID namespace of our own, which only
a *child* can enter (unshare(CLONE_NEWPID) does not move the caller), so the
command could no longer be exec'd in place; a fresh sysfs needs a network
namespace, which would cut the command off the network. Recursive binds of the
host's mounts are allowed in a user namespace and keep the private binfmt_misc
visible at /proc/sys/fs/binfmt_misc inside the root.

>>> from binfmtctl import sandbox                          # doctest: +SKIP
>>> sandbox.run(os.getuid)
0
"""

from __future__ import annotations

import errno
import os

from binfmtctl import forking, idmaps
from binfmtctl.chroot import enter_rootfs
from binfmtctl.errors import (
    RootlessUnavailableError,
    SandboxError,
    UsageError,
)
from binfmtctl.idmaps import FULL_ID_COUNT, write_full_id_maps
from binfmtctl.syscalls import (
    CLONE_NEWNS,
    CLONE_NEWUSER,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    mount,
    setns,
    unshare,
)

__all__ = [
    "CLONE_NEWNS",
    "CLONE_NEWUSER",
    "DEFAULT_MOUNTPOINT",
    "FULL_ID_COUNT",
    "MS_BIND",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "PROC_SYS",
    "Sandbox",
    "enter",
    "enter_rootfs",
    "kernel_refusal",
    "kernel_supports_private_instances",
    "mount",
    "mount_private_instance",
    "run",
    "setns",
    "unshare",
    "write_full_id_maps",
]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType
    from typing import NoReturn, ParamSpec, TypeVar

    P = ParamSpec("P")
    T = TypeVar("T")

DEFAULT_MOUNTPOINT = "/proc/sys/fs/binfmt_misc"
PROC_SYS = "/proc/sys"
SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"


def kernel_supports_private_instances(release: str | None = None) -> bool:
    """Per-user-namespace binfmt_misc instances arrived in Linux 6.7."""
    release = release or os.uname().release
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        minor_digits = "".join(ch for ch in release.split(".")[1] if ch.isdigit())
        major, minor = int(release.split(".")[0]), int(minor_digits or 0)
    return (major, minor) >= (6, 7)


def kernel_refusal(release: str | None = None) -> RootlessUnavailableError | None:
    """The refusal for a kernel older than 6.7 (one global binfmt_misc), else None."""
    release = release or os.uname().release
    if kernel_supports_private_instances(release):
        return None
    return RootlessUnavailableError(
        f"this kernel ({release}) has one global binfmt_misc; rootless mode needs "
        "Linux 6.7+; use `sudo binfmtctl install`",
        kernel=release,
    )


def _read_knob(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _unshare_refusal(err: OSError, proc_sys: str = PROC_SYS) -> SandboxError:
    """Say which knob forbids user namespaces and how to allow it.

    ``proc_sys`` is where the sysctl files are read (a parameter so the
    messages can be tested against knob files that are not the machine's).
    """
    if _read_knob(f"{proc_sys}/user/max_user_namespaces") == "0":
        return RootlessUnavailableError(
            "user namespaces are disabled (user.max_user_namespaces = 0); allow them "
            "with `sudo sysctl -w user.max_user_namespaces=15000`, or use "
            "`sudo binfmtctl install` instead of a private instance",
            knob="user.max_user_namespaces",
        )
    if _read_knob(f"{proc_sys}/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return RootlessUnavailableError(
            "AppArmor forbids unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns = 1); allow them with "
            "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (persist it "
            "in /etc/sysctl.d/), or give this Python an AppArmor profile with the "
            "`userns,` rule, or use `sudo binfmtctl install` instead",
            knob="kernel.apparmor_restrict_unprivileged_userns",
        )
    if _read_knob(f"{proc_sys}/kernel/unprivileged_userns_clone") == "0":
        return RootlessUnavailableError(
            "unprivileged user namespaces are disabled "
            "(kernel.unprivileged_userns_clone = 0); allow them with "
            "`sudo sysctl -w kernel.unprivileged_userns_clone=1`",
            knob="kernel.unprivileged_userns_clone",
        )
    if err.errno == errno.ENOSPC:
        limit = _read_knob(f"{proc_sys}/user/max_user_namespaces") or "?"
        return RootlessUnavailableError(
            "cannot create a user namespace: a limit is reached: user.max_user_namespaces "
            f"(= {limit} here; it counts per user, and every enclosing namespace has its "
            "own), user.max_mnt_namespaces, or the kernel's nesting depth of 32; end "
            "namespaces you no longer need (containers, sandboxes), raise the limit "
            "(`sudo sysctl -w user.max_user_namespaces=15000`), or run binfmtctl from a "
            "less deeply nested container",
            knob="user.max_user_namespaces",
            errno="ENOSPC",
        )
    if err.errno == errno.EUSERS:
        return RootlessUnavailableError(
            "cannot create a user namespace: user namespaces are nested 32 deep already "
            "(the kernel's limit; user.max_user_namespaces cannot raise it); run binfmtctl "
            "from a less deeply nested container",
            knob="user.max_user_namespaces",
            errno="EUSERS",
        )
    if err.errno == errno.EINVAL:
        return SandboxError(
            "cannot create a user namespace from a multi-threaded process "
            "(or inside a chroot); call the sandbox before starting threads",
        )
    return SandboxError(f"cannot create a user namespace: {err.strerror}")


#: ``uid_map`` values :func:`enter` takes (None is "none").
UID_MAPS = ("auto", "none", "default")


def enter(
    *,
    mountpoint: str = DEFAULT_MOUNTPOINT,
    binfmt: bool = True,
    uid_map: str | None = None,
    gid_map: str | None = None,
) -> idmaps.Refusal | None:
    """Move this (single-threaded) process into a new user + mount namespace.

    The caller becomes root inside it, mounts are made private so nothing
    propagates out, and with ``binfmt`` a fresh, empty binfmt_misc instance is
    mounted at ``mountpoint``.

    ``uid_map`` (and ``gid_map``, which follows it): None or ``"none"`` maps
    root inside to the caller's own uid/gid only, so nothing else exists
    inside and chown to another id fails. ``"auto"`` maps ids 0..65535 as
    :func:`binfmtctl.idmaps.write_full_id_maps` does (root inside is the caller; 1..65535 come
    from its range in /etc/subuid and /etc/subgid, through newuidmap and
    newgidmap of package ``uidmap``), so package managers in a root file system
    can chown. ``"default"`` is ``auto`` where it can work here
    (:func:`binfmtctl.idmaps.full_maps_refusal`) and ``none`` otherwise, also
    when the map helper fails: then why is returned (None when the
    full range is mapped, or was not asked for). Raises
    :class:`~binfmtctl.errors.SandboxError` (its subclass
    ``RootlessUnavailableError`` when the kernel or its settings forbid it).
    """
    maps = uid_map or gid_map or "none"
    if maps not in UID_MAPS:
        raise UsageError(f"--uid-map {maps!r}: the maps on offer are `auto` and `none`")
    why_not: idmaps.Refusal | None = None
    if maps == "default":
        why_not = idmaps.full_maps_refusal()  # asked here: inside, everyone is root
        maps = "none" if why_not else "auto"
    helper = idmaps.MapHelper() if maps == "auto" else None
    uid, gid = os.getuid(), os.getgid()
    try:
        _unshare_user_mount()
    except BaseException:
        if helper:
            helper.cancel()
        raise
    if helper is not None:
        failed = helper.finish()
        if failed is not None and uid_map != "default" and gid_map != "default":
            raise SandboxError(f"--uid-map auto: {failed}")
        if failed is not None:
            why_not = idmaps.Refusal(failed, "")
    if helper is None or why_not is not None:
        idmaps.write_own_maps(uid, gid)
    else:
        os.setgroups([])
    _finish_enter(mountpoint, binfmt=binfmt)
    return why_not


def _unshare_user_mount() -> None:
    """unshare(2) a user + mount namespace, or say which setting forbids it."""
    try:
        unshare(CLONE_NEWUSER | CLONE_NEWNS)
    except OSError as err:
        raise _unshare_refusal(err) from err


def _finish_enter(mountpoint: str, binfmt: bool = True) -> None:
    """Once the id maps are written: private mounts, and a fresh binfmt_misc."""
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as err:
        raise _mount_refusal(err, "make mounts private") from err
    if binfmt:
        mount_private_instance(mountpoint)


def _mount_refusal(err: OSError, what: str) -> SandboxError:
    """A mount refused right after unshare: AppArmor's restriction looks like this."""
    knob = _unshare_refusal(err)
    if isinstance(knob, RootlessUnavailableError):
        return knob
    return SandboxError(f"cannot {what}: {err.strerror}")


def mount_private_instance(mountpoint: str = DEFAULT_MOUNTPOINT) -> None:
    """Mount this user namespace's own binfmt_misc instance."""
    try:
        mount("binfmt_misc", mountpoint, "binfmt_misc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as err:
        too_old = kernel_refusal()
        if too_old is not None:
            raise too_old from err
        raise _mount_refusal(err, f"mount a private binfmt_misc at {mountpoint}") from err


def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``fn`` in a forked child inside a fresh private instance; return its result."""

    def body() -> T:
        enter()
        return fn(*args, **kwargs)

    return forking.fork_call(body)


class Sandbox:
    """A private namespace kept alive across calls (one binfmt_misc instance).

    With ``full_ids`` the namespace maps uids and gids 0..65535 (see
    :func:`binfmtctl.idmaps.write_full_id_maps`) instead of root alone, so a container engine
    can run inside it and its containers consult the sandbox's instance.

    >>> with Sandbox() as sb:                                # doctest: +SKIP
    ...     sb.run(subprocess.run, ["binfmtctl", "install", "arm"])
    ...     sb.run(subprocess.run, ["binfmtctl", "status"])
    """

    def __init__(self, mountpoint: str = DEFAULT_MOUNTPOINT, *, full_ids: bool = False) -> None:
        self.mountpoint = mountpoint
        self.full_ids = full_ids
        self.pid = 0
        self._release_fd = -1

    def __enter__(self) -> Sandbox:
        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the holder process
            try:  # whatever happens (an interrupt too), never return into the caller's code
                self._hold(ready_r, ready_w, hold_r, hold_w)
            finally:
                os._exit(1)
        os.close(ready_w)
        os.close(hold_r)
        try:
            answer = self._await_holder(pid, ready_r, hold_w)
        except BaseException:
            # Failed or interrupted: let the holder go (EOF on its pipe) and reap it.
            os.close(hold_w)
            os.waitpid(pid, 0)
            raise
        if answer != b"ok":
            os.close(hold_w)
            os.waitpid(pid, 0)
            raise SandboxError(answer.decode(errors="replace") or "sandbox holder died")
        self.pid, self._release_fd = pid, hold_w
        return self

    def _await_holder(self, pid: int, ready_r: int, hold_w: int) -> bytes:
        """The holder's answer (b"ok" once it is in), writing the full id maps if asked."""
        with os.fdopen(ready_r, "rb") as pipe:
            if self.full_ids:
                first = pipe.read(1)
                if first != b"u":
                    raise SandboxError((first + pipe.read()).decode(errors="replace"))
                write_full_id_maps(pid)
                os.write(hold_w, b"m")
            return pipe.read()

    def _hold(self, ready_r: int, ready_w: int, hold_r: int, hold_w: int) -> NoReturn:
        """The holder: enter the namespace, say so, then wait for the parent to let go."""
        os.close(ready_r)
        os.close(hold_w)
        try:
            if self.full_ids:
                _unshare_user_mount()
                os.write(ready_w, b"u")  # the parent writes the id maps now
                if os.read(hold_r, 1) != b"m":
                    os._exit(1)
                _finish_enter(self.mountpoint, binfmt=True)
            else:
                enter(mountpoint=self.mountpoint)
            os.write(ready_w, b"ok")
        except BaseException as exc:  # noqa: BLE001
            os.write(ready_w, str(exc).encode())
            os._exit(1)
        os.close(ready_w)
        os.read(hold_r, 1)  # returns at EOF: the parent closed or died
        os._exit(0)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self.pid:
            os.close(self._release_fd)
            os.waitpid(self.pid, 0)
            self.pid = 0

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` in a forked child that joined this sandbox; return its result."""
        if not self.pid:
            raise SandboxError("sandbox is not open")
        holder = self.pid

        def body() -> T:
            cwd = os.getcwd()
            user_fd = os.open(f"/proc/{holder}/ns/user", os.O_RDONLY)
            mnt_fd = os.open(f"/proc/{holder}/ns/mnt", os.O_RDONLY)
            setns(user_fd, CLONE_NEWUSER)
            setns(mnt_fd, CLONE_NEWNS)
            os.close(user_fd)
            os.close(mnt_fd)
            os.setgid(0)
            os.setuid(0)
            os.chdir(cwd)
            return fn(*args, **kwargs)

        return forking.fork_call(body)
