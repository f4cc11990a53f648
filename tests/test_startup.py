"""Start-up work is done once: recognise's catalog table, one emulator search per arch,
native detection once per boot for every user; and the hot verbs (run, install,
uninstall, status, enable, disable) work without the heavy modules they must not load.

No timings here (those are in benchmarks/startup.py): what is checked is that
work is not repeated and that imports are not needed, both of which can fail.
"""

from __future__ import annotations

import codecs
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from binfmtctl import arch as _arch
from binfmtctl import host, interpreters, plan, rootless, sandbox
from binfmtctl.arch import CATALOG, Arch, Profile
from binfmtctl.entry import Entry, Handler
from binfmtctl.explain import _misfit, recognise, sample_header
from conftest import ROOT, foreign_busybox, qemu

BINFMT_D = Path("/usr/lib/binfmt.d")


def reference_recognise(entry: Entry) -> Arch | None:
    """recognise as the plain definition: every profile of every arch, computed afresh."""
    if entry.kind != "M":
        return None
    for arch in CATALOG.values():
        for profile in Profile:
            if entry.offset == 0 and (entry.magic, entry.mask) == arch.magic_mask(profile):
                return arch
    hits = []
    for arch in CATALOG.values():
        magic, _ = arch.magic_mask(Profile.QEMU)
        if entry.matches(magic + bytes(256 - len(magic))):
            hits.append(arch)
    if not hits or len({(a.elf_class, a.data, a.machine) for a in hits}) > 1:
        return None
    return min(hits, key=lambda a: _misfit(entry, a))


def _unescape(text: str) -> bytes:
    return codecs.escape_decode(text.encode())[0]


def sample_entries() -> list[Entry]:
    """Exact, loosened and cut-down catalog entries, upstream QEMU's and the distro's."""
    out = []
    for arch in CATALOG.values():
        for profile in Profile:
            magic, mask = arch.magic_mask(profile)
            out.append(Entry("x", "M", "/x", magic=magic, mask=mask))
            out.append(Entry("x", "M", "/x", magic=magic))  # no mask: every bit checked
            out.append(Entry("x", "M", "/x", magic=magic[:20], mask=mask[:20]))
            loose = bytes(b & 0xF0 for b in mask)
            out.append(Entry("x", "M", "/x", magic=magic, mask=loose))
    out.append(Entry("x", "M", "/x", magic=_arch.ELF_MAGIC))
    out.append(Entry("x", "M", "/x", magic=b"MZ"))
    out.append(Entry("x", "M", "/x", offset=2, magic=b"LF"))
    out.append(Entry("x", "E", "/x", extension="jar"))
    data = ROOT / "tests" / "data" / "qemu-upstream-binfmt.txt"
    for line in data.read_text().splitlines():
        if line and not line.startswith("#"):
            _, magic_text, mask_text = line.split()
            out.append(
                Entry("x", "M", "/x", magic=_unescape(magic_text), mask=_unescape(mask_text))
            )
    for conf in sorted(BINFMT_D.glob("*.conf")):
        lines = [ln for ln in conf.read_text().splitlines() if ln and ln[0] not in "#;"]
        out.extend(Entry.parse(ln) for ln in lines[:1])
    return out


def test_recognise_answers_as_the_plain_definition() -> None:
    entries = sample_entries()
    answers = [(recognise(e), reference_recognise(e)) for e in entries]
    assert [i for i, (new, old) in enumerate(answers) if new is not old] == []
    found = {new for new, _ in answers}
    assert None in found
    assert len(found) > 30  # most arches were recognised, not just a few


