"""deploy/kubernetes: the manifests that run ``binfmtctl agent`` on every node.

What is real here: every manifest is validated strictly (unknown fields are
errors) against the official Kubernetes OpenAPI schemas of every release the
``kubernetes-validate`` package ships, from the schemas inside the package,
in a process that has no network at all. What cannot be real here: a cluster.
No API server, kubelet or Node Feature Discovery runs in these tests, so the
DaemonSet's contract with them (privilege, tolerations, the readiness probe,
the features.d hostPath) is checked as data, field by field, below.
kustomization.yaml is not a Kubernetes object (no schema exists for it): its
resource list and image pin are checked against the files themselves.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from binfmtctl import cli, sandbox
from binfmtctl.native import native_arches
from conftest import ROOT

DEPLOY = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
VERSIONS = sorted({".".join(v.split(".")[:2]) for v in all_versions()}, key=lambda v: int(v[2:]))
# The directory nfd-worker's local feature source reads (NFD's documentation,
# "Local feature source: feature files"; its own DaemonSet mounts the same path).
NFD_FEATURES_D = "/etc/kubernetes/node-feature-discovery/features.d"
READY = "/run/binfmtctl/ready"
DIGEST = re.compile(r"^(?P<name>[a-z0-9][a-z0-9._/:-]*[a-z0-9])@sha256:(?P<hex>[0-9a-f]{64})$")


def _docs(name: str) -> list[dict[str, Any]]:
    docs = list(yaml.safe_load_all((DEPLOY / name).read_text()))
    assert all(isinstance(d, dict) for d in docs), name
    return docs


def _daemonset() -> dict[str, Any]:
    (ds,) = _docs("daemonset.yaml")
    assert ds["kind"] == "DaemonSet"
    return ds


def _agent(ds: dict[str, Any]) -> dict[str, Any]:
    (container,) = ds["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "agent"
    return dict(container)


def _strict(doc: dict[str, Any], version: str) -> str | None:
    """None if ``doc`` is valid for ``version``, else the validator's message at its path."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{'.'.join(map(str, e.path))}: {e.message}"
    return None


def test_the_manifests_are_there() -> None:
    assert MANIFESTS == ["daemonset.yaml", "namespace.yaml"]
    assert "1.31" in VERSIONS  # with every other release the package ships


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_strictly(name: str, version: str) -> None:
    for doc in _docs(name):
        assert _strict(doc, version) is None


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``doc`` with the dotted ``path`` set (digits index lists)."""
    out: Any = json.loads(json.dumps(doc))
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = out
    for part in parents:
        node = node[part]
    node[last] = value
    return dict(out)


POD = "spec.template.spec"
AGENT = f"{POD}.containers.0"
# Each mistake the schema check must catch in the real DaemonSet, with the exact message.
BROKEN = [
    (f"{AGENT}.resources.limit", {}, f"{AGENT}.resources: Additional properties are not "
     "allowed ('limit' was unexpected)"),
    (f"{AGENT}.securityContext.priviledged", True, f"{AGENT}.securityContext: Additional "
     "properties are not allowed ('priviledged' was unexpected)"),
    (f"{POD}.toleration", [], f"{POD}: Additional properties are not allowed "
     "('toleration' was unexpected)"),
    (f"{POD}.tolerations.0.operator", 5, f"{POD}.tolerations.0.operator: 5 is not of "
     "type 'string', 'null'"),
    (f"{AGENT}.readinessProbe.exec.command", "test -f /run/binfmtctl/ready",
     f"{AGENT}.readinessProbe.exec.command: 'test -f /run/binfmtctl/ready' is not of type "
     "'array', 'null'"),
    (f"{POD}.volumes.1.hostPath.path", None, f"{POD}.volumes.1.hostPath.path: None is not "
     "of type 'string'"),
]  # fmt: skip


def test_readme_kubernetes_examples_are_valid_strictly() -> None:
    """README's ```yaml blocks are Kubernetes objects a user would apply: valid as shown."""
    blocks = re.findall(r"^```yaml\n(.*?)^```$", (ROOT / "README.md").read_text(), re.M | re.S)
    docs = [d for block in blocks for d in yaml.safe_load_all(block)]
    assert [d["kind"] for d in docs] == ["Pod"]
    for doc in docs:
        assert _strict(doc, VERSIONS[0]) is None
        assert _strict(doc, VERSIONS[-1]) is None
    (pod,) = docs
    (label,) = pod["spec"]["nodeSelector"]
    assert label == "binfmtctl.feature.node.kubernetes.io/aarch64"
    assert DIGEST.fullmatch(pod["spec"]["containers"][0]["image"])


