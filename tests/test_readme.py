"""README.md and every ``--help`` epilog as an executable contract.

Every command example is run for real, in a private binfmt_misc instance
(``sandbox.Sandbox``), with real QEMU and Debian's busybox-static, from a
working directory holding the files the examples name:

* ``arm64/busybox``, ``armhf/busybox``: busybox-static of that Debian arch
  (busybox picks its applet from the name it was run by, so it keeps its name);
* ``arm64-rootfs``: the unpacked busybox-static:arm64 package, with
  ``bin/sh``, ``bin/ls`` and ``bin/uname`` linked to busybox;
* ``hello-arm64``: binfmtctl's own aarch64 probe program (prints a line, exits 0);
* ``my-handlers.conf``: ``binfmtctl export arm64 armhf --format systemd``.

README's ```console blocks are ``$ CMD`` lines, each followed by its expected
output (stdout and stderr, as a terminal shows them). ``  # comment`` after a
command is not part of it. In expected output, ``...`` inside a line stands for
any text and a line of only ``...`` for any lines; timings (``21 ms``, ``0.03 s``)
and table padding (runs of spaces) are normalised on both sides. A command shown without
output must succeed, and its output is not compared. One fresh instance per
block, its commands in order; each help page's examples share a fresh instance
in which every foreign arch is registered first (the top-level page starts
empty). Every example must exit 0. The one normalisation: binfmtctl's warning
that it changes a private instance (all of these do) is dropped, except in the
example that shows it.

The examples README says any user can run (``binfmtctl run``, ``unshare
--user``) are also run as the unprivileged user ``binfmtctl-test``, with the
distro's python3, outside any sandbox (they make their own).

An example that cannot run here is listed in NOT_RUN with the reason; a stale
entry there fails too. ```python examples with ``# -> VALUE`` are evaluated in
the same working directory and their value compared.
"""

from __future__ import annotations

import argparse
import functools
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from binfmtctl import probes, rootless, sandbox
from binfmtctl.cli import build_parser
from conftest import ROOT, foreign_busybox, needs_sandbox

README = ROOT / "README.md"
PRIVATE_WARNING = (
    "binfmtctl: warning: this process is not in the host's user namespace: the "
    "binfmt_misc it changes is a private one, and the host's handlers stay as they were"
)
SHOWS_PRIVATE_WARNING = "unshare --user --map-root-user --mount"

