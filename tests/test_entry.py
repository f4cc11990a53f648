"""Entry parsing, formatting and matching, with the running kernel as the oracle.

Every register string below is also written to a private binfmt_misc instance
(``binfmtctl.sandbox``, never the host's) in one sandboxed call, and the
kernel's answer must be the one the table states.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from binfmtctl import sandbox
from binfmtctl.entry import Entry, EntryState, parse_proc_entry
from binfmtctl.errors import EntryParseError, NameTooLongError, SandboxError
from binfmtctl.register_string import normalize_flags
from conftest import missing

BINFMT = b"/proc/sys/fs/binfmt_misc"
T = b"/bin/true"
CLASSIC = (
    rb":qemu-arm:M::\x7f\x45\x4c\x46\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    rb"\x02\x00\x28\x00:\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    rb"\xfe\xff\xff\xff:/usr/bin/qemu-arm-static:F"
)


# --------------------------------------------------------------------------- kernel


@dataclass(frozen=True)
class Outcome:
    """What the kernel did with one write to ``register``."""

    result: str  # "ok" or an errno name
    proc: bytes | None = None  # the entry file's text, when registered


def _register_one(data: bytes) -> Outcome:
    before = set(os.listdir(BINFMT))
    fd = os.open(BINFMT + b"/register", os.O_WRONLY)
    try:
        os.write(fd, data)
    except OSError as err:
        return Outcome(errno.errorcode.get(err.errno or 0, str(err)))
    finally:
        os.close(fd)
    (name,) = set(os.listdir(BINFMT)) - before
    path = BINFMT + b"/" + name
    with open(path, "rb") as fh:
        text = fh.read()
    with open(path, "wb") as fh:
        fh.write(b"-1")
    return Outcome("ok", text)


def _register_all(strings: list[bytes], reencode: bool) -> list[tuple[Outcome, Outcome | None]]:
    """Register each string (and, with ``reencode``, our re-encoding of it) in turn."""
    out: list[tuple[Outcome, Outcome | None]] = []
    for data in strings:
        first = _register_one(data)
        again = None
        if reencode and first.result == "ok":
            again = _register_one(Entry.parse(data).register_bytes())
        out.append((first, again))
    return out


def kernel(strings: list[bytes], reencode: bool = False) -> list[tuple[Outcome, Outcome | None]]:
    """Ask a fresh private instance about every string, in one sandboxed call."""
    try:
        return sandbox.run(_register_all, strings, reencode)
    except SandboxError as err:
        missing(f"no private binfmt_misc instance can be mounted here: {err}")


def parser_outcome(data: bytes) -> str:
    try:
        Entry.parse(data)
    except NameTooLongError:
        return "ENAMETOOLONG"
    except EntryParseError:
        return "EINVAL"
    return "ok"


def agrees(data: bytes, kernel_result: str) -> bool:
    """Whether the parser's verdict is the kernel's, allowing for post-parse checks."""
    ours = parser_outcome(data)
    if kernel_result == "EEXIST":  # taken names: the parser accepts, Instance refuses
        return ours == "ok" and Entry.parse(data).name in ("register", "status")
    if ours == "ok" and kernel_result not in ("ok", "EINVAL"):
        return "F" in Entry.parse(data).flags  # F opens the interpreter at registration
    return ours == kernel_result


# --------------------------------------------------------------------------- the table


def _m(
    name: bytes = b"t",
    offset: bytes = b"",
    magic: bytes = rb"\x41",
    mask: bytes = b"",
    interp: bytes = T,
    flags: bytes = b"",
    d: bytes = b":",
) -> bytes:
    return d + d.join([name, b"M", offset, magic, mask, interp, flags])


def _e(
    ext: bytes = b"py",
    interp: bytes = T,
    flags: bytes = b"",
    name: bytes = b"t",
    offset: bytes = b"",
    mask: bytes = b"",
    d: bytes = b":",
) -> bytes:
    return d + d.join([name, b"E", offset, ext, mask, interp, flags])


def _at(data: bytes, sub: bytes, nth: int = 0) -> int:
    pos = -1
    for _ in range(nth + 1):
        pos = data.index(sub, pos + 1)
    return pos


_LONG = _m(interp=b"/" + b"i" * 1890)
_1920 = _m(interp=b"/" + b"i" * (1920 - len(_m(interp=b"/"))))
_1921 = _1920[:-1] + b"i:"
_TEN = b":a:M::A::x"
_M256 = _m(magic=b"A" * 256)

# (id, register string, kernel errno or "ok", field, position)
ROWS: list[tuple[str, bytes, str, str | None, int | None]] = [
    ("basic", _m(), "ok", None, None),
    (
        "classic-qemu-arm",
        CLASSIC.replace(b"/usr/bin/qemu-arm-static:F", T + b":"),
        "ok",
        None,
        None,
    ),
    ("trailing-newline", _m() + b"\n", "ok", None, None),
    ("E basic", _e(), "ok", None, None),
    # delimiters
    ("delim |", _m(d=b"|"), "ok", None, None),
    ("delim space", _m(d=b" "), "ok", None, None),
    ("delim NUL", _m(d=b"\0"), "ok", None, None),
    ("delim backslash", _m(magic=b"A", d=b"\\"), "ok", None, None),
    ("delim newline + final newline", _m(d=b"\n") + b"\n", "ok", None, None),
    ("delim newline, flags then newline", _m(flags=b"P", d=b"\n") + b"\n", "ok", None, None),
    ("delim newline, no final newline", _m(d=b"\n"), "EINVAL", "flags", len(_m(d=b"\n"))),
    ("delim hex digit a", _m(name=b"n", d=b"a"), "ok", None, None),
    ("delim 4 as hex digit \\x44", b"4n4M44\\x4444/bin/true4", "ok", None, None),
    ("delim 4 eaten by \\x4", b"4n4M44\\x444/bin/true4", "EINVAL", "mask", 11),
    ("delim x swallowed after backslash", b"xnxMxx\\x41xx/bin/truex", "ok", None, None),
    ("delim P", _m(d=b"P"), "EINVAL", "delimiter", 0),
    ("delim O", _m(d=b"O"), "EINVAL", "delimiter", 0),
    ("delim C", _m(d=b"C"), "EINVAL", "delimiter", 0),
    ("delim F", _m(d=b"F"), "EINVAL", "delimiter", 0),
    # names
    ("name empty", _m(name=b""), "EINVAL", "name", 1),
    ("name .", _m(name=b"."), "EINVAL", "name", 1),
    ("name ..", _m(name=b".."), "EINVAL", "name", 1),
    ("name ...", _m(name=b"..."), "ok", None, None),
    ("name with /", _m(name=b"a/b"), "EINVAL", "name", 2),
    ("name with two /", _m(name=b"a/b/c"), "EINVAL", "name", 2),
    ("name with NUL", _m(name=b"a\0b"), "EINVAL", "name", 2),
    ("name with space, newline, high byte", _m(name=b"a b\n\xff\\x41"), "ok", None, None),
    ("name 255 bytes", _m(name=b"n" * 255), "ok", None, None),
    ("name 256 bytes", _m(name=b"n" * 256), "ENAMETOOLONG", "name", 256),
    (
        "name 256 bytes and bad flags",
        _m(name=b"n" * 256, flags=b"X"),
        "EINVAL",
        "flags",
        len(_m(name=b"n" * 256)),
    ),
    ("name register", _m(name=b"register"), "EEXIST", None, None),
    ("name status", _m(name=b"status"), "EEXIST", None, None),
    ("name not closed", b":abcdefghijk", "EINVAL", "name", 12),
    ("type missing after the name", b":abcdefghi:", "EINVAL", "type", 11),
    ("type then end of string", b":abcdefgh:M", "EINVAL", "type", 11),
    # type
    ("type X", b":t:X::A::/bin/true:", "EINVAL", "type", 3),
    ("type m", b":t:m::A::/bin/true:", "EINVAL", "type", 3),
    ("type empty", b":t:::A::/bin/true:", "EINVAL", "type", 3),
    ("type MM", b":t:MM::A::/bin/true:", "EINVAL", "type", 4),
    # offsets
    ("offset +1", _m(offset=b"+1"), "ok", None, None),
    ("offset -0", _m(offset=b"-0"), "ok", None, None),
    ("offset -1", _m(offset=b"-1"), "EINVAL", "offset", 5),
    ("offset 007", _m(offset=b"007"), "ok", None, None),
    ("offset 1 newline", _m(offset=b"1\n"), "ok", None, None),
    ("offset 1 two newlines", _m(offset=b"1\n\n"), "EINVAL", "offset", 7),
    ("offset space 1", _m(offset=b" 1"), "EINVAL", "offset", 5),
    ("offset 1 space", _m(offset=b"1 "), "EINVAL", "offset", 6),
    ("offset +", _m(offset=b"+"), "EINVAL", "offset", 6),
    ("offset +-1", _m(offset=b"+-1"), "EINVAL", "offset", 6),
    ("offset 0x10", _m(offset=b"0x10"), "EINVAL", "offset", 6),
    ("offset 255 + 1 byte", _m(offset=b"255"), "ok", None, None),
    ("offset 256 + 1 byte", _m(offset=b"256"), "EINVAL", "offset", 5),
    ("offset 2147483648", _m(offset=b"2147483648"), "EINVAL", "offset", 5),
    ("offset huge", _m(offset=b"9" * 30), "EINVAL", "offset", 5),
    ("offset with NUL", _m(offset=b"1\0"), "EINVAL", "offset", 6),
    ("offset 250 + 7 bytes", _m(offset=b"250", magic=b"ABCDEFG"), "EINVAL", "offset", 5),
    # magic
    ("magic \\x4 then delimiter", _m(magic=rb"\x4"), "EINVAL", "magic", 9),
    ("magic \\xZZ", _m(magic=rb"\xZZ"), "EINVAL", "magic", 8),
    ("magic \\x4Z", _m(magic=rb"\x4Z"), "EINVAL", "magic", 9),
    ("magic \\xAb upper/lower", _m(magic=rb"\xAb"), "ok", None, None),
    ("magic \\x4142", _m(magic=rb"\x4142"), "ok", None, None),
    ("magic \\\\", _m(magic=rb"\\"), "ok", None, None),
    ("magic \\\\x41 stays literal", _m(magic=rb"\\x41"), "ok", None, None),
    ("magic \\\\xZZ", _m(magic=rb"\\xZZ"), "EINVAL", "magic", 9),
    ("magic \\n literal", _m(magic=rb"\n"), "ok", None, None),
    ("magic \\X41 literal", _m(magic=rb"\X41"), "ok", None, None),
    ("magic \\x00", _m(magic=rb"\x00"), "ok", None, None),
    ("magic raw NUL first", _m(magic=b"\0A"), "EINVAL", "magic", 6),
    ("magic raw NUL inside", _m(magic=b"A\0B"), "ok", None, None),
    ("magic empty", _m(magic=b""), "EINVAL", "magic", 6),
    ("magic 256 bytes", _M256, "ok", None, None),
    ("magic 257 bytes", _m(magic=b"A" * 257), "EINVAL", "magic", 6),
    ("magic 256 bytes at offset 1", _m(offset=b"1", magic=b"A" * 256), "EINVAL", "offset", 5),
    ("magic not closed", b":t:M::\\x41\\x42", "EINVAL", "magic", 14),
    # mask
    ("mask same length", _m(magic=rb"\x41\x42", mask=rb"\xff\x00"), "ok", None, None),
    ("mask shorter", _m(magic=rb"\x41\x42", mask=rb"\xff"), "EINVAL", "mask", 15),
    ("mask longer", _m(mask=rb"\xff\xff"), "EINVAL", "mask", 11),
    ("mask empty", _m(mask=b""), "ok", None, None),
    ("mask raw NUL first = none", _m(mask=b"\0\xff"), "ok", None, None),
    ("mask \\xZZ", _m(mask=rb"\xZZ"), "EINVAL", "mask", 13),
    # E entries
    ("E .py stored with dot", _e(ext=b".py"), "ok", None, None),
    ("E with /", _e(ext=b"a/b"), "EINVAL", "extension", 7),
    ("E with two /", _e(ext=b"a/b/c"), "EINVAL", "extension", 7),
    ("E empty", _e(ext=b""), "EINVAL", "extension", 6),
    ("E \\x not decoded", _e(ext=rb"\x41"), "ok", None, None),
    ("E junk offset and mask", _e(offset=b"junk-1", mask=rb"\xZZ"), "ok", None, None),
    ("E NUL in offset", _e(offset=b"\0"), "EINVAL", "offset", 5),
    ("E NUL in extension", _e(ext=b"p\0y"), "EINVAL", "extension", 7),
    # interpreter
    ("interpreter empty", _m(interp=b""), "EINVAL", "interpreter", 12),
    ("interpreter relative", _m(interp=b"true"), "ok", None, None),
    ("interpreter missing, no F", _m(interp=b"/nonexistent"), "ok", None, None),
    ("interpreter NUL", _m(interp=b"/bin\0/true"), "EINVAL", "interpreter", 16),
    ("missing final delimiter", _m()[:-1], "EINVAL", "interpreter", len(_m()) - 1),
    # flags
    ("flags POCF", _m(flags=b"POCF"), "ok", None, None),
    ("flags POC", _m(flags=b"POC"), "ok", None, None),
    ("flags FF", _m(flags=b"FF"), "ok", None, None),
    ("flags PP", _m(flags=b"PP"), "ok", None, None),
    ("flags X", _m(flags=b"X"), "EINVAL", "flags", len(_m())),
    ("flags p", _m(flags=b"p"), "EINVAL", "flags", len(_m())),
    ("flags T (old docs)", _m(flags=b"T"), "EINVAL", "flags", len(_m())),
    ("flags P O", _m(flags=b"P O"), "EINVAL", "flags", len(_m()) + 1),
    ("flags F newline", _m(flags=b"F\n"), "ok", None, None),
    ("flags F two newlines", _m(flags=b"F\n\n"), "EINVAL", "flags", len(_m()) + 2),
    ("flags newline P", _m(flags=b"\nP"), "EINVAL", "flags", len(_m()) + 1),
    # lengths
    ("length 10", _TEN, "EINVAL", "length", 10),
    ("length 11", _TEN + b":", "ok", None, None),
    ("length 1920", _1920, "ok", None, None),
    ("length 1921", _1921, "EINVAL", "length", 1920),
    ("long interpreter", _LONG, "ok", None, None),
]
assert len(_1920) == 1920 and len(_1921) == 1921


#: The exact reason of every row the kernel rejects (the message is "invalid FIELD: REASON").
REASONS: dict[str, str] = {
    "delim newline, no final newline": (
        "with a newline delimiter the string must end with a newline after the flags"
    ),
    "delim 4 eaten by \\x4": "the mask is 9 bytes but the magic is 1; they must be the same length",
    "delim P": "cannot be P, O, C or F, which are flag letters",
    "delim O": "cannot be P, O, C or F, which are flag letters",
    "delim C": "cannot be P, O, C or F, which are flag letters",
    "delim F": "cannot be P, O, C or F, which are flag letters",
    "name empty": "the name is empty",
    "name .": "'.' is not allowed as a name",
    "name ..": "'..' is not allowed as a name",
    "name with /": "a name cannot contain '/'",
    "name with two /": "a name cannot contain '/'",
    "name with NUL": "contains a NUL byte (\\0); the kernel stops reading the name there",
    "name 256 bytes": "the name is 256 bytes; at most 255",
    "name 256 bytes and bad flags": (
        "unexpected 'X'; flags are P, O, C, F and then at most one newline"
    ),
    "name not closed": "missing delimiter ':' after the name",
    "type X": "must be M (magic) or E (extension), not 'X'",
    "type m": "must be M (magic) or E (extension), not 'm'",
    "type empty": "must be M (magic) or E (extension), not ':'",
    "type MM": "must be the single letter M or E",
    "offset -1": "cannot be negative",
    "offset 1 two newlines": "unexpected '\\n' in the number",
    "offset space 1": "must be a decimal number",
    "offset 1 space": "unexpected ' ' in the number",
    "offset +": "must be a decimal number",
    "offset +-1": "must be a decimal number",
    "offset 0x10": "unexpected 'x' in the number",
    "offset 256 + 1 byte": "offset 256 + magic size 1 runs past the 256 bytes the kernel reads",
    "offset 2147483648": "2147483648 is out of range",
    "offset huge": "999999999999999999999999999999 is out of range",
    "offset with NUL": "contains a NUL byte (\\0); the kernel stops reading the offset there",
    "offset 250 + 7 bytes": "offset 250 + magic size 7 runs past the 256 bytes the kernel reads",
    "magic \\x4 then delimiter": "\\x must be followed by two hex digits",
    "magic \\xZZ": "\\x must be followed by two hex digits",
    "magic \\x4Z": "\\x must be followed by two hex digits",
    "magic \\\\xZZ": "\\x must be followed by two hex digits",
    "magic raw NUL first": "the magic starts with a raw NUL byte (write it as \\x00)",
    "magic empty": "the magic is empty",
    "magic 257 bytes": "the magic is 257 bytes; at most 256",
    "magic 256 bytes at offset 1": (
        "offset 1 + magic size 256 runs past the 256 bytes the kernel reads"
    ),
    "magic not closed": "missing delimiter ':' after the magic",
    "mask shorter": "the mask is 1 bytes but the magic is 2; they must be the same length",
    "mask longer": "the mask is 2 bytes but the magic is 1; they must be the same length",
    "mask \\xZZ": "\\x must be followed by two hex digits",
    "E with /": "an extension cannot contain '/'",
    "E with two /": "an extension cannot contain '/'",
    "E empty": "the extension is empty",
    "E NUL in offset": "contains a NUL byte (\\0); the kernel stops reading the offset there",
    "E NUL in extension": "contains a NUL byte (\\0); the kernel stops reading the extension there",
    "interpreter empty": "the interpreter is empty",
    "interpreter NUL": "contains a NUL byte (\\0); the kernel stops reading the interpreter there",
    "missing final delimiter": "missing delimiter ':' after the interpreter",
    "flags X": "unexpected 'X'; flags are P, O, C, F and then at most one newline",
    "flags p": "unexpected 'p'; flags are P, O, C, F and then at most one newline",
    "flags T (old docs)": "unexpected 'T'; flags are P, O, C, F and then at most one newline",
    "flags P O": "unexpected ' '; flags are P, O, C, F and then at most one newline",
    "flags F two newlines": "unexpected '\\n'; flags are P, O, C, F and then at most one newline",
    "flags newline P": "unexpected 'P'; flags are P, O, C, F and then at most one newline",
    "length 10": "the register string is 10 bytes; the kernel needs at least 11",
    "length 1921": "the register string is 1921 bytes; the kernel accepts at most 1920",
    "type missing after the name": "missing type (M or E)",
    "type then end of string": "missing delimiter ':' after the type",
}


@pytest.fixture(scope="module")
def table_verdicts() -> dict[str, Outcome]:
    answers = kernel([row[1] for row in ROWS])
    return {row[0]: first for row, (first, _) in zip(ROWS, answers, strict=True)}


def test_every_rejected_row_has_its_reason() -> None:
    assert set(REASONS) == {row[0] for row in ROWS if row[2] not in ("ok", "EEXIST")}


@pytest.mark.parametrize(
    ("row_id", "data", "expected", "field", "position"),
    [pytest.param(*row, id=row[0]) for row in ROWS],
)
def test_table_parser(
    row_id: str,
    data: bytes,
    expected: str,
    field: str | None,
    position: int | None,
) -> None:
    """The parser's verdict, error field, position and reason; needs no kernel."""
    if expected in ("ok", "EEXIST"):
        entry = Entry.parse(data)
        assert Entry.parse(entry.register_bytes()) == entry
        assert str(Entry.parse(str(entry))) == str(entry)
        return
    error_type = NameTooLongError if expected == "ENAMETOOLONG" else EntryParseError
    with pytest.raises(error_type) as info:
        Entry.parse(data)
    err = info.value
    assert type(err) is error_type
    assert err.code == ("name_too_long" if expected == "ENAMETOOLONG" else "invalid_entry")
    assert (err.field, err.position, err.reason) == (field, position, REASONS[row_id])
    assert err.data == data
    shown = data.decode("latin-1").translate({i: "?" for i in [*range(32), 127]})
    caret = " " * min(err.position, len(shown)) + "^"
    assert str(err) == f"invalid {field}: {REASONS[row_id]}\n    {shown}\n    {caret}"