@pytest.mark.parametrize(("path", "value", "message"), BROKEN)
def test_strict_validation_refuses_a_broken_daemonset(path: str, value: Any, message: str) -> None:
    """The check above can fail: one wrong field in the real DaemonSet is refused."""
    ds = _daemonset()
    assert _strict(ds, VERSIONS[-1]) is None
    assert _strict(_set(ds, path, value), VERSIONS[-1]) == message


def test_validation_runs_without_any_network() -> None:
    """In a network namespace of its own (only a down loopback): every schema is in the package."""
    code = (
        "import sys, yaml, kubernetes_validate as k\n"
        "for f in sys.argv[1:]:\n"
        "    for d in yaml.safe_load_all(open(f)):\n"
        "        print(f.rsplit('/', 1)[1], d['kind'], k.validate(d, '1.31', strict=True))\n"
    )
    files = [str(DEPLOY / n) for n in MANIFESTS]
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", sys.executable, "-c", code, *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "daemonset.yaml DaemonSet 1.31",
        "namespace.yaml Namespace 1.31",
    ]


def test_kustomization_lists_every_manifest_and_pins_the_image() -> None:
    (k,) = _docs("kustomization.yaml")
    assert set(k) == {"apiVersion", "kind", "resources", "images"}
    assert (k["apiVersion"], k["kind"]) == ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    assert sorted(k["resources"]) == MANIFESTS
    assert k["resources"][0] == "namespace.yaml"  # the namespace before what lives in it
    match = DIGEST.fullmatch(_agent(_daemonset())["image"])
    assert match, "the DaemonSet's image is referenced by digest, never by tag"
    # kustomize's image transformer matches on the name: the pin applies to this container.
    assert k["images"] == [{"name": match["name"], "digest": f"sha256:{match['hex']}"}]


def test_everything_lives_in_the_namespace_it_creates() -> None:
    (ns,) = _docs("namespace.yaml")
    assert ns["kind"] == "Namespace"
    labels = ns["metadata"]["labels"]
    # Pod Security Admission: privileged pods are admitted here (baseline would refuse them).
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert _daemonset()["metadata"]["namespace"] == ns["metadata"]["name"]


def test_daemonset_runs_a_privileged_agent_on_every_node() -> None:
    ds = _daemonset()
    pod = ds["spec"]["template"]["spec"]
    agent = _agent(ds)
    # Every node, whatever its taints (NoExecute included): one toleration of every key.
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert "affinity" not in pod
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    # The node's user namespace, so the binfmt_misc it mounts is the node's instance.
    assert agent["securityContext"] == {"privileged": True, "runAsUser": 0}
    assert pod["hostUsers"] is True
    # No API access and no host namespaces it does not need.
    assert pod["automountServiceAccountToken"] is False
    assert not {"hostPID", "hostNetwork", "hostIPC"} & set(pod)
    # The image's entrypoint is binfmtctl: args only, so `command` cannot bypass it.
    assert "command" not in agent
    assert (
        ds["spec"]["selector"]["matchLabels"].items()
        <= ds["spec"]["template"]["metadata"]["labels"].items()
    )


def _mounts(ds: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in _agent(ds)["volumeMounts"]}


def _option(args: list[str], name: str) -> str:
    (i,) = [n for n, a in enumerate(args) if a == name]
    return args[i + 1]


def test_ready_file_and_probe_agree() -> None:
    ds = _daemonset()
    agent = _agent(ds)
    assert _option(agent["args"], "--ready-file") == READY
    probe = agent["readinessProbe"]
    assert probe["exec"]["command"] == ["test", "-f", READY]
    assert probe["failureThreshold"] == 1  # unready at the first check without the file
    assert "livenessProbe" not in agent  # an unproven arch is not a reason to restart
    # The ready file's directory is the pod's own, in memory: it goes with the pod.
    run = _mounts(ds)[str(Path(READY).parent)]
    assert run["emptyDir"]["medium"] == "Memory"


