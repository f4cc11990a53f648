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

import contextlib
import errno
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, ParamSpec, TypeVar

from binfmtctl import rootpath, signals
from binfmtctl.errors import (
    RootlessUnavailableError,
    SandboxError,
    UsageError,
)
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
    "stop_child",
    "unshare",
    "write_full_id_maps",
]

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
        return Path(path).read_text().strip()
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


def enter(
    *,
    mountpoint: str = DEFAULT_MOUNTPOINT,
    binfmt: bool = True,
    uid_map: str | None = None,
    gid_map: str | None = None,
) -> None:
    """Move this (single-threaded) process into a new user + mount namespace.

    The caller becomes root inside it, mounts are made private so nothing
    propagates out, and with ``binfmt`` a fresh, empty binfmt_misc instance is
    mounted at ``mountpoint``.

    ``uid_map`` (and ``gid_map``, which follows it): None maps root inside to
    the caller's own uid/gid only, so nothing else exists inside and chown to
    another id fails. ``"auto"`` maps ids 0..65535 as
    :func:`write_full_id_maps` does (root inside is the caller; 1..65535 come
    from its range in /etc/subuid and /etc/subgid, through newuidmap and
    newgidmap of package ``uidmap``), so package managers in a root file system
    can chown. Raises :class:`~binfmtctl.errors.SandboxError` (its subclass
    ``RootlessUnavailableError`` when the kernel or its settings forbid it).
    """
    maps = uid_map or gid_map
    if maps not in (None, "auto"):
        raise UsageError(f"--uid-map {maps!r}: the only map on offer is `auto`")
    helper = _MapHelper() if maps == "auto" else None
    uid, gid = os.getuid(), os.getgid()
    try:
        _unshare_user_mount()
    except BaseException:
        if helper:
            helper.cancel()
        raise
    if helper is None:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    else:
        helper.finish()
        os.setgroups([])
    _finish_enter(mountpoint, binfmt=binfmt)


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


class _MapHelper:
    """A child left outside the new user namespace to write our full id maps.

    newuidmap/newgidmap must run from the parent namespace (a setuid program
    whose owner is not mapped loses its privilege), and after our unshare, so
    the helper is forked first and waits for a go. This lets the command be
    exec'd in place afterwards (no fork between binfmtctl and it).
    """

    def __init__(self) -> None:
        target = os.getpid()
        self._go_r, self._go_w = os.pipe()
        self._done_r, done_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the helper
            try:  # whatever happens (an interrupt too), never return into the caller's code
                os.close(self._go_w)
                os.close(self._done_r)
                answer = b""
                if os.read(self._go_r, 1) == b"g":
                    try:
                        write_full_id_maps(target)
                        answer = b"ok"
                    except BaseException as exc:  # noqa: BLE001 - reported to the parent
                        answer = str(exc).encode()
                os.write(done_w, answer)
            finally:
                os._exit(0)
        os.close(self._go_r)
        os.close(done_w)

    def cancel(self) -> None:
        os.close(self._go_w)
        os.close(self._done_r)
        os.waitpid(self.pid, 0)

    def finish(self) -> None:
        try:
            os.write(self._go_w, b"g")
            os.close(self._go_w)
            with os.fdopen(self._done_r, "rb") as pipe:
                answer = pipe.read()
        except BaseException as stop:
            stop_child(self.pid, stop)
            raise
        os.waitpid(self.pid, 0)
        if answer != b"ok":
            raise SandboxError(
                f"--uid-map auto: {answer.decode(errors='replace') or 'the map helper died'}"
            )