@pytest.mark.parametrize(
    ("row_id", "expected"), [pytest.param(row[0], row[2], id=row[0]) for row in ROWS]
)
def test_table_matches_kernel(
    table_verdicts: dict[str, Outcome], row_id: str, expected: str
) -> None:
    """The running kernel (a private instance) gives every row the table's verdict."""
    assert table_verdicts[row_id].result == expected, "the kernel disagrees with the table"


def test_table_proc_files(table_verdicts: dict[str, Outcome]) -> None:
    """What the kernel prints for every accepted row is what we parsed."""
    for row_id, data, *_ in ROWS:
        proc = table_verdicts[row_id].proc
        if proc is None:
            continue
        entry = Entry.parse(data)
        assert parse_proc_entry(entry.name, proc) == EntryState(entry, True), row_id


# --------------------------------------------------------------------------- decoding details


@pytest.mark.parametrize(
    ("magic", "decoded"),
    [
        (rb"\x41", b"A"),
        (rb"\x4142", b"A42"),
        (rb"\\", b"\\\\"),
        (rb"\\x41", b"\\\\x41"),
        (rb"\\\x41", b"\\\\A"),
        (rb"\n", b"\\n"),
        (b"A\0B", b"A"),
        (rb"\x00\x01", b"\0\x01"),
        (rb"\X41", b"\\X41"),
    ],
)
def test_magic_decoding(magic: bytes, decoded: bytes) -> None:
    assert Entry.parse(_m(magic=magic)).magic == decoded


