"""Which container engines are here, and which binfmt_misc instance their containers use.

``binfmtctl status`` shows it: a Docker daemon or a rootless Podman lives in a
user namespace of its own, and since Linux 6.7 a user namespace can have its
own binfmt_misc, so the handlers binfmtctl sees are not always the ones a
container gets. Cheap by design, because status runs it every time: no engine
command is run, the answer comes from the daemon's socket (its peer's pid) and
/proc; and this module stays light to import (no dataclasses, no json), unlike
``engines``, which runs containers.
"""

from __future__ import annotations

import os
import struct

from binfmtctl.instance import DEFAULT_MOUNTPOINT
from binfmtctl.namespaces import NamespaceView, Relation, Seen, instance_view, read_text
from binfmtctl.pathsearch import which
from binfmtctl.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

ENGINES = ("docker", "podman")


class EngineView(NamedTuple):
    """One container engine, as ``status`` shows it: found? reachable? which instance?"""

    name: str
    binary: str | None
    reachable: bool | None = None  # None: not asked (podman has no daemon)
    rootless: bool | None = None
    pid: int | None = None  # the daemon (docker) or the rootless namespace holder (podman)
    userns: Relation | None = None
    instance: Seen = Seen.UNKNOWN
    detail: str = ""
    socket: str | None = None  # docker: the daemon's socket, when it is a unix socket

    def seen_as(self, view: NamespaceView, rootless: bool | None = None) -> EngineView:
        """This engine with what ``view`` says about its namespaces."""
        return self._replace(
            pid=view.pid,
            userns=view.userns,
            instance=view.instance,
            detail=view.detail,
            rootless=self.rootless if rootless is None else rootless,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "binary": self.binary,
            "reachable": self.reachable,
            "rootless": self.rootless,
            "pid": self.pid,
            "userns": None if self.userns is None else self.userns.value,
            "instance": self.instance.value,
            "detail": self.detail,
        }
        if self.socket is not None:
            out["socket"] = self.socket
        return out


def _docker_socket(env: dict[str, str]) -> str:
    host = env.get("DOCKER_HOST", "")
    if host.startswith("unix://"):
        return host[len("unix://") :]
    return "" if host else "/var/run/docker.sock"


def _socket_peer(path: str) -> tuple[bool, int | None, str | None]:
    """(reachable, pid of the listener, error) for a unix socket, without speaking to it."""
    try:
        os.stat(path)  # no Docker here, the usual case: answered without importing socket
    except OSError as err:
        return False, None, err.strerror or str(err)
    import socket  # start-up speed: only where something is at the socket's path

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(1.0)
    try:
        sock.connect(path)
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, _uid, _gid = struct.unpack("3i", creds)
        return True, (pid or None), None
    except OSError as err:
        return False, None, err.strerror or str(err)
    finally:
        sock.close()


def _podman_pause_pid(env: dict[str, str]) -> int | None:
    runtime = env.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    for path in (f"{runtime}/libpod/tmp/pause.pid", f"{runtime}/containers/pause.pid"):
        text = read_text(path)
        if text and text.strip().isdigit():
            pid = int(text.strip())
            if os.path.exists(f"/proc/{pid}"):
                return pid
    return None


def survey(
    mountpoint: str = DEFAULT_MOUNTPOINT, env: dict[str, str] | None = None
) -> list[EngineView]:
    """What ``binfmtctl status`` says about each engine; cheap (no engine command is run)."""
    env = dict(os.environ) if env is None else env
    out: list[EngineView] = []
    for name in ENGINES:
        binary = which(name, env.get("PATH"))
        view = EngineView(name, binary)
        if name == "docker":
            view = _survey_docker(view, env, mountpoint)
        elif binary is not None:
            view = _survey_podman(view, env, mountpoint)
        if binary is None and not view.reachable:
            continue
        out.append(view)
    return out


def _survey_docker(view: EngineView, env: dict[str, str], mountpoint: str) -> EngineView:
    path = _docker_socket(env)
    if not path:
        detail = "DOCKER_HOST is not a unix socket: cannot see the daemon's namespaces"
        return view._replace(detail=detail)
    reachable, pid, err = _socket_peer(path)
    view = view._replace(socket=path, reachable=reachable)
    if not reachable:
        return view._replace(detail=f"no daemon at {path} ({err})")
    if pid is None:
        detail = "daemon reachable; its process is not visible from here"
        return view._replace(detail=detail)
    seen = instance_view(pid, mountpoint)
    rootless = seen.userns not in (Relation.SAME, Relation.UNKNOWN) or path.startswith("/run/user/")
    return view.seen_as(seen, rootless=rootless)


def _survey_podman(view: EngineView, env: dict[str, str], mountpoint: str) -> EngineView:
    rootless = os.geteuid() != 0
    # podman has no daemon (reachable stays None); `podman info` would say more
    view = view._replace(rootless=rootless)
    if not rootless:
        return view._replace(
            userns=Relation.SAME,
            instance=Seen.SAME,
            detail="rootful podman runs containers in this user namespace: they use the "
            "handlers binfmtctl sees",
        )
    pid = _podman_pause_pid(env)
    if pid is None:
        return view._replace(
            instance=Seen.INHERITED,
            detail="rootless podman has no namespace running yet; the next one it creates "
            "falls back to this instance on Linux 6.7+ unless something mounts "
            "binfmt_misc inside it (e.g. an installer run with `podman unshare`)",
        )
    return view.seen_as(instance_view(pid, mountpoint))
