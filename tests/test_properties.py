"""Properties over random input: no renderer prints a control character, no
register string crashes a verb, and --json gives every string back.

The shapes of the data come from real runs (a private binfmt_misc instance with
a real aarch64 handler, a real tree with a foreign and a native program); then
every string in them is replaced by random text: escape sequences, newlines,
bidi controls, undecodable bytes. Random register strings go through the
parsers of ``explain -`` (stdin), ``explain SPEC`` and ``apply FILE`` (the
latter inside a private instance: what the kernel accepts is registered there).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from binfmtctl import cli, sandbox
from binfmtctl.cli import apply, arches, explain, find, install, output, scan, status, test, why
from binfmtctl.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_PRIVILEGES, EXIT_USAGE
from conftest import foreign_busybox, qemu

DOCUMENTED_EXITS = {EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PARTIAL, EXIT_PRIVILEGES}
# Timing is not a property: no deadline (a slow, shared machine is not a failure).
RANDOM = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])

# Hostile text: any code point (surrogates, i.e. undecodable bytes, included),
# bytes decoded as the kernel's names are, and the classic attacks.
ATTACKS = ["\x1b[2J", "\x1b]0;title\x07", "\n", "\r", "\t", "\x9b", "\u202e", "\u2028", "\\"]
hostile = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=30),
    st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.lists(st.sampled_from(ATTACKS), max_size=5).map("".join),
)
# Keys whose values a renderer looks up in its own tables (enumerations):
# kept as the real run gave them; everything else is random.
ENUMS = {"action", "verdict", "format", "dry_run"}


def _json_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in proc.stderr, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)["data"]
    return data


@pytest.fixture(scope="module")
def shapes() -> Iterator[dict[str, dict[str, Any]]]:
    """--json data of every verb with a text view, from real runs in a private instance."""
    tree = tempfile.mkdtemp(prefix="binfmtctl-shapes-")
    shutil.copy(foreign_busybox("arm64"), os.path.join(tree, "foreign"))
    shutil.copy("/bin/true", os.path.join(tree, "native"))
    conf = os.path.join(tree, "x.conf")
    with open(conf, "w") as fh:
        fh.write(":qemu-aarch64:E::zz::/nonexistent:\n:bad:Q::\n")
    emulator = qemu("qemu-aarch64")
    try:
        with sandbox.Sandbox() as box:

            def run(*args: str) -> dict[str, Any]:
                proc = box.run(
                    subprocess.run,
                    [sys.executable, "-m", "binfmtctl", *args, "--json"],
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=300,
                )
                return _json_of(proc)

            out = {
                "install": run("install", "arm64", "--interpreter", emulator),
                "status": run("status"),
                "boot": run("status", "--boot"),
                "arches": run("arches"),
                "find": run("find", os.path.join(tree, "foreign"), "/nonexistent"),
                "why": run("why", os.path.join(tree, "foreign")),
                "why-not": run("why", "/bin/no-such-program"),
                "scan": run("scan", tree),
                "test": run("test", "arm64"),
                "explain": run("explain", "arm64"),
                "apply": run("apply", conf),
                "uninstall": run("uninstall", "arm64"),
            }
    finally:
        shutil.rmtree(tree)
    out["scan"]["problems"] = [{"path": "p", "reason": "r"}]  # a root reads everything
    yield {verb: _trimmed(shape) for verb, shape in out.items()}


def _trimmed(value: Any) -> Any:
    """At most two items per list: every shape kept, a few dozen strings to draw."""
    if isinstance(value, dict):
        return {k: _trimmed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_trimmed(v) for v in value[:2]]
    return value


VIEWS: dict[str, Callable[[dict[str, Any]], str]] = {
    "install": install._human_install,
    "status": lambda d: status.human_with_engines(d) + status.config_human(d),
    "boot": status.boot_human,
    "arches": arches.human,
    "find": find.human,
    "why": why.human,
    "why-not": why.human,
    "scan": scan.human,
    "test": test.human,
    "explain": explain.human,
    "apply": apply.human,
    "uninstall": install._human_uninstall,
}


def randomised(value: Any, draw: Callable[[], str], key: str = "") -> Any:
    if isinstance(value, str):
        return value if key in ENUMS else draw()
    if isinstance(value, dict):
        return {k: randomised(v, draw, k) for k, v in value.items()}
    if isinstance(value, list):
        return [randomised(v, draw, key) for v in value]
    return value


def test_the_shapes_are_not_empty(shapes: dict[str, dict[str, Any]]) -> None:
    """The real runs gave something to randomise (else the property below tests nothing)."""
    assert shapes["status"]["entries"] and shapes["scan"]["groups"]
    assert shapes["test"]["results"] and shapes["find"]["files"] and shapes["apply"]["lines"]
    assert set(VIEWS) == set(shapes)


@pytest.mark.parametrize("verb", sorted(VIEWS))
@settings(RANDOM, max_examples=40)
@given(data=st.data())
def test_no_text_view_prints_a_control_character(
    shapes: dict[str, dict[str, Any]], verb: str, data: st.DataObject
) -> None:
    shape = randomised(shapes[verb], lambda: data.draw(hostile))
    warning = data.draw(hostile)
    result = output.Result(verb, shape, warnings=[warning], human=VIEWS[verb])
    result.errors.append({"code": "x", "message": data.draw(hostile)})
    out, err = io.StringIO(), io.StringIO()
    output.render(result, False, out, err)
    for line in (out.getvalue() + err.getvalue()).split("\n"):
        assert line.isprintable(), repr(line)
    # A view sees every string only escaped: a newline inside a name cannot start
    # a row, so the text is the same as for data escaped beforehand.
    clean = io.StringIO()
    output.render(output.Result(verb, output.escape_data(shape), human=VIEWS[verb]), False, clean)
    assert out.getvalue() == clean.getvalue()
    # Each warning and error starts one line; any further line is indented: no
    # message can forge a line of its own.
    lines = err.getvalue().rstrip("\n").split("\n")
    assert [line for line in lines if not line.startswith(" ")] == [
        line for line in lines if line.startswith("binfmtctl: ")
    ]
    assert sum(line.startswith("binfmtctl: ") for line in lines) == 2

    out = io.StringIO()
    output.render(result, True, out)
    text = out.getvalue()
    assert text.isascii()
    back = json.loads(text)
    assert [_raw(s) for s in _strings(back["data"])] == [_raw(s) for s in _strings(shape)]
    assert output.from_json(back["warnings"][0]) == _raw(warning)


def _strings(value: Any) -> list[Any]:
    """Every string leaf, in order (for JSON: strings and byte arrays as bytes)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        if value and ints and all(0 <= v < 256 for v in value) and _came_from_bytes(value):
            return [bytes(value)]
        return [s for v in value for s in _strings(v)]
    return []