NOT_RUN = {
    "./scripts/setup && binfmtctl install && binfmtctl status": "changes this machine "
    "(apt-get, /opt, /usr/local/bin, the global handlers); tests/test_setup.py runs "
    "scripts/setup into a private prefix, and install and status run here from other examples",
    "./scripts/test": "the test suite itself, which runs this file",
    "binfmtctl run --rootfs ./debian-arm64 -- apt-get install -y hello": "needs "
    "a Debian arm64 root and the network; tests/test_run_options.py runs apt-get in one",
    "binfmtctl run --rootfs ./debian-armhf -- apt-get install -y hello": "needs "
    "a Debian armhf root and the network; tests/test_run_options.py runs apt-get in arm64's",
    "binfmtctl shell ./debian-riscv64 -- apt-get install -y hello": "needs a Debian riscv64 "
    "root; tests/test_shell_command.py runs commands through shell",
    "binfmtctl rootfs create ./debian-arm64 --arch arm64": "builds a Debian root from the "
    "network (minutes); tests/test_rootfs.py builds one for real",
    "binfmtctl run --rootfs ./debian-arm64 --uid-map auto -- sh -c 'apt-get install -y hello "
    ">/dev/null && hello'": "needs that root; tests/test_rootfs.py runs it in the one it builds",
    "binfmtctl shell --uid-map auto ./debian-arm64": "needs that root, and a terminal",
    "binfmtctl rootfs create ./board-armhf.tar --arch armhf --format tar --include "
    "openssh-server,ifupdown": "builds from the network (minutes); tests/test_rootfs.py "
    "packs the tar of its arm64 root and builds armhf as an ordinary user",
    "binfmtctl rootfs create ./debian-arm64.image.tar --arch arm64 --format docker-archive": (
        "builds from the network; tests/test_rootfs.py makes this archive of its arm64 root"
    ),
    "podman load -i ./debian-arm64.image.tar && podman run --rm --platform linux/arm64 "
    "localhost/debian-arm64:bookworm uname -m": "podman on the host's storage; "
    "tests/test_rootfs.py loads both archives into a podman with its own storage",
    "binfmtctl rootfs info ./debian-arm64": "needs that root; tests/test_rootfs.py checks "
    "info of its root with and without a handler",
    "binfmtctl rootfs create ./jetson-rootfs --arch arm64 --distro ubuntu --suite jammy "
    "--include nano": "Ubuntu's mirrors are not reachable from the test machine; "
    "tests/test_rootfs.py checks the Ubuntu decisions (ports mirror, keyring, suites)",
    "binfmtctl test --engine docker arm64 riscv64": "needs a running Docker daemon; "
    "tests/test_engines.py runs this path against a private dockerd",
    "binfmtctl test --engine podman --image localhost/my-arm64-image arm64": "needs an "
    "arm64 image of the user's own; no registry is reachable offline",
    "docker build -t binfmtctl -f Containerfile .": "pulls a base image from a registry",
    "docker run --privileged --rm binfmtctl install": "needs the image built above, and "
    "changes the host's handlers",
    "docker run --privileged --rm binfmtctl status": "needs the image built above",
    "docker build -t registry.example.org/binfmtctl:1 -f Containerfile .": "pulls a base "
    "image from a registry",
    "docker push registry.example.org/binfmtctl:1": "needs a registry to push to",
    "kubectl apply -k deploy/kubernetes": "needs a Kubernetes cluster; tests/test_deploy.py "
    "validates the manifests against the Kubernetes schemas offline",
    "kubectl -n binfmtctl rollout status daemonset/binfmtctl-agent": "needs a Kubernetes cluster",
    "kubectl wait node/NODE --for=jsonpath='{.metadata.labels.binfmtctl\\.feature\\.node\\."
    "kubernetes\\.io/aarch64}'=true --timeout=10m": "needs a Kubernetes cluster with NFD",
    "kubectl taint node NODE binfmtctl/unproven=true:NoSchedule-": "needs a Kubernetes cluster",
    "binfmtctl why --rootfs ./arm64-rootfs /usr/bin/hello": "an ordinary user's advice, and "
    "it exits 1; tests/test_advice.py runs it as binfmtctl-test and compares the output",
    "binfmtctl run --arch arm -- arm64/busybox uname -m": "a failure (exit 126); "
    "tests/test_advice.py runs it as binfmtctl-test and compares the output",
}


@dataclass(frozen=True)
class Example:
    where: str  # README.md:LINE or `binfmtctl VERB --help`
    command: str
    expected: tuple[str, ...] | None  # None: output not shown


def _strip_comment(line: str) -> str:
    return re.split(r"\s{2,}#\s", line, maxsplit=1)[0].rstrip()


