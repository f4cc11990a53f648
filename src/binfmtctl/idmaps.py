"""Full uid/gid maps (0..65535) for a new user namespace, as container engines need.

Without them only root exists inside (it is the caller); with them, package
managers in a root file system can chown. newuidmap/newgidmap must write the
maps from the parent namespace, so :class:`MapHelper` is a child left outside.
:func:`full_maps_refusal` says beforehand whether they can be had here, so
``run``'s default can fall back to root alone without trying.
"""

from __future__ import annotations

import os

from binfmtctl.errors import SandboxError
from binfmtctl.forking import stop_child
from binfmtctl.pathsearch import which

SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"


FULL_ID_COUNT = 65536  # what container images expect: uids and gids 0..65535
MAP_TOOLS = ("newuidmap", "newgidmap")


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(1 << 20)
    except OSError:
        return None


def _subordinate_range(path: str, uid: int, name: str | None = None) -> tuple[int, int] | None:
    """The first ``/etc/subuid``-style range for ``uid`` (by number or name)."""
    text = _read(path)
    if text is None:
        return None
    names = (name or _user_name(uid), str(uid))
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in names and parts[1].isdigit() and parts[2].isdigit():
            start, count = int(parts[1]), int(parts[2])
            if count >= FULL_ID_COUNT - 1:
                return start, FULL_ID_COUNT - 1
    return None


TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    Range = tuple[int, int]
    #: a user's name, subordinate uid and gid ranges, and where newuidmap/newgidmap are
    Found = tuple[str, Range | None, Range | None, tuple[str | None, str | None]]

_FOUND: dict[int, Found] = {}


def _ranges(uid: int) -> Found:
    """``uid``'s name, subordinate uid and gid ranges and map tools, looked up once per process
    (:func:`full_maps_refusal` asks first, then :func:`map_commands`)."""
    if uid not in _FOUND:
        name = _user_name(uid)
        _FOUND[uid] = (
            name,
            _subordinate_range(SUBUID, uid, name),
            _subordinate_range(SUBGID, uid, name),
            (which(MAP_TOOLS[0]), which(MAP_TOOLS[1])),
        )
    return _FOUND[uid]


def _covers(map_file: str, start: int, count: int) -> bool:
    """Whether this namespace's id map (``/proc/self/uid_map``) has ids start..start+count-1."""
    text = _read(map_file) or ""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            inside, _, length = (int(f) for f in fields)
            if inside <= start and start + count <= inside + length:
                return True
    return False


class Refusal:
    """Why ids 0..65535 cannot be mapped here: the words, what is missing, and whether
    to say so (``quiet``: nothing on this system's side to fix, e.g. inside a user
    namespace that lacks those ids, as in a container)."""

    __slots__ = ("missing_range", "missing_tools", "quiet", "user", "words")

    def __init__(
        self,
        words: str,
        user: str,
        *,
        missing_range: bool = False,
        missing_tools: bool = False,
        quiet: bool = False,
    ) -> None:
        self.words = words
        self.user = user
        self.missing_range = missing_range
        self.missing_tools = missing_tools
        self.quiet = quiet


def full_maps_refusal(
    subuid: str = SUBUID, subgid: str = SUBGID, proc_self: str = "/proc/self"
) -> Refusal | None:
    """Why :func:`write_full_id_maps` would fail for this caller; None when it can work.

    Root needs ids 0..65535 in its own namespace (true on the host; not in a
    user namespace that maps root alone). Anyone else needs a range of 65536
    ids in both files, mapped in this user namespace (on the host they all
    are; in a container usually not), and newuidmap/newgidmap on PATH. A
    namespace without the ids is a quiet refusal: nothing here can fix it.
    """
    uid = os.getuid()
    if os.geteuid() == 0:
        if _covers(f"{proc_self}/uid_map", 0, FULL_ID_COUNT) and _covers(
            f"{proc_self}/gid_map", 0, FULL_ID_COUNT
        ):
            return None
        return Refusal(
            "binfmtctl runs as root of a user namespace that has fewer than 65536 ids",
            "root",
            quiet=True,
        )
    if (subuid, subgid) == (SUBUID, SUBGID):
        name, sub_u, sub_g, found = _ranges(uid)
    else:  # other files (tests): looked up afresh
        name = _user_name(uid)
        sub_u = _subordinate_range(subuid, uid, name)
        sub_g = _subordinate_range(subgid, uid, name)
        found = (which(MAP_TOOLS[0]), which(MAP_TOOLS[1]))
    has_range = bool(sub_u and sub_g)
    tools = all(found)
    if sub_u and sub_g and tools:
        if _covers(f"{proc_self}/uid_map", *sub_u) and _covers(f"{proc_self}/gid_map", *sub_g):
            return None
        return Refusal(
            f"{name}'s subordinate ids are not mapped in this user namespace", name, quiet=True
        )
    words = []
    if not has_range:
        words.append(f"{name} has no subordinate id range in {subuid} and {subgid}")
    if not tools:
        words.append("newuidmap/newgidmap are not installed")
    return Refusal(" and ".join(words), name, missing_range=not has_range, missing_tools=not tools)


