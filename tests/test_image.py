"""The container image, built from the Containerfile and run for real by Podman.

What is exercised, for real:

* the base: a Debian minbase root for amd64 made by the real
  ``binfmtctl rootfs create DIR --arch amd64 --format docker-archive`` (from
  the host's Debian mirror), then ``podman load``-ed. The archive is kept in
  BINFMTCTL_TEST_CACHE (image-base/) after its first build, as the foreign
  busybox binaries are: it is about a minute of mirror downloads, and the
  Containerfile's own ``apt-get update`` brings the packages up to date anyway;
* the project's Containerfile, built once per session FROM that base
  (``--build-arg BASE=...``, ``--pull=never``): Debian's qemu-user-static and
  python3 from the mirror, binfmtctl from this source tree (the build context);
* the image run by real Podman (crun) with the privileges of
  deploy/kubernetes/daemonset.yaml, read from the manifest itself: privileged,
  runAsUser 0, the node's user namespace (hostUsers: Podman adds none), its
  volume mounts as host directories, its args; its readiness probe's command
  is run with ``podman exec``, and SIGTERM comes from ``podman stop``.

Where: Podman runs as root inside a private binfmt_misc instance (a full-id
sandbox, tests/conftest.py) that plays the node: its containers consult, and
``--privileged`` ones mount, the sandbox's instance, never the host's.

What is NOT exercised: a real cluster (kubelet, scheduling, tolerations,
resource limits, the probe's timing, preStop), Node Feature Discovery (the
feature file is checked as text; no nfd-worker reads it), Docker (Podman
only), pushing and pulling by digest, and an agent in the host's own user
namespace: the "node" here is itself a user namespace, so the agent refuses
there (tested) and runs only with ``--allow-private-instance`` (tested).
Podman uses the overlay storage driver (fast container start) and, on this
machine, crun's ulimits of tests/test_engines.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from binfmtctl import agent, host, sandbox
from binfmtctl.errors import SandboxError
from conftest import CACHE, ROOT, exec_result, foreign_busybox, missing, not_applicable

PODMAN = "/usr/bin/podman"
MMDEBSTRAP = shutil.which("mmdebstrap")
CRUN_LIMITS = ("--ulimit", "nofile=1024:20000", "--ulimit", "nproc=4096:4096")
MP = "/proc/sys/fs/binfmt_misc"
TAG = "localhost/binfmtctl:test"
BASE_ARCHIVE = CACHE / "image-base" / "debian-amd64.docker.tar"
pytestmark = pytest.mark.slow
WAIT = 120.0  # a bound on waiting for the agent in its container, never an expectation
FOREIGN = ("aarch64", "arm", "riscv64", "s390x", "ppc64le", "mips64el")


def _hide_hybrid_cgroup() -> None:
    """Inside the sandbox: hide the hybrid cgroup2 mount from crun (as tests/test_engines.py)."""
    with open("/proc/self/mountinfo") as fh:
        mounts = {line.split(" - ")[0].split()[4]: line.split(" - ")[1].split()[0] for line in fh}
    if mounts.get("/sys/fs/cgroup/unified") == "cgroup2":
        sandbox.mount("tmpfs", "/sys/fs/cgroup/unified", "tmpfs")


def _base_archive() -> Path:
    """The amd64 minbase base image, built with the real `rootfs create` unless cached."""
    if BASE_ARCHIVE.exists():
        return BASE_ARCHIVE
    BASE_ARCHIVE.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=BASE_ARCHIVE.parent))
    try:
        made = work / "base.tar"
        done = subprocess.run(
            [sys.executable, "-m", "binfmtctl", "rootfs", "create", str(made),
             "--arch", "amd64", "--format", "docker-archive", "--json"],
            capture_output=True, text=True, check=False, cwd="/",
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        smoke = json.loads(done.stdout)["data"]["smoke"]
        assert (smoke["ok"], smoke["output"]) == (True, ["shell ok", "amd64"])
        os.replace(made, BASE_ARCHIVE)  # whole or not at all, for concurrent runs
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BASE_ARCHIVE


@dataclass
class Node:
    """The sandbox playing the node, with its Podman (own storage under ``tmp``)."""

    box: sandbox.Sandbox
    tmp: Path

    @property
    def podman(self) -> list[str]:
        t = self.tmp
        return [PODMAN, "--root", f"{t}/root", "--runroot", f"{t}/run", "--tmpdir", f"{t}/t",
                "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs",
                "--events-backend", "none"]  # fmt: skip

    def pod(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return self.box.run(
            subprocess.run, [*self.podman, *argv], capture_output=True, text=True, check=False
        )

    def entries(self) -> list[str]:
        return sorted(set(self.box.run(os.listdir, MP)) - {"register", "status"})

    def entry(self, name: str) -> str:
        return self.box.run(Path(f"{MP}/{name}").read_text)

    def write(self, path: str, text: str) -> None:
        self.box.run(Path(path).write_text, text)


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    """Build the image once: base from `rootfs create`, Containerfile from this tree."""
    if host.machine() != "x86_64":
        not_applicable(f"the base is an amd64 root; this host is {host.machine()}")
    if os.geteuid() != 0 or MMDEBSTRAP is None or not os.path.exists(PODMAN):
        missing("needs root, mmdebstrap and podman: run scripts/test-deps")
    base = _base_archive()
    tmp = Path(tempfile.mkdtemp(prefix="binfmtctl-", dir="/tmp"))  # podman: short --runroot
    try:
        box = sandbox.Sandbox(full_ids=True).__enter__()
    except SandboxError as err:  # pragma: no cover
        missing(f"no full-id sandbox here: {err}")
    here = Node(box, tmp)
    try:
        box.run(_hide_hybrid_cgroup)
        load = here.pod("load", "-i", str(base))
        assert load.returncode == 0, load.stderr
        (base_tag,) = [
            line.split(": ", 1)[1]
            for line in load.stdout.splitlines()
            if line.startswith("Loaded image")
        ]
        build = here.pod(
            "build", "--pull=never", "--network=host", "--build-arg", f"BASE={base_tag}",
            "-t", TAG, "-f", str(ROOT / "Containerfile"), str(ROOT),
        )  # fmt: skip
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
        assert here.entries() == []  # building registered nothing
        yield here
    finally:
        with contextlib.suppress(Exception):
            here.pod("rm", "--force", "--all")
        box.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def clean(node: Node) -> Iterator[Node]:
    """Each test starts and ends with the node's instance empty and enabled."""
    node.write(f"{MP}/status", "-1")
    yield node
    node.write(f"{MP}/status", "-1")
    node.write(f"{MP}/status", "1")


