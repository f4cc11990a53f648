"""Whether an emulator keeps argv[0] behind binfmt_misc's P flag: the per-boot answer.

With F alone the kernel hands the emulator ``[emulator, path, argv1...]``: the
program's argv[0] is lost and becomes its path, so a login shell (``-bash``)
is no login shell and ``exec -a NAME`` does nothing. With P the kernel passes
``[emulator, path, argv0, argv1...]`` and sets AT_FLAGS_PRESERVE_ARGV0 in the
emulator's auxv; QEMU honours it since 6.0 ("linux-user: manage binfmt-misc
preserve-arg[0] flag"). An emulator that does not would see the kept argv[0]
as one more argument and break every program, so P is given only where a
probe proved it (:mod:`binfmtctl.argv0_probe`, which stores its verdicts here).

This module is the hot path (``run``, ``install``): the verdicts kept this
boot, beside :func:`binfmtctl.native.detect_native`'s answer, keyed by arch
and the emulator file's identity (device, inode, size, mtime, ctime), so a replaced
emulator is probed again. A cold cache costs one probe per emulator, once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from binfmtctl import bootcache

CACHE_NAME = "argv0.json"
#: Verdict codes that are a property of the emulator file, so they are kept per
#: boot (the values of :class:`binfmtctl.argv0_probe.Argv0Code` that are).
CACHED_CODES = frozenset({"kept", "replaced", "probe_failed"})

Row = dict[str, object]  # {"keeps": bool, "code": str, "detail": str | None}


def identity(path: str, st: os.stat_result | None = None) -> str | None:
    """The emulator file's identity as the cache keys it; None if it cannot be looked at.

    ``st``: ``os.stat(path)``, when the caller has just made that call itself.
    """
    if st is None:
        try:
            st = os.stat(path)  # the kernel follows symlinks when it opens an F interpreter
        except OSError:
            return None
    # ctime too: a copy (copy2 keeps size and mtime) may get a freed inode number back,
    # never the old ctime, which no one can set
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def key(arch: str, path: str, st: os.stat_result | None = None) -> str | None:
    """The cache key of ``path`` running ``arch`` programs (None: it cannot be looked at)."""
    ident = identity(path, st)
    return None if ident is None else f"{arch} {ident}"


def stored() -> dict[str, Row]:
    """This boot's verdicts by key, as kept on disk; a row of the wrong shape is left out."""
    cache = bootcache.path(CACHE_NAME)
    data = bootcache.read_json(cache) if cache is not None else None
    rows = data.get("emulators") if data else None
    if not isinstance(rows, dict):
        return {}
    out: dict[str, Row] = {}
    for name, row in rows.items():
        if (
            isinstance(name, str)
            and isinstance(row, dict)
            and isinstance(row.get("keeps"), bool)
            and row.get("code") in CACHED_CODES
            and isinstance(row.get("detail"), str | None)
        ):
            out[name] = {"keeps": row["keeps"], "code": row["code"], "detail": row.get("detail")}
    return out


def store(rows: dict[str, Row]) -> None:
    """Add ``rows`` to this boot's verdicts on disk (another process may have added its own)."""
    cache = bootcache.path(CACHE_NAME)
    if cache is not None and rows:
        bootcache.write_json(cache, {"emulators": {**stored(), **rows}})


_seen: dict[str, Row] = {}  # this process's view: this boot's rows, then its own verdicts
_read: list[bool] = []  # whether this boot's rows were read into _seen


def _rows() -> dict[str, Row]:
    if not _read:
        _read.append(True)
        for name, row in stored().items():
            _seen.setdefault(name, row)
    return _seen


def remember(rows: dict[str, Row]) -> None:
    """Verdicts this process found (any code: some hold for this call only)."""
    _rows().update(rows)


def row(arch: str, path: str, st: os.stat_result | None = None) -> Row | None:
    """The verdict for ``path`` running ``arch`` programs, if found this boot; never probes.

    The JSON ``argv0`` of install and status: ``{"keeps", "code", "detail"}``.
    ``st``: ``os.stat(path)``, when the caller has it.
    """
    name = key(arch, path, st)
    return None if name is None else _rows().get(name)


def cached(pairs: Sequence[tuple[str, str]]) -> tuple[dict[str, bool], list[tuple[str, str]]]:
    """For ``pairs`` of (arch, emulator path): whether each emulator keeps argv[0], by path,
    as found this boot (one small file read), and the pairs still to probe
    (:func:`binfmtctl.argv0_probe.verdicts`)."""
    found: dict[str, bool] = {}
    todo = []
    for arch, path in pairs:
        known = row(arch, path)
        if known is not None and isinstance(known["keeps"], bool):
            found[path] = known["keeps"]
        else:
            todo.append((arch, path))
    return found, todo
