"""Full uid/gid maps (0..65535) for a new user namespace, as container engines need.

Without them only root exists inside (it is the caller); with them, package
managers in a root file system can chown. newuidmap/newgidmap must write the
maps from the parent namespace, so :class:`MapHelper` is a child left outside.
"""

from __future__ import annotations

import os
from pathlib import Path

from binfmtctl.errors import SandboxError
from binfmtctl.forking import stop_child

SUBUID, SUBGID = "/etc/subuid", "/etc/subgid"


FULL_ID_COUNT = 65536  # what container images expect: uids and gids 0..65535


def _subordinate_range(path: str, uid: int) -> tuple[int, int] | None:
    """The first ``/etc/subuid``-style range for ``uid`` (by number or name)."""
    import pwd

    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (name, str(uid)) and parts[1].isdigit():
            start, count = int(parts[1]), int(parts[2] or 0)
            if count >= FULL_ID_COUNT - 1:
                return start, FULL_ID_COUNT - 1
    return None


def write_full_id_maps(pid: int) -> None:
    """Give the new user namespace of ``pid`` ids 0..65535, as container engines need.

    Root inside is the caller's own uid; 1..65535 come from the caller's
    subordinate range (newuidmap/newgidmap). Without one, real root maps the
    identity range itself; anyone else is told how to get a range.
    """
    import shutil
    import subprocess

    uid, gid = os.getuid(), os.getgid()
    sub_u = _subordinate_range(SUBUID, uid)
    sub_g = _subordinate_range(SUBGID, uid)
    tools = shutil.which("newuidmap"), shutil.which("newgidmap")
    if sub_u and sub_g and tools[0] and tools[1]:
        for tool, own, (start, count) in ((tools[0], uid, sub_u), (tools[1], gid, sub_g)):
            argv = [tool, str(pid), "0", str(own), "1", "1", str(start), str(count)]
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SandboxError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
        return
    if os.geteuid() == 0:
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{pid}/{name}").write_text(f"0 0 {FULL_ID_COUNT}\n")
        return
    raise SandboxError(
        "a sandbox with a full uid/gid range needs a subordinate range for this user "
        "in /etc/subuid and /etc/subgid (65536 ids) and newuidmap/newgidmap (package uidmap)"
    )


class MapHelper:
    """A child left outside the new user namespace to write our full id maps.

    newuidmap/newgidmap must run from the parent namespace (a setuid program
    whose owner is not mapped loses its privilege), and after our unshare, so
    the helper is forked first and waits for a go. This lets the command be
    exec'd in place afterwards (no fork between binfmtctl and it).
    """

    def __init__(self) -> None:
        target = os.getpid()
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
                        write_full_id_maps(target)
                        answer = b"ok"
                    except BaseException as exc:  # noqa: BLE001 - reported to the parent
                        answer = str(exc).encode()
                os.write(done_w, answer)
            finally:
                os._exit(0)
        os.close(self._go_r)
        os.close(done_w)

    def cancel(self) -> None:
        os.close(self._go_w)
        os.close(self._done_r)
        os.waitpid(self.pid, 0)

    def finish(self) -> None:
        try:
            os.write(self._go_w, b"g")
            os.close(self._go_w)
            with os.fdopen(self._done_r, "rb") as pipe:
                answer = pipe.read()
        except BaseException as stop:
            stop_child(self.pid, stop)
            raise
        os.waitpid(self.pid, 0)
        if answer != b"ok":
            raise SandboxError(
                f"--uid-map auto: {answer.decode(errors='replace') or 'the map helper died'}"
            )
