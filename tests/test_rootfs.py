"""``binfmtctl rootfs create`` / ``rootfs info``: decisions as tables, builds for real.

The decision tables (suite, mirror, argv, progress) need no kernel. The builds
are real: mmdebstrap against the Debian mirror this machine's apt uses, inside
binfmtctl's private instance. One arm64 minbase root is built once per test
session as root (``arm64_root``) and shared; one armhf root is built as the
ordinary user ``binfmtctl-test`` (a 32-bit arch, the unprivileged path and the
tar format at once). Ubuntu's mirrors are not reachable from the test machine,
so for Ubuntu only the decisions (ports mirror, keyring, suites) are tested.
"""

from __future__ import annotations

import datetime
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

import golden_reports
from binfmtctl import rootfs, rootfs_checks, rootfs_image, rootfs_report, runplan, sandbox
from binfmtctl import rootfs_plan as rp
from binfmtctl.errors import UnknownArchError, UsageError
from conftest import _NO_SANDBOX, ROOT
from conftest import host_cli as binfmtctl

# Per test: the host's binfmt_misc unchanged, not even mounted (conftest).
pytestmark = pytest.mark.usefixtures("host_binfmt_unchanged")

USER = "binfmtctl-test"
SYSTEM_PYTHON = "/usr/bin/python3"
MMDEBSTRAP = shutil.which("mmdebstrap")

BOOKWORM_HOST = rp.Host(
    "debian",
    "bookworm",
    (
        rp.Source(("deb",), ("http://mirror.example/debian/",), ("bookworm",), ("main",)),
        rp.Source(("deb",), ("http://security.example/",), ("bookworm-security",), ("main",)),
    ),
)
UBUNTU_HOST = rp.Host(
    "ubuntu",
    "jammy",
    (rp.Source(("deb",), ("http://archive.ubuntu.com/ubuntu",), ("jammy",), ("main",)),),
)
FEDORA_HOST = rp.Host("fedora", "", ())


# -- decisions: kernel-free tables ------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "host", "expected"),
    [
        # the host's own release and mirror for its own distro
        (rp.Request("arm64"), BOOKWORM_HOST,
         ("arm64", "bookworm", "host", "http://mirror.example/debian", "host", "linux/arm64")),
        # another host: Debian's current stable from deb.debian.org
        (rp.Request("aarch64"), FEDORA_HOST,
         ("arm64", "trixie", "stable", "http://deb.debian.org/debian", "default", "linux/arm64")),
        (rp.Request("linux/arm/v7"), BOOKWORM_HOST,
         ("armhf", "bookworm", "host", "http://mirror.example/debian", "host", "linux/arm/v7")),
        (rp.Request("armel"), FEDORA_HOST,
         ("armel", "trixie", "stable", "http://deb.debian.org/debian", "default", "linux/arm/v5")),
        (rp.Request("riscv64", suite="trixie"), BOOKWORM_HOST,
         ("riscv64", "trixie", "option", "http://mirror.example/debian", "host", "linux/riscv64")),
        (rp.Request("s390x", mirror="http://m.example/debian/"), BOOKWORM_HOST,
         ("s390x", "bookworm", "host", "http://m.example/debian", "option", "linux/s390x")),
        # Ubuntu: arm64 comes from ports, even when the host's sources name the main archive
        (rp.Request("arm64", distro="ubuntu"), UBUNTU_HOST,
         ("arm64", "jammy", "host", "http://ports.ubuntu.com/ubuntu-ports", "default",
          "linux/arm64")),
        (rp.Request("amd64", distro="ubuntu"), UBUNTU_HOST,
         ("amd64", "jammy", "host", "http://archive.ubuntu.com/ubuntu", "host", "linux/amd64")),
        (rp.Request("arm64", distro="ubuntu"), BOOKWORM_HOST,
         ("arm64", "noble", "stable", "http://ports.ubuntu.com/ubuntu-ports", "default",
          "linux/arm64")),
        # a suite binfmtctl does not know is passed on (the mirror's Release decides)
        (rp.Request("arm64", suite="sid"), BOOKWORM_HOST,
         ("arm64", "sid", "option", "http://mirror.example/debian", "host", "linux/arm64")),
    ],
)  # fmt: skip
def test_decide_defaults(request_: rp.Request, host: rp.Host, expected: tuple[str, ...]) -> None:
    spec = rp.decide(request_, host)
    got = (spec.deb_arch, spec.suite, spec.suite_from, spec.mirror, spec.mirror_from)
    assert (*got, spec.oci_platform) == expected


