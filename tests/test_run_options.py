"""``run``'s options for real: the default id map, --bind, --workdir, --env, a root's environment.

Everything runs the real CLI in real private namespaces, as root and as the
unprivileged user ``binfmtctl-test`` (setpriv; its subordinate range is the
machine's /etc/subuid line). Where a test needs the user *without* a range,
/etc/subuid and /etc/subgid are covered by empty files with a bind mount in a
private mount namespace of that one command (``unshare --mount``): the
machine's files are never changed. apt-get runs in a copy of the session's
Debian arm64 root, shifted to the user's ids, against the real mirror.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from binfmtctl import rootless
from conftest import _NO_SANDBOX, ROOT, foreign_busybox

pytestmark = [
    pytest.mark.skipif(
        _NO_SANDBOX is not None or os.geteuid() != 0,
        reason=f"needs root and private binfmt_misc instances ({_NO_SANDBOX or 'not root'})",
    ),
    # per test: the host's binfmt_misc unchanged, not even mounted (conftest)
    pytest.mark.usefixtures("host_binfmt_unchanged"),
]

USER = "binfmtctl-test"
SYSTEM_PYTHON = "/usr/bin/python3"


def _user() -> pwd.struct_passwd:
    return pwd.getpwnam(USER)


def _as_user(*argv: str) -> list[str]:
    entry = _user()
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            "--", *argv]  # fmt: skip


def command(who: str, *args: str, python_path: str | None = None) -> list[str]:
    """argv for ``binfmtctl ARGS`` as ``who`` (the user: the distro's python3, src/ readable)."""
    if who == "root":
        return [sys.executable, "-m", "binfmtctl", *args]
    entry = _user()
    env = ["env", f"PYTHONPATH={ROOT / 'src'}", f"HOME={entry.pw_dir}"]
    if python_path is not None:
        env.append(f"PATH={python_path}")
    return _as_user(*env, SYSTEM_PYTHON, "-m", "binfmtctl", *args)


def binfmtctl(
    who: str, *args: str, env: dict[str, str] | None = None, python_path: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(who, *args, python_path=python_path),
        capture_output=True,
        text=True,
        check=False,
        cwd="/",
        env=env,
    )


@pytest.fixture(params=["root", "user"])
def who(request: pytest.FixtureRequest) -> str:
    if request.param == "user":
        entry = _user()
        check = ["test", "-r", str(ROOT / "src" / "binfmtctl" / "__init__.py")]
        if subprocess.run(_as_user(*check), check=False).returncode != 0:
            pytest.skip(f"{USER} cannot read this checkout ({ROOT})")
        assert entry.pw_uid != 0
    return str(request.param)


def _owner(who: str) -> tuple[int, int]:
    entry = _user()
    return (0, 0) if who == "root" else (entry.pw_uid, entry.pw_gid)


@pytest.fixture
def top(who: str) -> Iterator[Path]:
    """A scratch directory ``who`` owns (readable by all, so the user can reach it)."""
    # Not under /tmp: a bind's default destination is the same path, and /tmp is ours.
    path = Path(tempfile.mkdtemp(prefix="binfmtctl-options-", dir="/var/tmp"))
    path.chmod(0o755)
    os.chown(path, *_owner(who))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def rootfs(who: str, top: Path) -> Path:
    """A copy of the extracted busybox-static:arm64 package, owned by ``who``."""
    root = top / "arm64-rootfs"
    shutil.copytree(foreign_busybox("arm64").parent.parent, root, symlinks=True)
    (root / "bin" / "sh").symlink_to("busybox")
    for path in [root, *root.rglob("*")]:
        os.lchown(path, *_owner(who))
    return root


def _mine(who: str, *paths: Path) -> None:
    for path in paths:
        os.lchown(path, *_owner(who))


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- a root's environment -------------------------------------------------------------

CALLER_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/home/caller",
    "USER": "caller",
    "LOGNAME": "caller",
    "SHELL": "/bin/zsh",
    "PWD": "/home/caller/src",
    "TERM": "xterm-256color",
    "LANG": "de_DE.UTF-8",
    "LC_TIME": "C",
    "LC_CTYPE": "C.UTF-8",  # set, so Python's locale coercion adds nothing of its own
    "http_proxy": "http://proxy:3128",
    "NO_PROXY": "localhost",
    "PRIVATE_THING": "do-not-pass",
    "KEEP_ME": "from-caller",
}