def _raw(value: str | bytes) -> bytes:
    """What a string stands for: its bytes (surrogateescape; surrogatepass for text
    that never came from bytes), the same rule as --json."""
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _came_from_bytes(value: list[int]) -> bool:
    """A byte array stands for a string that was not UTF-8 (the only lists of ints)."""
    try:
        bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# -- register strings never crash a parser ---------------------------------------

delimiters = st.sampled_from([b":", b",", b"\x1b", b"\xff", b"\n", b"a"])
field_bytes = st.binary(max_size=12)
flags = st.lists(st.sampled_from(b"POCFX\n "), max_size=5).map(bytes)


@st.composite
def register_strings(draw: st.DrawFn) -> bytes:
    """Mostly well-shaped strings with hostile fields, sometimes plain noise."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=80))
    d = draw(delimiters)
    kind = draw(st.sampled_from([b"M", b"E", b"Q", b""]))
    offset = draw(st.sampled_from([b"", b"0", b"-1", b"99999999999", b"x"]))
    parts = [b"", draw(field_bytes), kind, offset, draw(field_bytes), draw(field_bytes)]
    parts += [draw(st.sampled_from([b"/usr/bin/true", b"", b"rel"])) + draw(field_bytes)]
    parts += [draw(flags)]
    return d.join(parts) + draw(st.sampled_from([b"", b"\n", b"\n\n"]))


def call(argv: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    """cli.main in this process, stdin/stdout/stderr replaced; exceptions propagate."""
    out, err = io.StringIO(), io.StringIO()
    fake_stdin = io.TextIOWrapper(io.BytesIO(stdin))
    saved = sys.stdin
    sys.stdin = fake_stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv)
    finally:
        sys.stdin = saved
    return code, out.getvalue(), err.getvalue()


@RANDOM
@given(raw=register_strings())
def test_explain_from_stdin_never_crashes(raw: bytes) -> None:
    code, out, err = call(["explain", "-"], raw)
    assert code in (EXIT_OK, EXIT_FAILED), err
    assert (code == EXIT_OK) == (err == "")
    for line in (out + err).split("\n"):
        assert line.isprintable(), repr(line)


@RANDOM
@given(raw=register_strings())
def test_explain_of_a_register_string_argument_never_crashes(raw: bytes) -> None:
    spec = ":" + os.fsdecode(raw.replace(b"\0", b""))  # argv cannot hold NUL
    code, out, err = call(["explain", "--json", spec])
    assert code in DOCUMENTED_EXITS, err
    back = json.loads(out)
    assert back["ok"] == (code == EXIT_OK)


def _apply_property() -> int:
    """Inside a private instance: apply random files; returns how many examples ran."""
    ran = 0
    top = tempfile.mkdtemp(prefix="binfmtctl-apply-")
    path = os.path.join(top, "random.conf")

    @RANDOM
    @given(lines=st.lists(register_strings(), min_size=1, max_size=4))
    def check(lines: list[bytes]) -> None:
        nonlocal ran
        with open(path, "wb") as fh:
            fh.write(b"\n".join(lines))
        code, out, err = call(["apply", path])
        assert code in DOCUMENTED_EXITS, err
        for line in (out + err).split("\n"):
            assert line.isprintable(), repr(line)
        ran += 1

    try:
        check()
    finally:
        shutil.rmtree(top)
    return ran


def test_apply_of_random_files_never_crashes(sb: sandbox.Sandbox) -> None:
    assert sb.run(_apply_property) >= 100