def test_ubuntu_on_debian_uses_ubuntus_keyring() -> None:
    assert rp.decide(rp.Request("arm64", distro="ubuntu"), BOOKWORM_HOST).keyring == (
        "/usr/share/keyrings/ubuntu-archive-keyring.gpg"
    )
    assert rp.decide(rp.Request("arm64", distro="ubuntu"), UBUNTU_HOST).keyring is None
    assert rp.decide(rp.Request("arm64"), BOOKWORM_HOST).keyring is None


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (rp.Request("riscv64"), "debian bookworm (the host's release, the default) has no "
         "riscv64; trixie has it: add --suite trixie"),
        (rp.Request("riscv64", suite="bullseye"), "debian bullseye has no riscv64; trixie has "
         "it: add --suite trixie"),
        (rp.Request("mipsel", suite="trixie"), "debian trixie has no mipsel; buster, bullseye, "
         "bookworm has it: add --suite bookworm"),
        (rp.Request("i386", distro="ubuntu", suite="noble"), "ubuntu noble has no i386; no "
         "ubuntu release binfmtctl knows has it"),
        (rp.Request("arm64", distro="fedora"), "--distro fedora: unknown; choose one of debian, "
         "ubuntu"),
        (rp.Request("arm64", format="qcow2"), "--format qcow2: unknown; choose one of dir, tar, "
         "docker-archive"),
        (rp.Request("arm64", variant="huge"), "--variant huge: unknown; choose one of minbase, "
         "buildd, important, required, standard, essential, apt"),
        (rp.Request("arm64", mirror="deb.debian.org/debian"), "--mirror deb.debian.org/debian: "
         "not a mirror URL (http://, https:// or file://)"),
        (rp.Request("arm64", include=("hello,Bad;rm",)), "--include Bad;rm: not a Debian "
         "package name"),
        (rp.Request("or1k"), "or1k has no Debian architecture: no Debian root can be built"),
    ],
)  # fmt: skip
def test_decide_refusals(request_: rp.Request, message: str) -> None:
    with pytest.raises(UsageError) as caught:
        rp.decide(request_, BOOKWORM_HOST)
    assert caught.value.message == message
    assert caught.value.exit_code == 2


def test_unknown_arch_is_a_usage_error() -> None:
    with pytest.raises(UnknownArchError) as caught:
        rp.decide(rp.Request("arm65"), BOOKWORM_HOST)
    assert caught.value.exit_code == 2


def test_engine_argv() -> None:
    spec = rp.decide(
        rp.Request("arm64", include=("hello,curl", "vim"), components=("main,contrib",)),
        BOOKWORM_HOST,
    )
    assert rp.engine_argv(spec, "/t/root", engine="/usr/bin/mmdebstrap") == [
        "/usr/bin/mmdebstrap", "--mode=unshare", "--variant=minbase", "--arch=arm64",
        "--components=main,contrib", "--include=hello,curl,vim", "--skip=cleanup/apt/lists",
        "--verbose",
        "bookworm", "/t/root", "http://mirror.example/debian",
    ]  # fmt: skip
    https = rp.decide(rp.Request("arm64", mirror="https://m.example/debian"), BOOKWORM_HOST)
    assert "--include=ca-certificates" in rp.engine_argv(https, "/t")
    ubuntu = rp.decide(rp.Request("arm64", distro="ubuntu"), BOOKWORM_HOST)
    assert f"--keyring={rp.UBUNTU_KEYRING}" in rp.engine_argv(ubuntu, "/t")


def test_create_report_json_keeps_the_recorded_shape() -> None:
    """The typed report's JSON: keys and their order as in the golden build report
    (tests/golden/reports/rootfs-create-dir.json, recorded from a real build, which
    test_create_builds_smokes_and_records compares whole); no build needed here."""
    spec = rp.decide(rp.Request("arm64"), BOOKWORM_HOST)
    created = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    record = rootfs.provenance(spec, "/usr/bin/mmdebstrap", created)
    smoke = rootfs_report.Smoke(rootfs.SMOKE_SCRIPT, ("shell ok", "arm64"))
    report = rootfs_report.CreateReport("/r", "/r/etc/x.json", record, smoke, None, 1.5, 1.0)
    golden = json.loads((golden_reports.REPORTS / "rootfs-create-dir.json").read_text())["data"]
    got = report.to_dict()
    assert list(got) == list(golden)
    assert list(got["provenance"]) == list(golden["provenance"])
    assert list(got["provenance"]["engine"]) == list(golden["provenance"]["engine"])
    assert got["smoke"] == golden["smoke"]
    assert (got["image"], got["seconds"], got["engine_seconds"]) == (None, 1.5, 1.0)
    assert {k: got["provenance"][k] for k in ("arch", "distro", "format", "created")} == {
        "arch": "aarch64", "distro": "debian", "format": "dir", "created": "2026-01-01T00:00:00Z"
    }  # fmt: skip
    if record.qemu is not None:  # found here: the same two keys as in the build's record
        assert list(got["provenance"]["qemu"]) == list(golden["provenance"]["qemu"])


