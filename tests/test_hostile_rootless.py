"""Rootless mode against hostile roots, PATHs and limits (real namespaces, real mounts).

* The host's /etc/resolv.conf is bound read-only into a --rootfs root: the
  command, root in its namespace, cannot change the host's file through it.
* A mountpoint of the root that is a symlink (R/proc -> /somewhere/else) is
  refused before anything is created or mounted through it.
* Command lookup follows the shell: an unsearchable PATH directory is skipped
  (127 when the command is nowhere), a found file that cannot run is 126.
* A user-namespace limit is exit 4 naming user.max_user_namespaces, proven by
  setting the limit inside a user namespace of our own (the setting is per
  namespace; the host's is never touched).

The tests run as root (CI); roots and directories that must be out of reach
belong to the unprivileged user ``binfmtctl-test``.
"""

from __future__ import annotations

import errno
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from binfmtctl import sandbox
from binfmtctl.errors import RootlessUnavailableError, SandboxError
from conftest import _NO_SANDBOX, foreign_busybox
from conftest import host_cli as binfmtctl

pytestmark = pytest.mark.skipif(
    _NO_SANDBOX is not None or os.geteuid() != 0,
    reason=f"needs root and private binfmt_misc instances ({_NO_SANDBOX or 'not root'})",
)

USER = "binfmtctl-test"


def _chown_to_user(*paths: Path) -> None:
    entry = pwd.getpwnam(USER)
    for path in paths:
        os.lchown(path, entry.pw_uid, entry.pw_gid)


def _snapshot(top: Path) -> dict[str, tuple[str, bytes]]:
    """Every path under ``top`` with its kind and content (links: their target)."""
    out: dict[str, tuple[str, bytes]] = {}
    for path in sorted(top.rglob("*")):
        key = str(path.relative_to(top))
        if path.is_symlink():
            out[key] = ("link", os.readlink(path).encode())
        elif path.is_dir():
            out[key] = ("dir", b"")
        else:
            out[key] = ("file", path.read_bytes())
    return out


