"""Which user namespace, and which binfmt_misc instance, a process sees.

Since Linux 6.7 each user namespace may mount its own binfmt_misc instance;
one that does not falls back to its nearest ancestor's. So "which handlers
does an exec in process P consult" needs two facts: how P's user namespace
relates to ours, and which binfmt_misc superblocks P's mount namespace shows.
Both are read from /proc (``proc`` is a parameter, never a global).

This module only reads /proc. Reading the instances themselves is
:mod:`binfmtctl.instance`'s job; this one never imports it.
"""

from __future__ import annotations

import errno
import os
from enum import Enum

from binfmtctl.records import NamedTuple

DEFAULT_MOUNTPOINT = "/proc/sys/fs/binfmt_misc"
# The kernel gives the initial user namespace this fixed inode (PROC_USER_INIT_INO).
INITIAL_USERNS_INO = 0xEFFFFFFD
NS_GET_PARENT = 0xB702  # ioctl: the parent of a user namespace
MAX_USERNS_DEPTH = 32  # the kernel nests at most 32 user namespaces


def in_initial_user_namespace(proc: str = "/proc") -> bool:
    """True when this process is in the host's user namespace.

    In any other one (a rootless container, ``unshare -U``), mounting
    binfmt_misc creates a private instance: changing it changes nothing on the host.
    """
    try:
        return os.stat(f"{proc}/self/ns/user").st_ino == INITIAL_USERNS_INO
    except OSError:
        return True  # no namespaces support at all: there is only the host


def changes_reach_host(proc: str = "/proc") -> bool:
    """Whether a binfmt_misc this process mounts or changes is the host's.

    A fact about the calling process, not about any one instance: an instance
    seen through another process's /proc/PID/root is still judged from here.
    """
    return in_initial_user_namespace(proc)


class Relation(str, Enum):
    """How another process's user namespace relates to ours."""

    SAME = "same"
    CHILD = "child"  # a descendant of ours
    OTHER = "other"
    UNKNOWN = "unknown"


def _ns_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def userns_relation(pid: int, proc: str = "/proc") -> Relation:
    """Whether ``pid``'s user namespace is ours, a descendant of ours, or another."""
    import fcntl  # here, not at the top: only `status` with a container engine asks

    mine = _ns_key(f"{proc}/self/ns/user")
    theirs = _ns_key(f"{proc}/{pid}/ns/user")
    if mine is None or theirs is None:
        return Relation.UNKNOWN
    if mine == theirs:
        return Relation.SAME
    try:
        fd = os.open(f"{proc}/{pid}/ns/user", os.O_RDONLY)
    except OSError:
        return Relation.UNKNOWN
    try:
        for _ in range(MAX_USERNS_DEPTH + 1):
            try:
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
            except OSError as err:
                # EPERM: the parent is outside our namespace, so not our descendant.
                if err.errno in (errno.EPERM, errno.ENOENT):
                    return Relation.OTHER
                return Relation.UNKNOWN
            os.close(fd)
            fd = parent
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) == mine:
                return Relation.CHILD
        return Relation.OTHER
    finally:
        os.close(fd)


class Mount(NamedTuple):
    """One binfmt_misc mount: where, and its superblock (the same ``dev``, the same instance)."""

    mountpoint: str
    dev: str  # major:minor

    def to_dict(self) -> dict[str, str]:
        return {"mountpoint": self.mountpoint, "dev": self.dev}


def binfmt_mounts(mountinfo: str) -> list[Mount]:
    """binfmt_misc mounts in a /proc/PID/mountinfo text, the one parser of that file.

    Each binfmt_misc instance has its own superblock, so the same ``dev``
    (``major:minor``) means the same instance.
    """
    found = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        if right.split()[0] == "binfmt_misc":
            found.append(Mount(fields[4], fields[2]))
    return found


def read_text(path: str) -> str | None:
    """A small /proc file's text; None when it cannot be read (a process gone, no access)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


class Seen(str, Enum):
    """Which binfmt_misc instance an exec in another process's namespaces consults."""

    SAME = "same"
    PRIVATE = "private"
    INHERITED = "inherited"
    UNKNOWN = "unknown"


class NamespaceView(NamedTuple):
    """What one process's namespaces say about the instance it uses."""

    pid: int
    userns: Relation
    instance: Seen
    detail: str
    our_instance: str | None = None  # the superblock of our instance at the mountpoint
    their_mounts: tuple[Mount, ...] = ()


def instance_view(
    pid: int, mountpoint: str = DEFAULT_MOUNTPOINT, proc: str = "/proc"
) -> NamespaceView:
    """Which binfmt_misc instance an exec in ``pid``'s namespaces consults, as far as known.

    Known: whether ``pid`` shares our user namespace or descends from it, and
    which binfmt_misc superblocks its mount namespace shows.  Assumed: that a
    namespace whose mounts show no other instance did not mount one elsewhere
    (in a mount namespace we cannot see) — then, on 6.7+, it falls back to
    its nearest ancestor's instance, ours.
    """
    relation = userns_relation(pid, proc)
    ours = binfmt_mounts(read_text(f"{proc}/self/mountinfo") or "")
    our_dev = next((m.dev for m in ours if m.mountpoint == mountpoint), None)
    theirs_text = read_text(f"{proc}/{pid}/mountinfo")
    theirs = tuple(binfmt_mounts(theirs_text or ""))

    def view(seen: Seen, detail: str) -> NamespaceView:
        return NamespaceView(pid, relation, seen, detail, our_dev, theirs)

    if relation is Relation.SAME:
        return view(
            Seen.SAME,
            "runs in binfmtctl's own user namespace: its containers use the handlers "
            "binfmtctl sees",
        )
    if relation is Relation.UNKNOWN or theirs_text is None:
        return view(Seen.UNKNOWN, "cannot read its namespaces (run as root to find out)")
    others = [m for m in theirs if m.dev != our_dev]
    if others:
        return view(
            Seen.PRIVATE,
            f"its namespace mounted its own binfmt_misc (at {others[0].mountpoint}): its "
            "containers do NOT see the handlers binfmtctl configures here, and an install "
            "run inside it changes only that private instance",
        )
    if relation is Relation.OTHER:
        return view(
            Seen.UNKNOWN,
            "runs in a user namespace that is not binfmtctl's nor a descendant of it",
        )
    return view(
        Seen.INHERITED,
        "runs in a child user namespace that shows no binfmt_misc instance of its own: "
        "on Linux 6.7+ it falls back to this one (assumed: it did not mount one in a "
        "mount namespace binfmtctl cannot see)",
    )


def other_user_namespaces(proc: str = "/proc") -> list[tuple[int, list[str]]]:
    """One process per other user namespace, with the binfmt_misc mountpoints it sees.

    The first process (by pid) seen in each namespace answers for it; processes
    that cannot be read (gone, no access) are skipped. Needs privileges over
    those namespaces (root on the host has them) to see much.
    """
    try:
        mine = os.stat(f"{proc}/self/ns/user").st_ino
    except OSError:
        return []
    seen: set[int] = {mine}
    out: list[tuple[int, list[str]]] = []
    for pid in sorted((p for p in os.listdir(proc) if p.isdigit()), key=int):
        try:
            ns = os.stat(f"{proc}/{pid}/ns/user").st_ino
            if ns in seen:
                continue
            with open(f"{proc}/{pid}/mountinfo", encoding="utf-8", errors="replace") as fh:
                points = [m.mountpoint for m in binfmt_mounts(fh.read())]
        except OSError:
            continue
        seen.add(ns)
        out.append((int(pid), points))
    return out