def test_fields_and_flags() -> None:
    e = Entry.parse(b":n:M:2:\\x41\\x42:\\xff\\x0f:/bin/true:CP\n")
    assert (e.name, e.kind, e.offset, e.magic, e.mask, e.interpreter, e.flags) == (
        "n",
        "M",
        2,
        b"AB",
        b"\xff\x0f",
        "/bin/true",
        "POC",
    )
    assert e.extension is None
    e = Entry.parse(b":n:E:ignored:py:ignored:/usr/bin/python3:")
    assert (e.kind, e.extension, e.offset, e.magic, e.mask) == ("E", "py", 0, b"", None)
    assert Entry.parse(_m().decode()) == Entry.parse(_m())


@pytest.mark.parametrize(
    ("flags", "normal"),
    [("", ""), ("F", "F"), ("FP", "PF"), ("C", "OC"), ("CC", "OC"), ("FCOP", "POCF")],
)
def test_normalize_flags(flags: str, normal: str) -> None:
    assert normalize_flags(flags) == normal


@pytest.mark.parametrize(
    ("flags", "bad"), [("X", "'X'"), ("T", "'T'"), ("p", "'p'"), ("F\n", "'\\n'"), ("P O", "' '")]
)
def test_normalize_flags_rejects(flags: str, bad: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_flags(flags)
    assert str(info.value) == (
        f"unknown flag {bad}: binfmt_misc flags are P, O, C and F (T, L and D are not kernel flags)"
    )


def test_classic_line_round_trips_byte_for_byte() -> None:
    entry = Entry.parse(CLASSIC)
    assert entry.register_bytes() == CLASSIC
    assert str(entry) == CLASSIC.decode()
    assert entry.to_dict() == {
        "name": "qemu-arm",
        "type": "M",
        "offset": 0,
        "magic": "7f454c4601010100000000000000000002002800",
        "mask": "ffffffffffffff000000000000000000feffffff",
        "extension": None,
        "interpreter": "/usr/bin/qemu-arm-static",
        "flags": "F",
    }


def test_to_dict_for_extension_entries() -> None:
    assert Entry.parse(_e()).to_dict() == {
        "name": "t",
        "type": "E",
        "offset": None,
        "magic": None,
        "mask": None,
        "extension": "py",
        "interpreter": "/bin/true",
        "flags": "",
    }


def test_other_delimiter_when_a_field_holds_a_colon() -> None:
    entry = Entry(name="a:b", kind="M", interpreter="/opt/x:y/qemu", magic=b":")
    assert entry.register_bytes() == rb"|a:b|M||\x3a||/opt/x:y/qemu|"
    assert Entry.parse(entry.register_bytes()) == entry


def test_compact_form_when_escapes_do_not_fit() -> None:
    magic = bytes(range(1, 256)) + b"A"
    entry = Entry(name="big", kind="M", interpreter="/bin/true", magic=magic, mask=magic)
    data = entry.register_bytes()
    assert len(data) <= 1920
    assert Entry.parse(data) == entry


# A 256-byte magic and mask escaped in full (2048 bytes) do not fit in 1920: the
# compact form writes bytes raw where the kernel's scan and decode keep them.
# (start of the magic, how the compact form writes it); the rest is "A" and the mask \xff.
COMPACT = [
    (b"\\A", b"\\A"),  # a backslash before an ordinary byte stays a backslash
    (b"\\x", b"\\x5cx"),  # before 'x' it would start an escape
    (b"\\\0", b"\\x5c\\x00"),  # before a NUL (the kernel stops decoding there)
    (b"\\:", b"\\x5c\\x3a"),  # before the delimiter
    (b"\\\\x", b"\\\\\\x78"),  # a raw pair reads as "\\"; the 'x' after it must not
    (b"\\\\\\\\x", b"\\\\\\\\\\x78"),
    (b"\\\\Ax", b"\\\\Ax"),  # only the byte right after a pair
    (b"\\\\\\x", b"\\\\\\x5cx"),
    (b"\0", b"\\x00"),
    (b":", b"\\x3a"),
    (b"x", b"x"),
    (b"\xff\x7f", b"\xff\x7f"),
]


@pytest.mark.parametrize(("start", "written"), COMPACT)
def test_compact_form_exactly(start: bytes, written: bytes) -> None:
    entry = Entry("n", "M", "/bin/true", magic=start.ljust(256, b"A"), mask=b"\xff" * 256)
    rest = b"A" * (256 - len(start))
    assert (
        entry.register_bytes() == b":n:M::" + written + rest + b":" + b"\xff" * 256 + b":/bin/true:"
    )
    assert Entry.parse(entry.register_bytes()) == entry


def test_compact_form_trailing_backslash_and_kernel() -> None:
    """A backslash last in the field stays raw; the kernel reads every form back exactly."""
    last = Entry("n", "M", "/bin/true", magic=b"A" * 255 + b"\\", mask=b"\xff" * 256)
    assert last.register_bytes()[6 + 254 :] == b"A\\:" + b"\xff" * 256 + b":/bin/true:"
    entries = [last] + [
        Entry(f"n{i}", "M", "/bin/true", magic=s.ljust(256, b"A"), mask=b"\xff" * 256)
        for i, (s, _) in enumerate(COMPACT)
    ]
    answers = kernel([e.register_bytes() for e in entries])
    for entry, (outcome, _) in zip(entries, answers, strict=True):
        assert outcome.result == "ok" and outcome.proc is not None
        assert parse_proc_entry(entry.name, outcome.proc) == EntryState(entry, True)


def test_non_bytes_names_round_trip() -> None:
    entry = Entry.parse(_m(name=b"\xff\xfe na\nme"))
    assert entry.name == os.fsdecode(b"\xff\xfe na\nme")
    assert Entry.parse(entry.register_bytes()) == entry
    assert Entry.parse(str(entry)) == entry


_FLAGS_REASON = "; flags are P, O, C and F"
_UNENCODABLE = "cannot be encoded for the file system: surrogates not allowed"


@pytest.mark.parametrize(
    ("changes", "field", "position", "reason"),
    [
        ({"name": ""}, "name", 1, "the name is empty"),
        ({"name": ".."}, "name", 1, "'..' is not allowed as a name"),
        ({"name": "a/b"}, "name", 2, "a name cannot contain '/'"),
        ({"name": "n" * 256}, "name", 256, "the name is 256 bytes; at most 255"),
        ({"name": "a\ud800"}, "name", 1, _UNENCODABLE),
        ({"kind": "X"}, "type", 3, "must be M (magic) or E (extension), not 'X'"),
        ({"interpreter": ""}, "interpreter", 12, "the interpreter is empty"),
        (
            {"interpreter": "/bin\0/true"},
            "interpreter",
            16,
            "contains a NUL byte (\\0); the kernel stops reading the interpreter there",
        ),
        ({"interpreter": "/\ud800"}, "interpreter", 1, _UNENCODABLE),
        ({"offset": -1}, "offset", 5, "cannot be negative"),
        (
            {"offset": 256},
            "offset",
            5,
            "offset 256 + magic size 1 runs past the 256 bytes the kernel reads",
        ),
        ({"magic": b""}, "magic", 6, "the magic is empty"),
        ({"magic": b"A" * 257}, "magic", 6, "the magic is 257 bytes; at most 256"),
        (
            {"mask": b"\xff\xff"},
            "mask",
            11,
            "the mask is 2 bytes but the magic is 1; they must be the same length",
        ),
        ({"flags": "X"}, "flags", 22, "unknown flag 'X'" + _FLAGS_REASON),
        ({"flags": "F\n"}, "flags", 23, "unknown flag '\\n'" + _FLAGS_REASON),
        ({"flags": "PXO"}, "flags", 23, "unknown flag 'X'" + _FLAGS_REASON),
        ({"flags": "\ud800"}, "flags", 22, "unknown flag '\\ud800'" + _FLAGS_REASON),
        ({"extension": "py"}, "type", 3, "an extension only applies to E entries"),
        (  # magic still set
            {"kind": "E", "extension": "py"},
            "type",
            3,
            "offset, magic and mask only apply to M entries",
        ),
        ({"kind": "E", "magic": b"", "extension": ""}, "extension", 6, "the extension is empty"),
        (
            {"kind": "E", "magic": b"", "extension": "a/b"},
            "extension",
            7,
            "an extension cannot contain '/'",
        ),
        ({"kind": "E", "magic": b"", "extension": "\ud800"}, "extension", 0, _UNENCODABLE),
    ],
)
def test_invalid_entries_cannot_be_built(
    changes: dict[str, object], field: str, position: int, reason: str
) -> None:
    base = Entry(name="n", kind="M", interpreter="/bin/true", magic=b"A")
    with pytest.raises(EntryParseError) as info:
        base.replace(**changes)
    assert (info.value.field, info.value.position, info.value.reason) == (field, position, reason)


def test_no_delimiter_left() -> None:
    """A name and interpreter that hold every byte leave nothing to separate the fields."""
    name = os.fsdecode(bytes(b for b in range(1, 256) if b != ord("/")))
    with pytest.raises(EntryParseError) as info:
        Entry(name=name, kind="M", interpreter="/x", magic=b"A", flags="F")
    err = info.value
    assert (err.field, err.position) == ("delimiter", 0)
    assert err.reason == "no delimiter byte is left that the name and interpreter do not contain"
    assert err.data.endswith(b":/x:F")


def test_full_escapes_up_to_exactly_1920_bytes() -> None:
    """At 1920 bytes the escaped form still fits: only longer entries go compact."""
    fixed = len(":n:M::\\x41::/:")
    at_limit = Entry("n", "M", "/" + "i" * (1920 - fixed), magic=b"A")
    assert at_limit.register_bytes() == b":n:M::\\x41::/" + b"i" * (1920 - fixed) + b":"
    over = Entry("n", "M", "/" + "i" * (1921 - fixed), magic=b"A")
    assert over.register_bytes() == b":n:M::A::/" + b"i" * (1921 - fixed) + b":"


@pytest.mark.parametrize(
    ("end", "written"),
    [
        (b"\\x", b"\\x5cx"),  # the backslash right before the last byte
        (b"\\\0", b"\\x5c\\x00"),
        (b"\\\\", b"\\\\"),
        (b"\\A", b"\\A"),
    ],
)
def test_compact_form_at_the_end_of_the_magic(end: bytes, written: bytes) -> None:
    entry = Entry("n", "M", "/bin/true", magic=end.rjust(256, b"A"), mask=b"\xff" * 256)
    data = entry.register_bytes()
    assert (
        data
        == b":n:M::" + b"A" * (256 - len(end)) + written + b":" + b"\xff" * 256 + b":/bin/true:"
    )
    assert Entry.parse(data) == entry


def test_name_too_long_on_construction() -> None:
    with pytest.raises(NameTooLongError):
        Entry(name="n" * 256, kind="M", interpreter="/bin/true", magic=b"A")


def test_replace_normalises_flags() -> None:
    base = Entry(name="n", kind="M", interpreter="/bin/true", magic=b"A")
    assert base.replace(flags="FC").flags == "OCF"
    assert base.replace(flags="FC") == base.replace(flags="OCF")
    assert base.replace(mask=b"") == base


@pytest.mark.parametrize(
    ("flags", "normal", "printed"),
    [
        ("C", "OC", ":n:M::\\x41::/bin/true:OC"),
        ("FP", "PF", ":n:M::\\x41::/bin/true:PF"),
        ("FCOP", "POCF", ":n:M::\\x41::/bin/true:POCF"),
        ("FF", "F", ":n:M::\\x41::/bin/true:F"),
    ],
)
def test_flags_are_normalised_before_printing(flags: str, normal: str, printed: str) -> None:
    entry = Entry(name="n", kind="M", interpreter="/bin/true", magic=b"A", flags=flags)
    assert entry.flags == normal
    assert str(entry) == printed
    assert entry.register_bytes() == printed.encode()


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="POCF", max_size=6), st.text(alphabet="POCF", max_size=6))
def test_equal_entries_print_equal(a: str, b: str) -> None:
    """Equal entries (flags compare normalised) have equal str() and register bytes."""
    x = Entry(name="n", kind="M", interpreter="/bin/true", magic=b"A", flags=a)
    y = Entry(name="n", kind="M", interpreter="/bin/true", magic=b"A", flags=b)
    assert (x == y) == (normalize_flags(a) == normalize_flags(b))
    if x == y:
        assert str(x) == str(y)
        assert x.register_bytes() == y.register_bytes()
        assert hash(x) == hash(y)
    assert str(x).endswith(":" + normalize_flags(a))


