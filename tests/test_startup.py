"""Start-up work is done once: recognise's catalog table, one emulator search per arch,
native detection once per boot for every user; and the hot verbs (run, install,
uninstall, status, enable, disable) work without the heavy modules they must not load.

No timings here (those are in benchmarks/startup.py): what is checked is that
work is not repeated and that imports are not needed, both of which can fail;
and, per hot verb, which binfmtctl module imports dataclasses, inspect, pathlib
or json (an import budget: the core itself imports none of them), and that what
they load imports no typing.
"""

from __future__ import annotations

import ast
import codecs
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings

from binfmtctl import arch as _arch
from binfmtctl import hostfacts, interpreters, plan, runplan, sandbox
from binfmtctl.arch import CATALOG, Arch, Profile
from binfmtctl.cli import output
from binfmtctl.entry import Entry, Handler
from binfmtctl.explain import _misfit, recognise, sample_header
from conftest import ROOT, foreign_busybox, qemu
from json_documents import documents

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
    steps = runplan.register_handlers(None)
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
    arches = hostfacts.default_arches(options, shared)
    assert CATALOG["aarch64"] in arches
    assert set(shared) >= {a.name for a in arches}
    with_shared = plan.plan_install(arches, {}, options, hostfacts.gather(arches, options, shared))
    alone = plan.plan_install(arches, {}, options, hostfacts.gather(arches, options))
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


#: What a plain form (read without argparse, binfmtctl.cli.quick) never loads: argparse
#: and what building its parser pulls in (gettext, locale; shutil for the help width).
NO_PARSER = ["argparse", "gettext", "locale", "shutil"]
#: ...nor persistence (only --persist writes or forgets boot configuration), nor
#: explain (only `uninstall --all` and a differing same-named entry recognise one).
NO_PERSIST = ["binfmtctl.persist", "binfmtctl.files", "binfmtctl.binfmts", "binfmtctl.binfmt_d"]
#: ...and where no handler is planned, no host facts, no argv[0] verdicts, no json.
NO_PLANNING = ["binfmtctl.hostfacts", "binfmtctl.argv0", "binfmtctl.native", "json"]

PLAIN_BUDGET: list[tuple[tuple[str, ...], list[str]]] = [
    (("install", "arm64", "riscv64"), [*NO_PARSER, *NO_PERSIST, "binfmtctl.explain"]),
    (("install", "--dry-run", "--flags=F", "arm64"), [*NO_PARSER, *NO_PERSIST, "binfmtctl.argv0"]),
    (("disable", "qemu-riscv64"), [*NO_PARSER, *NO_PERSIST, *NO_PLANNING, "binfmtctl.explain"]),
    (("enable", "qemu-riscv64"), [*NO_PARSER, *NO_PERSIST, *NO_PLANNING, "binfmtctl.explain"]),
    (("uninstall", "riscv64"), [*NO_PARSER, *NO_PERSIST, *NO_PLANNING, "binfmtctl.explain"]),
    (("uninstall", "--all", "--dry-run"), [*NO_PARSER, *NO_PERSIST, *NO_PLANNING]),
    (("status",), NO_PARSER[:3]),  # shutil: its container-engine survey (which) uses it
]