def test_sources_parsing_one_line_and_deb822() -> None:
    one = rp.parse_one_line_sources(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://a.example/debian bookworm main "
        "contrib\ndeb-src http://a.example/debian bookworm main\n\nbogus line\n"
    )
    assert one == [
        rp.Source(("deb",), ("http://a.example/debian",), ("bookworm",), ("main", "contrib")),
        rp.Source(("deb-src",), ("http://a.example/debian",), ("bookworm",), ("main",)),
    ]
    deb822 = rp.parse_deb822_sources(
        "Types: deb\nURIs: http://b.example/debian\n http://c.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Enabled: no\nTypes: deb\nURIs: http://off.example/\nSuites: bookworm\n"
    )
    assert deb822 == [
        rp.Source(
            ("deb",),
            ("http://b.example/debian", "http://c.example/debian"),
            ("bookworm", "bookworm-updates"),
            ("main",),
        )
    ]


def test_host_facts_reads_this_machines_files(tmp_path: Path) -> None:
    (tmp_path / "os-release").write_text('ID=debian\nVERSION_CODENAME="bookworm"\n')
    (tmp_path / "d").mkdir()
    (tmp_path / "sources.list").write_text("")
    (tmp_path / "d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://d.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    facts = rootfs_checks.host_facts(
        str(tmp_path / "os-release"), str(tmp_path / "sources.list"), str(tmp_path / "d")
    )
    assert rp.host_mirror(facts, rp.Distro.DEBIAN, "arm64") == "http://d.example/debian"
    assert rp.host_mirror(facts, rp.Distro.UBUNTU, "arm64") is None


@pytest.mark.parametrize(
    ("texts", "start"),
    [
        ([], 100000),
        (["binfmtctl-test:100000:65536\n"], 196608),
        (["a:100000:65536\nb:165536:65536\n", "a:100000:65536\n"], 262144),
        (["x:500000:1000\n"], 524288),
    ],
)
def test_free_subordinate_start(texts: list[str], start: int) -> None:
    assert rp.free_subordinate_start(texts) == start


def test_release_architectures() -> None:
    text = "Origin: Debian\nArchitectures: all amd64 arm64\nComponents: main\n"
    assert rp.release_architectures(text) == frozenset({"all", "amd64", "arm64"})
    assert rp.release_architectures("Origin: x\n") is None


def test_progress_reads_the_engines_log() -> None:
    progress = rp.Progress()
    lines = [
        "I: automatically chosen format: directory",
        "I: downloading packages with apt...",
        "Get:1 http://deb.debian.org/debian bookworm/main arm64 libc6 arm64 2.36 [2321 kB]",
        "Get:2 http://deb.debian.org/debian bookworm/main arm64 dpkg arm64 1.21 [1500 kB]",
        "I: installing essential packages...",
        "Unpacking libc6:arm64 (2.36) ...",
        "Setting up libc6:arm64 (2.36) ...",
        "Use of uninitialized value in concatenation",
    ]
    changed = [progress.feed(line) for line in lines]
    assert changed == [False, True, True, True, True, True, True, False]
    assert progress.line(75.4) == (
        "rootfs: installing essential packages · 2 downloaded, 1 unpacked, 1 set up · 1m15s"
    )
    assert progress.tail == lines


# -- real builds --------------------------------------------------------------------

needs_build = pytest.mark.skipif(
    _NO_SANDBOX is not None or MMDEBSTRAP is None or os.geteuid() != 0,
    reason=f"needs root, a private instance ({_NO_SANDBOX}) and mmdebstrap "
    f"({MMDEBSTRAP}): run scripts/test-deps",
)


def as_user(user: str, *args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    """``binfmtctl ARGS`` as ``user``, with the distro's python3 and this checkout's src/."""
    entry = pwd.getpwnam(user)
    env = [f"PYTHONPATH={ROOT / 'src'}", f"HOME={entry.pw_dir}"]
    if path is not None:
        env.append(f"PATH={path}")
    argv = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
            "--", "env", "-i", *env, SYSTEM_PYTHON, "-m", "binfmtctl", *args]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")


def _user_dir(user: str) -> Path:
    """A fresh directory under /tmp that ``user`` owns (the parent of its roots)."""
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-rootfs-"))
    entry = pwd.getpwnam(user)
    os.chown(top, entry.pw_uid, entry.pw_gid)
    return top


def _remove_as_namespace_root(path: Path) -> None:
    """Files built by an ordinary user belong to its subordinate ids: remove them there."""
    if path.exists():
        subprocess.run(
            ["setpriv", f"--reuid={pwd.getpwnam(USER).pw_uid}", "--regid=" +
             str(pwd.getpwnam(USER).pw_gid), "--clear-groups", "--", "unshare", "--user",
             "--map-auto", "--map-root-user", "rm", "-rf", str(path)],
            check=False,
        )  # fmt: skip
        shutil.rmtree(path, ignore_errors=True)


