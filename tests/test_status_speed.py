"""`status` does its work once: each interpreter stat'ed and opened once, the
instance's entries read through one fd, the per-boot answers read without json.

No timings (benchmarks/startup.py has them): what is checked is what status
does and that its answers stay the same -- a file replaced between two runs
is seen as it is now, and each faster piece of code gives the answer of the
plain one it replaces (json.loads, shutil.which, elf.program_interpreter, a
byte-by-byte distance).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binfmtctl import bootcache, elf, explain, interpreters, pathsearch, sandbox
from binfmtctl.arch import CATALOG, Arch, Profile
from binfmtctl.cli import output
from binfmtctl.entry import Entry
from conftest import ROOT, foreign_busybox, missing, qemu
from json_documents import KEYS, SCALARS, documents
from test_program_interpreter import CLASSES, build

EMULATOR = "/usr/bin/qemu-aarch64-static"
ENTRY_NAMES = ("qemu-aarch64", "qemu-riscv64", "qemu-s390x", "qemu-ppc64le")


def _run(box: sandbox.Sandbox, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return box.run(
        subprocess.run,
        argv,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **env},
    )


def _status(box: sandbox.Sandbox, **env: str) -> dict[str, Any]:
    done = _run(box, [sys.executable, "-m", "binfmtctl", "status", "--json"], **env)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)["data"]
    return data


def _strace(box: sandbox.Sandbox, *args: str) -> list[str]:
    """The file system calls of ``binfmtctl ARGS`` (and anything it starts)."""
    if shutil.which("strace") is None:
        missing("strace is not installed")
    argv = ["strace", "-f", "-qq", "-e", "trace=%file,fstatfs", "-o", "/dev/stderr"]
    done = _run(box, [*argv, sys.executable, "-m", "binfmtctl", *args])
    assert done.returncode == 0, done.stderr
    return done.stderr.splitlines()


def _install(box: sandbox.Sandbox, *arches: str) -> None:
    for arch in arches:
        done = _run(box, [sys.executable, "-m", "binfmtctl", "install", arch])
        assert done.returncode == 0, done.stderr


# -- each interpreter looked at once ------------------------------------------------


def test_each_interpreter_is_stated_and_opened_once(sb: sandbox.Sandbox) -> None:
    """One stat (exists? the argv[0] verdict's key) and one open (header, loader) per
    emulator; before, status stat'ed it three times and opened it twice (plus the
    /proc/self/fd reopen)."""
    qemu("qemu-aarch64")
    _install(sb, "arm64")
    calls = [c for c in _strace(sb, "status", "--json") if f'"{EMULATOR}"' in c]
    syscalls = [c.split(None, 1)[1].split("(", 1)[0] for c in calls]  # "PID NAME(ARGS) = N"
    opens = [c for c, name in zip(calls, syscalls, strict=True) if "open" in name]
    stats = [c for c, name in zip(calls, syscalls, strict=True) if "stat" in name]
    assert len(opens) == 1, calls
    assert "O_PATH" not in opens[0]
    assert len(stats) == 1, calls
    assert not [c for c in calls if c not in opens + stats], calls  # no access(), no readlink


def test_the_instance_is_opened_once_whatever_the_number_of_entries(
    sb: sandbox.Sandbox,
) -> None:
    """Instance.entries reads every entry through one proved fd of the mountpoint."""
    for stem in ENTRY_NAMES:
        qemu(stem)
    mountpoint = sandbox.DEFAULT_MOUNTPOINT

    def opens_of_the_mountpoint() -> int:
        calls = _strace(sb, "status", "--json")
        return sum(1 for c in calls if f'"{mountpoint}", O_RDONLY' in c)

    _install(sb, "arm64")
    with_one = opens_of_the_mountpoint()
    _install(sb, "riscv64", "s390x", "ppc64le")
    names = {e["name"] for e in _status(sb)["entries"]}
    assert names == set(ENTRY_NAMES)
    assert opens_of_the_mountpoint() == with_one


def _entry(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in data["entries"] if e["name"] == name)
    return found


def test_a_replaced_emulator_is_seen_as_it_is_now(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    """Between two status runs the emulator file is replaced by a dynamic program, a
    FIFO, then removed: each run says what is there now, and the argv[0] verdict kept
    for the old file (keyed by device, inode, size and mtime) is not given to the new."""
    qemu("qemu-aarch64")
    emulator = tmp_path / "qemu-aarch64-static"
    shutil.copy2(EMULATOR, emulator)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {"XDG_RUNTIME_DIR": str(runtime)}  # this test's own per-boot answers
    install = [sys.executable, "-m", "binfmtctl", "install", "arm64", "--interpreter"]
    done = _run(sb, [*install, str(emulator)], **env)
    assert done.returncode == 0, done.stderr

    first = _entry(_status(sb, **env), "qemu-aarch64")
    assert "F" in first["entry"]["flags"]
    assert first["problems"] == []
    assert first["argv0"] is not None  # install's verdict, kept for this boot
    assert first["argv0"]["code"] in ("kept", "replaced", "probe_failed")

    new = tmp_path / "new"
    shutil.copy2("/usr/bin/true", new)  # dynamically linked, this machine's CPU
    os.replace(new, emulator)
    dynamic = _entry(_status(sb, **env), "qemu-aarch64")
    assert dynamic["problems"] == [
        f"interpreter {emulator} is dynamically linked: with F it still needs its "
        "libraries inside chroots and containers"
    ]
    assert dynamic["argv0"] is None

    emulator.unlink()
    os.mkfifo(emulator)
    fifo = _entry(_status(sb, **env), "qemu-aarch64")  # never waits on the FIFO
    assert fifo["problems"] == [
        f"interpreter {emulator} cannot run on this machine: not a regular file"
    ]
    assert fifo["argv0"] is None

    emulator.unlink()
    gone = _entry(_status(sb, **env), "qemu-aarch64")
    assert gone["problems"] == [
        f"interpreter {emulator} no longer exists (the kernel still holds the file it "
        "opened at registration; it will be gone after a reboot)"
    ]
    assert gone["argv0"] is None


# -- one open gives what two did -----------------------------------------------------


def _loader(path: Path) -> str | None:
    """What status asked before: elf.program_interpreter, None where it raises."""
    try:
        return elf.program_interpreter(path)
    except OSError:
        return None


def _odd_files(tmp_path: Path) -> list[Path]:
    out = []
    for elf_class, order in CLASSES:
        for name, data in {
            "dynamic": build(elf_class, order, b"/lib/ld-test.so.1"),
            "static": build(elf_class, order, None),
            "odd-entry-size": build(elf_class, order, b"/lib/ld.so", phentsize=3),
            "no-phdrs": build(elf_class, order, b"/lib/ld.so", phnum=0),
            "table-cut": build(elf_class, order, b"/lib/ld.so", table_cut=1),
            "header-cut": build(elf_class, order, b"/lib/ld.so")[:40],
            "long-loader": build(elf_class, order, b"/" + b"x" * 5000),
            "odd-bytes": build(elf_class, order, b"/lib/ld-\xff.so"),
        }.items():
            path = tmp_path / f"{name}-{elf_class}{order}"
            path.write_bytes(data)
            out.append(path)
    (tmp_path / "script").write_bytes(b"#!/bin/sh\nexit 0\n")
    (tmp_path / "empty").write_bytes(b"")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    out += [tmp_path / n for n in ("script", "empty", "fifo", "dangling", "missing")]
    return out


def test_look_gives_fitness_and_loader_of_one_open(tmp_path: Path) -> None:
    qemu("qemu-aarch64")
    paths = [
        *_odd_files(tmp_path),
        tmp_path,  # a directory
        Path("/dev/null"),
        Path(EMULATOR),
        Path("/usr/bin/true"),
        foreign_busybox("arm64"),
    ]
    for families in ({"x86"}, {"arm"}, None):
        for path in paths:
            fit = interpreters.fitness(str(path), families)
            assert interpreters.look(str(path), families) == (fit, None), path
            found = interpreters.look(str(path), families, loader=True)
            assert found == (fit, _loader(path)), path
    assert interpreters.look(EMULATOR, {"x86"}, loader=True)[1] is None  # static
    true_loader = interpreters.look("/usr/bin/true", {"x86"}, loader=True)[1]
    assert true_loader is not None
    assert true_loader.startswith("/lib")


# -- the per-boot answers without json -------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(st.characters(exclude_categories=())),
)
_documents = st.dictionaries(
    st.text(),
    st.recursive(
        _scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(), inner, max_size=4)
        ),
        max_leaves=20,
    ),
    max_size=5,
)


def _both(data: bytes) -> tuple[tuple[str, str], tuple[str, str]]:
    def one(reader: Any) -> tuple[str, str]:
        try:
            return "value", repr(reader(data))
        except ValueError as err:
            return "error", f"{type(err).__name__}: {err}"

    return one(bootcache.loads), one(json.loads)


@settings(deadline=None, max_examples=300)
@given(_documents, st.sampled_from(["compact", "indent", "spaced"]))
def test_loads_reads_what_json_loads_reads(document: dict[str, Any], style: str) -> None:
    text = {
        "compact": json.dumps(document),
        "indent": json.dumps(document, indent=2, ensure_ascii=False),
        "spaced": f" {json.dumps(document)}\n",
    }[style]
    ours, theirs = _both(text.encode("utf-8", "surrogatepass"))  # a lone surrogate too
    assert ours == theirs


@settings(deadline=None, max_examples=300)
@given(_documents, st.integers(min_value=0), st.binary(max_size=3))
def test_loads_of_damaged_text_is_json_loads(
    document: dict[str, Any], at: int, junk: bytes
) -> None:
    """A cut, an inserted byte, another encoding: the same value or the same error."""
    raw = json.dumps(document).encode()
    at %= len(raw) + 1
    for damaged in (
        raw[:at],
        raw[:at] + junk + raw[at:],
        raw.decode().encode("utf-16-le"),
        b"\xef\xbb\xbf" + raw,
    ):
        ours, theirs = _both(damaged)
        assert ours == theirs, damaged


def test_loads_answers_for_the_cache_files_as_written(tmp_path: Path) -> None:
    where = tmp_path / "answer.json"
    verdict = {"keeps": True, "code": "kept", "detail": None}
    payload: dict[str, object] = {"emulators": {"aarch64 1:2:3:4": verdict}}
    bootcache.write_json(where, payload)
    assert bootcache.read_json(where) == {**payload, "key": bootcache.key()}
    assert bootcache.loads(where.read_bytes()) == json.loads(where.read_bytes())


# -- --json made safe in the same walk that writes it -----------------------------------

_safe_scalars = st.one_of(SCALARS, st.sampled_from(["\udcff", "\\xff", "caf\u00e9", "\ud800"]))
_safe_keys = st.one_of(KEYS, st.sampled_from(["\udcff", "\\xff"]))


@settings(deadline=None, max_examples=500)
@given(documents(_safe_scalars, _safe_keys))
def test_safe_dumps_is_dumps_of_json_safe(value: object) -> None:
    """One walk gives the text of json_safe then dumps: undecodable names as byte lists,
    keys as json_safe writes (and merges) them, floats and odd keys left to json."""
    assert output.dumps(value, safe=True) == output.dumps(output.json_safe(value))


def test_safe_dumps_merges_keys_as_json_safe_does() -> None:
    value = {"\udcff": 1, "\\xff": 2, "name": ["a\udcfe", "\u00e9"]}
    assert output.dumps(value, safe=True) == output.dumps(output.json_safe(value))
    assert json.loads(output.dumps(value, safe=True)) == {"\\xff": 2, "name": [[97, 254], "\u00e9"]}


# -- engines found on PATH as shutil.which finds them ------------------------------------


def test_which_finds_what_shutil_which_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dirs = {name: tmp_path / name for name in ("a", "b", "c", "d", "e")}
    for directory in dirs.values():
        directory.mkdir()
    (dirs["a"] / "docker").write_text("not executable")
    (dirs["b"] / "docker").mkdir()  # a directory, even an executable one
    (dirs["c"] / "docker").write_text("#!/bin/sh\n")
    (dirs["c"] / "docker").chmod(0o755)
    (dirs["d"] / "podman").symlink_to(dirs["c"] / "docker")
    (dirs["e"] / "podman").symlink_to(tmp_path / "nowhere")
    monkeypatch.chdir(dirs["c"])
    a, b, c, d, e = (str(p) for p in dirs.values())
    paths = [
        None,
        "",
        ":",
        f"{a}:{b}",
        f"{a}:{b}:{c}",
        f"{c}:{c}:{a}",
        f"{e}:{d}",
        f"{e}::{d}",
        f"{a}:",
        "c",
        f"{tmp_path}/missing:{d}",
    ]
    for path in paths:
        for name in ("docker", "podman"):
            assert pathsearch.which(name, path) == shutil.which(name, path=path), (path, name)
    assert pathsearch.which("docker", f"{a}:{b}:{c}") == f"{c}/docker"
    monkeypatch.delenv("PATH")
    assert pathsearch.which("docker", None) == shutil.which("docker")


# -- recognise's distance on integers --------------------------------------------------


def _misfit_by_bytes(entry: Entry, arch: Arch) -> int:
    """The distance as first written: byte by byte over both entries' views."""
    magic, mask = arch.magic_mask(Profile.QEMU)
    ours = explain._View(Entry("x", "M", "/x", magic=magic, mask=mask))
    theirs = explain._View(entry)
    end = max(len(magic), entry.offset + len(entry.magic))
    score = 0
    for pos in range(end):
        a_mask, b_mask = ours.mask_at(pos), theirs.mask_at(pos)
        a_val = (ours.magic_at(pos) or 0) & a_mask
        b_val = (theirs.magic_at(pos) or 0) & b_mask
        score += bin(a_mask ^ b_mask).count("1") + bin((a_val ^ b_val) & a_mask & b_mask).count("1")
    return score


