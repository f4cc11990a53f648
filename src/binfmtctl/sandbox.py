"""A private user + mount namespace with its own binfmt_misc instance (Linux 6.7+).

Inside it, registering entries changes nothing outside: the host's instance is
never touched, and the instance disappears with the last process that uses it.

Three ways in:

* :func:`enter` moves the calling process in (``binfmtctl run`` uses it, then
  execs the user's command);
* :func:`run` calls a function in a forked child that entered a fresh one and
  returns its result (or re-raises its exception);
* :class:`Sandbox` keeps one namespace alive so several calls share an instance.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import pickle
import platform
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from binfmtctl.errors import SandboxError

P = ParamSpec("P")
T = TypeVar("T")

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_BIND = 0x1000
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
DEFAULT_MOUNTPOINT = "/proc/sys/fs/binfmt_misc"

_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0) -> None:
    """mount(2); raises OSError."""
    enc = (lambda s: None if s is None else os.fsencode(s))  # noqa: E731
    _check(_c().mount(enc(source), enc(target), enc(fstype), flags, None), f"mount {target}")


def unshare(flags: int) -> None:
    _check(_c().unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_c().setns(fd, nstype), "setns")


def kernel_supports_private_instances(release: str | None = None) -> bool:
    """Per-user-namespace binfmt_misc instances arrived in Linux 6.7."""
    release = release or platform.release()
    try:
        major, minor = (int(x) for x in release.split(".")[:2])
    except ValueError:
        minor_digits = "".join(ch for ch in release.split(".")[1] if ch.isdigit())
        major, minor = int(release.split(".")[0]), int(minor_digits or 0)
    return (major, minor) >= (6, 7)


def _read_knob(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _unshare_refusal(err: OSError) -> SandboxError:
    """Say which knob forbids user namespaces and how to allow it."""
    if _read_knob("/proc/sys/user/max_user_namespaces") == "0":
        return SandboxError(
            "user namespaces are disabled (user.max_user_namespaces = 0); allow them "
            "with `sudo sysctl -w user.max_user_namespaces=15000`, or use "
            "`sudo binfmtctl install` instead of a private instance",
            knob="user.max_user_namespaces",
        )
    if _read_knob("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
        return SandboxError(
            "AppArmor forbids unprivileged user namespaces "
            "(kernel.apparmor_restrict_unprivileged_userns = 1); allow them with "
            "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or use "
            "`sudo binfmtctl install` instead",
            knob="kernel.apparmor_restrict_unprivileged_userns",
        )
    if _read_knob("/proc/sys/kernel/unprivileged_userns_clone") == "0":
        return SandboxError(
            "unprivileged user namespaces are disabled "
            "(kernel.unprivileged_userns_clone = 0); allow them with "
            "`sudo sysctl -w kernel.unprivileged_userns_clone=1`",
            knob="kernel.unprivileged_userns_clone",
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

    The caller becomes root inside it (mapped to its own uid unless ``uid_map``
    is given), mounts are made private so nothing propagates out, and with
    ``binfmt`` a fresh, empty binfmt_misc instance is mounted at ``mountpoint``.
    """
    uid, gid = os.getuid(), os.getgid()
    try:
        unshare(CLONE_NEWUSER | CLONE_NEWNS)
    except OSError as err:
        raise _unshare_refusal(err) from err
    if uid_map is None:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"0 {uid} 1")
        Path("/proc/self/gid_map").write_text(f"0 {gid} 1")
    else:  # written from outside (newuidmap) by the caller; nothing to do here
        pass
    try:
        mount(None, "/", None, MS_REC | MS_PRIVATE)
    except OSError as err:
        raise SandboxError(f"cannot make mounts private: {err.strerror}") from err
    if binfmt:
        mount_private_instance(mountpoint)


def mount_private_instance(mountpoint: str = DEFAULT_MOUNTPOINT) -> None:
    """Mount this user namespace's own binfmt_misc instance."""
    try:
        mount("binfmt_misc", mountpoint, "binfmt_misc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError as err:
        if not kernel_supports_private_instances():
            raise SandboxError(
                f"this kernel ({platform.release()}) has one global binfmt_misc; "
                "rootless mode needs Linux 6.7+; use `sudo binfmtctl install`",
                kernel=platform.release(),
            ) from err
        raise SandboxError(
            f"cannot mount a private binfmt_misc at {mountpoint}: {err.strerror}"
        ) from err


class _Failure:
    """An exception from the child that could not be pickled as itself."""

    def __init__(self, text: str) -> None:
        self.text = text


def _child_main(write_fd: int, body: Callable[[], Any]) -> None:
    """Run ``body`` in a forked child, report its outcome, and never return."""
    status = 0
    try:
        outcome: tuple[str, Any] = ("ok", body())
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        outcome = ("err", exc)
        status = 1
    try:
        payload = pickle.dumps(outcome)
    except Exception:  # noqa: BLE001
        payload = pickle.dumps(("err", _Failure(traceback.format_exc())))
    with os.fdopen(write_fd, "wb") as pipe:
        pipe.write(payload)
    os._exit(status)


def _fork_call(body: Callable[[], T]) -> T:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        try:
            _child_main(write_fd, body)
        finally:
            os._exit(70)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, wait_status = os.waitpid(pid, 0)
    if not payload:
        if os.WIFSIGNALED(wait_status):
            sig = signal.Signals(os.WTERMSIG(wait_status)).name
            raise SandboxError(f"sandboxed call was killed by {sig}")
        raise SandboxError(f"sandboxed call exited with status {os.waitstatus_to_exitcode(wait_status)}")
    kind, value = pickle.loads(payload)  # noqa: S301 - our own child's bytes
    if kind == "ok":
        return value  # type: ignore[no-any-return]
    if isinstance(value, _Failure):
        raise SandboxError(f"sandboxed call failed:\n{value.text}")
    raise value


def run(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Call ``fn`` in a forked child inside a fresh private instance; return its result."""

    def body() -> T:
        enter()
        return fn(*args, **kwargs)

    return _fork_call(body)


class Sandbox:
    """A private namespace kept alive across calls (one binfmt_misc instance).

    >>> with Sandbox() as sb:                                # doctest: +SKIP
    ...     sb.run(subprocess.run, ["binfmtctl", "install", "arm"])
    ...     sb.run(subprocess.run, ["binfmtctl", "status"])
    """

    def __init__(self, mountpoint: str = DEFAULT_MOUNTPOINT) -> None:
        self.mountpoint = mountpoint
        self.pid = 0
        self._release_fd = -1

    def __enter__(self) -> Sandbox:
        ready_r, ready_w = os.pipe()
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the holder process
            os.close(ready_r)
            os.close(hold_w)
            try:
                enter(mountpoint=self.mountpoint)
                os.write(ready_w, b"ok")
            except BaseException as exc:  # noqa: BLE001
                os.write(ready_w, str(exc).encode())
                os._exit(1)
            os.close(ready_w)
            os.read(hold_r, 1)  # returns at EOF: the parent closed or died
            os._exit(0)
        os.close(ready_w)
        os.close(hold_r)
        with os.fdopen(ready_r, "rb") as pipe:
            answer = pipe.read()
        if answer != b"ok":
            os.close(hold_w)
            os.waitpid(pid, 0)
            raise SandboxError(answer.decode(errors="replace") or "sandbox holder died")
        self.pid, self._release_fd = pid, hold_w
        return self

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
