"""Answers kept for one boot: where they live, their key, and how they are read and written.

Native-arch detection (``native.json``), the argv[0] verdicts (``argv0.json``),
``run``'s kept plan (``run-plans``) and once-per-boot notices all sit in one
directory: $XDG_RUNTIME_DIR/binfmtctl, else /run/binfmtctl for root (both are
emptied at every boot), else $XDG_CACHE_HOME or ~/.cache/binfmtctl, where the
boot id in :func:`key` makes an earlier boot's answer miss.

Everything here is light to import (``run`` reads its plan on every start) and
careful, because the directory may be shared with other processes of the same
user: a read never follows a symlink, never blocks on a FIFO, takes only a
regular file of this user's and at most :data:`CACHE_MAX` bytes; a write goes
to a fresh temporary file (O_EXCL, no symlink followed) renamed into place.
A cache that cannot be read or written only costs speed.
"""

from __future__ import annotations

import os
import stat

CACHE_MAX = 256 * 1024  # a larger file is not ours


def key() -> str:
    """This boot, kernel and machine: what every per-boot answer is valid for."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = "?"
    uname = os.uname()
    return f"{boot} {uname.release} {uname.machine}"


def path(name: str) -> str | None:
    """Where the answer called ``name`` is kept; None where there is no place for it.

    Root is judged by the uid outside this user namespace: inside ``binfmtctl
    run``'s, everyone is uid 0 but only real root can write /run.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "binfmtctl", name)
    if _outside_uid() == 0:
        return os.path.join("/run/binfmtctl", name)
    home = os.environ.get("HOME")
    cache = os.environ.get("XDG_CACHE_HOME") or (os.path.join(home, ".cache") if home else None)
    if not cache or not os.path.isabs(cache):
        return None
    return os.path.join(cache, "binfmtctl", name)


def _outside_uid(uid_map: str = "/proc/self/uid_map") -> int | None:
    """This process's effective uid as the parent user namespace knows it (None: unknown)."""
    uid = os.geteuid()
    try:
        with open(uid_map) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            inside, outside, count = (int(f) for f in fields)
            if inside <= uid < inside + count:
                return outside + uid - inside
    return None


def read(where: str | os.PathLike[str], limit: int = CACHE_MAX) -> bytes | None:
    """The content of ``where`` if it is a regular file of this user's; None otherwise."""
    try:
        fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def write(where: str | os.PathLike[str], data: bytes) -> None:
    """Put ``data`` at ``where`` atomically (a fresh temporary file renamed into place)."""
    directory, name = os.path.split(os.fspath(where))
    tmp = os.path.join(directory, f".{name}.{os.getpid()}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, where)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def read_json(where: str | os.PathLike[str]) -> dict[str, object] | None:
    """The JSON object at ``where`` if it was stored this boot; None for anything else."""
    data = read(where)
    if data is None:
        return None
    try:
        stored = loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        return None
    if not isinstance(stored, dict) or stored.get("key") != key():
        return None
    return stored


_CONSTANTS = {"-Infinity": -float("inf"), "Infinity": float("inf"), "NaN": float("nan")}


class _Defaults:
    """What ``json.loads`` gives its scanner (json.JSONDecoder's defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = _CONSTANTS.__getitem__


def loads(data: bytes) -> object:
    """``json.loads(data)``, without importing json where it can (1-2 ms of every start).

    What :func:`write_json` stores (one object, UTF-8, nothing around it) is read by
    the scanner json.loads itself runs (CPython's ``_json``), from the start to the
    end of the text. Anything else -- another encoding, white space around it, an
    error, no ``_json`` -- goes to json.loads, so the value or the ValueError is
    always json.loads'.
    """
    # json.detect_encoding says UTF-8 for a '{' not followed by NUL (no BOM starts so).
    if data[:1] == b"{" and data[1:2] != b"\0":
        try:
            from _json import make_scanner

            text = data.decode()
            found, end = make_scanner(_Defaults)(text, 0)  # type: ignore[arg-type]
            if end == len(text):
                return found
        except (ImportError, AttributeError, TypeError, StopIteration, ValueError):
            pass  # no usable _json scanner here, not UTF-8, or not JSON: json decides
    import json  # start-up speed: only what the fast path leaves

    return json.loads(data)


def write_json(where: str | os.PathLike[str], payload: dict[str, object]) -> None:
    """Store ``payload`` at ``where`` under this boot's key."""
    import json  # start-up speed: written once per boot

    write(where, json.dumps({**payload, "key": key()}).encode())


class Marker:
    """A file saying something was done this boot (a notice already said)."""

    __slots__ = ("where",)

    def __init__(self, where: str) -> None:
        self.where = where

    def seen(self) -> bool:
        """Whether it was marked during this boot."""
        return read(self.where, 4096) == key().encode()

    def mark(self) -> None:
        """Mark it for this boot (where that fails, the notice is only said again)."""
        write(self.where, key().encode())


def marker(name: str) -> Marker | None:
    """The marker ``name`` in the per-boot directory; None where there is none."""
    where = path(name)
    return None if where is None else Marker(where)