def _env_of(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines())


def test_a_root_gets_roots_environment_and_only_term_language_and_proxies(
    who: str, rootfs: Path
) -> None:
    proc = binfmtctl(
        who, "run", "--rootfs", str(rootfs), "--env", "ADDED=a=b", "--env", "KEEP_ME",
        "--env", "NOT_SET_ANYWHERE", "--", "/bin/busybox", "env",
        env=CALLER_ENV,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _env_of(proc.stdout) == {
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "SHELL": "/bin/sh",  # the root has no /etc/passwd
        "PWD": "/",
        "PATH": rootless.ROOTFS_PATH,
        "TERM": "xterm-256color",
        "LANG": "de_DE.UTF-8",
        "LC_TIME": "C",
        "LC_CTYPE": "C.UTF-8",
        "http_proxy": "http://proxy:3128",
        "NO_PROXY": "localhost",
        "ADDED": "a=b",
        "KEEP_ME": "from-caller",
    }


@pytest.mark.parametrize(
    ("passwd", "shell"),
    [
        ("root:x:0:0:root:/root:/bin/ash\n", "/bin/ash"),  # there: root's login shell
        ("root:x:0:0:root:/root:/bin/zsh\n", "/bin/sh"),  # not in the root: /bin/sh
        ("daemon:x:1:1::/:/bin/ash\n", "/bin/sh"),  # no root line
    ],
)
def test_shell_is_roots_login_shell_from_the_roots_passwd(
    who: str, rootfs: Path, passwd: str, shell: str
) -> None:
    (rootfs / "bin" / "ash").symlink_to("busybox")
    (rootfs / "etc").mkdir()
    (rootfs / "etc" / "passwd").write_text(passwd)
    _mine(who, rootfs / "bin" / "ash", rootfs / "etc", rootfs / "etc" / "passwd")
    proc = binfmtctl(who, "run", "--rootfs", str(rootfs), "--", "/bin/busybox", "env")
    assert proc.returncode == 0, proc.stderr
    assert _env_of(proc.stdout)["SHELL"] == shell


def test_a_passwd_that_is_a_fifo_is_never_opened(who: str, rootfs: Path) -> None:
    (rootfs / "etc").mkdir()
    os.mkfifo(rootfs / "etc" / "passwd")
    _mine(who, rootfs / "etc", rootfs / "etc" / "passwd")
    proc = binfmtctl(who, "run", "--rootfs", str(rootfs), "--", "/bin/busybox", "env")
    assert proc.returncode == 0, proc.stderr  # did not block on the FIFO
    assert _env_of(proc.stdout)["SHELL"] == "/bin/sh"


def test_without_a_root_the_callers_environment_is_kept_plus_env(who: str) -> None:
    busybox = str(foreign_busybox("arm64"))
    proc = binfmtctl(
        who, "run", "--arch", "arm64", "--env", "ADDED=1", "--", busybox, "env", env=CALLER_ENV
    )
    assert proc.returncode == 0, proc.stderr
    got = _env_of(proc.stdout)
    assert got["PRIVATE_THING"] == "do-not-pass"
    assert got["HOME"] == ("/home/caller" if who == "root" else _user().pw_dir)
    assert got["ADDED"] == "1"


ENV_REFUSALS = [
    ("=x", "--env =x: the variable name before `=` is empty"),
    ("", "--env : the variable name before `=` is empty"),
    ("1A=x", "--env 1A=x: '1A' is not a variable name (ASCII letters, digits and _, "
     "not starting with a digit)"),
    ("A-B=x", "--env A-B=x: 'A-B' is not a variable name (ASCII letters, digits and _, "
     "not starting with a digit)"),
    ("Ä=x", "--env Ä=x: 'Ä' is not a variable name (ASCII letters, digits and _, "
     "not starting with a digit)"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "message"), ENV_REFUSALS)
def test_env_refusals(spec: str, message: str) -> None:
    proc = binfmtctl("root", "run", "--env", spec, "--", "true")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == f"binfmtctl: error: {message}\n"


# -- the default id map ----------------------------------------------------------------


def _uid_map(stdout: str) -> list[tuple[int, int, int]]:
    return [(int(a), int(b), int(c)) for a, b, c in (line.split() for line in stdout.splitlines())]


def test_default_maps_the_users_subordinate_range_and_chown_works(who: str, rootfs: Path) -> None:
    script = "touch /f && chown 1000:1000 /f && /bin/busybox cat /proc/self/uid_map"
    proc = binfmtctl(who, "run", "--rootfs", str(rootfs), "--", "/bin/sh", "-c", script)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # nothing to say: the full range is there
    if who == "root":
        assert _uid_map(proc.stdout) == [(0, 0, 65536)]  # root: the same ids as outside
        assert (rootfs / "f").stat().st_uid == 1000
    else:
        uid = _user().pw_uid
        (start,) = [
            int(line.split(":")[1])
            for line in Path("/etc/subuid").read_text().splitlines()
            if line.split(":")[0] in (USER, str(uid))
        ][:1]
        assert _uid_map(proc.stdout) == [(0, uid, 1), (1, start, 65535)]
        assert (rootfs / "f").stat().st_uid == start + 999


def test_uid_map_none_maps_root_alone_and_says_nothing(who: str, rootfs: Path) -> None:
    proc = binfmtctl(
        who, "run", "--uid-map", "none", "--rootfs", str(rootfs), "--",
        "/bin/busybox", "cat", "/proc/self/uid_map",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert _uid_map(proc.stdout) == [(0, _owner(who)[0], 1)]
    assert proc.stderr == ""


NO_RANGE_NOTE = (
    "binfmtctl: note: only uid 0 is mapped in the namespace (binfmtctl-test has no "
    "subordinate id range in /etc/subuid and /etc/subgid), so package managers (apt, dnf, "
    "apk) in a root will fail to change file owners; to map uids 0..65535 by default, add "
    "the line `binfmtctl-test:100000:65536` to both /etc/subuid and /etc/subgid, or run "
    "`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 binfmtctl-test`; "
    "`--uid-map none` says this is meant (said once per boot)\n"
)
NO_TOOLS_NOTE = (
    "binfmtctl: note: only uid 0 is mapped in the namespace (newuidmap/newgidmap are not "
    "installed), so package managers (apt, dnf, apk) in a root will fail to change file "
    "owners; to map uids 0..65535 by default, install newuidmap/newgidmap: `sudo apt-get "
    "install uidmap`; `--uid-map none` says this is meant (said once per boot)\n"
)


def _without_ranges(argv: list[str], empty: Path) -> list[str]:
    """``argv`` where /etc/subuid and /etc/subgid are empty (bind mounts in its own namespace)."""
    script = 'mount --bind "$0" /etc/subuid && mount --bind "$0" /etc/subgid && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(empty),
            *argv]  # fmt: skip


def _user_cache(top: Path) -> dict[str, str]:
    """An environment whose per-boot cache ($XDG_RUNTIME_DIR) is a fresh directory of the user."""
    runtime = top / "runtime"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, *_owner("user"))
    return {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}