@st.composite
def _entries(draw: st.DrawFn) -> Entry:
    arch = draw(st.sampled_from(list(CATALOG.values())))
    magic, mask = arch.magic_mask(draw(st.sampled_from(list(Profile))))
    cut = draw(st.integers(min_value=1, max_value=len(magic)))
    offset = draw(st.integers(min_value=0, max_value=40))
    noise = draw(st.binary(min_size=cut, max_size=cut))
    loosen = draw(st.binary(min_size=cut, max_size=cut))
    flips = [draw(st.sampled_from([0, 0, 0xFF])) & n for n in noise]
    magic = bytes(m ^ f for m, f in zip(magic[:cut], flips, strict=True))
    kept = draw(st.booleans())
    loose = bytes(k & ~lo & 0xFF for k, lo in zip(mask[:cut], loosen, strict=True))
    mask_bytes = loose if kept else None
    return Entry("x", "M", "/x", offset=offset, magic=magic, mask=mask_bytes)


@settings(deadline=None, max_examples=300)
@given(_entries(), st.sampled_from(list(CATALOG.values())))
def test_misfit_is_the_byte_by_byte_distance(entry: Entry, arch: Arch) -> None:
    assert explain._misfit(entry, arch) == _misfit_by_bytes(entry, arch)


def _recognise_plainly(entry: Entry) -> Arch | None:
    """recognise as first written: every profile compared afresh, the kernel's own
    test (Entry.matches) on every sample, the byte-by-byte distance."""
    for arch in CATALOG.values():
        for profile in Profile:
            if entry.offset == 0 and (entry.magic, entry.mask) == arch.magic_mask(profile):
                return arch
    hits = [a for a in CATALOG.values() if entry.matches(explain.sample_header(a))]
    if not hits or len({(a.elf_class, a.data, a.machine) for a in hits}) > 1:
        return None
    return min(hits, key=lambda a: _misfit_by_bytes(entry, a))


