"""Foreign names and paths never reach a terminal raw, under any locale.

Entries registered by other tools may carry any byte but ``/`` and NUL in their
names and interpreter paths: terminal escape sequences, a newline followed by a
forged table row, bytes that are not UTF-8. Each case registers such entries
for real in a private binfmt_misc instance (the register file is written
directly, as any other tool could) and runs the real ``binfmtctl`` under LANG
unset, C, C.UTF-8 and en_US.UTF-8: no raw control character or undecodable
byte reaches stdout or stderr, no traceback, the exit code is the usual one,
and ``--json`` gives every name back byte for byte.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from binfmtctl import arch as _arch
from binfmtctl import plan, sandbox
from binfmtctl.cli import output
from binfmtctl.cli.output import Result, escape, from_json, json_safe, render
from conftest import foreign_busybox, qemu

REGISTER = "/proc/sys/fs/binfmt_misc/register"
FAKE_ROW = b"binfmtctl  FAKE  yes  F  qemu-x"  # no "/": names cannot hold one
# name -> rest of the register string (after the name): every kind of hostile byte.
NAMES: dict[bytes, bytes] = {
    # a recognised aarch64 QEMU handler (so `uninstall --all`, `find`, `why`, `test`
    # meet it) whose name clears the screen
    b"qemu-\x1b[2J": b"",  # filled in with the real aarch64 magic below
    # a newline, then a line that looks like a row of the status table
    b"nl\n" + FAKE_ROW: b":E::nlx::/usr/bin/true:",
    # not UTF-8; interpreter with raw ESC + invalid bytes + a C1 CSI (valid UTF-8)
    b"bad\xff\xfe": b":E::badx::/tmp/\xff\x1b[31mred\xc2\x9b2J:",
    # tab, DEL, a bidi override (valid UTF-8, invisible, reorders the line)
    b"tab\tdel\x7f\xe2\x80\xaeevil": b":E::tabx::/usr/bin/true:",
}
LOCALES = ("unset", "C", "C.UTF-8", "en_US.UTF-8")
_LONE_SURROGATE = re.compile(r"\\ud[89a-f][0-9a-f]{2}", re.IGNORECASE)


def _aarch64_rest(interpreter: str) -> bytes:
    entry = plan.build_entry(_arch.resolve("arm64"), interpreter, "F", _arch.Profile.QEMU)
    return b":" + entry.register_bytes().split(b":", 2)[2]


def _register(data: bytes) -> None:
    fd = os.open(REGISTER, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def register_hostile(box: sandbox.Sandbox) -> dict[bytes, bytes]:
    """Register every name of NAMES; the register strings written, by name."""
    written = {}
    for name, tail in NAMES.items():
        written[name] = b":" + name + (tail or _aarch64_rest(qemu("qemu-aarch64")))
        box.run(_register, written[name])
    names = {os.fsencode(n) for n in box.run(os.listdir, "/proc/sys/fs/binfmt_misc")}
    assert set(NAMES) <= names, "the kernel refused a hostile name"
    return written


def locale_env(lang: str) -> dict[str, str]:
    """The environment minus every locale setting, then LANG (unless 'unset')."""
    drop = ("LANG", "LANGUAGE", "LC_", "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONCOERCECLOCALE")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    if lang != "unset":
        if lang == "en_US.UTF-8" and not _has_locale("en_US.utf8"):
            pytest.fail("en_US.UTF-8 is not generated: run scripts/test-deps")
        env["LANG"] = lang
    return env


def _has_locale(name: str) -> bool:
    found = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=True)
    return name.lower() in found.stdout.lower().split()


def run(
    box: sandbox.Sandbox, env: dict[str, str], *args: str | bytes, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    return box.run(
        subprocess.run,
        [sys.executable, "-m", "binfmtctl", *args],
        capture_output=True,
        input=stdin,
        env=env,
        check=False,
        timeout=300,
    )


def assert_safe(proc: subprocess.CompletedProcess[bytes]) -> tuple[str, str]:
    """stdout and stderr as text: UTF-8, every line printable, no traceback."""
    texts = []
    for raw in (proc.stdout, proc.stderr):
        assert b"Traceback" not in raw, raw.decode("utf-8", "replace")
        text = raw.decode("utf-8")  # a raw undecodable byte fails here
        for line in text.split("\n"):
            assert line.isprintable(), f"raw control character in {line!r}"
            assert not line.startswith(FAKE_ROW.decode()), f"forged row {line!r}"
        texts.append(text)
    return texts[0], texts[1]


@pytest.mark.parametrize("lang", LOCALES)
def test_every_verb_escapes_foreign_names(sb: sandbox.Sandbox, tmp_path: Path, lang: str) -> None:
    env = locale_env(lang)
    register_hostile(sb)
    # A foreign program under a hostile file name, for find / why.
    prog = os.path.join(os.fsencode(tmp_path), b"prog\x1b[2J\n" + FAKE_ROW + b"\xff")
    shutil.copy(os.fsencode(foreign_busybox("arm64")), prog)
    shown_prog = escape(os.fsdecode(prog))

    status = run(sb, env, "status")
    out, err = assert_safe(status)
    assert status.returncode == 0, err
    for shown in (
        r"qemu-\x1b[2J",
        r"nl\nbinfmtctl  FAKE",
        r"bad\xff\xfe",
        r"tab\tdel\x7f\u202eevil",
    ):
        assert f"\n{shown}" in out, shown  # each entry: one row of its own, escaped
    assert r"/tmp/\xff\x1b[31mred\u009b2J" in out

    found = run(sb, env, "find", prog)
    out, err = assert_safe(found)
    assert found.returncode == 0, err
    assert out.startswith(f"{shown_prog}: ELF 64-bit LSB ET_EXEC aarch64, static\n")
    assert r"run by qemu-\x1b[2J" in out

    why = run(sb, env, "why", prog)
    out, err = assert_safe(why)
    assert why.returncode == 0, out
    assert f"{shown_prog} will run." in out

    test = run(sb, env, "test", "arm64")
    out, err = assert_safe(test)
    assert test.returncode == 0, out + err
    assert re.search(r"^aarch64 +ok +qemu-\\x1b\[2J ", out, re.M), out

    # An error on stderr that carries a hostile word: one line, escaped.
    missing = b"/nonexistent/\x1b[2J\nbinfmtctl: error: FAKE\xff"
    scan = run(sb, env, "scan", missing)
    out, err = assert_safe(scan)
    assert scan.returncode == 2
    assert err == (
        r"binfmtctl: error: /nonexistent/\x1b[2J\nbinfmtctl: error: FAKE\xff is not a "
        "directory; scan walks a tree (see `find`)\n"
    )

    removed = run(sb, env, "uninstall", "--all")
    out, err = assert_safe(removed)
    assert removed.returncode == 0, err
    assert r"qemu-\x1b[2J" in out
    left = {os.fsencode(n) for n in sb.run(os.listdir, "/proc/sys/fs/binfmt_misc")}
    assert b"qemu-\x1b[2J" not in left
    assert set(NAMES) - {b"qemu-\x1b[2J"} <= left  # foreign entries stay


@pytest.mark.parametrize("lang", LOCALES)
def test_status_json_is_strict_and_lossless(sb: sandbox.Sandbox, lang: str) -> None:
    written = register_hostile(sb)
    proc = run(sb, locale_env(lang), "status", "--json")
    assert proc.returncode == 0
    assert_safe(proc)
    text = proc.stdout.decode("ascii")  # ensure_ascii: the whole document is ASCII
    assert not _LONE_SURROGATE.search(text), "a lone surrogate is not valid for strict parsers"
    entries = {from_json(e["name"]): e for e in json.loads(text)["data"]["entries"]}
    assert set(entries) == set(NAMES)
    bad = entries[b"bad\xff\xfe"]
    assert bad["name"] == list(b"bad\xff\xfe")  # not UTF-8: the byte values
    assert from_json(bad["entry"]["interpreter"]) == b"/tmp/\xff\x1b[31mred\xc2\x9b2J"
    assert entries[b"qemu-\x1b[2J"]["name"] == "qemu-\x1b[2J"  # UTF-8: a JSON string
    for name, entry in entries.items():
        assert written[name].split(b":")[-2] == from_json(entry["entry"]["interpreter"])


def test_explain_of_hostile_register_strings_from_stdin() -> None:
    """A valid and an invalid register string with control bytes, through stdin."""
    env = locale_env("C")
    good = run_local(env, "explain", "-", stdin=b":ev\x1bil\n" + FAKE_ROW + b":E::x::/bin/\xff:")
    out, err = assert_safe(good)
    assert good.returncode == 0, err
    assert out.splitlines()[1] == (
        r"name ev\x1bil\nbinfmtctl  FAKE  yes  F  qemu-x, type E, interpreter /bin/\xff, flags -"
    )
    bad = run_local(env, "explain", "-", stdin=b":n\x9b\x1b]0;t\x07:Q::")
    out, err = assert_safe(bad)
    assert bad.returncode == 1
    assert err.startswith("binfmtctl: error: invalid type: ")
    assert r"\u009b" in err  # the C1 CSI shown escaped (the caret line stays its own line)


def run_local(
    env: dict[str, str], *args: str | bytes, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """binfmtctl for a verb that registers nothing and reads no instance."""
    return subprocess.run(
        [sys.executable, "-m", "binfmtctl", *args],
        capture_output=True,
        input=stdin,
        env=env,
        check=False,
        timeout=120,
    )


# -- the renderer itself ---------------------------------------------------------

ESCAPES = [
    ("qemu-aarch64", "qemu-aarch64"),
    ("", ""),
    ("a b", "a b"),
    ("ünïcødé 名前", "ünïcødé 名前"),
    (r"C:\path", r"C:\path"),  # nothing to escape: backslashes stay single
    ("\x1b[2J", r"\x1b[2J"),
    ("a\nb", r"a\nb"),
    ("a\tb\r", r"a\tb\r"),
    ("x\x00\x7f", r"x\x00\x7f"),
    ("\udcff\udc80", r"\xff\x80"),  # undecodable bytes (surrogateescape)
    ("\x9b", r"\u009b"),  # C1 control, valid UTF-8: not confused with byte 0x9b
    ("\u202e", r"\u202e"),  # bidi override
    ("\u2028", r"\u2028"),  # line separator
    ("\\\x1b", r"\\\x1b"),  # escaped string: backslash doubled, reads back exactly
    ("\U000e0001", r"\U000e0001"),  # a tag character (format, invisible)
]


@pytest.mark.parametrize(("raw", "shown"), ESCAPES)
def test_escape_table(raw: str, shown: str) -> None:
    assert escape(raw) == shown
    assert escape(shown) == shown  # escaping twice changes nothing


def test_ordinary_json_is_unchanged() -> None:
    """Golden stability: UTF-8 names (even with control characters) stay JSON strings."""
    data = {"entries": [{"name": "qemu-aarch64", "x": 1, "n": None, "t": ("ü", "\x1b")}]}
    assert json_safe(data) == {
        "entries": [{"name": "qemu-aarch64", "x": 1, "n": None, "t": ["ü", "\x1b"]}]
    }
    assert json.dumps(json_safe({"k\udcff": "v"})) == '{"k\\\\xff": "v"}'


def _rendered(result: Result, as_json: bool) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    render(result, as_json, out, err)
    return out.getvalue(), err.getvalue()


def test_render_escapes_data_closures_and_messages() -> None:
    captured = "closure \x1b[2J"

    def human(d: dict[str, Any]) -> str:
        return f"{d['name']}\n{captured}\n" + output.table([[d["name"], "x"]], ["A", "B"])

    result = Result("t", {"name": "n\x1b\n\udcff"}, warnings=["w\nbinfmtctl: error: forged"])
    result.human = human
    result.errors.append({"code": "x", "message": "first \x1b\n    shown\n    ^\nforged"})
    out, err = _rendered(result, as_json=False)
    assert out == (
        r"n\x1b\n\xff"
        + "\n"
        + r"closure \x1b[2J"
        + "\n"
        + f"{'A':<11}  B\n"
        + r"n\x1b\n\xff  x"
        + "\n"
    )
    assert err == (
        r"binfmtctl: warning: w\nbinfmtctl: error: forged" + "\n"
        r"binfmtctl: error: first \x1b" + "\n    shown\n" + r"    ^\nforged" + "\n"
    )
    out, _ = _rendered(result, as_json=True)
    back = json.loads(out)
    assert from_json(back["data"]["name"]) == b"n\x1b\n\xff"
    assert back["warnings"] == ["w\nbinfmtctl: error: forged"]
