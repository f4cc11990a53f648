"""The C flag: an interpreter path anyone but root can change is refused, everywhere.

With C the kernel runs the interpreter with the program's credentials, so a
setuid-root foreign program runs it as euid 0; without F it re-opens the path
as given at every exec. Every attack below is built for real: directories and
symlinks owned by the unprivileged user ``binfmtctl-test`` (made by that user
with runuser where the attack needs it, chowned otherwise), group- and
world-writable directories, sticky ones, relative links and loops. The
refusals are checked word for word, and the private instance is checked to be
unchanged.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binfmtctl import credentials, interpreters, plan, sandbox
from binfmtctl.arch import CATALOG, Profile
from binfmtctl.instance import Instance
from conftest import cli, qemu

USER = "binfmtctl-test"
PREFIX = (
    "the C flag runs the interpreter with the program's credentials (a setuid "
    "program's emulator runs as root), so every component of its path must be "
    "owned by root and writable by root only: "
)


def user_uid() -> int:
    try:
        return pwd.getpwnam(USER).pw_uid
    except KeyError:
        pytest.skip(f"the unprivileged user {USER} does not exist")


@pytest.fixture
def base() -> Iterator[Path]:
    """A root-owned sticky 1777 directory under /tmp, like /tmp itself: the user creates there."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give files to another user")
    path = Path(tempfile.mkdtemp(prefix="binfmtctl-cred-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def as_user(*argv: str) -> None:
    """Run a command as the unprivileged user (the attacker)."""
    subprocess.run(["runuser", "-u", USER, "--", *argv], check=True)


def own(path: Path) -> None:
    os.lchown(path, user_uid(), user_uid())


def mkdir(path: Path, mode: int = 0o755) -> Path:
    path.mkdir()
    path.chmod(mode)
    return path


def symlink(path: Path, target: str | Path) -> Path:
    path.symlink_to(target)
    return path


def emulator() -> str:
    return qemu("qemu-aarch64")


def registered(box: sandbox.Sandbox) -> list[str]:
    return sorted(box.run(os.listdir, box.mountpoint))


# -- the rule itself, on the host's user namespace (every uid mapped) -----------


def test_the_real_emulator_is_safe() -> None:
    assert credentials.check(emulator()) is None


def test_user_owned_directory_holding_a_root_link(base: Path) -> None:
    """The issue's repro: the user re-points the link after registration."""
    attic = base / "t"
    as_user("mkdir", str(attic))
    link = attic / "qemu-aarch64-static"
    symlink(link, emulator())
    os.lchown(link, 0, 0)
    found = credentials.check(str(link))
    assert found is not None
    assert (found.problem, found.component) == (credentials.Problem.OWNER, str(attic))
    assert str(found) == f"{attic} is owned by uid {user_uid()} ({USER}), not root"


def test_user_owned_link_in_a_root_directory(base: Path) -> None:
    link = symlink(base / "qemu-aarch64-static", emulator())
    own(link)
    assert (
        str(credentials.check(str(link)))
        == f"the symlink {link} is owned by uid {user_uid()} ({USER}), not root"
    )


def test_root_link_through_a_user_owned_directory(base: Path) -> None:
    user_dir = base / "u"
    as_user("mkdir", str(user_dir))
    as_user("ln", "-s", emulator(), str(user_dir / "qemu"))
    link = symlink(base / "qemu-aarch64-static", user_dir / "qemu")
    assert (
        str(credentials.check(str(link)))
        == f"{user_dir} (reached through the symlink {link}) is owned by uid "
        f"{user_uid()} ({USER}), not root"
    )


def test_relative_link_target_is_followed(base: Path) -> None:
    user_dir = base / "u"
    as_user("mkdir", str(user_dir))
    shutil.copy(emulator(), user_dir / "qemu")  # root-owned file, user-owned dir
    links = mkdir(base / "bin")
    link = symlink(links / "qemu-aarch64-static", "../u/qemu")
    assert (
        str(credentials.check(str(link)))
        == f"{user_dir} (reached through the symlink {link}) is owned by uid "
        f"{user_uid()} ({USER}), not root"
    )


def test_relative_links_through_root_owned_paths_are_safe(base: Path) -> None:
    real = mkdir(base / "real")
    shutil.copy(emulator(), real / "qemu-aarch64-static")
    (real / "qemu-aarch64-static").chmod(0o755)
    symlink(mkdir(base / "bin") / "hop", "../real/qemu-aarch64-static")
    link = symlink(base / "bin" / "qemu-aarch64-static", "./hop")
    assert credentials.check(str(link)) is None


def test_link_loop(base: Path) -> None:
    symlink(base / "a", "b")
    symlink(base / "b", "a")
    assert (
        str(credentials.check(str(base / "a")))
        == f"{base / 'a'}: too many levels of symbolic links (more than 40)"
    )


@pytest.mark.parametrize(
    ("mode", "who"),
    [
        (0o775, "its group"),
        (0o757, "others"),
        (0o777, "its group and others"),
        (0o2777, "its group and others"),  # setgid is not sticky
    ],
)
def test_writable_directory(base: Path, mode: int, who: str) -> None:
    shared = mkdir(base / "shared", mode)
    shutil.copy(emulator(), shared / "qemu-aarch64-static")
    path = shared / "qemu-aarch64-static"
    assert (
        str(credentials.check(str(path)))
        == f"{shared} is writable by {who} (mode {mode & 0o7777:04o})"
    )


def test_sticky_tmp_like_directory_owned_by_root_is_accepted(base: Path) -> None:
    sticky = mkdir(base / "tmp", 0o1777)
    link = symlink(sticky / "qemu-aarch64-static", emulator())
    assert credentials.check(str(link)) is None


def test_user_link_in_a_sticky_directory_is_refused(base: Path) -> None:
    sticky = mkdir(base / "tmp", 0o1777)
    link = sticky / "qemu-aarch64-static"
    as_user("ln", "-s", emulator(), str(link))
    assert (
        str(credentials.check(str(link)))
        == f"the symlink {link} is owned by uid {user_uid()} ({USER}), not root"
    )


@pytest.mark.parametrize(
    ("mode", "who"), [(0o775, "its group"), (0o757, "others"), (0o1777, "its group and others")]
)
def test_writable_emulator_file(base: Path, mode: int, who: str) -> None:
    path = base / "qemu-aarch64-static"
    shutil.copy(emulator(), path)
    path.chmod(mode)
    assert (
        str(credentials.check(str(path)))
        == f"{path} is writable by {who} (mode {mode & 0o7777:04o})"
    )


def test_emulator_file_owned_by_a_user(base: Path) -> None:
    path = base / "qemu-aarch64-static"
    shutil.copy(emulator(), path)
    own(path)
    assert (
        str(credentials.check(str(path)))
        == f"{path} is owned by uid {user_uid()} ({USER}), not root"
    )


def test_nobody_in_the_host_namespace_is_a_mapped_user(base: Path) -> None:
    """Real uid 65534 (nobody) is a user like any other where it is mapped."""
    path = base / "qemu-aarch64-static"
    shutil.copy(emulator(), path)
    os.chown(path, 65534, 65534)
    name = pwd.getpwuid(65534).pw_name
    assert str(credentials.check(str(path))) == f"{path} is owned by uid 65534 ({name}), not root"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "qemu-aarch64-static",
            "qemu-aarch64-static is not an absolute path: the kernel would look it up "
            "from the working directory of every program it runs",
        ),
        (
            "/nonexistent-binfmtctl/qemu",
            "cannot check /nonexistent-binfmtctl: No such file or directory",
        ),
    ],
)
def test_unusable_paths(path: str, message: str) -> None:
    assert str(credentials.check(path)) == message