@settings(deadline=None, max_examples=500)
@given(_entries())
def test_recognise_answers_as_first_written(entry: Entry) -> None:
    assert explain.recognise(entry) is _recognise_plainly(entry)


# -- what status imports ----------------------------------------------------------------


def test_status_module_imports_typing_only_for_type_checkers() -> None:
    """cli/status.py imports typing only under ``if TYPE_CHECKING`` (never at run time)."""
    tree = ast.parse((ROOT / "src" / "binfmtctl" / "cli" / "status.py").read_text())
    guarded = {
        id(node)
        for stmt in tree.body
        if isinstance(stmt, ast.If) and ast.unparse(stmt.test) == "TYPE_CHECKING"
        for node in ast.walk(stmt)
    }
    typing_imports = [
        node
        for node in ast.walk(tree)
        if (isinstance(node, ast.ImportFrom) and node.module == "typing")
        or (isinstance(node, ast.Import) and any(a.name == "typing" for a in node.names))
    ]
    assert typing_imports, "the check would find a typing import"
    assert [n.lineno for n in typing_imports if id(n) not in guarded] == []


def test_status_imports_neither_json_shutil_typing_re_nor_credentials(
    sb: sandbox.Sandbox,
) -> None:
    """With this boot's answers stored, status reads them and writes --json without
    json; the engine survey needs no shutil; nothing of status needs typing or re;
    credentials only for an entry with C."""
    qemu("qemu-aarch64")
    _install(sb, "arm64")
    for args in (["status"], ["status", "--json"]):
        argv = [sys.executable, "-X", "importtime", "-m", "binfmtctl", *args]
        done = _run(sb, argv)
        assert done.returncode == 0, done.stderr
        imported = {
            line.rsplit("|", 1)[-1].strip()
            for line in done.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert "binfmtctl.cli.status" in imported  # the record is real
        unwanted = {"json", "shutil", "typing", "re", "binfmtctl.credentials"}
        assert imported & unwanted == set(), args