def test_feature_file_lands_where_nfd_reads() -> None:
    ds = _daemonset()
    feature = _option(_agent(ds)["args"], "--feature-file")
    assert str(Path(feature).parent) == NFD_FEATURES_D
    assert _mounts(ds)[NFD_FEATURES_D]["hostPath"] == {
        "path": NFD_FEATURES_D,
        "type": "DirectoryOrCreate",  # a node without NFD yet: the file waits for it
    }
    # Labels say "kept and proven by a running agent": the file goes when the agent stops.
    assert _agent(ds)["lifecycle"] == {"preStop": {"exec": {"command": ["rm", "-f", feature]}}}
    # No other host path: binfmt_misc is mounted by the agent in its own mount
    # namespace (the node's instance, as it shares the node's user namespace).
    host = [v["hostPath"]["path"] for v in _mounts(ds).values() if "hostPath" in v]
    assert host == [NFD_FEATURES_D]


def _quantity(q: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    number = re.fullmatch(r"(\d+)(m|Ki|Mi|Gi)?", q)
    assert number, q
    return int(number[1]) * units.get(number[2] or "", 1)


def test_resources_are_small_and_bounded() -> None:
    res = _agent(_daemonset())["resources"]
    requests = {k: _quantity(v) for k, v in res["requests"].items()}
    limits = {k: _quantity(v) for k, v in res["limits"].items()}
    assert set(requests) == set(limits) == {"cpu", "memory"}
    assert requests["memory"] == 40 * 2**20  # the agent's RSS goal
    assert requests["cpu"] <= 0.01  # under 1% of a core
    assert all(requests[k] <= limits[k] for k in requests)
    assert limits["memory"] <= 128 * 2**20


# --- the image the DaemonSet runs -------------------------------------------------
# tests/test_image.py builds the image and runs it in Podman (a slow test). What
# runs here, fast, is the layout the Containerfile builds (its COPY into
# dist-packages and the wrapper its RUN line writes, with Debian's python3 and
# qemu-user-static as the image has them), given the DaemonSet's own args, in a
# private binfmt_misc instance.


def _image_entrypoint(tmp_path: Path) -> list[str]:
    text = (ROOT / "Containerfile").read_text().replace("\\\n", " ")
    assert 'ENTRYPOINT ["binfmtctl"]' in text.splitlines()
    (run,) = [line for line in text.splitlines() if line.startswith("RUN printf '")]
    start = len("RUN printf '")
    wrapper = tmp_path / "binfmtctl"
    wrapper.write_text(run[start : run.index("'", start)].replace("\\n", "\n"))
    wrapper.chmod(0o755)
    shutil.copytree(ROOT / "src" / "binfmtctl", tmp_path / "dist-packages" / "binfmtctl")
    return [str(wrapper)]


def test_image_install_test_registers_and_proves_every_foreign_arch(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    """`docker run --privileged --rm IMAGE install --test`: tonistiigi's --install all, proven."""
    entry = _image_entrypoint(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "dist-packages")}
    done = sb.run(
        subprocess.run, [*entry, "install", "--test", "--json"], capture_output=True, text=True,
        env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["data"]
    installed = {s["arch"] for s in data["steps"] if s["action"] == "register"}
    proven = {r["arch"] for r in data["test"]["results"] if r["ok"]}
    assert {"aarch64", "arm", "riscv64", "s390x", "ppc64le", "mips64el"} <= installed
    assert installed == proven
    assert not installed & set(native_arches())
    again = sb.run(
        subprocess.run, [*entry, "install", "no-such-arch"], capture_output=True, text=True,
        env=env, check=False,
    )  # fmt: skip
    assert (again.returncode, again.stdout) == (2, "")


@pytest.mark.xfail(
    "agent" not in cli.VERBS,
    reason="`binfmtctl agent` is not in this binfmtctl yet: the DaemonSet's args cannot parse",
    raises=AssertionError,
    strict=True,
)
def test_daemonset_args_are_the_agents(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    """The DaemonSet's args parse as `binfmtctl agent` options, in this binfmtctl."""
    assert "agent" in cli.VERBS
    args = _agent(_daemonset())["args"]
    parsed = cli.build_parser(args).parse_args(args)
    assert (str(parsed.ready_file), str(parsed.feature_file)) == (
        READY,
        f"{NFD_FEATURES_D}/binfmtctl",
    )
    # The label README's nodeSelector example selects is the one the agent writes.
    agent = importlib.import_module("binfmtctl.agent")
    assert agent.label_key("aarch64") == "binfmtctl.feature.node.kubernetes.io/aarch64"
    entry = _image_entrypoint(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "dist-packages")}
    shown = sb.run(
        subprocess.run, [*entry, "agent", "--help"], capture_output=True, text=True, env=env,
        check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    for option in args[1::2]:
        assert option in shown.stdout