def readme_blocks(text: str) -> list[tuple[str, list[Example]]]:
    """(language, examples) of every fenced ```console/```sh/```python/```yaml block."""
    blocks: list[tuple[str, list[Example]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w+)", lines[i])
        if not fence:
            i += 1
            continue
        lang, start, i = fence.group(1), i + 1, i + 1
        body: list[tuple[int, str]] = []
        while lines[i] != "```":
            body.append((i + 1, lines[i]))
            i += 1
        i += 1
        if lang == "console":
            blocks.append((lang, _console(body)))
        elif lang == "sh":
            examples = [Example(f"README.md:{n}", _strip_comment(t), None) for n, t in body]
            blocks.append((lang, [e for e in examples if e.command]))
        elif lang == "python":
            blocks.append((lang, [Example(f"README.md:{n}", t, None) for n, t in body]))
        elif lang == "yaml":  # a Kubernetes object: tests/test_deploy.py validates it
            blocks.append(
                (lang, [Example(f"README.md:{start}", "\n".join(t for _, t in body), None)])
            )
        else:
            raise AssertionError(f"README.md:{start}: unknown block language {lang!r}")
    return blocks


def _console(body: list[tuple[int, str]]) -> list[Example]:
    examples: list[Example] = []
    current: tuple[int, str] | None = None
    output: list[str] = []

    def close() -> None:
        if current is not None:
            shown = tuple(output) if output else None
            examples.append(Example(f"README.md:{current[0]}", current[1], shown))

    for number, line in body:
        if line.startswith("$ "):
            close()
            current, output = (number, _strip_comment(line[2:])), []
        else:
            assert current is not None, f"README.md:{number}: output before any command"
            output.append(line)
    close()
    return examples


HELP_PAGES = ["", "status", "arches", "install", "uninstall", "enable", "disable", "explain",
              "export", "find", "why", "scan", "test", "run", "shell", "apply",
              "rootfs", "agent"]  # fmt: skip


@functools.cache
def help_examples(verb: str) -> list[str]:
    """The ``binfmtctl ...`` lines under "example(s):" in ``binfmtctl [VERB] --help``."""
    parser = build_parser(["--help"])  # every verb set up, as for --help
    if verb:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[verb]
    found, inside = [], False
    for line in parser.format_help().splitlines():
        if re.fullmatch(r"examples?:", line):
            inside = True
        elif inside and line and not line.startswith(" "):
            inside = False
        elif inside and line.startswith("  binfmtctl "):
            found.append(re.split(r"\s{2,}", line.strip(), maxsplit=1)[0])
    return found


_TIME = re.compile(r"\b\d+(?:\.\d+)? (?:ms|s)\b")


def normalise(line: str) -> str:
    """Timings become ``<time>`` and runs of spaces (table padding) two spaces."""
    return re.sub(r" {2,}", "  ", _TIME.sub("<time>", line))


def matches(expected: tuple[str, ...], actual: str) -> bool:
    """Whole-output match; ``...`` in a line is any text, a ``...`` line any lines.

    Both sides are normalised line by line first (:func:`normalise`).
    """
    actual = "".join(normalise(line) + "\n" for line in actual.splitlines())
    expected = tuple(normalise(line) for line in expected)
    parts = []
    for line in expected:
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*".join(re.escape(p) for p in line.split("...")) + r"\n")
    return re.fullmatch("".join(parts), actual) is not None


# -- the working directory and the runner -----------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    top = tmp_path_factory.mktemp("examples")
    for debian in ("arm64", "armhf"):
        (top / debian).mkdir()
        shutil.copy2(foreign_busybox(debian), top / debian / "busybox")
    root = top / "arm64-rootfs"
    shutil.copytree(foreign_busybox("arm64").parent.parent, root, symlinks=True)
    for applet in ("sh", "ls", "uname"):
        (root / "bin" / applet).symlink_to("busybox")
    probes.write("aarch64", top / "hello-arm64")
    conf = subprocess.run(
        [sys.executable, "-m", "binfmtctl", "export", "arm64", "armhf", "--format", "systemd"],
        capture_output=True,
        text=True,
        check=True,
    )
    (top / "my-handlers.conf").write_text(conf.stdout)
    bindir = top / ".bin"
    bindir.mkdir()
    wrapper = bindir / "binfmtctl"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m binfmtctl "$@"\n')
    wrapper.chmod(0o755)
    return top


def _env(workdir: Path) -> dict[str, str]:
    return {
        "PATH": f"{workdir / '.bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PYTHONPATH": str(ROOT / "src"),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "TERM": "dumb",
    }


def run_example(box: sandbox.Sandbox, workdir: Path, command: str) -> tuple[int, str]:
    """The exit status and the output (stdout and stderr interleaved) of ``sh -c COMMAND``."""
    proc = box.run(
        subprocess.run,
        ["sh", "-c", command],
        cwd=workdir,
        env=_env(workdir),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=120,
    )
    output = proc.stdout
    if SHOWS_PRIVATE_WARNING not in command:
        output = "".join(
            line
            for line in output.splitlines(keepends=True)
            if line.rstrip("\n") != PRIVATE_WARNING
        )
    return proc.returncode, output


def _check(box: sandbox.Sandbox, workdir: Path, example: Example) -> None:
    code, output = run_example(box, workdir, example.command)
    shown = f"{example.where}: $ {example.command}\n--- got (exit {code}):\n{output}"
    assert code == 0, shown
    if example.expected is not None:
        want = "\n".join(example.expected)
        assert matches(example.expected, output), f"{shown}--- expected:\n{want}\n"


# -- the tests -----------------------------------------------------------------------


BLOCKS = readme_blocks(README.read_text())
CONSOLE = [(n, ex) for n, (lang, ex) in enumerate(BLOCKS) if lang == "console"]


@needs_sandbox
@pytest.mark.parametrize(
    "examples", [ex for _, ex in CONSOLE], ids=[ex[0].where for _, ex in CONSOLE]
)
def test_readme_console_block(sb: sandbox.Sandbox, workdir: Path, examples: list[Example]) -> None:
    for example in examples:
        if example.command in NOT_RUN:
            continue
        _check(sb, workdir, example)


def test_readme_sh_blocks_are_all_accounted_for() -> None:
    """Every sh line either runs in a console block too or is in NOT_RUN with a reason."""
    for lang, examples in BLOCKS:
        if lang == "sh":
            for example in examples:
                assert example.command in NOT_RUN, f"{example.where}: {example.command}"


PAGES_WITH_EXAMPLES = [v for v in HELP_PAGES if help_examples(v)]


@needs_sandbox
@pytest.mark.parametrize(
    "verb", PAGES_WITH_EXAMPLES, ids=[v or "binfmtctl" for v in PAGES_WITH_EXAMPLES]
)
def test_help_examples_run(sb: sandbox.Sandbox, workdir: Path, verb: str) -> None:
    examples = [c for c in help_examples(verb) if c not in NOT_RUN]
    if verb:
        code, output = run_example(sb, workdir, "binfmtctl install")
        assert code == 0, output
    host_dirs = ("/etc/binfmt.d", "/usr/share/binfmts")
    host_before = {t: sorted(os.listdir(t)) for t in host_dirs}
    if verb == "export":
        # Its examples write to /etc/binfmt.d and /usr/share/binfmts: over both, an
        # empty tmpfs in the sandbox's own mount namespace (the host's stay as they are).
        for target in host_dirs:
            sb.run(sandbox.mount, "tmpfs", target, "tmpfs", 0, "mode=0755")
    for command in examples:
        _check(sb, workdir, Example(f"`binfmtctl {verb} --help`", command, None))
    if verb == "export":
        written = sb.run(os.listdir, "/etc/binfmt.d") + sb.run(os.listdir, "/usr/share/binfmts")
        assert sorted(written) == ["qemu-aarch64", "qemu-aarch64.conf"]
        assert {t: sorted(os.listdir(t)) for t in host_dirs} == host_before


def test_every_help_page_is_looked_at() -> None:
    parser = build_parser(["--help"])  # every verb set up, as for --help
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(HELP_PAGES) == sorted(["", *sub.choices])
    with_examples = {v for v in HELP_PAGES if help_examples(v)}
    assert with_examples == {"", "export", "find", "why", "scan", "test", "run", "shell", "apply"}


def test_not_run_entries_are_all_still_examples() -> None:
    """A reason for skipping an example that no longer exists is stale."""
    everywhere = {e.command for _, examples in BLOCKS for e in examples}
    for verb in HELP_PAGES:
        everywhere |= set(help_examples(verb))
    assert set(NOT_RUN) <= everywhere, set(NOT_RUN) - everywhere


@needs_sandbox
def test_readme_python_examples(workdir: Path) -> None:
    """``EXPR  # -> VALUE`` lines are evaluated (in a child: rootless.call forks)."""
    checked = 0
    for lang, examples in BLOCKS:
        if lang != "python":
            continue
        for example in examples:
            found = re.fullmatch(r"(.*?)\s+# -> (.*)", example.command)
            if not found:
                continue
            expr, value = found.groups()
            script = (
                "import sys\nfrom binfmtctl import rootless, sandbox\n"
                "from binfmtctl.rootless import RunOptions\n"
                f"result = {expr}\nprint(repr(result), file=sys.stderr)\n"
            )
            proc = subprocess.run(
                [sys.executable, "-c", script],
                cwd=workdir,
                env=_env(workdir),
                capture_output=True,
                text=True,
                check=False,
            )
            assert proc.returncode == 0, f"{example.where}: {proc.stderr}"
            assert proc.stderr.splitlines()[-1] == value, f"{example.where}: {proc.stderr}"
            checked += 1
    assert checked >= 2


def test_readme_python_names_exist() -> None:
    """The API lines that are not evaluated (they never return, or need a function) name
    things the module has."""
    modules = {"sandbox": sandbox, "rootless": rootless}
    names: set[tuple[str, str]] = set()
    for lang, examples in BLOCKS:
        if lang == "python":
            for e in examples:
                names |= set(re.findall(r"\b(sandbox|rootless)\.(\w+)\(", e.command))
    assert names >= {
        ("rootless", "call"),
        ("rootless", "exec_command"),
        ("sandbox", "run"),
        ("sandbox", "Sandbox"),
    }
    assert all(callable(getattr(modules[m], name, None)) for m, name in names), names


# -- the mask comparison table ------------------------------------------------------


def _debian_differences() -> tuple[int, dict[str, tuple[set[str], str, str]]]:
    """Debian's entry count, and field -> (arches, our mask, Debian's mask) where they differ."""
    from binfmtctl.arch import CATALOG
    from binfmtctl.entry import Entry
    from binfmtctl.explain import diff

    entries = []
    for conf in sorted(Path("/usr/lib/binfmt.d").glob("qemu-*.conf")):
        entries += [Entry.parse(x) for x in conf.read_text().splitlines() if x.startswith(":")]
    if not entries:
        pytest.skip("no /usr/lib/binfmt.d/qemu-*.conf (Debian's qemu-user-static) here")
    fields: dict[str, tuple[set[str], str, str]] = {}
    for theirs in entries:
        name = theirs.name.removeprefix("qemu-")
        magic, mask = CATALOG[name].magic_mask()
        ours = Entry(theirs.name, "M", "/x", magic=magic, mask=mask)
        masks: dict[str, tuple[list[str], list[str]]] = {}
        for a, b in diff(ours, theirs):
            row = a or b
            assert row is not None
            mine, other = masks.setdefault(row.field.split()[0], ([], []))
            mine.append(f"{a.mask:02x}" if a else "00")
            other.append(f"{b.mask:02x}" if b else "00")
        for field, (mine, other) in masks.items():
            arches, *_ = fields.setdefault(field, (set(), " ".join(mine), " ".join(other)))
            assert fields[field][1:] == (" ".join(mine), " ".join(other)), (name, field)
            arches.add(name)
    return len(entries), fields


def test_readme_mask_table_is_what_debians_files_say() -> None:
    total, fields = _debian_differences()
    text = README.read_text()
    said = re.search(r"(\d+) of its (\d+) entries differ", text)
    assert said is not None
    differing = set().union(*(arches for arches, _, _ in fields.values()))
    assert (int(said[1]), int(said[2])) == (len(differing), total)
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and re.match(r"(EI_|e_)\w+ \(byte", cells[0]):
            masks = [re.findall(r"`([0-9a-f ]+)`", c) for c in cells[2:]]
            rows[cells[0].split()[0]] = ({a.strip() for a in cells[1].split(",")}, *masks)
    assert rows == {f: (arches, [mine], [other]) for f, (arches, mine, other) in fields.items()}


def test_matcher() -> None:
    assert matches(("a", "b...d"), "a\nbcd\n")
    assert matches(("a", "...", "z"), "a\nb\nc\nz\n")
    assert matches(("a", "...", "z"), "a\nz\n")
    assert not matches(("a",), "a\nextra\n")
    assert not matches(("a", "b...d"), "a\nbce\n")
    assert not matches(("a",), "")
    assert matches(("x      ok  21 ms", "all in 0.03 s"), "x  ok      105 ms\nall in 1.5 s\n")
    assert not matches(("x  ok  21 ms",), "x  failed  21 ms\n")
    assert not matches(("ab",), "a b\n")  # one space is not padding


# -- as an ordinary user ------------------------------------------------------------

USER = "binfmtctl-test"
ROOTLESS = ("binfmtctl run ", "unshare --user ")  # what the README says any user can do


def _user_problem() -> str | None:
    if os.geteuid() != 0:
        return "needs root to switch to the test user"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no user {USER}: run scripts/test-deps as root"
    if not os.access("/usr/bin/python3", os.X_OK):
        return "no /usr/bin/python3 for the user to run binfmtctl with"
    return None


@pytest.fixture(scope="module")
def user_workdir(workdir: Path) -> Iterator[Path]:
    """The examples' directory and binfmtctl's source, owned by the test user.

    binfmtctl runs with the distro's python3: the test's own interpreter may sit
    where the user cannot read it (pyenv under /root).
    """
    top = Path(tempfile.mkdtemp(prefix="binfmtctl-readme-"))
    top.chmod(0o755)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    shutil.copytree(workdir, top / "work", symlinks=True, ignore=shutil.ignore_patterns(".bin"))
    shutil.copytree(ROOT / "src", top / "src", ignore=ignore)
    bindir = top / "work" / ".bin"
    bindir.mkdir()
    (bindir / "binfmtctl").write_text('#!/bin/sh\nexec /usr/bin/python3 -m binfmtctl "$@"\n')
    (bindir / "binfmtctl").chmod(0o755)
    entry = pwd.getpwnam(USER)
    for path in [top, *top.rglob("*")]:
        os.lchown(path, entry.pw_uid, entry.pw_gid)
    yield top / "work"
    shutil.rmtree(top)


def run_as_user(workdir: Path, command: str) -> tuple[int, str]:
    entry = pwd.getpwnam(USER)
    env = {**_env(workdir), "PYTHONPATH": str(workdir.parent / "src")}
    proc = subprocess.run(
        ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups",
         "sh", "-c", command],
        cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, check=False, timeout=120,
    )  # fmt: skip
    return proc.returncode, proc.stdout


@needs_sandbox
def test_rootless_examples_work_for_an_ordinary_user(user_workdir: Path) -> None:
    if problem := _user_problem():
        pytest.skip(problem)
    checked = 0
    for lang, examples in BLOCKS:
        for example in examples:
            if lang != "console" or not example.command.startswith(ROOTLESS):
                continue
            if example.command in NOT_RUN:
                continue
            code, output = run_as_user(user_workdir, example.command)
            shown = f"{example.where}: $ {example.command}\n--- got (exit {code}):\n{output}"
            assert code == 0, shown
            if example.expected is not None:
                assert matches(example.expected, output), shown
            checked += 1
    assert checked >= 5
