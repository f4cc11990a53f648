"""parse_proc_entry reads what the kernel prints exactly as the regular expressions
it replaced did (kept here as the reference): same entries, same refusals.

The parser works by hand for start-up time; the interpreter may contain
newlines and even ``\\nflags: ``, an extension anything at all, so the cases
that matter are the adversarial ones: fragments of the format itself inside
the fields, drawn by hypothesis, plus the real kernel's output in test_entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binfmtctl.entry import Entry, Handler, parse_proc_entry
from binfmtctl.errors import EntryParseError

_PROC_M = re.compile(
    rb"(enabled|disabled)\ninterpreter (.+)\nflags: ([POCF]*)\n"
    rb"offset ([0-9]+)\nmagic ([0-9a-f]+)(?:\nmask ([0-9a-f]+))?\n",
    re.DOTALL,
)
_PROC_E = re.compile(
    rb"(enabled|disabled)\ninterpreter (.+?)\nflags: ([POCF]*)\nextension \.(.+)\n",
    re.DOTALL,
)


def reference(name: str, text: bytes) -> Handler:
    """The regular-expression reading, refusing as parse_proc_entry does."""
    m = _PROC_M.fullmatch(text)
    if m is not None:
        entry = Entry(
            name=name,
            kind="M",
            interpreter=m[2].decode("utf-8", "surrogateescape"),
            flags=m[3].decode("ascii"),
            offset=int(m[4]),
            magic=bytes.fromhex(m[5].decode("ascii")),
            mask=None if m[6] is None else bytes.fromhex(m[6].decode("ascii")),
        )
        return Handler(entry, m[1] == b"enabled")
    e = _PROC_E.fullmatch(text)
    if e is not None:
        entry = Entry(
            name=name,
            kind="E",
            interpreter=e[2].decode("utf-8", "surrogateescape"),
            flags=e[3].decode("ascii"),
            extension=e[4].decode("utf-8", "surrogateescape"),
        )
        return Handler(entry, e[1] == b"enabled")
    raise EntryParseError("not a binfmt_misc entry file", text, 0, "entry")


def outcome(parse: Callable[[str, bytes], Handler], text: bytes) -> object:
    """The entry read, or the refusal's kind and words."""
    try:
        return parse("t", text)
    except (EntryParseError, ValueError) as err:  # ValueError: odd-length hex, as before
        return type(err).__name__, str(err)


ours = parse_proc_entry


# Pieces of the format itself, to put inside the fields.
_TRAPS = [
    b"\n",
    b"flags: ",
    b"\nflags: ",
    b"\nflags: F\n",
    b"offset 0",
    b"\noffset 1\n",
    b"magic 7f",
    b"\nmagic 7f454c46\n",
    b"\nmask ff\n",
    b"extension .",
    b"\nextension .",
    b"enabled\n",
    b"interpreter ",
    b" ",
    b"/usr/bin/qemu-aarch64",
    b"F",
    b"0",
    b"ab",
]
_field = st.lists(st.sampled_from(_TRAPS) | st.binary(max_size=3), max_size=6).map(b"".join)


@st.composite
def proc_texts(draw: st.DrawFn) -> bytes:
    state = draw(st.sampled_from([b"enabled", b"disabled", b"disabled", b"enable", b""]))
    interpreter = draw(_field)
    flags = draw(st.sampled_from([b"", b"F", b"OC", b"POCF", b"PF", b"X", b"F "]))
    if draw(st.booleans()):  # mostly well-formed fields, so that most texts are entries
        offset = draw(st.sampled_from([b"0", b"0", b"18", b"", b"x", b"1\n"]))
        magic = draw(st.sampled_from([b"7f454c46", b"7f454c46", b"7f4", b"", b"7F", b"00"]))
        mask = draw(st.sampled_from([None, None, b"ffffffff", b"ffff", b"", b"fx"]))
        tail = b"offset " + offset + b"\nmagic " + magic
        tail += b"" if mask is None else b"\nmask " + mask
    else:
        tail = b"extension ." + draw(_field)
    text = state + b"\ninterpreter " + interpreter + b"\nflags: " + flags + b"\n" + tail + b"\n"
    if draw(st.integers(0, 3)) == 0:  # a damaged copy too: cut, or a byte changed
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from([b"", b"\n", b"x", b"flags: "])) + text[at + 1 :]
    return text


@settings(max_examples=3000, deadline=None)
@given(proc_texts())
def test_reads_every_text_as_the_regular_expressions_did(text: bytes) -> None:
    assert outcome(ours, text) == outcome(reference, text)


@pytest.mark.parametrize(
    "text",
    [
        b"enabled\ninterpreter /a\nflags: F\nb\nflags: \noffset 0\nmagic 7f\n",
        b"enabled\ninterpreter /a\nflags: \nextension .x\nflags: F\nextension .y\n",
        b"disabled\ninterpreter \nflags: \nextension .x\n",
        b"enabled\ninterpreter \n\nflags: \noffset 0\nmagic 7f\n",
        b"enabled\ninterpreter /a\nflags: \nextension .\n",
        b"enabled\ninterpreter /a\nflags: \nextension .\n\n",
        b"enabled\ninterpreter /a\nflags: OC\noffset 0\nmagic 7f\nmask \n",
        b"enabled\ninterpreter /a\nflags: OC\noffset 0\nmagic 7f\nmask ff",
    ],
)
def test_the_edges_read_as_the_regular_expressions_did(text: bytes) -> None:
    assert outcome(ours, text) == outcome(reference, text)
