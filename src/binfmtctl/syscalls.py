"""The Linux system calls Python's os module lacks: mount(2), unshare(2), setns(2).

The bottom floor of the namespace code: thin ctypes wrappers over the C
library this process already has, raising OSError as the os module does.
Everything that mounts or enters a namespace (sandbox, instance) calls these.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_BIND = 0x1000
MS_REMOUNT = 0x20
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8


_LIBC: list[ctypes.CDLL] = []  # loaded once (a list, not functools.cache: start-up time)


def _c() -> ctypes.CDLL:
    # The C library this process already has: find_library("c") would run ldconfig.
    if not _LIBC:
        _LIBC.append(ctypes.CDLL(None, use_errno=True))
    return _LIBC[0]


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """mount(2); raises OSError."""

    def enc(value: str | None) -> bytes | None:
        return None if value is None else os.fsencode(value)

    result: int = _c().mount(enc(source), enc(target), enc(fstype), flags, enc(data))
    _check(result, f"mount {target}")


def unshare(flags: int) -> None:
    _check(_c().unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_c().setns(fd, nstype), "setns")