def mount_private_instance(mountpoint: str = DEFAULT_MOUNTPOINT) -> None:
    """Mount this user namespace's own binfmt_misc instance."""
    try:
        mount("binfmt_misc", mountpoint, "binfmt_misc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as err:
        too_old = kernel_refusal()
        if too_old is not None:
            raise too_old from err
        raise _mount_refusal(err, f"mount a private binfmt_misc at {mountpoint}") from err


FULL_ID_COUNT = 65536  # what container images expect: uids and gids 0..65535


def _subordinate_range(path: str, uid: int) -> tuple[int, int] | None:
    """The first ``/etc/subuid``-style range for ``uid`` (by number or name)."""
    import pwd

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (name, str(uid)) and parts[1].isdigit():
            start, count = int(parts[1]), int(parts[2] or 0)
            if count >= FULL_ID_COUNT - 1:
                return start, FULL_ID_COUNT - 1
    return None


def write_full_id_maps(pid: int) -> None:
    """Give the new user namespace of ``pid`` ids 0..65535, as container engines need.

    Root inside is the caller's own uid; 1..65535 come from the caller's
    subordinate range (newuidmap/newgidmap). Without one, real root maps the
    identity range itself; anyone else is told how to get a range.
    """
    import shutil
    import subprocess

    uid, gid = os.getuid(), os.getgid()
    sub_u = _subordinate_range("/etc/subuid", uid)
    sub_g = _subordinate_range("/etc/subgid", uid)
    tools = shutil.which("newuidmap"), shutil.which("newgidmap")
    if sub_u and sub_g and tools[0] and tools[1]:
        for tool, own, (start, count) in ((tools[0], uid, sub_u), (tools[1], gid, sub_g)):
            argv = [tool, str(pid), "0", str(own), "1", "1", str(start), str(count)]
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SandboxError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        return
    if os.geteuid() == 0:
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{pid}/{name}").write_text(f"0 0 {FULL_ID_COUNT}\n")
        return
    raise SandboxError(
        "a sandbox with a full uid/gid range needs a subordinate range for this user "
        "in /etc/subuid and /etc/subgid (65536 ids) and newuidmap/newgidmap (package uidmap)"
    )


class _Failure:
    """An exception from the child that could not be pickled as itself."""

    def __init__(self, text: str) -> None:
        self.text = text


def _child_main(write_fd: int, body: Callable[[], Any]) -> None:
    """Run ``body`` in a forked child, report its outcome, and never return."""
    import pickle  # here, not at the top: `binfmtctl run` execs and never needs it

    status = 0
    try:
        outcome: tuple[str, Any] = ("ok", body())
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        outcome = ("err", exc)
        status = 1
    try:
        payload = pickle.dumps(outcome)
    except Exception:  # noqa: BLE001
        import traceback  # here, not at the top: only for an outcome pickle refuses

        payload = pickle.dumps(("err", _Failure(traceback.format_exc())))
    with os.fdopen(write_fd, "wb") as pipe:
        pipe.write(payload)
    os._exit(status)


def _fork_call(body: Callable[[], T]) -> T:
    import pickle  # here, not at the top: `binfmtctl run` execs and never needs it

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        try:
            _child_main(write_fd, body)
        finally:
            os._exit(70)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
    except BaseException as stop:
        stop_child(pid, stop)
        raise
    _, wait_status = os.waitpid(pid, 0)
    if not payload:
        if os.WIFSIGNALED(wait_status):
            sig = signal.Signals(os.WTERMSIG(wait_status)).name
            raise SandboxError(f"sandboxed call was killed by {sig}")
        code = os.waitstatus_to_exitcode(wait_status)
        raise SandboxError(f"sandboxed call exited with status {code}")
    kind, value = pickle.loads(payload)  # noqa: S301 - our own child's bytes
    if kind == "ok":
        return value  # type: ignore[no-any-return]
    if isinstance(value, _Failure):
        raise SandboxError(f"sandboxed call failed:\n{value.text}")
    raise value


def stop_child(pid: int, stop: BaseException) -> None:
    """We are interrupted while a child runs: pass the signal on, as a shell does, and reap it.

    The child gets the signal that stopped us (SIGINT for a plain
    KeyboardInterrupt; SIGKILL for any other exception, which no signal
    explains), so nothing we forked outlives us.
    """
    if isinstance(stop, signals.Interrupted):
        signum = stop.signum
    elif isinstance(stop, KeyboardInterrupt):
        signum = signal.SIGINT
    else:
        signum = signal.SIGKILL
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``fn`` in a forked child inside a fresh private instance; return its result."""

    def body() -> T:
        enter()
        return fn(*args, **kwargs)

    return _fork_call(body)


class Sandbox:
    """A private namespace kept alive across calls (one binfmt_misc instance).

    With ``full_ids`` the namespace maps uids and gids 0..65535 (see
    :func:`write_full_id_maps`) instead of root alone, so a container engine
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

        return _fork_call(body)


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


def enter_rootfs(root: str, *, host_resolv_conf: str = "/etc/resolv.conf") -> None:
    """Set up /proc, /dev, /sys, /tmp and /etc/resolv.conf in ``root``, chroot, cd /.

    Call it inside a private namespace (after :func:`enter`): the mounts live
    and die with that namespace; the root itself only gains the empty
    mountpoints it lacked. /proc, /dev and /sys are recursive binds of the
    host's (see the module docstring for why), /tmp is a fresh tmpfs, and the
    host's resolv.conf is bound read-only over the root's. A mountpoint that
    is a symlink is refused (SandboxError): it could lead out of the root.
    """
    root = os.path.realpath(root)
    if not os.path.isdir(root):
        raise UsageError(f"--rootfs {root}: not a directory")
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
        os.fchdir(root_fd)
        os.chroot(".")
        os.chdir("/")
    except OSError as err:
        raise _refuse(root, f"cannot set it up: {err}") from err
    finally:
        os.close(root_fd)