# --------------------------------------------------------------------------- matching


def test_matches_magic_and_mask() -> None:
    arm = Entry.parse(CLASSIC)
    header = bytes.fromhex("7f454c4601010100") + bytes(8) + bytes.fromhex("02002800")
    assert arm.matches(header)
    assert arm.matches(header[:16] + b"\x03" + header[17:])  # ET_DYN through the mask
    assert arm.matches(header[:7] + b"\x61" + header[8:])  # EI_OSABI ignored
    assert not arm.matches(header[:18] + b"\xb7\x00")
    assert not arm.matches(b"")
    exact = Entry(name="z", kind="M", interpreter="/bin/true", offset=255, magic=b"\0")
    assert exact.matches(b"")  # zero-filled past end of file
    assert not exact.matches(b"\1" * 256)


def test_matches_extension_after_last_dot() -> None:
    py = Entry.parse(_e())
    assert py.matches(b"", "/tmp/x.tar.py")
    assert not py.matches(b"", "/tmp/x.PY")
    assert not py.matches(b"", "/tmp/py")
    assert not Entry.parse(_e(ext=b".py")).matches(b"", "x.py")


# --------------------------------------------------------------------------- /proc files


PROC_ROWS = [
    CLASSIC.replace(b"/usr/bin/qemu-arm-static", T),
    _m(flags=b"C"),
    _m(offset=b"+17", magic=rb"\x00\xff\\", mask=rb"\x0f\xf0\x01\x02"),
    _m(magic=b"\\x7fELF", mask=b"\\xff\\xff\\xff\\xff", flags=b"PF\n"),
    _e(interp=b"/bin/true\nflags: F", flags=b"O", d=b"|"),
    _e(ext=b".x y"),
    _m(interp=b"/weird\ninterpreter /x\nflags: P\noffset 3\nmagic 41", d=b"|"),
    _m(name=b"\xffname", interp=b"/\xfe"),
]