def _this_hosts_debian_mirror() -> str:
    spec = rp.decide(rp.Request("arm64"), rootfs_checks.host_facts())
    return spec.mirror


@needs_build
def test_create_builds_smokes_and_records(arm64_root: tuple[Path, dict[str, object]]) -> None:
    root, envelope = arm64_root
    data = envelope["data"]
    assert isinstance(data, dict)
    assert envelope["ok"] is True and envelope["errors"] == []
    # The whole --json envelope, key order too; only what differs between builds and
    # machines is replaced (checked field by field below).
    golden_reports.check("rootfs-create-dir", envelope, [
        (re.escape(str(root)), "<ROOT>"),
        (r'"(created)": "[^"]*"', r'"\1": "<CREATED>"'),
        (r'"(seconds|engine_seconds)": [0-9.]+', r'"\1": "<SECONDS>"'),
        (r'"(suite|mirror|binfmtctl)": "[^"]*"', r'"\1": "<HOST>"'),
        (r'"version": "(mmdebstrap|qemu-aarch64 version) [^"]*"', r'"version": "\1 <VERSION>"'),
    ])  # fmt: skip
    assert data["smoke"] == {"command": rootfs.SMOKE_SCRIPT, "output": ["shell ok", "arm64"],
                             "ok": True}  # fmt: skip
    record = json.loads((root / "etc" / "binfmtctl-rootfs.json").read_text())
    assert record == data["provenance"]
    assert data["provenance_path"] == str(root / "etc" / "binfmtctl-rootfs.json")
    host = rootfs_checks.host_facts()
    assert {k: record[k] for k in ("arch", "debian_arch", "oci_platform", "distro", "suite",
                                   "mirror", "variant", "components", "format", "binfmtctl")} == {
        "arch": "aarch64", "debian_arch": "arm64", "oci_platform": "linux/arm64",
        "distro": "debian", "suite": host.codename if host.os_id == "debian" else "trixie",
        "mirror": _this_hosts_debian_mirror(), "variant": "minbase", "components": ["main"],
        "format": "dir", "binfmtctl": __import__("binfmtctl").__version__,
    }  # fmt: skip
    version = subprocess.run(
        [MMDEBSTRAP or "", "--version"], capture_output=True, text=True, check=True
    )
    assert record["engine"]["version"] == version.stdout.strip()
    assert record["qemu"]["path"] == "/usr/bin/qemu-aarch64-static"
    assert record["qemu"]["version"].startswith("qemu-aarch64 version ")
    # The root is Debian arm64 for real, its files owned by root (ids mapped 1:1 for root).
    assert (root / "usr" / "bin" / "dpkg").stat().st_uid == 0
    assert (root / "etc" / "debian_version").exists()
    assert list((root / "var" / "lib" / "apt" / "lists").glob("*_Packages"))


@needs_build
def test_apt_install_inside_then_the_program_runs(
    arm64_root: tuple[Path, dict[str, object]],
) -> None:
    root, _ = arm64_root
    done = binfmtctl("run", "--rootfs", str(root), "--uid-map", "auto", "--",
                     "/bin/sh", "-c", "apt-get install -y hello >/dev/null && hello")  # fmt: skip
    assert (done.returncode, done.stdout) == (0, "Hello, world!\n"), done.stderr
    assert (root / "usr" / "bin" / "hello").exists()


@needs_build
def test_info_says_what_and_whether_it_runs_here(
    arm64_root: tuple[Path, dict[str, object]], sb: sandbox.Sandbox
) -> None:
    from conftest import cli

    root, _ = arm64_root
    none = cli(sb, "rootfs", "info", str(root))
    assert none.returncode == 0, none.stderr
    lines = none.stdout.splitlines()
    record = json.loads((root / "etc" / "binfmtctl-rootfs.json").read_text())
    assert lines[0] == (
        f"{root}: debian {record['suite']} arm64 (minbase), built {record['created']}"
    )
    assert lines[-1] == (
        f"runs here: no (no handler); use `binfmtctl run --rootfs {root} -- CMD` (a private "
        "instance, no root needed), or `binfmtctl install aarch64`"  # root: no sudo
    )
    assert cli(sb, "install", "arm64").returncode == 0
    yes = cli(sb, "rootfs", "info", str(root), "--json")
    data = json.loads(yes.stdout)["data"]
    assert data["runs_here"] == {
        "runs": True,
        "how": "handler",
        "handler": "qemu-aarch64",
        "interpreter": "/usr/bin/qemu-aarch64-static",
        "flags": "PF",  # the default: F, and P (QEMU keeps argv[0])
    }
    assert data["provenance"] == record
    human = cli(sb, "rootfs", "info", str(root)).stdout.splitlines()
    assert (
        human[-1] == "runs here: yes, through qemu-aarch64 (/usr/bin/qemu-aarch64-static, flags PF)"
    )