@pytest.mark.parametrize("who", ["user"])
def test_no_range_says_once_per_boot_that_only_root_is_mapped(
    who: str, rootfs: Path, top: Path
) -> None:
    empty = top / "empty"
    empty.write_text("")
    env = _user_cache(top)
    args = ("run", "--rootfs", str(rootfs), "--", "/bin/busybox", "cat", "/proc/self/uid_map")
    first = subprocess.run(
        _without_ranges(command(who, *args), empty), capture_output=True, text=True, env=env,
        check=False,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    assert first.stderr == NO_RANGE_NOTE
    assert _uid_map(first.stdout) == [(0, _user().pw_uid, 1)]  # only stdout's own words
    again = subprocess.run(
        _without_ranges(command(who, *args), empty), capture_output=True, text=True, env=env,
        check=False,
    )  # fmt: skip
    assert (again.returncode, again.stderr) == (0, "")  # said once this boot
    # --json: the note never reaches stdout or the envelope.
    (Path(env["XDG_RUNTIME_DIR"]) / "binfmtctl" / "only-root-notice").unlink()
    as_json = subprocess.run(
        _without_ranges(command(who, "run", "--json", *args[1:]), empty),
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    assert as_json.stderr == NO_RANGE_NOTE
    assert "note" not in as_json.stdout
    # --uid-map auto insists: an error, not a note.
    auto = subprocess.run(
        _without_ranges(command(who, "run", "--uid-map", "auto", *args[1:]), empty),
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert (auto.returncode, auto.stdout) == (1, "")
    assert auto.stderr == (
        "binfmtctl: error: --uid-map auto: a sandbox with a full uid/gid range needs a "
        "subordinate range for this user in /etc/subuid and /etc/subgid (65536 ids) and "
        "newuidmap/newgidmap (package uidmap)\n"
    )


@pytest.mark.parametrize("who", ["user"])
def test_no_newuidmap_says_which_package(who: str, rootfs: Path, top: Path) -> None:
    env = _user_cache(top)
    proc = binfmtctl(
        who, "run", "--rootfs", str(rootfs), "--", "/bin/busybox", "cat", "/proc/self/uid_map",
        env=env, python_path="/nonexistent",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == NO_TOOLS_NOTE
    assert _uid_map(proc.stdout) == [(0, _user().pw_uid, 1)]


def test_root_in_a_namespace_of_one_id_falls_back_quietly(top: Path) -> None:
    """Nothing on this system's side can give ids there (a container): root alone, no note."""
    env = {**os.environ, "XDG_RUNTIME_DIR": str(top)}
    busybox = str(foreign_busybox("arm64"))
    run = command("root", "run", "--arch", "arm64", "--", busybox, "cat", "/proc/self/uid_map")
    argv = ["unshare", "--user", "--map-root-user", "--mount", *run]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _uid_map(proc.stdout) == [(0, 0, 1)]
    assert proc.stderr == ""


# -- apt-get in a real Debian root, as the user, with no extra flags -------------------


@pytest.fixture
def users_debian_root(arm64_root: tuple[Path, dict[str, object]]) -> Iterator[Path]:
    """A copy of the session's arm64 root owned as the user's namespace sees its ids."""
    source, _ = arm64_root
    uid = _user().pw_uid
    starts = {}
    for name in ("subuid", "subgid"):
        for line in Path(f"/etc/{name}").read_text().splitlines():
            if line.split(":")[0] in (USER, str(uid)):
                starts[name] = int(line.split(":")[1])
                break
    if set(starts) != {"subuid", "subgid"}:
        pytest.skip(f"{USER} has no subordinate range: run scripts/test-deps")
    holder = Path(tempfile.mkdtemp(prefix="binfmtctl-userroot-"))
    holder.chmod(0o755)
    root = holder / "debian-arm64"
    subprocess.run(["cp", "-a", str(source), str(root)], check=True)
    gid = _user().pw_gid
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        new_uid = uid if info.st_uid == 0 else starts["subuid"] + info.st_uid - 1
        new_gid = gid if info.st_gid == 0 else starts["subgid"] + info.st_gid - 1
        os.lchown(path, new_uid, new_gid)
        if not stat.S_ISLNK(info.st_mode):
            path.chmod(stat.S_IMODE(info.st_mode))  # chown cleared setuid bits
    yield root
    shutil.rmtree(holder)


def test_apt_get_install_works_as_the_user_without_flags(users_debian_root: Path) -> None:
    proc = binfmtctl(
        "user", "run", "--rootfs", str(users_debian_root), "--",
        "sh", "-c", "apt-get install -y hello >/dev/null && hello && id -u _apt",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == "Hello, world!"
    assert "note:" not in proc.stderr
    hello = users_debian_root / "usr" / "bin" / "hello"
    assert hello.stat().st_uid == _user().pw_uid  # root's file inside is the user's outside


# -- --bind and --workdir ----------------------------------------------------------------


@pytest.fixture
def shared(who: str, top: Path) -> Path:
    """A host directory of ``who`` with one file, to bind into the root."""
    path = top / "shared"
    path.mkdir()
    (path / "f").write_text("from the host\n")
    _mine(who, path, path / "f")
    return path


def test_bind_read_write_reaches_the_host_and_workdir_starts_there(
    who: str, rootfs: Path, shared: Path
) -> None:
    proc = binfmtctl(
        who, "run", "--rootfs", str(rootfs), "--bind", f"{shared}:/mnt/shared",
        "--workdir", "/mnt/shared", "--",
        "/bin/sh", "-c", 'pwd; echo "$PWD"; /bin/busybox cat f; echo from-inside > g',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "/mnt/shared\n/mnt/shared\nfrom the host\n"
    assert (shared / "g").read_text() == "from-inside\n"
    # The missing mountpoint was made, empty, in the root (and nothing else).
    assert (rootfs / "mnt" / "shared").is_dir()
    assert list((rootfs / "mnt" / "shared").iterdir()) == []


def test_bind_ro_is_really_read_only(who: str, rootfs: Path, shared: Path) -> None:
    proc = binfmtctl(
        who, "run", "--rootfs", str(rootfs), "--bind", f"{shared}:/src:ro", "--",
        "/bin/sh", "-c", "/bin/busybox cat /src/f; echo x > /src/g; echo x >> /src/f; "
        "/bin/busybox rm /src/f; "
        "/bin/busybox grep -w /src /proc/self/mounts | /bin/busybox cut -d' ' -f4 | "
        "/bin/busybox cut -d, -f1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from the host\nro\n"
    assert proc.stderr.count("Read-only file system") == 3, proc.stderr
    assert (shared / "f").read_text() == "from the host\n"
    assert _tree(shared) == ["f"]


def test_bind_of_a_file_and_the_default_destination(who: str, rootfs: Path, shared: Path) -> None:
    proc = binfmtctl(
        who, "run", "--rootfs", str(rootfs), "--bind", str(shared / "f"), "--bind",
        f"{shared}/f:/etc/hostfile:ro", "--", "/bin/sh", "-c",
        f"/bin/busybox cat {shared}/f /etc/hostfile",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from the host\nfrom the host\n"
    assert (rootfs / "etc" / "hostfile").is_file()


def test_workdir_without_a_root_is_a_host_directory(who: str, shared: Path) -> None:
    busybox = str(foreign_busybox("arm64"))
    proc = binfmtctl(
        who, "run", "--arch", "arm64", "--workdir", str(shared), "--", busybox, "sh", "-c",
        'pwd; echo "$PWD"',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{shared}\n{shared}\n"


def test_a_bind_destination_that_is_a_symlink_is_refused(
    who: str, rootfs: Path, shared: Path
) -> None:
    outside = rootfs.parent / "outside"
    outside.mkdir()
    _mine(who, outside)
    (rootfs / "evil").symlink_to(str(outside))  # absolute: to the host's path of it
    (rootfs / "rel").symlink_to("../outside")
    _mine(who, rootfs / "evil", rootfs / "rel")
    before = _tree(rootfs), _tree(outside)
    for name in ("evil", "rel"):
        proc = binfmtctl(
            who, "run", "--rootfs", str(rootfs), "--bind", f"{shared}:/{name}", "--", "/bin/sh",
            "-c", "echo ran",
        )  # fmt: skip
        assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
        target = os.readlink(rootfs / name)
        assert proc.stderr == (
            f"binfmtctl: error: --rootfs {rootfs}: /{name} is a symlink (to {target}); "
            "binfmtctl mounts nothing through a symlink in a root (it could lead out of it): "
            f"make /{name} a directory\n"
        )
    assert (_tree(rootfs), _tree(outside)) == before


def test_a_symlink_on_the_way_is_followed_inside_the_root_only(
    who: str, rootfs: Path, shared: Path
) -> None:
    outside = rootfs.parent / "outside"
    outside.mkdir()
    _mine(who, outside)
    # Both lead out of the root on the host; inside it they stay in it.
    (rootfs / "up").symlink_to("../../../../../../..")
    (rootfs / "abs").symlink_to(str(outside))
    _mine(who, rootfs / "up", rootfs / "abs")
    proc = binfmtctl(
        who, "run", "--rootfs", str(rootfs), "--bind", f"{shared}:/up/made/here",
        "--bind", f"{shared}:/abs/x", "--", "/bin/sh", "-c", "/bin/busybox cat /made/here/f",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "from the host\n"
    assert (rootfs / "made" / "here").is_dir()
    inner = rootfs / str(outside).lstrip("/") / "x"  # /abs -> OUTSIDE, taken inside the root
    assert inner.is_dir()
    assert _tree(outside) == []
    assert not Path("/made").exists()


BIND_REFUSALS = [
    (["--bind", "a:b:c:d"], 2,
     "--bind a:b:c:d: too many `:`; `:` separates SRC, DST and ro, so a path with `:` in it "
     "cannot be bound: bind a symlink to it whose name has none"),
    (["--bind", ":/x"], 2, "--bind :/x: SRC is empty"),
    (["--bind", "/tmp:"], 2, "--bind /tmp:: DST is empty"),
    (["--bind", "/no/such/dir:/x"], 2, "--bind /no/such/dir:/x: /no/such/dir does not exist"),
    (["--bind", "{shared}:rel"], 2,
     "--bind {shared}:rel: rel is not an absolute path (a place inside the root)"),
    (["--bind", "{shared}:/a/../b"], 2,
     "--bind {shared}:/a/../b: /a/../b contains `..`; name the place inside the root directly"),
    (["--bind", "{shared}:/"], 2,
     "--bind {shared}:/: cannot bind over the root itself; use --rootfs for that"),
    (["--bind", "{shared}:/dev/x"], 2,
     "--bind {shared}:/dev/x: /dev/x is inside /dev, which binfmtctl covers with its own "
     "mount; choose another place"),
    (["--bind", "{shared}:/tmplink/x"], 2,
     "--bind {shared}:/tmplink/x: /tmplink/x leads to /tmp inside the root (through a "
     "symlink), where binfmtctl mounts its own; choose another place"),
    (["--bind", "{fifo}:/x"], 2,
     "--bind {fifo}:/x: {fifo} is a FIFO; only a directory or a regular file can be bound"),
    (["--workdir", "/nowhere"], 2, "--workdir /nowhere: no such directory inside the root {root}"),
    (["--workdir", "/bin/busybox"], 2,
     "--workdir /bin/busybox: not a directory inside the root {root}"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "code", "message"), BIND_REFUSALS)
def test_bind_and_workdir_refusals_change_nothing(
    who: str, rootfs: Path, shared: Path, args: list[str], code: int, message: str
) -> None:
    fifo = shared.parent / "fifo"
    os.mkfifo(fifo)
    (rootfs / "tmplink").symlink_to("/tmp")
    (rootfs / "tmp").mkdir()
    _mine(who, fifo, rootfs / "tmplink", rootfs / "tmp")
    fill = {"{shared}": str(shared), "{fifo}": str(fifo), "{root}": str(rootfs)}
    for key, value in fill.items():
        args = [a.replace(key, value) for a in args]
        message = message.replace(key, value)
    before = _tree(rootfs), _tree(shared)
    proc = binfmtctl(who, "run", "--rootfs", str(rootfs), *args, "--", "/bin/sh", "-c", "echo ran")
    assert (proc.returncode, proc.stdout) == (code, ""), proc.stderr
    assert proc.stderr == f"binfmtctl: error: {message}\n"
    if args[0] != "--workdir":  # a refused workdir comes after the usual mountpoints
        assert (_tree(rootfs), _tree(shared)) == before


def test_bind_needs_a_root() -> None:
    proc = binfmtctl("root", "run", "--bind", "/tmp", "--", "true")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (
        "binfmtctl: error: --bind needs --rootfs: outside a root every host path is there already\n"
    )