# -- every way to register with C, on a real private instance -------------------


def attack(base: Path) -> Path:
    """The issue's repro, built by the user: their dir, their link to the real emulator."""
    attic = base / "t"
    as_user("mkdir", str(attic))
    as_user("ln", "-s", emulator(), str(attic / "qemu-aarch64-static"))
    return attic / "qemu-aarch64-static"


def unmapped(path: Path) -> str:
    return (
        f"{path} is owned by a user that is not mapped into this user namespace "
        "(it shows as uid 65534), so not by root"
    )


@pytest.mark.parametrize("flags", ["OC", "C", "FC", "POC"])
def test_install_refuses_the_repro(sb: sandbox.Sandbox, base: Path, flags: str) -> None:
    link = attack(base)
    proc = cli(sb, "install", "--flags", flags, "--interpreter", str(link), "arm64", "--json")
    assert proc.returncode == 1, proc.stderr
    (step,) = json.loads(proc.stdout)["data"]["steps"]
    assert (step["action"], step["reason"]) == ("refused", PREFIX + unmapped(link.parent))
    assert registered(sb) == ["register", "status"]


def test_install_text_output_names_the_component(sb: sandbox.Sandbox, base: Path) -> None:
    link = attack(base)
    proc = cli(sb, "install", "--flags", "OC", "--interpreter", str(link), "arm64")
    assert proc.returncode == 1
    assert f"binfmtctl: error: {PREFIX}{unmapped(link.parent)}\n" in proc.stderr
    assert registered(sb) == ["register", "status"]


