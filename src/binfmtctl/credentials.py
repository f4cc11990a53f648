"""Whether an interpreter path is safe to run with the binary's credentials (flag C).

With C the kernel runs the interpreter with the credentials of the program it
runs, so a setuid-root foreign program runs its emulator as euid 0. Without F
the kernel opens the interpreter path *as given* at every exec, so whoever can
change any component of that path -- a directory, a symlink, the directory a
symlink sits in, the file itself -- chooses what runs as root. With F the file
is pinned at registration, but its content still runs as root, so the rule is
the same: every component, as given and through every symlink, must be owned
by root and writable by root only. A directory writable by others with the
sticky bit (``/tmp``) is accepted as sudo does: others may not rename or
remove the root-owned entry inside it, and that entry is checked too.

A component on a FUSE file system is refused whatever it shows: its owner and
mode are the word of the (possibly unprivileged) process serving it.

Inside a user namespace, a file whose owner is not mapped shows as the
overflow uid (65534): that is reported as "not mapped", never as root.
"""

from __future__ import annotations

import enum
import os
import pwd
import stat

from binfmtctl.records import NamedTuple

MAX_LINKS = 40  # the kernel's limit on symlinks followed in one lookup (MAXSYMLINKS)


class Problem(str, enum.Enum):
    """Why a path is not safe for C (stable codes, for --json and tests)."""

    RELATIVE = "relative"
    OWNER = "owner"
    UNMAPPED_OWNER = "unmapped_owner"
    WRITABLE = "writable"
    UNREADABLE = "unreadable"
    LOOP = "loop"
    FUSE = "fuse"


class Unsafe(NamedTuple):
    """The first component that makes a path unsafe for C, and why."""

    problem: Problem
    component: str  # the path that fails the check, as reached
    via: str | None  # the symlink through which it was reached, if any
    message: str

    def __str__(self) -> str:
        return self.message


def check(path: str, proc: str = "/proc") -> Unsafe | None:
    """Why ``path`` must not be an interpreter with the C flag, or None if it is safe.

    Walks the path as the kernel looks it up: every directory from ``/``, each
    symlink itself and then its target (relative or absolute, recursively),
    and the final file. ``proc`` is where this process's mount table is read.
    """
    fuse = fuse_devices(proc)
    if "\0" in path:
        return Unsafe(Problem.UNREADABLE, path, None, f"{path!r} contains a NUL byte")
    if not path.startswith("/"):
        return Unsafe(
            Problem.RELATIVE,
            path,
            None,
            f"{path} is not an absolute path: the kernel would look it up from the "
            "working directory of every program it runs",
        )
    root = _check_node("/", None, fuse)
    if root is not None:
        return root
    pending = [p for p in path.split("/") if p]
    current = "/"
    via: str | None = None
    links = 0
    while pending:
        name = pending.pop(0)
        if name == ".":
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        node = os.path.join(current, name)
        try:
            info = os.lstat(node)
        except OSError as err:
            return Unsafe(
                Problem.UNREADABLE, node, via, f"cannot check {node}{_via(via)}: {err.strerror}"
            )
        if stat.S_ISLNK(info.st_mode):
            owner = _fuse_problem(node, via, info, fuse) or _owner_problem(
                node, via, info.st_uid, what="the symlink "
            )
            if owner is not None:
                return owner
            links += 1
            if links > MAX_LINKS:
                return Unsafe(
                    Problem.LOOP,
                    node,
                    via,
                    f"{path}: too many levels of symbolic links (more than {MAX_LINKS})",
                )
            try:
                target = os.readlink(node)
            except OSError as err:
                return Unsafe(
                    Problem.UNREADABLE, node, via, f"cannot read the symlink {node}: {err.strerror}"
                )
            via = node
            pending[:0] = [p for p in target.split("/") if p]
            if target.startswith("/"):
                current = "/"
            continue
        unsafe = _check_info(node, via, info, fuse, is_last=not pending)
        if unsafe is not None:
            return unsafe
        current = node
    return None


def _check_node(node: str, via: str | None, fuse: dict[int, str]) -> Unsafe | None:
    try:
        info = os.lstat(node)
    except OSError as err:
        return Unsafe(Problem.UNREADABLE, node, via, f"cannot check {node}: {err.strerror}")
    return _check_info(node, via, info, fuse, is_last=False)


def _check_info(
    node: str, via: str | None, info: os.stat_result, fuse: dict[int, str], is_last: bool
) -> Unsafe | None:
    owner = _fuse_problem(node, via, info, fuse) or _owner_problem(node, via, info.st_uid, "")
    if owner is not None:
        return owner
    writable = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    sticky_dir = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX and not is_last
    if writable and not sticky_dir:
        who = "its group and others" if writable == stat.S_IWGRP | stat.S_IWOTH else None
        who = who or ("its group" if writable == stat.S_IWGRP else "others")
        return Unsafe(
            Problem.WRITABLE,
            node,
            via,
            f"{node}{_via(via)} is writable by {who} (mode {stat.S_IMODE(info.st_mode):04o})",
        )
    return None


def _owner_problem(node: str, via: str | None, uid: int, what: str) -> Unsafe | None:
    if uid == 0:
        return None
    if uid == overflow_uid() and not uid_mapped(uid):
        return Unsafe(
            Problem.UNMAPPED_OWNER,
            node,
            via,
            f"{what}{node}{_via(via)} is owned by a user that is not mapped into this "
            f"user namespace (it shows as uid {uid}), so not by root",
        )
    return Unsafe(
        Problem.OWNER,
        node,
        via,
        f"{what}{node}{_via(via)} is owned by {describe_uid(uid)}, not root",
    )


def _fuse_problem(
    node: str, via: str | None, info: os.stat_result, fuse: dict[int, str]
) -> Unsafe | None:
    fstype = fuse.get(info.st_dev)
    if fstype is None:
        return None
    return Unsafe(
        Problem.FUSE,
        node,
        via,
        f"{node}{_via(via)} is on a FUSE file system ({fstype}): its owner and mode are "
        "whatever the process serving it says, so they prove nothing",
    )


def fuse_devices(proc: str = "/proc") -> dict[int, str]:
    """st_dev -> type of every FUSE mount this process sees (user-mountable via fusermount)."""
    try:
        with open(f"{proc}/self/mountinfo", encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return {}
    found: dict[int, str] = {}
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if not sep or len(fields) < 3 or not rest:
            continue
        fstype = rest[0]
        if fstype not in ("fuse", "fuseblk") and not fstype.startswith("fuse."):
            continue
        major, colon, minor = fields[2].partition(":")
        if colon and major.isdigit() and minor.isdigit():
            found[os.makedev(int(major), int(minor))] = fstype
    return found


def _via(link: str | None) -> str:
    return f" (reached through the symlink {link})" if link else ""


def describe_uid(uid: int) -> str:
    """``uid 1001 (alice)``, or just ``uid 1001`` when it has no name."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def overflow_uid(proc: str = "/proc") -> int:
    """The uid the kernel shows for owners not mapped into this namespace (65534)."""
    try:
        with open(f"{proc}/sys/kernel/overflowuid") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 65534


def uid_mapped(uid: int, proc: str = "/proc") -> bool:
    """Whether ``uid`` (as seen here) is mapped in this process's user namespace."""
    try:
        with open(f"{proc}/self/uid_map") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return True
    for line in lines:
        fields = line.split()
        if len(fields) == 3 and fields[0].isdigit() and fields[2].isdigit():
            inside, count = int(fields[0]), int(fields[2])
            if inside <= uid < inside + count:
                return True
    return False