def test_info_refusals(tmp_path: Path) -> None:
    missing = binfmtctl("rootfs", "info", str(tmp_path / "nope"))
    assert (missing.returncode, missing.stderr) == (
        2, f"binfmtctl: error: {tmp_path / 'nope'}: no such file or directory\n")  # fmt: skip
    bare = binfmtctl("rootfs", "info", str(tmp_path))
    assert bare.returncode == 1
    assert bare.stderr == (
        f"binfmtctl: error: {tmp_path}: no binfmtctl rootfs record "
        f"({tmp_path}/etc/binfmtctl-rootfs.json or {tmp_path}.binfmtctl-rootfs.json); "
        "was it built with `binfmtctl rootfs create`?\n"
    )


@needs_build
def test_tar_of_the_root_keeps_owners(
    arm64_root: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    root, _ = arm64_root
    out = tmp_path / "board.tar"
    rootfs_image.tar_dir(str(root), str(out))
    with tarfile.open(out) as tar:
        shadow = tar.getmember("./etc/shadow")
        dpkg = tar.getmember("./usr/bin/dpkg")
    assert (shadow.uid, shadow.gid, shadow.mode) == (0, 42, 0o640)  # root:shadow
    assert (dpkg.uid, dpkg.mode) == (0, 0o755)


PODMAN = "/usr/bin/podman"
CRUN_LIMITS = ("--ulimit", "nofile=1024:20000", "--ulimit", "nproc=4096:4096")


def _hide_hybrid_cgroup() -> None:
    """Inside the sandbox: hide the hybrid cgroup2 mount from crun (as tests/test_engines.py)."""
    with open("/proc/self/mountinfo") as fh:
        mounts = {line.split(" - ")[0].split()[4]: line.split(" - ")[1].split()[0] for line in fh}
    if mounts.get("/sys/fs/cgroup/unified") == "cgroup2":
        sandbox.mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs")


def podman_runs(archive: Path, tag: str, platform: str, *argv: str) -> tuple[int, str, str]:
    """``podman load`` the archive, then ``podman run --platform``: in a private instance
    with every handler, podman with its own storage under a short tmp dir, offline."""
    if not os.path.exists(PODMAN):
        pytest.skip(f"{PODMAN} missing: run scripts/test-deps (installs podman)")
    tmp = Path(tempfile.mkdtemp(prefix="binfmtctl-", dir="/tmp"))  # podman: short --runroot
    options = ["--root", str(tmp / "root"), "--runroot", str(tmp / "run"), "--tmpdir",
               str(tmp / "t"), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
               "--events-backend", "none"]  # fmt: skip
    try:
        with sandbox.Sandbox(full_ids=True) as box:
            box.run(_hide_hybrid_cgroup)
            box.run(runplan.register_handlers, None)
            load = box.run(subprocess.run, [PODMAN, *options, "load", "-i", str(archive)],
                           capture_output=True, text=True)  # fmt: skip
            assert load.returncode == 0, load.stderr
            assert tag in load.stdout
            run = box.run(
                subprocess.run,
                [PODMAN, *options, "run", "--rm", "--pull=never", "--network=none",
                 *CRUN_LIMITS, "--platform", platform, tag, *argv],
                capture_output=True, text=True,
            )  # fmt: skip
            box.run(subprocess.run, ["rm", "-rf", str(tmp)])
            return run.returncode, run.stdout, run.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@needs_build
def test_docker_archive_of_the_root_runs_in_podman_by_platform(
    arm64_root: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    root, _ = arm64_root
    archive = tmp_path / "arm64.image.tar"
    tag = "localhost/debian-arm64:test"
    rootfs_image.docker_archive(str(root), str(archive), "linux/arm64", tag, "2026-01-01T00:00:00Z")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
    assert (config["os"], config["architecture"], "variant" in config) == ("linux", "arm64", False)
    assert manifest[0]["RepoTags"] == [tag]
    status, out, err = podman_runs(archive, tag, "linux/arm64", "sh", "-c",
                                   "uname -m; dpkg --print-architecture")  # fmt: skip
    assert (status, out) == (0, "aarch64\narm64\n"), err


# -- refusals: every one set up for real, nothing written ------------------------------


def test_unknown_arch_and_suite_without_the_arch(tmp_path: Path) -> None:
    target = tmp_path / "r"
    unknown = binfmtctl("rootfs", "create", str(target), "--arch", "arm65")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("binfmtctl: error: unknown architecture 'arm65'")
    lacks = binfmtctl("rootfs", "create", str(target), "--arch", "riscv64", "--suite", "bookworm")
    assert (lacks.returncode, lacks.stderr) == (
        2, "binfmtctl: error: debian bookworm has no riscv64; trixie has it: add --suite trixie\n"
    )  # fmt: skip
    assert not target.exists()


def test_directory_not_empty_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    done = binfmtctl("rootfs", "create", str(tmp_path), "--arch", "arm64")
    assert (done.returncode, done.stderr) == (
        2, f"binfmtctl: error: {tmp_path}: directory not empty; name a new or empty directory "
        "(nothing in it was changed)\n",
    )  # fmt: skip
    assert os.listdir(tmp_path) == ["mine.txt"]
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    (tmp_path / "image.tar").write_text("old")
    tar = binfmtctl("rootfs", "create", str(tmp_path / "image.tar"), "--arch", "arm64",
                    "--format", "tar")  # fmt: skip
    assert (tar.returncode, tar.stderr) == (
        2, f"binfmtctl: error: {tmp_path / 'image.tar'}: already exists; name a new file "
        "(it was not changed)\n",
    )  # fmt: skip
    assert (tmp_path / "image.tar").read_text() == "old"
    # A symlink to an empty directory is not followed: the root would land elsewhere.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    link = binfmtctl("rootfs", "create", str(tmp_path / "link"), "--arch", "arm64")
    assert (link.returncode, link.stderr) == (
        2, f"binfmtctl: error: {tmp_path / 'link'}: exists and is not a directory; name a new "
        "or empty one\n",
    )  # fmt: skip
    assert os.listdir(tmp_path / "elsewhere") == []


@pytest.mark.skipif(MMDEBSTRAP is None, reason="mmdebstrap missing: run scripts/test-deps")
def test_mirror_unreachable(tmp_path: Path) -> None:
    # Port 9 (discard) on the loopback: nothing listens, the connection is refused.
    target = tmp_path / "r"
    done = binfmtctl("rootfs", "create", str(target), "--arch", "arm64",
                     "--mirror", "http://127.0.0.1:9/debian", "--json")  # fmt: skip
    assert done.returncode == 1
    (error,) = json.loads(done.stdout)["errors"]
    suite = rp.decide(rp.Request("arm64"), rootfs_checks.host_facts()).suite
    url = f"http://127.0.0.1:9/debian/dists/{suite}/Release"
    assert error == {
        "code": "mirror_unreachable",
        "message": f"mirror http://127.0.0.1:9/debian is unreachable ({url}: [Errno 111] "
        "Connection refused); check the network or a proxy (http_proxy), or pass --mirror URL",
        "url": url,
    }
    assert not target.exists()


@pytest.mark.skipif(MMDEBSTRAP is None, reason="mmdebstrap missing: run scripts/test-deps")
def test_mirror_without_the_suite(tmp_path: Path) -> None:
    """A real mirror, on disk (file://), holding a Release without that suite or arch."""
    mirror = tmp_path / "mirror"
    (mirror / "dists" / "bookworm").mkdir(parents=True)
    (mirror / "dists" / "bookworm" / "Release").write_text("Architectures: amd64 i386\n")
    target = tmp_path / "r"
    arch = binfmtctl("rootfs", "create", str(target), "--arch", "arm64", "--suite", "bookworm",
                     "--mirror", f"file://{mirror}")  # fmt: skip
    assert (arch.returncode, arch.stderr) == (
        2, f"binfmtctl: error: debian bookworm on file://{mirror} has no arm64 (it has amd64, "
        "i386); choose another --suite or --mirror\n",
    )  # fmt: skip
    suite = binfmtctl("rootfs", "create", str(target), "--arch", "arm64", "--suite", "trixie",
                      "--mirror", f"file://{mirror}")  # fmt: skip
    assert suite.returncode == 1
    assert suite.stderr.startswith(
        f"binfmtctl: error: mirror file://{mirror} is unreachable "
        f"(file://{mirror}/dists/trixie/Release: "
    )
    assert not target.exists()


def _user_or_skip(name: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run as another user")
    try:
        pwd.getpwnam(name)
    except KeyError:
        pytest.skip(f"no user {name}: run scripts/test-deps as root")


def _expected_free_start() -> int:
    ends = [100000]
    for path in ("/etc/subuid", "/etc/subgid"):
        for line in Path(path).read_text().splitlines():
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                ends.append(int(parts[1]) + int(parts[2]))
    top = max(ends)
    return top if top == 100000 else ((top + 65535) // 65536) * 65536


@pytest.mark.skipif(MMDEBSTRAP is None, reason="mmdebstrap missing: run scripts/test-deps")
def test_no_subordinate_range_prints_the_lines_to_add() -> None:
    """`nobody` is a real ordinary user without a range in /etc/subuid and /etc/subgid."""
    _user_or_skip("nobody")
    assert "nobody:" not in Path("/etc/subuid").read_text()
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-rootfs-"))
    nobody = pwd.getpwnam("nobody")
    os.chown(top, nobody.pw_uid, nobody.pw_gid)
    try:
        done = as_user("nobody", "rootfs", "create", str(top / "r"), "--arch", "arm64")
        start = _expected_free_start()
        last = start + 65535
        assert (done.returncode, done.stderr) == (
            4, "binfmtctl: error: nobody has no subordinate id range, which a root's files "
            "(owned by root, _apt, man, ...) need; as root, add the line "
            f"`nobody:{start}:65536` to both /etc/subuid and /etc/subgid, or run "
            f"`sudo usermod --add-subuids {start}-{last} --add-subgids {start}-{last} nobody`\n",
        )  # fmt: skip
        assert os.listdir(top) == []
    finally:
        shutil.rmtree(top)


@pytest.mark.skipif(MMDEBSTRAP is None, reason="mmdebstrap missing: run scripts/test-deps")
def test_missing_programs_are_named_with_their_package() -> None:
    """A PATH without mmdebstrap, then one with mmdebstrap but without newuidmap."""
    _user_or_skip(USER)
    top = _user_dir(USER)
    bare, engine_only = top / "bare", top / "engine-only"
    bare.mkdir()
    engine_only.mkdir()
    (engine_only / "mmdebstrap").symlink_to(MMDEBSTRAP or "")
    try:
        no_engine = as_user(USER, "rootfs", "create", str(top / "r"), "--arch", "arm64",
                            path=str(bare))  # fmt: skip
        assert (no_engine.returncode, no_engine.stderr) == (
            1, "binfmtctl: error: mmdebstrap is not installed (not found on PATH); install it: "
            "`sudo apt-get install mmdebstrap`\n",
        )  # fmt: skip
        no_map = as_user(USER, "rootfs", "create", str(top / "r"), "--arch", "arm64",
                         path=str(engine_only))  # fmt: skip
        assert (no_map.returncode, no_map.stderr) == (
            1, "binfmtctl: error: newuidmap is not installed (not found on PATH); it maps your "
            "subordinate ids; install it: `sudo apt-get install uidmap`\n",
        )  # fmt: skip
        assert sorted(os.listdir(top)) == ["bare", "engine-only"]
    finally:
        shutil.rmtree(top)


@needs_build
def test_engine_failure_shows_its_last_lines_and_keeps_nothing(tmp_path: Path) -> None:
    """A mirror on disk whose Release answers (so the checks pass) but is not signed:
    mmdebstrap's apt refuses it, for real, within seconds."""
    mirror = tmp_path / "mirror"
    (mirror / "dists" / "bookworm").mkdir(parents=True)
    (mirror / "dists" / "bookworm" / "Release").write_text(
        "Suite: bookworm\nCodename: bookworm\nArchitectures: arm64\nComponents: main\n"
    )
    target = tmp_path / "r"
    done = binfmtctl("rootfs", "create", str(target), "--arch", "arm64", "--suite", "bookworm",
                     "--mirror", f"file://{mirror}")  # fmt: skip
    assert done.returncode == 1
    first, *rest = done.stderr.splitlines()
    assert re.fullmatch(
        r"binfmtctl: error: mmdebstrap failed \(exit status \d+\); nothing was kept; its last "
        r"lines:",
        first,
    ), done.stderr
    assert any("is not signed" in line for line in rest), done.stderr
    log = rest[-1].removeprefix("  the whole log: ")
    assert Path(log).is_file() and "is not signed" in Path(log).read_text()
    os.unlink(log)
    assert not target.exists()


def _entries(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _engine_processes_for(target: Path) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(os.fsencode(str(target)) == arg for arg in cmdline) and b"--mode=unshare" in cmdline:
            found.append(int(pid))
    return found


@needs_build
@pytest.mark.parametrize(("sig", "keep"), [(signal.SIGTERM, False), (signal.SIGINT, True)])
def test_interrupted_build_removes_the_partial_root(
    tmp_path: Path, sig: signal.Signals, keep: bool
) -> None:
    """A real build, signalled once mmdebstrap has written into the target: SIGTERM to
    binfmtctl alone, SIGINT to its whole process group (what Ctrl-C does)."""
    target = tmp_path / "r"
    argv = [sys.executable, "-m", "binfmtctl", "rootfs", "create", str(target), "--arch", "arm64"]
    if keep:
        argv.append("--keep-partial")
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    while not _entries(target) and proc.poll() is None:
        time.sleep(0.1)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C: the whole foreground group
    else:
        proc.send_signal(sig)  # as `kill PID`
    _, err = proc.communicate()
    assert proc.returncode == 128 + sig, err  # 143 for SIGTERM, 130 for SIGINT
    said = f"binfmtctl: error: interrupted by {sig.name}\n"
    if keep:
        found = re.search(
            rf"binfmtctl: interrupted; kept the partial root at {re.escape(str(target))} and "
            rf"the log at (/\S+\.log)\n{said}\Z",
            err,
        )
        assert found, err
        assert Path(found[1]).is_file()
        os.unlink(found[1])
    else:
        assert err.endswith(f"binfmtctl: interrupted; removed the partial root\n{said}"), err
    assert _engine_processes_for(target) == []
    if keep:
        assert _entries(target)
        shutil.rmtree(target)
    else:
        assert not target.exists()


@needs_build
def test_ordinary_user_builds_an_armhf_image_archive_podman_runs() -> None:
    """The unprivileged path end to end: binfmtctl-test (subordinate range in /etc/subuid)
    builds a 32-bit root as a docker-archive; podman loads it and runs it by platform."""
    _user_or_skip(USER)
    top = _user_dir(USER)
    archive = top / "armhf.image.tar"
    try:
        done = as_user(USER, "rootfs", "create", str(archive), "--arch", "armhf",
                       "--format", "docker-archive", "--json")  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        data = json.loads(done.stdout)["data"]
        assert data["smoke"]["output"] == ["shell ok", "armhf"]
        suite = data["provenance"]["suite"]
        assert data["image"] == f"localhost/debian-armhf:{suite}"
        beside = Path(f"{archive}.binfmtctl-rootfs.json")
        assert json.loads(beside.read_text()) == data["provenance"]
        assert data["provenance"]["oci_platform"] == "linux/arm/v7"
        # Only the archive and its record: the staging root is gone; both are the user's.
        assert sorted(os.listdir(top)) == sorted([archive.name, beside.name])
        assert archive.stat().st_uid == pwd.getpwnam(USER).pw_uid
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            layer = tar.extractfile(manifest[0]["Layers"][0])
            with tarfile.open(fileobj=layer) as inner:
                shadow = inner.getmember("./etc/shadow")
        assert (shadow.uid, shadow.gid) == (0, 42)  # namespace ids, not the subordinate ones
        status, out, err = podman_runs(archive, data["image"], "linux/arm/v7", "sh", "-c",
                                       "uname -m; dpkg --print-architecture")  # fmt: skip
        assert (status, out) == (0, "armv7l\narmhf\n"), err
        info = as_user(USER, "rootfs", "info", str(archive), "--json")
        assert json.loads(info.stdout)["data"]["provenance"] == data["provenance"]
    finally:
        _remove_as_namespace_root(top)


@pytest.mark.skipif(MMDEBSTRAP is None, reason="mmdebstrap missing: run scripts/test-deps")
def test_ubuntu_as_far_as_this_machine_reaches(tmp_path: Path) -> None:
    """Ubuntu's mirrors do not resolve from the test machine, so no Ubuntu root is built
    here; what is checked is the refusal a user on such a machine gets, for real: without
    Ubuntu's archive key (package ubuntu-keyring), that; with it, the unreachable mirror."""
    target = tmp_path / "jetson"
    done = binfmtctl("rootfs", "create", str(target), "--arch", "arm64", "--distro", "ubuntu",
                     "--suite", "jammy")  # fmt: skip
    if not os.path.exists(rp.UBUNTU_KEYRING):
        assert (done.returncode, done.stderr) == (
            1, "binfmtctl: error: an Ubuntu root needs Ubuntu's archive key "
            f"({rp.UBUNTU_KEYRING}); install it: `sudo apt-get install ubuntu-keyring`\n",
        )  # fmt: skip
    else:
        assert done.returncode == 1
        assert done.stderr.startswith(
            "binfmtctl: error: mirror http://ports.ubuntu.com/ubuntu-ports is unreachable "
            "(http://ports.ubuntu.com/ubuntu-ports/dists/jammy/Release: "
        ), done.stderr
    assert not target.exists()


def test_progress_output_live_line_verbose_log_and_json_silence() -> None:
    """On a TTY one line is rewritten in place; --verbose passes the log through; --json
    (no stream) prints nothing. The counts come from the engine's own lines."""
    import io

    tty = io.StringIO()
    live = rootfs.Output(tty, live=True)
    live.line("I: downloading packages with apt...")
    assert tty.getvalue().startswith(
        "\r\x1b[Krootfs: downloading packages with apt · 0 downloaded, 0 unpacked, 0 set up · 0m"
    )
    live.done()
    assert tty.getvalue().endswith("\r\x1b[K")
    assert "\n" not in tty.getvalue()
    log = io.StringIO()
    verbose = rootfs.Output(log, live=True, verbose=True)
    for line in ("I: installing essential packages...", "Setting up libc6:arm64 (2.36) ..."):
        verbose.line(line)
    verbose.done()
    assert log.getvalue() == (
        "I: installing essential packages...\nSetting up libc6:arm64 (2.36) ...\n"
    )
    assert verbose.progress.configured == 1
    quiet = rootfs.Output(None)
    quiet.line("I: downloading packages with apt...")
    quiet.phase("smoke test")
    assert quiet.progress.phase == "smoke test"