def test_install_refuses_an_emulator_found_in_a_user_directory(
    sb: sandbox.Sandbox, base: Path
) -> None:
    user_dir = base / "u"
    as_user("mkdir", str(user_dir))
    shutil.copy(emulator(), user_dir / "qemu-aarch64-static")  # root's file, user's dir
    proc = cli(sb, "install", "--flags", "OC", "--interpreter-dir", str(user_dir), "arm64")
    assert proc.returncode == 1
    assert f"{PREFIX}{unmapped(user_dir)}" in proc.stderr
    assert registered(sb) == ["register", "status"]


def test_o_without_c_is_not_a_privilege_matter(sb: sandbox.Sandbox, base: Path) -> None:
    link = attack(base)
    proc = cli(sb, "install", "--flags", "O", "--interpreter", str(link), "arm64")
    assert proc.returncode == 0, proc.stderr
    assert registered(sb) == ["qemu-aarch64", "register", "status"]


def test_install_with_c_of_the_real_emulator_registers(sb: sandbox.Sandbox) -> None:
    proc = cli(sb, "install", "--flags", "OC", "--interpreter", emulator(), "arm64")
    assert proc.returncode == 0, proc.stderr
    assert registered(sb) == ["qemu-aarch64", "register", "status"]


def test_apply_refuses_a_c_line_through_a_user_path(sb: sandbox.Sandbox, base: Path) -> None:
    link = attack(base)
    entry = plan.build_entry(CATALOG["aarch64"], str(link), "OC", Profile.QEMU)
    conf = base / "evil.conf"
    conf.write_text(f"{entry}\n")
    for extra in ((), ("--dry-run",)):
        proc = cli(sb, "apply", str(conf), "--json", *extra)
        assert proc.returncode == 1, proc.stderr
        out = json.loads(proc.stdout)
        (line,) = out["data"]["lines"]
        assert (line["action"], line["reason"]) == ("refused", PREFIX + unmapped(link.parent))
        assert out["errors"][0]["code"] == "refused"
        assert out["errors"][0]["message"] == f"{conf}:1: {PREFIX}{unmapped(link.parent)}"
        assert registered(sb) == ["register", "status"]


def test_apply_registers_a_c_line_of_the_real_emulator(sb: sandbox.Sandbox, base: Path) -> None:
    entry = plan.build_entry(CATALOG["aarch64"], emulator(), "OC", Profile.QEMU)
    conf = base / "good.conf"
    conf.write_text(f"{entry}\n")
    proc = cli(sb, "apply", str(conf))
    assert proc.returncode == 0, proc.stderr
    assert registered(sb) == ["qemu-aarch64", "register", "status"]


