"""Paths inside a root, seen the way a process chrooted there would see them.

A root is ``/`` or a directory (``--root``, a container rootfs). Inside it,
an absolute symlink restarts at the root and ``..`` stops there, so nothing
reached through the root lies outside it. The walk holds a directory fd per
step and opens every component with ``O_NOFOLLOW`` relative to the previous
one: a link swapped in meanwhile is either followed inside the root by the
walk or refused by the kernel, never followed to the host.

Files are read only when regular (or the null device, which systemd treats as
an empty file that masks another): a FIFO or device is never opened for
reading, so a reader cannot block on one.
"""

from __future__ import annotations

import errno
import os
import stat

MAX_LINKS = 40  # the kernel's ELOOP limit
NULL_DEVICE = os.makedev(1, 3)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class NotRegularError(OSError):
    """The path names something other than a regular file (a FIFO, a device, ...)."""


def is_host(root: str | None) -> bool:
    return not root or os.path.abspath(root) == "/"


def where(root: str) -> str:
    return "this system" if is_host(root) else root


def shown(root: str | None, inner: str) -> str:
    """How a path inside ``root`` is named on this system (for messages and reports)."""
    if is_host(root):
        return inner
    assert root is not None
    return root.rstrip("/") + "/" + inner.lstrip("/")


def inside(root: str | None, path: str) -> str:
    """The path inside ``root`` that ``path`` (as :func:`shown` names it) stands for."""
    if is_host(root):
        return os.path.abspath(path)
    assert root is not None
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == ".":
        return "/"
    if rel == ".." or rel.startswith("../"):
        raise ValueError(f"{path} is not below {root}")
    return "/" + rel


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p and p != "."]


def _walk(
    root: str, path: str, *, want_dir: bool, follow_last: bool, create: bool, mode: int = 0o755
) -> tuple[int, str, list[str]]:
    """Walk ``path`` inside ``root``.

    Returns a new fd of the directory reached (``want_dir``), or of the directory
    holding the last component, that component's name ("" with ``want_dir``) and
    the directory's names from the root. Missing directories are created with
    ``create``; a missing last component is returned as is (callers decide).
    """
    base = os.path.abspath(root or "/")
    stack = [os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
    names: list[str] = []
    parts = _parts(path)
    links = made = 0
    try:
        while parts:
            part = parts.pop(0)
            if part == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    names.pop()
                continue
            last = not parts
            here = stack[-1]
            try:
                info = os.stat(part, dir_fd=here, follow_symlinks=False)
            except FileNotFoundError:
                if last and not want_dir:
                    return os.dup(here), part, names
                if not create or made > MAX_LINKS:  # bounded: something keeps removing it
                    raise
                made += 1
                try:
                    os.mkdir(part, mode, dir_fd=here)
                except FileExistsError:  # made meanwhile: look again
                    pass
                parts.insert(0, part)
                continue
            if stat.S_ISLNK(info.st_mode) and (follow_last or not last):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), shown(root, path))
                try:
                    target = os.readlink(part, dir_fd=here)
                except OSError as err:
                    if err.errno != errno.EINVAL:
                        raise
                    parts.insert(0, part)  # no longer a link: look again (counted as a hop)
                    continue
                if target.startswith("/"):
                    for fd in stack[1:]:
                        os.close(fd)
                    del stack[1:]
                    names.clear()
                parts = _parts(target) + parts
                continue
            if last and not want_dir:
                return os.dup(here), part, names
            if not stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode):
                raise NotADirectoryError(
                    errno.ENOTDIR, os.strerror(errno.ENOTDIR), shown(root, path)
                )
            try:
                stack.append(os.open(part, _DIR_FLAGS, dir_fd=here))
            except OSError as err:
                # Swapped for a link since the stat: O_NOFOLLOW refused it. Look again.
                if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                links += 1
                if links > MAX_LINKS:  # swapped at every look: the same refusal as a loop
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), shown(root, path)) from err
                parts.insert(0, part)
                continue
            names.append(part)
        return os.dup(stack[-1]), "", names
    finally:
        for fd in stack:
            os.close(fd)


class _DirFd:
    """``with`` gives a directory fd and closes it at the end.

    A class, not contextlib.contextmanager: contextlib's imports (functools,
    collections) cost every `binfmtctl run` start.
    """

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *_exc: object) -> None:
        os.close(self.fd)


class _Located(_DirFd):
    """``with`` gives a directory fd and a name in it; the fd is closed at the end."""

    __slots__ = ("name",)

    def __init__(self, fd: int, name: str) -> None:
        super().__init__(fd)
        self.name = name

    def __enter__(self) -> tuple[int, str]:  # type: ignore[override]
        return self.fd, self.name


def open_dir(root: str | None, path: str, *, create: bool = False) -> _DirFd:
    """An fd of the directory ``path`` inside ``root`` (made, with parents, if ``create``)."""
    fd, _, _ = _walk(root or "/", path, want_dir=True, follow_last=True, create=create)
    return _DirFd(fd)


def locate(root: str | None, path: str, *, follow: bool = True) -> _Located:
    """The directory fd holding ``path``'s last component inside ``root``, and its name.

    With ``follow`` a symlink there is followed (inside the root); without, the
    name may be the link itself. The name may not exist.
    """
    fd, name, _ = _walk(root or "/", path, want_dir=False, follow_last=follow, create=False)
    return _Located(fd, name)


def resolve_in(root: str, path: str) -> str | None:
    """The host path of ``path`` as seen inside ``root`` (symlinks followed there), or None."""
    if is_host(root):
        return path if os.path.exists(path) else None
    try:
        fd, name, names = _walk(root, path, want_dir=False, follow_last=True, create=False)
    except OSError:
        return None
    try:
        if name:
            os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)
    return os.path.join(root, *names, *([name] if name else []))


def read_at(dir_fd: int, name: str, path: str, limit: int | None = None) -> bytes:
    """Read the regular file ``name`` in ``dir_fd`` without following a link or blocking.

    ``path`` names it in errors. The null device reads as empty (systemd's mask).
    With ``limit``, at most that many bytes are read.
    """
    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == NULL_DEVICE:
        return b""
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularError(errno.EINVAL, kind(info.st_mode), path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(name, flags, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat above
            raise NotRegularError(errno.EINVAL, "not a regular file", path)
        chunks, left = [], limit
        while left is None or left > 0:
            chunk = os.read(fd, 1 << 16 if left is None else min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left = None if left is None else left - len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_file(root: str | None, path: str) -> bytes:
    """Read the regular file ``path`` inside ``root`` (symlinks followed there).

    A link to /dev/null reads as empty even when the root has no /dev (an image):
    that is how systemd masks a configuration file.
    """
    with locate(root, path, follow=False) as (fd, name):
        if name and _is_null_link(fd, name):
            return b""
    with locate(root, path) as (fd, name):
        if not name:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), shown(root, path))
        return read_at(fd, name, shown(root, path))


def _is_null_link(dir_fd: int, name: str) -> bool:
    try:
        return os.readlink(name, dir_fd=dir_fd) == "/dev/null"
    except OSError:
        return False


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, words in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return f"not a regular file but {words}"
    return "not a regular file"