@pytest.fixture
def top() -> Iterator[Path]:
    """A directory the unprivileged user can enter (tmp_path below /tmp/pytest-of-root cannot)."""
    path = Path(tempfile.mkdtemp(prefix="binfmtctl-hostile-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def rootfs(top: Path) -> Path:
    """The extracted busybox-static:arm64 package with /bin/sh and /etc (ours: mountpoints
    can be created in it; in the namespace root has no power over others' files)."""
    root = top / "arm64-rootfs"
    shutil.copytree(foreign_busybox("arm64").parent.parent, root, symlinks=True)
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "etc").mkdir()
    return root


# -- resolv.conf -----------------------------------------------------------------


def test_host_resolv_conf_is_visible_but_read_only_inside(rootfs: Path) -> None:
    host = Path("/etc/resolv.conf")
    if not host.is_file():
        pytest.skip("this host has no /etc/resolv.conf to bind")
    before = (host.read_bytes(), host.stat().st_mtime_ns)
    # Opening for append writes nothing, so even a wrong result changes no byte.
    script = "/bin/busybox cat /etc/resolv.conf; : >> /etc/resolv.conf && echo WRITABLE"
    proc = binfmtctl(
        "run", "--arch", "arm64", "--rootfs", str(rootfs), "--", "/bin/sh", "-c", script
    )
    assert proc.stdout == host.read_text()  # the host's file is what the root sees
    assert "Read-only file system" in proc.stderr
    assert "WRITABLE" not in proc.stdout
    assert (host.read_bytes(), host.stat().st_mtime_ns) == before
    assert (rootfs / "etc" / "resolv.conf").read_bytes() == b""  # only the empty mountpoint


def test_bind_is_read_only_even_for_a_file_the_namespace_owns(top: Path) -> None:
    """A resolv.conf the namespace's root may write (ours) still cannot be written inside."""
    host_file = top / "resolv.conf"
    host_file.write_text("nameserver 192.0.2.1\n")
    root = top / "root"
    (root / "etc").mkdir(parents=True)

    def body() -> tuple[str, int]:
        sandbox.enter_rootfs(str(root), host_resolv_conf=str(host_file))
        seen = Path("/etc/resolv.conf").read_text()
        try:
            os.close(os.open("/etc/resolv.conf", os.O_WRONLY | os.O_APPEND))
        except OSError as err:
            return seen, err.errno or 0
        return seen, 0

    seen, code = sandbox.run(body)
    assert (seen, code) == ("nameserver 192.0.2.1\n", errno.EROFS)
    assert host_file.read_text() == "nameserver 192.0.2.1\n"


def test_a_symlinked_resolv_conf_is_followed_inside_the_root(top: Path) -> None:
    """systemd-resolved roots: /etc/resolv.conf -> ../run/...; bound there, never outside."""
    host_file = top / "host-resolv.conf"
    host_file.write_text("nameserver 192.0.2.7\n")
    root = top / "root"
    (root / "etc").mkdir(parents=True)
    (root / "run" / "resolve").mkdir(parents=True)
    (root / "run" / "resolve" / "stub.conf").write_text("root's own\n")
    (root / "etc" / "resolv.conf").symlink_to("../run/resolve/stub.conf")
    outside = top / "outside.conf"
    outside.write_text("victim\n")
    other = top / "root2"
    (other / "etc").mkdir(parents=True)
    (other / "etc" / "resolv.conf").symlink_to(outside)  # absolute: re-rooted, finds nothing

    def body(where: Path) -> str:
        sandbox.enter_rootfs(str(where), host_resolv_conf=str(host_file))
        try:
            return Path("/etc/resolv.conf").read_text()
        except OSError as err:
            return f"error {err.strerror}"

    assert sandbox.run(body, root) == "nameserver 192.0.2.7\n"
    assert sandbox.run(body, other) == "error No such file or directory"
    assert outside.read_text() == "victim\n"
    assert (root / "run" / "resolve" / "stub.conf").read_text() == "root's own\n"


# -- symlinked mountpoints -----------------------------------------------------


@pytest.mark.parametrize("name", ["proc", "dev", "sys", "tmp"])
@pytest.mark.parametrize("kind", ["absolute", "relative", "dangling"])
def test_a_mountpoint_that_is_a_symlink_is_refused(
    rootfs: Path, top: Path, name: str, kind: str
) -> None:
    victim = top / "home-victim"
    victim.mkdir()
    (victim / "notes").write_text("mine\n")
    _chown_to_user(victim, victim / "notes")
    target = {
        "absolute": str(victim),
        "relative": f"../{victim.name}",
        "dangling": str(victim / "new"),
    }[kind]
    (rootfs / name).symlink_to(target)
    _chown_to_user(rootfs / name)
    before = _snapshot(top)
    proc = binfmtctl("run", "--arch", "arm64", "--rootfs", str(rootfs), "--", "/bin/true")
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr == (
        f"binfmtctl: error: --rootfs {rootfs}: /{name} is a symlink (to {target}); binfmtctl "
        "mounts nothing through a symlink in a root (it could lead out of it): make "
        f"/{name} a directory\n"
    )
    assert _snapshot(top) == before  # nothing created, in the root or beside it


def test_a_mountpoint_that_is_a_file_is_refused(rootfs: Path) -> None:
    (rootfs / "proc").write_text("not a directory\n")
    proc = binfmtctl("run", "--arch", "arm64", "--rootfs", str(rootfs), "--", "/bin/true")
    assert (proc.returncode, proc.stderr) == (
        1,
        f"binfmtctl: error: --rootfs {rootfs}: /proc is not a directory\n",
    )


def test_a_symlinked_etc_gets_no_resolv_conf(rootfs: Path, top: Path) -> None:
    """R/etc -> a host directory: nothing is created or bound there."""
    victim = top / "victim-etc"
    victim.mkdir()
    (rootfs / "etc").rmdir()
    (rootfs / "etc").symlink_to(victim)
    proc = binfmtctl(
        "run", "--arch", "arm64", "--rootfs", str(rootfs), "--", "/bin/busybox", "true"
    )
    assert (proc.returncode, proc.stderr) == (0, "")
    assert list(victim.iterdir()) == []


# -- command lookup -------------------------------------------------------------------


@pytest.fixture
def path_dirs(top: Path) -> tuple[Path, Path]:
    """An unsearchable directory (the user's, mode 700) and one with a non-executable file."""
    hidden = top / "hidden"
    hidden.mkdir(mode=0o700)
    _chown_to_user(hidden)
    plain = top / "plain"
    plain.mkdir()
    (plain / "notexec").write_text("echo should not run\n")
    (plain / "notexec").chmod(0o644)
    (plain / "adir").mkdir()
    return hidden, plain


@pytest.mark.parametrize(
    ("command", "code", "stdout", "message"),
    [
        (["no-such-command-x"], 127, "", "command not found in PATH ({path})"),
        (["true"], 0, "", None),
        (["echo", "found"], 0, "found\n", None),
        (["notexec"], 126, "", "cannot run notexec: Permission denied"),
        (["adir"], 127, "", "cannot run adir: command not found in PATH ({path})"),
    ],
)
def test_command_lookup_follows_the_shell(
    path_dirs: tuple[Path, Path], command: list[str], code: int, stdout: str, message: str | None
) -> None:
    hidden, plain = path_dirs
    path = f"{hidden}:{plain}:/usr/bin:/bin"
    env = {**os.environ, "PATH": path}
    proc = binfmtctl("run", "--arch", "arm64", "--", *command, env=env)
    assert (proc.returncode, proc.stdout) == (code, stdout), proc.stderr
    if message is None:
        assert proc.stderr == ""
    else:
        assert message.format(path=path) in proc.stderr


def test_the_shell_agrees_on_the_statuses(path_dirs: tuple[Path, Path]) -> None:
    """The same lookups in bash (as a user who cannot search ``hidden``), for reference."""
    hidden, plain = path_dirs
    path = f"{hidden}:{plain}:/usr/bin:/bin"
    statuses = []
    for name in ("no-such-command-x", "notexec", "adir"):
        done = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--",
             "/bin/bash", "-c", f"PATH={path}; {name}"],
            capture_output=True, check=False,
        )  # fmt: skip
        statuses.append(done.returncode)
    assert statuses == [127, 126, 127]