def test_parse_proc_entry_against_kernel() -> None:
    for data, (outcome, again) in zip(PROC_ROWS, kernel(PROC_ROWS, reencode=True), strict=True):
        assert outcome.result == "ok", data
        assert outcome.proc is not None
        entry = Entry.parse(data)
        assert parse_proc_entry(entry.name, outcome.proc) == EntryState(entry, True)
        assert again is not None and again.proc == outcome.proc


def test_parse_proc_entry_disabled_and_garbage() -> None:
    text = b"disabled\ninterpreter /bin/true\nflags: \noffset 0\nmagic 41\n"
    state = parse_proc_entry("t", text)
    assert state == EntryState(Entry.parse(_m()), False)
    with pytest.raises(EntryParseError) as info:
        parse_proc_entry("t", b"enabled\n")
    assert str(info.value) == "invalid entry: not a binfmt_misc entry file\n    enabled?\n    ^"


# --------------------------------------------------------------------------- properties

_DELIMS = [b":", b"|", b" ", b"\n", b"\0", b"a", b"4", b"x", b"\\", b"P", b"F", b"M"]
_TOKENS = [
    rb"\x41",
    rb"\x7f",
    rb"\x00",
    rb"\xff",
    rb"\xAb",
    rb"\x4",
    rb"\xZ1",
    rb"\x",
    b"\\",
    b"A",
    b"\0",
    b"x",
    b"4",
    b":",
    b"\n",
    rb"\\",
]


