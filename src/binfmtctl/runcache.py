"""The handlers ``binfmtctl run`` registered, kept per boot, so the next run need not plan.

``run`` is paid per foreign command. Its plan (which emulator for which arch,
each entry's register line) depends on the options, the host (per boot) and
the emulator files found; planning it imports the catalog, the planner and
the ELF reader, far more than the rest of the run costs. So the register
lines of a planned run are kept in the per-boot cache with what they were
planned from: the options, the version of the planning code (its files'
identities), and the (device, inode, size, mtime, ctime, mode, owner) of every path
the emulator search looked at, present or not. A later run
with the same options whose paths all look the same registers those lines;
anything else (another option, an emulator added, replaced, removed or
chmod-ed, another boot) plans afresh, as does a run with the C flag, whose
safety check (:mod:`binfmtctl.credentials`) looks at every directory above
the emulator, not only the file.

The file is only ever read as a regular file of ours (no link followed, no
FIFO opened), and a line in it is written to the fresh private instance only,
never the host's; an unreadable or foreign file is a miss.
"""

from __future__ import annotations

import os

from binfmtctl import __version__, bootcache

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

_NAME = "run-plans"


def key(
    arches: Sequence[object] | None,
    flags: str | None,
    interpreter_dirs: Sequence[str] | None,
    mountpoint: str,
) -> str | None:
    """The options a plan is for, as one line; None when a plan must never be reused (C)."""
    if flags is not None and "c" in flags.lower():
        return None  # the C flag's safety check looks beyond the emulator file itself
    if arches is not None and not all(isinstance(a, str) for a in arches):
        return None
    parts = (__version__, _code(), bootcache.key(), arches, flags, interpreter_dirs, mountpoint)
    return repr(tuple(tuple(p) if isinstance(p, list | tuple) else p for p in parts))


# The modules whose code decides a plan: another version of any of them (an
# upgrade, an edit) must plan afresh, even within one boot.
_PLANNERS = (
    "arch.py", "entry.py", "hostfacts.py", "interpreters.py", "native.py", "plan.py",
    "register_string.py", "rootless.py", "runcache.py", "runplan.py",
)  # fmt: skip


def _code() -> tuple[str, ...]:
    here = os.path.dirname(os.path.abspath(__file__))
    return tuple(_look(os.path.join(here, name)) for name in _PLANNERS)


def _look(path: str) -> str:
    """What the emulator search would notice of ``path``, in one word."""
    try:
        info = os.stat(path)
    except OSError:
        return "dangling" if os.path.lexists(path) else "absent"
    # ctime too: a file replaced by a copy (copy2 keeps the mtime) may get the freed inode
    # number back, but never the old ctime, which no one can set
    return (
        f"{info.st_dev}:{info.st_ino}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}:"
        f"{info.st_mode}:{info.st_uid}:{info.st_gid}"
    )


def _read(path: str) -> list[str]:
    data = bootcache.read(path)
    return [] if data is None else os.fsdecode(data).split("\n")


def lookup(plan_key: str) -> list[bytes] | None:
    """The register lines kept for ``plan_key``, if every path looked at is unchanged."""
    path = bootcache.path(_NAME)
    lines = _read(path) if path else []
    if not lines or lines[0] != plan_key:
        return None
    found: list[bytes] = []
    for line in lines[1:]:
        kind, _, rest = line.partition(" ")
        if kind == "path":
            look, _, name = rest.partition(" ")
            if _look(name) != look:
                return None
        elif kind == "line":
            found.append(os.fsencode(rest))
        elif line:
            return None
    return found or None


def store(plan_key: str, looked_at: Iterable[str], register_lines: Iterable[bytes]) -> None:
    """Keep the plan (one per user and boot: the last run's); failing to is only slower."""
    path = bootcache.path(_NAME)
    if path is None:
        return
    body = [plan_key]
    for name in looked_at:
        if "\n" in name or "\r" in name:
            return
        body.append(f"path {_look(name)} {name}")
    for line in register_lines:
        if b"\n" in line or b"\r" in line:
            return
        body.append(f"line {os.fsdecode(line)}")
    bootcache.write(path, os.fsencode("\n".join(body) + "\n"))


def register(lines: Sequence[bytes], mountpoint: str) -> bool:
    """Write ``lines`` to the fresh instance's ``register``; False at the first refusal.

    A refusal is left to the planned path, which says why in its own words
    (the lines already written are found there, unchanged).
    """
    for line in lines:
        try:
            fd = os.open(f"{mountpoint}/register", os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            os.write(fd, line)
        except OSError:
            return False
        finally:
            os.close(fd)
    return True