# -- user namespace limits -------------------------------------------------------------


def _hold_a_namespace() -> int:
    """A child that created one user namespace (counted against the limit) and waits."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a holder of one nested namespace
        try:
            os.close(ready_r)
            sandbox.unshare(sandbox.CLONE_NEWUSER)
            os.write(ready_w, b"u")
            while True:
                signal.pause()  # until killed
        finally:
            os._exit(0)
    os.close(ready_w)
    said = os.read(ready_r, 1)  # b"" if the holder could not unshare
    os.close(ready_r)
    if said != b"u":
        os.waitpid(pid, 0)
        raise AssertionError("the holder could not create its namespace")
    return pid


def _run_with_limit(limit: int, occupy: int) -> tuple[int, str]:
    """In a user namespace of our own: set its limit, use ``occupy`` of it, run binfmtctl."""
    Path("/proc/sys/user/max_user_namespaces").write_text(f"{limit}\n")
    holders: list[int] = []
    try:
        for _ in range(occupy):
            holders.append(_hold_a_namespace())
        done = binfmtctl("run", "--json", "--arch", "arm64", "--", "true")
    finally:
        for pid in holders:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    return done.returncode, done.stdout


@pytest.mark.parametrize(
    ("limit", "occupy", "message"),
    [
        (
            0,
            0,
            "user namespaces are disabled (user.max_user_namespaces = 0); allow them with "
            "`sudo sysctl -w user.max_user_namespaces=15000`, or use `sudo binfmtctl install` "
            "instead of a private instance",
        ),
        (
            1,
            1,
            "cannot create a user namespace: a limit is reached: user.max_user_namespaces "
            "(= 1 here; it counts per user, and every enclosing namespace has its own), "
            "user.max_mnt_namespaces, or the kernel's nesting depth of 32; end namespaces you "
            "no longer need (containers, sandboxes), raise the limit (`sudo sysctl -w "
            "user.max_user_namespaces=15000`), or run binfmtctl from a less deeply nested "
            "container",
        ),
    ],
)
def test_a_user_namespace_limit_is_exit_4_naming_the_knob(
    limit: int, occupy: int, message: str
) -> None:
    code, out = sandbox.run(_run_with_limit, limit, occupy)
    (error,) = json.loads(out)["errors"]
    assert (code, error["code"], error["knob"], error["message"]) == (
        4,
        "rootless_unavailable",
        "user.max_user_namespaces",
        message,
    )


def _nest_until_refused() -> tuple[int, int, str]:
    """Nest user namespaces (each mapping root) until the kernel says no; run binfmtctl there."""
    depth = 0
    while True:
        try:
            sandbox.unshare(sandbox.CLONE_NEWUSER)
        except OSError as err:
            refusal = err.errno or 0
            break
        depth += 1
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text("0 0 1")
        Path("/proc/self/gid_map").write_text("0 0 1")
    done = binfmtctl("run", "--json", "--arch", "arm64", "--", "true")
    (error,) = json.loads(done.stdout)["errors"]
    return refusal, done.returncode, error["message"]


def test_too_deep_a_nesting_is_exit_4() -> None:
    """The kernel says ENOSPC at depth 33 (EUSERS before Linux 4.9): exit 4 either way."""
    refusal, code, message = sandbox.run(_nest_until_refused)
    assert (refusal in (errno.ENOSPC, errno.EUSERS), code) == (True, 4)
    expected = {
        errno.ENOSPC: "cannot create a user namespace: a limit is reached: "
        "user.max_user_namespaces (= 2147483647 here;",
        errno.EUSERS: "cannot create a user namespace: user namespaces are nested 32 deep",
    }[refusal]
    assert message.startswith(expected)


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (errno.ENOSPC, RootlessUnavailableError),
        (errno.EUSERS, RootlessUnavailableError),
        (errno.EPERM, SandboxError),
    ],
)
def test_unshare_errnos_and_their_exit_codes(tmp_path: Path, code: int, kind: type) -> None:
    err = sandbox._unshare_refusal(OSError(code, os.strerror(code)), proc_sys=str(tmp_path))
    assert type(err) is kind
    assert err.exit_code == (4 if kind is RootlessUnavailableError else 1)