_DELIM = st.sampled_from([b":"] * 8 + _DELIMS) | st.binary(min_size=1, max_size=1)
_NAME = st.sampled_from([b"t"] * 12 + [b".", b"..", b"a/b", b"", b"n" * 256, b"register"]) | (
    st.binary(min_size=1, max_size=6)
)
_KIND = st.sampled_from([b"M"] * 8 + [b"E"] * 3 + [b"X", b"", b"MM"])
_OFFSET = st.sampled_from(
    [b""] * 10 + [b"0", b"+1", b"-0", b"-1", b"007", b"1\n", b" 1", b"255", b"2147483648"]
) | st.binary(max_size=3)
_GOOD_TOKENS = [rb"\x41", rb"\x7f", rb"\x00", rb"\xff", rb"\xAb", b"A", b"4"]
_FIELD = st.lists(st.sampled_from(_GOOD_TOKENS * 4 + _TOKENS), max_size=6).map(b"".join)
_INTERP = st.sampled_from([T] * 8 + [b"", b"true", b"/nonexistent"])
_FLAGS = st.sampled_from([b""] * 4 + [b"P", b"OC", b"POC", b"X", b"\n", b"P\n", b"P\n\n"])
_MUTATION = st.tuples(
    st.sampled_from(["delete", "insert", "truncate", "newline", "delim"]),
    st.floats(0, 1, exclude_max=True),
    st.integers(0, 255),
)