def test_plain_forms_load_no_parser_and_nothing_they_do_not_use(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    qemu("qemu-riscv64")
    for args, never in PLAIN_BUDGET:
        done = blocked(sb, never, *args)
        assert (args, done.returncode, "Traceback" in done.stderr) == (args, 0, False), done.stderr
    # The blocking is real: the same modules blocked, argparse's forms and --persist fail.
    for args in [("install", "--help"), ("install", "--persist", "--root", "/nonexistent")]:
        done = blocked(sb, [*NO_PARSER, *NO_PERSIST], *args)
        assert done.returncode != 0
        assert "ImportError" in done.stderr or "ModuleNotFoundError" in done.stderr, args


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


# -- import budget per hot verb ----------------------------------------------------

# A child that records, for each watched module, which binfmtctl module's code first
# imported it (directly or through the stdlib: inspect comes with dataclasses), then
# runs the real CLI and prints the record as its last stderr line.
RECORDING_RUNNER = """\
import sys
WATCHED = set(sys.argv[1].split(","))
found = {}

class Recorder:
    def find_spec(self, name, path=None, target=None):
        if name in WATCHED and name not in found:
            frame = sys._getframe(1)
            while frame is not None and not str(frame.f_globals.get("__name__")).startswith(
                "binfmtctl"
            ):
                frame = frame.f_back
            found[name] = None if frame is None else frame.f_globals["__name__"]
        return None

sys.meta_path.insert(0, Recorder())
from binfmtctl.cli import main
code = main(sys.argv[2:])
sys.meta_path.pop(0)
sys.stderr.write("\\nIMPORTED-BY " + repr(sorted(found.items())) + "\\n")
sys.exit(code)
"""

#: Modules the hot verbs' own code must not import: ``dataclasses`` (it brings
#: inspect, ast, dis and tokenize, and each frozen dataclass costs ~0.4 ms to
#: create), ``pathlib`` (os.path does), ``json`` (only ``--json`` output needs it).
WATCHED = ["dataclasses", "inspect", "pathlib", "json"]

#: Modules outside the hot core that still import some of them, with what: the
#: per-boot answers kept as JSON (bootcache: native arches, argv[0] verdicts).
#: Nothing else may.
STILL_ALLOWED = {
    "binfmtctl.bootcache": {"json"},
}

#: Per verb: the importers allowed beyond STILL_ALLOWED. enable/disable never touch
#: the per-boot caches or the engine survey, so for them nothing at all is allowed;
#: status reads those caches (bootcache.loads) and writes --json (output.dumps)
#: without json, once install has stored this boot's answers.
VERB_BUDGET: list[tuple[tuple[str, ...], set[str]]] = [
    (("install", "arm64", "riscv64"), set(STILL_ALLOWED)),
    (("status",), set()),
    (("status", "--json"), set()),
    (("disable", "qemu-riscv64"), set()),
    (("enable", "qemu-riscv64"), set()),
    (("uninstall", "riscv64"), set(STILL_ALLOWED)),
]


def imported_by(box: sandbox.Sandbox, *args: str) -> dict[str, str | None]:
    argv = [sys.executable, "-c", RECORDING_RUNNER, ",".join(WATCHED), *args]
    done = box.run(subprocess.run, argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    last = done.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("IMPORTED-BY "), done.stderr
    pairs: list[tuple[str, str | None]] = ast.literal_eval(last.removeprefix("IMPORTED-BY "))
    return dict(pairs)


def test_hot_verbs_import_no_dataclasses_pathlib_or_json_themselves(
    sb: sandbox.Sandbox,
) -> None:
    qemu("qemu-aarch64")
    qemu("qemu-riscv64")
    seen = {}
    for args, allowed in VERB_BUDGET:
        found = imported_by(sb, *args)
        seen[args] = found
        over = {
            module: who
            for module, who in found.items()
            if not (who in allowed and module in STILL_ALLOWED[who])
            and not (module == "json" and "--json" in args and who == "binfmtctl.cli.output")
        }
        assert over == {}, f"binfmtctl {' '.join(args)}: {found}"
    # status and its --json need none of them (the record is real:
    # test_the_import_recorder_names_the_importer).
    assert seen[("status",)] == seen[("status", "--json")] == {}
    assert seen[("disable", "qemu-riscv64")] == {}


def test_the_import_recorder_names_the_importer(sb: sandbox.Sandbox) -> None:
    """The recorder attributes an import to the binfmtctl module that made it."""
    qemu("qemu-aarch64")
    found = imported_by(sb, "export", "aarch64", "--format", "json")
    assert found.get("json") == "binfmtctl.export"


# -- the hot verbs without typing ----------------------------------------------------

# A child that runs the real CLI, then prints the binfmtctl modules it loaded.
LOADING_RUNNER = """\
import sys
from binfmtctl.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m == "binfmtctl" or m.startswith("binfmtctl."))
sys.stderr.write("\\nLOADED " + repr(loaded) + "\\n")
sys.exit(code)
"""

# A fresh interpreter imports the named modules, then says whether typing came with them.
IMPORTING = "import importlib, sys\n" \
    "for name in sys.argv[1:]:\n    importlib.import_module(name)\n" \
    "print('typing' in sys.modules)"  # fmt: skip


def loaded_by(box: sandbox.Sandbox, *args: str) -> list[str]:
    argv = [sys.executable, "-c", LOADING_RUNNER, *args]
    done = box.run(subprocess.run, argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    last = done.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("LOADED "), done.stderr
    loaded: list[str] = ast.literal_eval(last.removeprefix("LOADED "))
    return loaded


def imports_typing(source: str) -> bool:
    """Whether a module's own code imports typing at run time (outside TYPE_CHECKING)."""
    tree = ast.parse(source)
    checking_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for stmt in block.body
        for n in ast.walk(stmt)
    }
    return any(
        id(node) not in checking_only
        and (
            (isinstance(node, ast.ImportFrom) and node.module == "typing")
            or (isinstance(node, ast.Import) and any(a.name == "typing" for a in node.names))
        )
        for node in ast.walk(tree)
    )


#: A verb module that still imports typing (for annotations, off the hot paths): the
#: fresh-interpreter check below is shown real on it.
STILL_IMPORTS_TYPING = "binfmtctl.cli.test"


def test_the_typing_reader_tells_run_time_imports_from_annotations() -> None:
    path = ROOT / "src" / (STILL_IMPORTS_TYPING.replace(".", "/") + ".py")
    assert imports_typing(path.read_text())
    assert not imports_typing((ROOT / "src/binfmtctl/plan.py").read_text())
    assert imports_typing("import os\nfrom typing import Any\n")
    assert not imports_typing("TYPE_CHECKING = False\nif TYPE_CHECKING:\n    import typing\n")


def test_hot_verbs_load_no_typing(sb: sandbox.Sandbox) -> None:
    """What a hot verb loads imports no typing (records.NamedTuple makes the records):
    each runs with typing unimportable, and what it loaded, imported in a fresh
    interpreter, brings no typing either."""
    qemu("qemu-aarch64")
    qemu("qemu-riscv64")
    steps = [
        ("install", "arm64", "riscv64"),
        ("status",),
        ("status", "--json"),
        ("disable", "qemu-riscv64"),
        ("enable", "qemu-riscv64"),
        ("uninstall", "riscv64"),
    ]
    for args in steps:
        loaded = loaded_by(sb, *args)
        assert "binfmtctl.instance" in loaded, (args, loaded)
        done = subprocess.run(
            [sys.executable, "-c", IMPORTING, *loaded], capture_output=True, text=True, check=False
        )
        assert (args, done.stdout, done.stderr) == (args, "False\n", "")
        done = blocked(sb, [*NEVER, "typing"], *args)
        assert (args, done.returncode) == (args, 0), done.stderr
    # The fresh-interpreter check is real: a module that imports typing brings it.
    done = subprocess.run(
        [sys.executable, "-c", IMPORTING, STILL_IMPORTS_TYPING],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.stdout == "True\n", done.stderr


def test_run_loads_no_typing_planned_or_reused(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    """``run`` with typing unimportable: the first run (a fresh per-boot cache: native
    detection too) plans and keeps its plan, the second reuses it, which it must, as
    the planner cannot be imported then either."""
    busybox = str(foreign_busybox("arm64"))
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    argv = [sys.executable, "-c", BLOCKED_RUNNER]
    verb = ["run", "--arch", "arm64", "--", busybox, "echo", "ran"]
    kept = runtime / "binfmtctl" / "run-plans"
    for step, unimportable in [
        ("planned", ["typing"]),
        ("reused", ["typing", "binfmtctl.runplan", "binfmtctl.hostfacts"]),
    ]:
        done = sb.run(
            subprocess.run,
            [*argv, ",".join(unimportable), *verb],
            capture_output=True,
            text=True,
            check=False,
            env=env,
        )
        assert (step, done.returncode, done.stdout) == (step, 0, "ran\n"), done.stderr
        assert kept.is_file(), step
    # Without the kept plan, the second form cannot run: the reuse above was real.
    kept.unlink()
    done = sb.run(
        subprocess.run,
        [*argv, "typing,binfmtctl.runplan", *verb],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert done.returncode != 0
    assert "binfmtctl.runplan" in done.stderr


# -- the --json renderer's own walk gives json.dumps' text ---------------------------


@settings(deadline=None, max_examples=300)
@given(documents())
def test_json_text_is_json_dumps_indent_2(value: object) -> None:
    assert output.dumps(value) == json.dumps(value, indent=2, sort_keys=False)


# -- a register string is scanned once when it already is the canonical form ------

_MAGIC = CATALOG["aarch64"].magic_mask(Profile.QEMU)


def _canonical_line(delim: str = ":", flags: str = "OPF", name: str = "qemu-aarch64") -> bytes:
    magic, mask = (b"".join(b"\\x%02x" % b for b in part) for part in _MAGIC)
    d = delim.encode()
    return d + d.join([name.encode(), b"M", b"", magic, mask, b"/usr/bin/q", flags.encode()])


def _long_canonical(total: int) -> bytes:
    """A canonical E line of exactly ``total`` bytes (the interpreter pads it)."""
    head = b":x:E::jar::/"
    return head + b"i" * (total - len(head) - 2) + b":F"


def _scans(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    import binfmtctl.entry as entry_module
    from binfmtctl.register_string import scan as real

    seen: list[bytes] = []

    def counting(data: bytes, *, check_length: bool = True) -> object:
        seen.append(data)
        return real(data, check_length=check_length)

    monkeypatch.setattr(entry_module, "scan", counting)
    return seen


CANONICAL = [
    _canonical_line(),  # Debian's files: ':' and \xHH, flags OPF
    _canonical_line() + b"\n",
    _canonical_line(flags=""),
    _canonical_line(flags="FCPO") + b"\n",
    _canonical_line(delim="|", name="a:b"),  # ':' is in the name: '|' is the first free one
    b":jar:E::jar::/usr/bin/java:",
    _long_canonical(1920),  # the longest the kernel takes
]
OTHER_FORMS = [
    _canonical_line(delim="|"),  # ':' was free
    _canonical_line().replace(b"\\xff", b"\\xFF"),  # upper-case hex
    b":raw:M::\x7fELF::/usr/bin/q:",  # raw magic bytes
    b":off:M:0:\\x7f::/usr/bin/q:",  # an explicit offset 0
]


@pytest.mark.parametrize("line", CANONICAL)
def test_a_canonical_line_is_scanned_once(monkeypatch: pytest.MonkeyPatch, line: bytes) -> None:
    expected = Entry.parse(line)
    built = Entry(
        expected.name,
        expected.kind,
        expected.interpreter,
        expected.flags,
        expected.offset,
        expected.magic,
        expected.mask,
        expected.extension,
    )
    seen = _scans(monkeypatch)
    parsed = Entry.parse(line)
    assert len(seen) == 1
    assert parsed == built
    assert parsed.register_bytes() == built.register_bytes()


@pytest.mark.parametrize("line", OTHER_FORMS)
def test_other_forms_are_written_out_and_scanned_again(
    monkeypatch: pytest.MonkeyPatch, line: bytes
) -> None:
    seen = _scans(monkeypatch)
    parsed = Entry.parse(line)
    assert len(seen) >= 2  # the input, then the canonical form it is written as
    assert seen[0] == line
    assert parsed.register_bytes() != line
    monkeypatch.undo()
    assert Entry.parse(parsed.register_bytes()).register_bytes() == parsed.register_bytes()


def test_a_line_too_long_for_the_canonical_form_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A magic written raw can fit in 1920 bytes where its \\xHH form does not."""
    magic = bytes(range(0x41, 0x41 + 26)) * 9  # 234 printable bytes
    line = b":big:M::" + magic + b"::/" + b"i" * (1920 - 12 - len(magic) - 1) + b":"
    assert len(line) <= 1920
    seen = _scans(monkeypatch)
    parsed = Entry.parse(line)
    assert len(seen) >= 2
    assert len(parsed.register_bytes()) <= 1920
    assert parsed.magic == magic


# -- the boot configuration: one directory fd per directory ---------------------------


def test_binfmt_d_files_of_a_directory_are_read_through_one_fd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """load_all gives what load_binfmt_d gives file by file; only what is not a plain
    regular file (a symlink, a FIFO, a masked file, a missing one) takes the full walk."""
    from binfmtctl import binfmt_d, files

    conf = tmp_path / "binfmt.d"
    conf.mkdir()
    line = _canonical_line() + b"\n"
    (conf / "a.conf").write_bytes(line)
    (conf / "b.conf").write_bytes(b"# nothing\n:bad:X::\n")
    (tmp_path / "elsewhere.conf").write_bytes(line)
    (conf / "c.conf").symlink_to(tmp_path / "elsewhere.conf")
    (conf / "d.conf").symlink_to("/dev/null")
    os.mkfifo(conf / "e.conf")
    paths = [str(conf / f"{n}.conf") for n in "abcdef"]  # f.conf does not exist
    expected = {p: binfmt_d.load_binfmt_d(p) for p in paths}

    walked: list[str] = []
    real = files.read

    def counting(path: str | os.PathLike[str], root: str = "/") -> bytes:
        walked.append(str(path))
        return real(path, root)

    def shown(confs: dict[str, binfmt_d.ConfFile]) -> dict[str, object]:
        """Comparable: an exception equals only itself, so errors as (type, message)."""
        return {
            path: (
                c.ours,
                c.problem,
                [(*r[:5], r.error and (type(r.error), r.error.message)) for r in c.rules],
            )
            for path, c in confs.items()
        }

    monkeypatch.setattr(files, "read", counting)
    assert shown(binfmt_d.load_all(paths)) == shown(expected)
    assert sorted(walked) == [str(conf / f"{n}.conf") for n in "cdef"]
    assert expected[paths[0]].rules[0].entry == Entry.parse(line)
    assert expected[paths[4]].problem  # the FIFO is refused, not read