def _spawn_all(argvs: list[list[str]]) -> list[tuple[int, str]]:
    """Run the programs side by side; each one's exit status and output (posix_spawn)."""
    running = []
    for argv in argvs:
        read_fd, write_fd = os.pipe()
        try:
            actions = [(os.POSIX_SPAWN_DUP2, write_fd, 1), (os.POSIX_SPAWN_DUP2, write_fd, 2)]
            pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
        finally:
            os.close(write_fd)
        running.append((pid, read_fd))
    out = []
    for pid, read_fd in running:
        with os.fdopen(read_fd, "rb") as pipe:
            said = pipe.read()
        _, status = os.waitpid(pid, 0)
        out.append((os.waitstatus_to_exitcode(status), said.decode(errors="replace").strip()))
    return out


def map_commands(pid: int) -> list[list[str]]:
    """How ``pid``'s new user namespace gets ids 0..65535: newuidmap and newgidmap's
    command lines, or none when this process is root and writes the identity maps itself.

    Root inside is the caller's own uid; 1..65535 come from the caller's
    subordinate range. Root maps the identity range (no lookups, no helper
    programs); anyone else without a range and the tools is told how to get them.
    """
    if os.geteuid() == 0:
        return []
    uid, gid = os.getuid(), os.getgid()
    _, sub_u, sub_g, tools = _ranges(uid)
    if sub_u and sub_g and tools[0] and tools[1]:
        return [
            [tool, str(pid), "0", str(own), "1", "1", str(start), str(count)]
            for tool, own, (start, count) in ((tools[0], uid, sub_u), (tools[1], gid, sub_g))
        ]
    raise SandboxError(
        "a sandbox with a full uid/gid range needs a subordinate range for this user "
        "in /etc/subuid and /etc/subgid (65536 ids) and newuidmap/newgidmap (package uidmap)"
    )


def write_maps(pid: int, commands: list[list[str]]) -> None:
    """Carry out :func:`map_commands`' answer for ``pid`` (from outside its namespace)."""
    for argv, (status, said) in zip(commands, _spawn_all(commands), strict=True):
        if status != 0:
            raise SandboxError(f"{' '.join(argv)} failed: {said}")
    if not commands:
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as fh:
                fh.write(f"0 0 {FULL_ID_COUNT}\n")


def write_full_id_maps(pid: int) -> None:
    """Give the new user namespace of ``pid`` ids 0..65535, as container engines need."""
    write_maps(pid, map_commands(pid))


def write_own_maps(uid: int, gid: int) -> None:
    """Map root inside to the caller alone (``uid``/``gid`` outside), where not mapped yet.

    A process may write this one-id map of its own new namespace itself; the
    gid map needs setgroups denied first. A map already written (by a helper
    that then failed half-way) is kept.
    """
    if not (_read("/proc/self/uid_map") or "").strip():
        with open("/proc/self/uid_map", "w") as fh:
            fh.write(f"0 {uid} 1")
    if not (_read("/proc/self/gid_map") or "").strip():
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        with open("/proc/self/gid_map", "w") as fh:
            fh.write(f"0 {gid} 1")


class MapHelper:
    """A child left outside the new user namespace to write our full id maps.

    newuidmap/newgidmap must run from the parent namespace (a setuid program
    whose owner is not mapped loses its privilege), and after our unshare, so
    the helper is forked first and waits for a go. This lets the command be
    exec'd in place afterwards (no fork between binfmtctl and it).
    """

    def __init__(self) -> None:
        target = os.getpid()
        self.refused: str | None = None
        try:  # decided here, once: the helper only carries it out
            commands = map_commands(target)
        except SandboxError as refused:
            self.refused = str(refused)
            return
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
                        write_maps(target, commands)
                        answer = b"ok"
                    except BaseException as exc:  # noqa: BLE001 - reported to the parent
                        answer = str(exc).encode()
                os.write(done_w, answer)
            finally:
                os._exit(0)
        os.close(self._go_r)
        os.close(done_w)

    def cancel(self) -> None:
        if self.refused is not None:
            return
        os.close(self._go_w)
        os.close(self._done_r)
        os.waitpid(self.pid, 0)

    def finish(self) -> str | None:
        """Let the helper write the maps; None when it did, else why not."""
        if self.refused is not None:
            return self.refused
        try:
            os.write(self._go_w, b"g")
            os.close(self._go_w)
            with os.fdopen(self._done_r, "rb") as pipe:
                answer = pipe.read()
        except BaseException as stop:
            stop_child(self.pid, stop)
            raise
        os.waitpid(self.pid, 0)
        if answer == b"ok":
            return None
        return answer.decode(errors="replace") or "the map helper died"