@st.composite
def register_strings(draw: st.DrawFn) -> bytes:
    """Plausible register strings, then mutated, so both verdicts are common."""
    d = draw(_DELIM)
    magic = draw(_FIELD)
    mask = draw(st.sampled_from([b"", b"", magic.replace(b"A", rb"\xff"), draw(_FIELD)]))
    fields = [draw(_NAME), draw(_KIND), draw(_OFFSET), magic, mask, draw(_INTERP), draw(_FLAGS)]
    data = bytearray(d + d.join(fields))
    for op, where, byte in draw(st.lists(_MUTATION, max_size=1)):
        at = int(where * len(data))
        if op == "delete":
            del data[at : at + 1]
        elif op == "insert":
            data[at:at] = bytes([byte])
        elif op == "truncate":
            del data[at:]
        elif op == "newline":
            data += b"\n"
        else:
            data[at:at] = d
    return bytes(data)


@settings(
    max_examples=8,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(st.lists(register_strings(), min_size=50, max_size=50))
def test_parser_agrees_with_kernel(strings: list[bytes]) -> None:
    """The parser's verdict equals the kernel's on generated strings.

    Each batch of 50 goes to the kernel in one sandboxed call (8 batches); bigger
    lists make Hypothesis itself slow. Shrinking is off: the assertion lists the
    strings where the two disagree.
    """
    answers = kernel(strings, reencode=True)
    disagree = [
        (s, first.result, parser_outcome(s))
        for s, (first, _) in zip(strings, answers, strict=True)
        if not agrees(s, first.result)
    ]
    assert not disagree
    for data, (first, again) in zip(strings, answers, strict=True):
        if first.result != "ok":
            continue
        assert first.proc is not None and again is not None
        entry = Entry.parse(data)
        assert parse_proc_entry(entry.name, first.proc) == EntryState(entry, True)
        assert again.proc == first.proc, "our re-encoding registers differently"


_text_byte = st.integers(1, 255)


def _text(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.lists(_text_byte, min_size=min_size, max_size=max_size).map(
        lambda bs: os.fsdecode(bytes(bs))
    )


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    name = draw(_text(1, 255).filter(lambda s: "/" not in s and s not in (".", "..")))
    interpreter = draw(_text(1, 64))
    flags = draw(st.sampled_from(["", "F", "P", "OC", "POCF", "PF"]))
    try:
        if draw(st.booleans()):
            ext = draw(_text(1, 12).filter(lambda s: "/" not in s))
            return Entry(name=name, kind="E", interpreter=interpreter, flags=flags, extension=ext)
        magic = draw(st.binary(min_size=1, max_size=256))
        mask = draw(st.none() | st.binary(min_size=len(magic), max_size=len(magic)))
        offset = draw(st.integers(0, 256 - len(magic)))
        return Entry(
            name=name,
            kind="M",
            interpreter=interpreter,
            flags=flags,
            offset=offset,
            magic=magic,
            mask=mask,
        )
    except EntryParseError as err:  # too long for one write, even compact
        assert err.field == "length", err
        assume(False)
        raise


@settings(max_examples=100, deadline=None)
@given(entries())
def test_entry_round_trips(entry: Entry) -> None:
    data = entry.register_bytes()
    assert len(data) <= 1920
    assert Entry.parse(data) == entry
    assert Entry.parse(str(entry)) == entry
    if b":" not in os.fsencode(entry.name + entry.interpreter + (entry.extension or "")):
        assert data.startswith(b":")


@settings(max_examples=150, deadline=None)
@given(register_strings())
def test_reparse_is_stable(data: bytes) -> None:
    try:
        entry = Entry.parse(data)
    except EntryParseError:
        return
    assert Entry.parse(entry.register_bytes()) == entry


def test_too_long_even_compact_is_a_length_error() -> None:
    """The full-escape form's length error is what the user sees, not a delimiter error."""
    with pytest.raises(EntryParseError) as info:
        Entry(name="n", kind="M", interpreter="/" + "i" * 1900, magic=b"A" * 256)
    err = info.value
    assert (err.field, err.position) == ("length", 1920)
    assert err.reason == "the register string is 2934 bytes; the kernel accepts at most 1920"


def test_extension_entries_write_empty_offset_and_mask_fields() -> None:
    entry = Entry(name="n", kind="E", interpreter="/bin/true", extension="py", flags="F")
    assert entry.register_bytes() == b":n:E::py::/bin/true:F"