def test_recognise_computes_no_magic_after_its_first_use(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = sample_entries()
    before = [recognise(e) for e in entries]

    def computed_again(self: Arch, profile: Profile | str = Profile.QEMU) -> tuple[bytes, bytes]:
        raise AssertionError(f"magic_mask({self.name}, {profile}) computed again")

    monkeypatch.setattr(Arch, "magic_mask", computed_again)
    assert [recognise(e) for e in entries] == before
    assert sample_header(CATALOG["aarch64"])[18:20] == b"\xb7\x00"


def _count_inspections(body: Callable[[], None]) -> dict[str, int]:
    """Call ``body`` (in this forked child) with a counting wrapper around the real inspect."""
    seen: Counter[str] = Counter()
    real = interpreters.inspect

    def counting(path: str) -> interpreters.Interpreter:
        seen[path] += 1
        return real(path)

    interpreters.inspect = counting
    try:
        body()
    finally:
        interpreters.inspect = real
    return dict(seen)


def _install_every_found() -> None:
    from binfmtctl.cli import main

    assert main(["install", "--json"]) == 0


def _register_every_found() -> None:
    steps = rootless.register_handlers(None)
    assert steps and all(s.action == plan.REGISTER for s in steps)


@pytest.mark.parametrize("body", [_install_every_found, _register_every_found])
def test_each_emulator_is_looked_at_once(sb: sandbox.Sandbox, body: Callable[[], None]) -> None:
    """``install`` and ``run`` with no ARCH: default_arches and the plan share one search."""
    qemu("qemu-aarch64")
    seen = sb.run(_count_inspections, body)
    assert seen, "no emulator was looked at"
    assert {path: n for path, n in seen.items() if n != 1} == {}
    assert "/usr/bin/qemu-aarch64-static" in seen


def test_plan_without_a_shared_search_still_plans(tmp_path: Path) -> None:
    """Callers that pass no ``searched`` (export) get the same steps."""
    qemu("qemu-aarch64")
    options = plan.Options()
    shared: plan.Searched = {}
    arches = plan.default_arches(options, shared)
    assert CATALOG["aarch64"] in arches
    assert set(shared) >= {a.name for a in arches}
    with_shared = plan.plan_install(arches, {}, options, shared)
    alone = plan.plan_install(arches, {}, options)
    assert [s.to_dict() for s in with_shared] == [s.to_dict() for s in alone]


# -- the hot verbs without heavy modules ------------------------------------------

# A child that makes the named modules unimportable, then runs the real CLI.
BLOCKED_RUNNER = """\
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # import raises ImportError
from binfmtctl.cli import main
sys.exit(main(sys.argv[2:]))
"""

#: Modules no hot verb may need: an ELF library, ldconfig through ctypes.util, the
#: subprocess machinery (nothing is spawned), platform (os.uname says the same), what
#: only persistence (tempfile) or container-engine checks (tarfile, hashlib, secrets)
#: use, what only a forked sandbox call uses (pickle, traceback), and frameworks.
NEVER = [
    "elftools", "ctypes.util", "subprocess", "tempfile", "random", "tarfile", "hashlib",
    "secrets", "platform", "pickle", "traceback", "concurrent.futures", "logging", "asyncio",
]  # fmt: skip


def blocked(
    box: sandbox.Sandbox, modules: list[str], *args: str
) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", BLOCKED_RUNNER, ",".join(modules), *args]
    return box.run(subprocess.run, argv, capture_output=True, text=True, check=False)


def test_hot_verbs_need_no_heavy_module(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    qemu("qemu-riscv64")
    busybox = str(foreign_busybox("arm64"))
    steps = [
        ("install", "arm64", "riscv64"),
        ("status",),
        ("status", "--json"),
        ("disable", "qemu-riscv64"),
        ("enable", "qemu-riscv64"),
        ("uninstall", "riscv64"),
        ("run", "--arch", "arm64", "--", busybox, "true"),
    ]
    for args in steps:
        done = blocked(sb, NEVER, *args)
        assert (args, done.returncode) == (args, 0), done.stderr
        assert "Traceback" not in done.stderr


# -- native detection: once per boot, for every user --------------------------------


def _key() -> str:
    return host._cache_key()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (lambda: json.dumps({"key": _key(), "native": ["x86_64", "i386"]}), ("x86_64", "i386")),
        (lambda: json.dumps({"key": "another boot", "native": ["x86_64"]}), None),
        (lambda: json.dumps({"key": _key(), "native": "x86_64"}), None),
        (lambda: json.dumps({"key": _key(), "native": [1, 2]}), None),
        (lambda: json.dumps(["x86_64"]), None),
        (lambda: "{not json", None),
        (lambda: "", None),
    ],
)
def test_cache_answers_only_for_this_boot_and_a_list_of_names(
    tmp_path: Path, content: Callable[[], str], expected: tuple[str, ...] | None
) -> None:
    path = tmp_path / "native.json"
    path.write_text(content())
    assert host._read_cache(path) == expected


