"""Container verification through real Podman and real Docker, offline.

Both engines run INSIDE a private binfmt_misc instance (a sandbox with a full
0..65535 uid/gid map, which crun/runc need for /dev/pts and image files), so
their containers consult the handlers the test registers there, never the
host's.  Machine-specific settings live here, not in the product:

* crun on this machine needs ``--ulimit nofile=1024:20000 --ulimit nproc=4096:4096``;
* the machine has a hybrid cgroup layout, which crun refuses unless the
  cgroup2 mount at /sys/fs/cgroup/unified is hidden (a tmpfs over it, in the
  sandbox's private mount namespace only);
* dockerd gets its own --data-root/--exec-root/--pidfile/socket under a temp
  dir, and ``--iptables=false --bridge=none --ip-forward=false --ip-masq=false``
  (it may not touch the host's network); both use the vfs storage driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import golden_reports
from binfmtctl import arch, engines, host, namespaces, probe_images, probes, sandbox
from binfmtctl.errors import EngineError, SandboxError
from binfmtctl.native import native_arches
from conftest import ROOT, cli, foreign_busybox, qemu

PODMAN, DOCKER, DOCKERD = "/usr/bin/podman", "/usr/bin/docker", "/usr/sbin/dockerd"
CRUN_LIMITS = ("--ulimit", "nofile=1024:20000", "--ulimit", "nproc=4096:4096")


# --- pure parts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "platform"),
    [
        ("aarch64", "linux/arm64"),
        ("arm", "linux/arm/v7"),
        ("x86_64", "linux/amd64"),
        ("ppc64le", "linux/ppc64le"),
        ("mipsel", "linux/mipsle"),
        ("s390x", "linux/s390x"),
        ("riscv64", "linux/riscv64"),
        ("m68k", "linux/m68k"),  # no OCI platform in the catalog: Debian name
        ("alpha", "linux/alpha"),
        ("sh4eb", "linux/sh4eb"),  # neither: QEMU name
        ("mipsn32", "linux/mipsn32"),
    ],
)
def test_oci_platform(word: str, platform: str) -> None:
    assert probe_images.oci_platform(arch.resolve(word)) == platform


@pytest.mark.parametrize(
    ("text", "parts"),
    [("linux/arm/v7", ("linux", "arm", "v7")), ("linux/arm64", ("linux", "arm64", ""))],
)
def test_split_platform(text: str, parts: tuple[str, str, str]) -> None:
    assert probe_images.split_platform(text) == parts


@pytest.mark.parametrize("text", ["linux", "linux//v7", "a/b/c/d", "/arm64", ""])
def test_split_platform_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"not an OCI platform \(os/arch\[/variant\]\)"):
        probe_images.split_platform(text)


def test_every_probe_arch_gets_its_own_platform() -> None:
    platforms = [probe_images.oci_platform(arch.resolve(name)) for name in probes.available()]
    for platform in platforms:
        probe_images.split_platform(platform)  # well-formed
    assert len(set(platforms)) == len(platforms)


def test_image_archive_layout(tmp_path: Path) -> None:
    probe = probes.build("arm")
    data = probe_images.image_archive(
        [probe_images.ProbeImage("localhost/x:arm", "linux/arm/v7", probe)]
    )
    (tmp_path / "a.tar").write_bytes(data)
    with tarfile.open(tmp_path / "a.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        (item,) = manifest
        config = json.load(tar.extractfile(item["Config"]))  # type: ignore[arg-type]
        layer_bytes = tar.extractfile(item["Layers"][0]).read()  # type: ignore[union-attr]
    assert item["RepoTags"] == ["localhost/x:arm"]
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm", "v7")
    assert config["config"]["Entrypoint"] == ["/probe"]
    (tmp_path / "layer.tar").write_bytes(layer_bytes)
    with tarfile.open(tmp_path / "layer.tar") as layer:
        (member,) = layer.getmembers()
        assert (member.name, member.mode, member.uid) == ("probe", 0o755, 0)
        assert layer.extractfile(member).read() == probe  # type: ignore[union-attr]
    # Deterministic: the same probes give the same archive (same image ids).
    assert data == probe_images.image_archive(
        [probe_images.ProbeImage("localhost/x:arm", "linux/arm/v7", probe)]
    )


MOUNTINFO = """\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:35 / /proc/sys/fs/binfmt_misc rw,nosuid shared:9 - binfmt_misc binfmt_misc rw
41 22 0:52 / /srv/other\\040dir rw,relatime - binfmt_misc binfmt_misc rw
42 22 0:53 / /tmp rw - tmpfs tmpfs rw
"""


def test_binfmt_mounts_reads_mountinfo() -> None:
    assert [m.to_dict() for m in namespaces.binfmt_mounts(MOUNTINFO)] == [
        {"mountpoint": "/proc/sys/fs/binfmt_misc", "dev": "0:35"},
        {"mountpoint": "/srv/other\\040dir", "dev": "0:52"},
    ]
    assert namespaces.binfmt_mounts("garbage\n\n1 2 3 - \n") == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("lxc", "unknown container engine 'lxc'; choose one of docker, podman"),
    ],
)
def test_engine_find_errors(name: str, message: str) -> None:
    with pytest.raises(EngineError) as caught:
        engines.Engine.find(name)
    assert caught.value.message == message


def test_engine_missing_binary_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(EngineError) as caught:
        engines.Engine.find("podman")
    assert caught.value.message == (
        "podman is not installed (not found on PATH); install it "
        "(Debian/Ubuntu: apt-get install podman) or choose the other engine"
    )


def test_unreachable_docker_daemon_reports_the_engines_words(tmp_path: Path) -> None:
    if not os.path.exists(DOCKER):
        pytest.skip(f"{DOCKER} missing: run scripts/test-deps (installs docker.io)")
    eng = engines.Engine("docker", DOCKER, options=("-H", f"unix://{tmp_path}/none.sock"))
    with pytest.raises(EngineError) as caught:
        engines.verify("docker", ["aarch64"], engine=eng)
    assert caught.value.message.startswith("docker cannot run containers: ")
    assert f"unix://{tmp_path}/none.sock" in caught.value.message
    assert caught.value.message.endswith(
        "start the daemon (`systemctl start docker`) or point DOCKER_HOST at it"
    )


# --- namespaces: which instance would an engine's containers use? ---------------


def _spawn_holder(script: str) -> int:
    """Start a long-lived process (in the sandbox) and return its pid once it is ready."""
    ready = f"/tmp/binfmtctl-holder-{os.getpid()}-{time.monotonic_ns()}"
    proc = subprocess.Popen(
        ["sh", "-c", f"{script} && touch {ready} && exec sleep 60"], start_new_session=True
    )
    for _ in range(200):
        if os.path.exists(ready):
            os.unlink(ready)
            break
        time.sleep(0.02)
    return proc.pid


def _views(holder_script: str) -> dict[str, Any]:
    """Inside the sandbox: the view of a process started by ``holder_script``."""
    pid = _spawn_holder(holder_script)
    try:
        view = namespaces.instance_view(pid)
        return {"userns": view.userns, "instance": view.instance, "detail": view.detail}
    finally:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_instance_view_same_namespace(sb: sandbox.Sandbox) -> None:
    view = sb.run(_views, "true")
    assert (view["userns"], view["instance"]) == ("same", "same")


def test_instance_view_child_namespace_inherits(sb: sandbox.Sandbox) -> None:
    view = sb.run(_views_in_child, mount_binfmt=False)
    assert (view["userns"], view["instance"]) == ("child", "inherited")
    assert "falls back to this one" in view["detail"]


def test_instance_view_child_with_its_own_instance_is_private(sb: sandbox.Sandbox) -> None:
    view = sb.run(_views_in_child, mount_binfmt=True)
    assert (view["userns"], view["instance"]) == ("child", "private")
    assert "do NOT see the handlers" in view["detail"]


def _views_in_child(mount_binfmt: bool) -> dict[str, Any]:
    mount = "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && " if mount_binfmt else ""
    proc = subprocess.Popen(
        [
            "unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
            "sh", "-c", f"{mount}echo ready; exec sleep 60",
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    try:
        view = namespaces.instance_view(proc.pid)
        return {"userns": view.userns, "instance": view.instance, "detail": view.detail}
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


# --- real engines ---------------------------------------------------------------


def _prepare_namespace() -> list[str]:
    """Inside the sandbox: hide the hybrid cgroup2 mount from crun (this machine only)."""
    done = []
    with open("/proc/self/mountinfo") as fh:
        mounts = {line.split(" - ")[0].split()[4]: line.split(" - ")[1].split()[0] for line in fh}
    if mounts.get("/sys/fs/cgroup/unified") == "cgroup2":
        sandbox.mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs")
        done.append("tmpfs over /sys/fs/cgroup/unified")
    return done


@pytest.fixture(scope="module")
def engine_box() -> Iterator[sandbox.Sandbox]:
    """A full-id sandbox with every foreign handler binfmtctl can install (F flag)."""
    qemu("qemu-aarch64")
    try:
        box = sandbox.Sandbox(full_ids=True).__enter__()
    except SandboxError as err:  # pragma: no cover
        pytest.skip(f"no full-id sandbox here: {err}")
    try:
        box.run(_prepare_namespace)
        installed = cli(box, "install", "--json")
        assert installed.returncode == 0, installed.stderr
        yield box
    finally:
        box.close()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """podman refuses a --runroot longer than 50 characters: pytest's tmp_path is too long."""
    path = Path(tempfile.mkdtemp(prefix="binfmtctl-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _podman(tmp: Path) -> engines.Engine:
    if not os.path.exists(PODMAN):
        pytest.skip(f"{PODMAN} missing: run scripts/test-deps (installs podman)")
    return engines.Engine(
        "podman",
        PODMAN,
        options=(
            "--root", str(tmp / "root"), "--runroot", str(tmp / "run"), "--tmpdir", str(tmp / "t"),
            "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "none",
        ),
        run_options=CRUN_LIMITS,
    )  # fmt: skip


class Dockerd:
    """A dockerd of our own, started inside the sandbox, stopped (and waited for) after."""

    def __init__(self, box: sandbox.Sandbox, tmp: Path) -> None:
        self.box, self.tmp = box, tmp
        self.socket = f"unix://{tmp}/docker.sock"
        self.pid = 0

    def _start(self) -> int:
        log = open(self.tmp / "dockerd.log", "wb")  # noqa: SIM115 - the daemon keeps it
        argv = [
            DOCKERD, "--data-root", f"{self.tmp}/data", "--exec-root", f"{self.tmp}/exec",
            "--pidfile", f"{self.tmp}/docker.pid", "-H", self.socket, "--storage-driver", "vfs",
            "--iptables=false", "--bridge=none", "--ip-forward=false", "--ip-masq=false",
        ]  # fmt: skip
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return proc.pid

    def start(self) -> engines.Engine:
        self.pid = self.box.run(self._start)
        eng = engines.Engine("docker", DOCKER, options=("-H", self.socket))
        for _ in range(300):
            up = self.box.run(subprocess.run, eng.command("version"), capture_output=True)
            if up.returncode == 0:
                return eng
            if not os.path.exists(f"/proc/{self.pid}"):
                break
            time.sleep(0.1)
        log = (self.tmp / "dockerd.log").read_text(errors="replace")[-2000:]
        raise AssertionError(f"dockerd did not come up:\n{log}")

    def stop(self) -> None:
        if not self.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGTERM)
        # dockerd's launcher (a sandboxed call) has exited, so init adopted it:
        # wait for it to be gone (or a zombie) rather than waitpid().
        for _ in range(150):
            if _gone(self.pid):
                break
            time.sleep(0.1)
        else:  # pragma: no cover
            os.killpg(self.pid, signal.SIGKILL)
        self.pid = 0


def _gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


@pytest.fixture(scope="module")
def dockerd(engine_box: sandbox.Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not os.path.exists(DOCKERD):
        pytest.skip(f"{DOCKERD} missing: run scripts/test-deps (installs docker.io)")
    tmp = tmp_path_factory.mktemp("dockerd")
    daemon = Dockerd(engine_box, tmp)
    try:
        yield daemon, daemon.start()
    finally:
        daemon.stop()
    # The daemon ran as "root" of the sandbox: its files are ours to delete.
    shutil.rmtree(tmp, ignore_errors=True)


def _report_json(results: list[engines.ContainerRun]) -> list[dict[str, Any]]:
    assert all(isinstance(r, engines.ContainerRun) for r in results)  # typed, then JSON
    return [r.to_dict() for r in results]


#: What differs between runs of engines.verify: durations, the random run id of
#: a probe image's tag, and the times in crun's log lines (in an engine's stderr).
ENGINE_SUBS = (
    (r'"seconds": [0-9.e-]+', '"seconds": "<SECONDS>"'),
    (r"(binfmtctl-probe:[a-z0-9_]+)-[0-9a-f]{8}", r"\1-<RUN>"),
    (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<TIME>"),
)


def _golden(name: str, data: Any) -> None:
    """A golden report (tests/golden_reports.py); host-dependent ones (native arches:
    entry null) are compared on x86_64 only, by the callers."""
    golden_reports.check(name, data, ENGINE_SUBS)


def _assert_all_ok(results: list[dict[str, Any]], names: list[str], engine: str) -> None:
    assert [r["arch"] for r in results] == names
    failed = {r["arch"]: r["error"] for r in results if not r["ok"]}
    assert failed == {}
    for r in results:
        assert r["output"] == probes.expected_output(r["arch"]).decode()
        assert r["engine"] == engine and r["code"] == "ok" and r["seconds"] > 0


# Every arch with a probe goes through one engine: podman takes the odd
# positions, docker the even ones (each engine sees every family of ISA).
ALL = probes.available()
PODMAN_ARCHES, DOCKER_ARCHES = ALL[1::2], ALL[0::2]


def test_podman_runs_every_probe_in_a_container(
    engine_box: sandbox.Sandbox, short_tmp: Path
) -> None:
    eng = _podman(short_tmp)
    results = _report_json(engine_box.run(engines.verify, "podman", PODMAN_ARCHES, engine=eng))
    _assert_all_ok(results, PODMAN_ARCHES, "podman")
    if host.machine() == "x86_64":  # i386 and x86_64 are native there: entry null
        _golden("engines-verify-podman-probes", results)
    native = {a.name for a in native_arches()}
    assert {r["arch"]: r["entry"] for r in results} == {
        name: None if name in native else arch.resolve(name).entry_name for name in PODMAN_ARCHES
    }
    # The images it loaded are gone again.
    left = engine_box.run(subprocess.run, eng.command("images", "-q"), capture_output=True)
    assert (left.returncode, left.stdout) == (0, b"")


def test_docker_runs_every_probe_in_a_container(dockerd: Any) -> None:
    daemon, eng = dockerd
    results = _report_json(daemon.box.run(engines.verify, "docker", DOCKER_ARCHES, engine=eng))
    _assert_all_ok(results, DOCKER_ARCHES, "docker")
    if host.machine() == "x86_64":
        _golden("engines-verify-docker-probes", results)
    left = daemon.box.run(subprocess.run, eng.command("images", "-q"), capture_output=True)
    assert (left.returncode, left.stdout) == (0, b"")


def test_podman_reports_the_engines_error_when_no_handler(short_tmp: Path) -> None:
    """A private instance with no handler: the container's exec fails, in podman's words."""
    with sandbox.Sandbox(full_ids=True) as box:
        box.run(_prepare_namespace)
        results = box.run(engines.verify, "podman", ["riscv64"], engine=_podman(short_tmp))
    (r,) = _report_json(results)
    _golden("engines-verify-no-handler", [r])
    assert (r["ok"], r["code"], r["entry"]) == (False, "engine_failed", None)
    assert r["error"] == "podman run exited 1: exec container process `/probe`: Exec format error"


def _busybox_image_tar(tmp: Path, debian_arch: str) -> Path:
    """A rootfs tar of Debian's busybox-static with /bin/uname, as a user's own image."""
    busybox = foreign_busybox(debian_arch)
    out = tmp / f"busybox-{debian_arch}.tar"
    with tarfile.open(out, "w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        link = tarfile.TarInfo("bin/uname")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    return out


def test_image_mode_runs_uname_in_the_users_image(
    engine_box: sandbox.Sandbox, short_tmp: Path
) -> None:
    """`--image`: an arm64 busybox image made with podman's own import (`--arch`)."""
    eng = _podman(short_tmp)
    tar = _busybox_image_tar(short_tmp, "arm64")
    ref = "localhost/users-busybox:arm64"
    made = engine_box.run(
        subprocess.run,
        eng.command("import", "--arch", "arm64", "--os", "linux", "--change", "ENV PATH=/bin",
                    str(tar), ref),
        capture_output=True,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    try:
        (good,) = _report_json(
            engine_box.run(engines.verify, "podman", ["arm64"], image=ref, engine=eng)
        )
        assert (good["ok"], good["output"], good["entry"]) == (True, "aarch64\n", "qemu-aarch64")
        # Asking for another arch: with --pull=never podman finds no such image, and says so.
        (bad,) = _report_json(
            engine_box.run(engines.verify, "podman", ["s390x"], image=ref, engine=eng)
        )
        _golden("engines-verify-image", [good, bad])
        assert (bad["ok"], bad["code"], bad["error"]) == (
            False,
            "engine_failed",
            f"podman run exited 125: Error: {ref}: image not known",
        )
    finally:
        # The user's image stays: verify() removes only what it loaded.
        listed = engine_box.run(
            subprocess.run, eng.command("images", "-q", ref), capture_output=True
        )
        assert listed.stdout.strip()
        engine_box.run(subprocess.run, eng.command("rmi", ref), capture_output=True)


def test_status_shows_the_docker_daemon_uses_this_instance(dockerd: Any) -> None:
    daemon, _eng = dockerd
    proc = daemon.box.run(
        subprocess.run,
        [sys.executable, "-m", "binfmtctl", "status", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": daemon.socket, "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 0, proc.stderr
    docker = {e["name"]: e for e in json.loads(proc.stdout)["data"]["engines"]}["docker"]
    assert docker["reachable"] is True
    assert docker["pid"] == daemon.pid
    assert (docker["userns"], docker["instance"]) == ("same", "same")


# --- the Containerfile ----------------------------------------------------------
# No base image can be pulled here (no registry), so the image is not built in
# the tests.  What is checked instead: the Containerfile parses into known
# instructions with an exec-form ENTRYPOINT, and the exact layout it builds
# (the package under dist-packages, the wrapper its RUN line writes, Debian's
# python3 + qemu-user-static) installs handlers with the
# right exit codes, in a private instance.

CONTAINERFILE = ROOT / "Containerfile"
INSTRUCTIONS = {"FROM", "RUN", "COPY", "ENTRYPOINT", "CMD", "ENV", "ARG", "LABEL", "WORKDIR"}


def _instructions() -> list[tuple[str, str]]:
    text = CONTAINERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word, rest.strip()))
    return out


def test_containerfile_parses() -> None:
    steps = _instructions()
    assert {word for word, _ in steps} <= INSTRUCTIONS
    # The base is an argument (tests/test_image.py builds FROM a base of its own).
    assert steps[:2] == [("ARG", "BASE=docker.io/library/debian:12-slim"), ("FROM", "${BASE}")]
    entry = dict(steps)["ENTRYPOINT"]
    assert json.loads(entry) == ["binfmtctl"]  # exec form: binfmtctl's exit code is the container's
    assert json.loads(dict(steps)["CMD"]) == ["status"]
    run = " ".join(rest for word, rest in steps if word == "RUN")
    assert "--no-install-recommends" in run and "qemu-user-static" in run
    for excluded in (".git", ".venv", ".cache", "tests"):
        assert excluded in (ROOT / ".containerignore").read_text().split()


def _wrapper_line() -> str:
    (run,) = [r for w, r in _instructions() if w == "RUN" and "/usr/local/bin/binfmtctl" in r]
    start = run.index("printf '") + len("printf '")
    return run[start : run.index("'", start)].replace("\\n", "\n")


def test_containerfile_layout_installs_with_proper_exit_codes(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    python3 = "/usr/bin/python3"
    qemu("qemu-aarch64")
    site = tmp_path / "dist-packages"
    shutil.copytree(ROOT / "src" / "binfmtctl", site / "binfmtctl")  # the COPY line
    wrapper = tmp_path / "binfmtctl"
    wrapper.write_text(_wrapper_line())
    wrapper.chmod(0o755)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site)}

    def entrypoint(*args: str) -> subprocess.CompletedProcess[str]:
        return sb.run(
            subprocess.run, [str(wrapper), *args], capture_output=True, text=True, env=env
        )

    assert _wrapper_line().startswith(f"#!{python3}\n")
    done = entrypoint("install", "arm64", "--json")
    assert done.returncode == 0, done.stderr
    assert [s["arch"] for s in json.loads(done.stdout)["data"]["steps"]] == ["aarch64"]
    assert entrypoint("status").returncode == 0
    bad = entrypoint("install", "no-such-arch")
    assert bad.returncode == 2
    assert "unknown architecture 'no-such-arch'" in bad.stderr


def test_cli_test_engine_docker(dockerd: Any) -> None:
    """`binfmtctl test --engine docker`: the real command, the daemon found by DOCKER_HOST."""
    daemon, _eng = dockerd
    proc = daemon.box.run(
        subprocess.run,
        [sys.executable, "-m", "binfmtctl", "test", "--engine", "docker", "arm64", "riscv64",
         "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": daemon.socket},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _golden("test-engine-docker", json.loads(proc.stdout))  # the whole --json envelope
    results = json.loads(proc.stdout)["data"]["results"]
    assert {(r["arch"], r["engine"], r["ok"], r["output"]) for r in results} >= {
        ("aarch64", "docker", True, "binfmtctl-probe aarch64\n"),
        ("riscv64", "docker", True, "binfmtctl-probe riscv64\n"),
    }