def _daemonset_container() -> tuple[dict[str, Any], dict[str, Any]]:
    (ds,) = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "daemonset.yaml").read_text())
    spec = ds["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return spec, container


def _as_the_daemonset(tmp: Path) -> tuple[list[str], list[str], dict[str, Path]]:
    """`podman run` options for the DaemonSet's privileges and volumes, and its args.

    Each volume mount becomes a fresh host directory (returned by volume name),
    so the test sees the files the agent writes there.
    """
    spec, container = _daemonset_container()
    assert spec["hostUsers"] is True  # the node's user namespace: podman adds none
    assert not spec.get("hostNetwork") and not spec.get("hostPID")
    sc = container["securityContext"]
    options = ["--privileged"] if sc["privileged"] else []
    options += ["--user", str(sc["runAsUser"]), "--network=none", *CRUN_LIMITS]
    dirs: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        dirs[mount["name"]] = Path(tempfile.mkdtemp(prefix=f"{mount['name']}-", dir=tmp))
        options += ["-v", f"{dirs[mount['name']]}:{mount['mountPath']}"]
    return options, list(container["args"]), dirs


def _host_path(dirs: dict[str, Path], in_container: str) -> Path:
    """Where a file the container writes under one of its volume mounts shows on the host."""
    _, container = _daemonset_container()
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if in_container.startswith(prefix):
            return dirs[mount["name"]] / in_container[len(prefix) :]
    raise AssertionError(f"{in_container} is on no volume of the DaemonSet")


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_install_registers_proves_and_exits_0(clean: Node) -> None:
    """`IMAGE install --test` with the DaemonSet's privileges: the node keeps proven handlers."""
    options, _, _ = _as_the_daemonset(Path(tempfile.mkdtemp(dir=clean.tmp)))
    done = clean.pod("run", "--rm", *options, TAG, "install", "--test", "--json")
    assert done.returncode == 0, done.stderr
    envelope = json.loads(done.stdout)
    registered = {s["arch"] for s in envelope["data"]["steps"] if s["action"] == "register"}
    proven = {r["arch"] for r in envelope["data"]["test"]["results"] if r["ok"]}
    assert set(FOREIGN) <= registered
    assert registered == proven
    # The sandbox is a user namespace, so install says it changed a private instance.
    assert envelope["warnings"] == [
        "this process is not in the host's user namespace: the binfmt_misc it changes is a "
        "private one, and the host's handlers stay as they were"
    ]
    # The container is gone; the node's instance keeps the handlers (F flag: the kernel
    # holds the image's emulator open; P because Debian's QEMU keeps argv[0], as the
    # install's own probe found), and foreign code runs on the node through them.
    assert {f"qemu-{a}" for a in FOREIGN} <= set(clean.entries())
    lines = clean.entry("qemu-aarch64").splitlines()
    assert lines[:3] == ["enabled", "interpreter /usr/bin/qemu-aarch64-static", "flags: PF"]
    assert exec_result(clean.box, str(foreign_busybox("arm64")), "uname", "-m") == "aarch64\n"


def test_install_without_privilege_fails_with_exit_4(clean: Node) -> None:
    """No --privileged: binfmt_misc cannot be mounted; the exit code says so, nothing changes."""
    done = clean.pod("run", "--rm", "--network=none", *CRUN_LIMITS, TAG, "install", "aarch64")
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stderr == (
        "binfmtctl: error: cannot mount binfmt_misc: permission denied (/proc/sys/fs/binfmt_misc);"
        " this process is root but lacks CAP_SYS_ADMIN over it (in a container, run it with "
        "--privileged; in a user namespace, change the host from outside it)\n"
    )
    assert clean.entries() == []


def test_agent_without_the_flag_refuses_in_a_private_instance(clean: Node) -> None:
    """The DaemonSet's args in a user namespace (a pod without hostUsers): refused, exit 4."""
    options, args, dirs = _as_the_daemonset(Path(tempfile.mkdtemp(dir=clean.tmp)))
    done = clean.pod("run", "--rm", *options, TAG, *args)
    assert (done.returncode, done.stdout) == (4, ""), done.stderr
    assert done.stderr == f"binfmtctl: error: {agent.PRIVATE_REFUSAL}\n"
    assert clean.entries() == []
    assert [p for d in dirs.values() for p in d.iterdir()] == []  # no ready or feature file


def _wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting ({WAIT:g} s bound) for {what}")
        time.sleep(0.2)


def test_agent_registers_proves_heals_and_stops_on_sigterm(clean: Node) -> None:
    """The DaemonSet's args plus --allow-private-instance: ready, labelled, healed, exit 0."""
    options, args, dirs = _as_the_daemonset(Path(tempfile.mkdtemp(dir=clean.tmp)))
    ready = _host_path(dirs, _option(args, "--ready-file"))
    features = _host_path(dirs, _option(args, "--feature-file"))
    (_, container) = _daemonset_container()
    probe = container["readinessProbe"]["exec"]["command"]
    started = clean.pod(
        "run", "-d", *options, TAG, *args, "--allow-private-instance", "--interval", "1"
    )
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    try:
        _wait_for("the ready file", ready.exists)
        assert clean.pod("exec", cid, *probe).returncode == 0  # the readiness probe passes
        labels = [line for line in features.read_text().splitlines() if not line.startswith("#")]
        assert {f"{agent.LABEL_PREFIX}{a}=true" for a in FOREIGN} <= set(labels)
        assert {f"qemu-{a}" for a in FOREIGN} <= set(clean.entries())
        # Someone removes a handler on the node: the agent registers it again.
        clean.write(f"{MP}/qemu-aarch64", "-1")
        _wait_for("qemu-aarch64 back", lambda: "qemu-aarch64" in clean.entries())
        _wait_for("ready again", ready.exists)
        stopped = clean.pod("stop", "--time", "10", cid)
        assert stopped.returncode == 0, stopped.stderr
        state = clean.pod("inspect", "--format", "{{.State.ExitCode}}", cid)
        assert state.stdout.strip() == "0"  # SIGTERM: exit 0
        logs = clean.pod("logs", cid).stdout.splitlines()
    finally:
        clean.pod("rm", "--force", cid)
    events = [json.loads(line) for line in logs]
    codes = [e["event"] for e in events]
    assert codes[-1] == "stopped"
    # Ready, not ready while qemu-aarch64 was gone, ready again.
    first = codes.index("ready")
    assert "ready" in codes[codes.index("not_ready", first) :]
    assert {(e["event"], e["arch"]) for e in events} >= {
        ("registered", "aarch64"), ("proven", "aarch64"), ("reregistered", "aarch64")
    }  # fmt: skip
    assert not ready.exists() and not features.exists()  # both go with the agent
    assert {f"qemu-{a}" for a in FOREIGN} <= set(clean.entries())  # handlers stay