def test_cache_that_is_a_fifo_symlink_or_directory_is_not_read(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"key": _key(), "native": ["x86_64"]}))
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)  # a blocking open would hang here
    link = tmp_path / "link.json"
    link.symlink_to(good)
    assert host._read_cache(good) == ("x86_64",)
    for path in (fifo, link, tmp_path, tmp_path / "missing.json"):
        assert host._read_cache(path) is None, path


@pytest.mark.parametrize(
    ("uid_map", "euid", "outside"),
    [
        ("         0          0 4294967295\n", 0, 0),
        ("         0       1001          1\n", 0, 1001),
        ("         0     100000      65536\n", 33, 100033),
        ("         0       1001          1\n", 5, None),
        ("garbage\n", 0, None),
    ],
)
def test_outside_uid_reads_the_namespace_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uid_map: str, euid: int, outside: int | None
) -> None:
    path = tmp_path / "uid_map"
    path.write_text(uid_map)
    monkeypatch.setattr(os, "geteuid", lambda: euid)  # another uid than the test's own
    assert host._outside_uid(str(path)) == outside


def test_cache_file_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """$XDG_RUNTIME_DIR first; /run for real root; else the user's cache directory.

    Which uid is outside the namespace is replaced by a stand-in for the user
    case: the test runs as one uid only.
    """
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1001")
    assert host._cache_file() == Path("/run/user/1001/binfmtctl/native.json")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(host, "_outside_uid", lambda: 0)
    assert host._cache_file() == Path("/run/binfmtctl/native.json")
    monkeypatch.setattr(host, "_outside_uid", lambda: 1001)
    monkeypatch.setenv("HOME", "/home/someone")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert host._cache_file() == Path("/home/someone/.cache/binfmtctl/native.json")
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/someone")
    assert host._cache_file() == Path("/var/cache/someone/binfmtctl/native.json")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert host._cache_file() is None
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME")
    assert host._cache_file() is None


def test_run_as_a_user_without_a_runtime_dir_detects_native_arches_once() -> None:
    """The rootless case of CI jobs: no $XDG_RUNTIME_DIR, and uid 0 inside the namespace.

    The answer is stored in the user's cache directory by the first run; the
    second run must find it (the file is not written again: same inode).
    """
    from test_run import SYSTEM_PYTHON, USER, _as_user, _user_problem, _user_tree, program

    problem = _user_problem()
    if problem:
        pytest.skip(problem)
    qemu("qemu-aarch64")
    home = Path(tempfile.mkdtemp(prefix="binfmtctl-home-"))
    try:
        entry = pwd.getpwnam(USER)
        os.chown(home, entry.pw_uid, entry.pw_gid)
        argv = _as_user(
            "env", "-u", "XDG_RUNTIME_DIR", "-u", "XDG_CACHE_HOME", f"HOME={home}",
            f"PYTHONPATH={_user_tree() / 'src'}", SYSTEM_PYTHON, "-m", "binfmtctl",
            "run", "--arch", "arm64", "--", program("user", "arm64"), "true",
        )  # fmt: skip
        first = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        assert (first.returncode, first.stderr) == (0, "")
        cache = home / ".cache" / "binfmtctl" / "native.json"
        before = cache.stat()
        assert before.st_uid == entry.pw_uid
        me = host.host_arch()
        assert me is not None and me.name in host._read_cache(cache)  # type: ignore[operator]
        second = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/")
        assert (second.returncode, second.stderr) == (0, "")
        after = cache.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    finally:
        shutil.rmtree(home)


def _status_reads() -> tuple[int, int]:
    """``status --json`` in this forked child: (exit code, how often the entries were read)."""
    from binfmtctl.cli import main
    from binfmtctl.instance import Instance

    calls = []
    real = Instance.entries

    def counting(self: Instance) -> list[Handler]:
        calls.append(self.mountpoint)
        return real(self)

    Instance.entries = counting  # type: ignore[method-assign]
    try:
        code = main(["status", "--json"])
    finally:
        Instance.entries = real  # type: ignore[method-assign]
    return code, len(calls)


def test_status_reads_the_entries_once(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    qemu("qemu-riscv64")
    assert sb.run(_install_every_found) is None
    assert sb.run(_status_reads) == (0, 1)