def test_export_refuses_the_repro(base: Path) -> None:
    """export writes what boot registers: the same rule, nothing written."""
    link = attack(base)
    out = mkdir(base / "out")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "binfmtctl", "export", "arm64", "--flags", "OC"),
            *("--interpreter", str(link), "--format", "systemd", "-o", str(out)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"binfmtctl: error: {PREFIX}{link.parent} is owned by uid " + (
        f"{user_uid()} ({USER}), not root\n"
    )
    assert list(out.iterdir()) == []


def test_rootless_run_refuses_a_user_directory_with_c(base: Path) -> None:
    """binfmtctl run plans like install (its own private instance, made by the product)."""
    user_dir = base / "u"
    as_user("mkdir", str(user_dir))
    shutil.copy(emulator(), user_dir / "qemu-aarch64-static")
    proc = subprocess.run(
        [
            # --uid-map none: root alone inside, so the user's directory is unmapped
            # (by default root maps ids 0..65535, and it is "owned by uid 1001").
            *(sys.executable, "-m", "binfmtctl", "run", "--uid-map", "none", "--flags", "OC"),
            *("--interpreter-dir", str(user_dir), "--arch", "arm64", "--", "true"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"{PREFIX}{unmapped(user_dir)}" in proc.stderr


# -- FUSE: owners and modes there are the serving process's word ----------------
# No FUSE server is installed here, so the mount table is the one thing faked:
# a copy of this process's mountinfo plus a line saying that a real directory's
# device is a FUSE mount (as `sshfs -o allow_other` by a user would make it).


def fake_proc(tmp: Path, device: int, fstype: str) -> str:
    proc = tmp / "proc"
    (proc / "self").mkdir(parents=True)
    real = Path("/proc/self/mountinfo").read_text()
    major, minor = os.major(device), os.minor(device)
    line = f"999 1 {major}:{minor} / /tmp/m rw,nosuid,nodev - {fstype} user@host:/ rw\n"
    (proc / "self" / "mountinfo").write_text(real + line)
    return str(proc)


@pytest.mark.parametrize("fstype", ["fuse.sshfs", "fuse", "fuseblk"])
def test_a_component_on_fuse_is_refused(base: Path, fstype: str) -> None:
    path = base / "qemu-aarch64-static"
    shutil.copy(emulator(), path)
    proc = fake_proc(base, os.stat(base).st_dev, fstype)
    assert credentials.check(str(path)) is None  # the real mount table: a plain file system
    found = credentials.check(str(path), proc=proc)
    # the first component on that device is named (/ or /tmp may share it)
    first = next(p for p in ("/", "/tmp", str(base)) if os.stat(p).st_dev == os.stat(base).st_dev)
    assert found is not None
    assert (found.problem, found.component) == (credentials.Problem.FUSE, first)
    assert str(found) == (
        f"{first} is on a FUSE file system ({fstype}): its owner and mode are "
        "whatever the process serving it says, so they prove nothing"
    )


def test_other_file_system_types_are_not_fuse(base: Path) -> None:
    proc = fake_proc(base, os.stat(base).st_dev, "fusectl")
    assert credentials.fuse_devices(proc) == {}


# -- any path at all: an answer, never a crash --------------------------------

_PIECES = st.sampled_from(
    ["", ".", "..", "usr", "bin", "tmp", "qemu-aarch64-static", "\0", "\udcff", "a" * 300]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_PIECES | st.text(max_size=8), max_size=8), st.booleans())
def test_any_path_gets_an_answer(pieces: list[str], absolute: bool) -> None:
    path = ("/" if absolute else "") + "/".join(pieces)
    found = credentials.check(path)
    assert found is None or (found.message and isinstance(found.problem, credentials.Problem))
    assert isinstance(interpreters.fitness(path, {"i386"}).problems, tuple)


def test_status_flags_a_c_entry_registered_by_another_tool(sb: sandbox.Sandbox, base: Path) -> None:
    """An entry written to the register file directly (not through binfmtctl) is checked too."""
    link = attack(base)
    entry = plan.build_entry(CATALOG["aarch64"], str(link), "OC", Profile.QEMU)
    sb.run(Instance().register, entry)
    proc = cli(sb, "status", "--json")
    (found,) = json.loads(proc.stdout)["data"]["entries"]
    assert (found["name"], found["problems"]) == (
        "qemu-aarch64",
        [f"C flag with an interpreter others can change: {unmapped(link.parent)}"],
    )
