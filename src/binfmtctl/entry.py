"""binfmt_misc entries: a frozen value type with a kernel-exact register-string parser.

The parser models fs/binfmt_misc.c (Linux 6.18) step by step, including its
quirks, so that ``Entry.parse`` accepts exactly the strings the kernel accepts
and rejects the rest with the kernel's errno class (EINVAL -> ``invalid_entry``,
ENAMETOOLONG -> ``name_too_long``). Checks the kernel makes *after* parsing --
opening the interpreter for ``F``, EEXIST for taken names -- are not modelled:
they depend on the system, not on the string.

Construction validates by writing the entry out and parsing it back with the
same parser, so there is one rule book and an invalid ``Entry`` cannot exist.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

from binfmtctl.errors import EntryParseError, NameTooLongError

MIN_REGISTER_LENGTH = 11
MAX_REGISTER_LENGTH = 1920
BINPRM_BUF_SIZE = 256  # bytes of the file the kernel reads for matching
NAME_MAX = 255
INT_MAX = 2**31 - 1
FLAG_LETTERS = "POCF"

_PAD = 8  # the kernel pads its copy with 8 delimiter bytes; reads may run into them
_BACKSLASH, _X, _NUL, _NL = 0x5C, 0x78, 0x00, 0x0A
_HEX = frozenset(b"0123456789abcdefABCDEF")
_DIGITS = frozenset(b"0123456789")

# Delimiters tried when writing an entry: ':' first (what everyone writes), then
# punctuation that cannot be confused with escapes, digits or flag letters.
_SAFE_DELIMITERS = b":|!#%,;@~^=&*+_?$<>'\"`()[]{} -."
_ALL_DELIMITERS = _SAFE_DELIMITERS + bytes(
    b for b in range(1, 256) if b not in _SAFE_DELIMITERS and b not in b"POCF\\"
)


def normalize_flags(flags: str) -> str:
    """Flags as the kernel stores and prints them: a subset of "POCF" in that order.

    ``C`` implies ``O`` (the kernel sets both bits), so "C" becomes "OC".
    """
    bad = [ch for ch in flags if ch not in FLAG_LETTERS]
    if bad:
        raise ValueError(
            f"unknown flag {bad[0]!r}: binfmt_misc flags are P, O, C and F "
            "(T, L and D are not kernel flags)"
        )
    have = set(flags)
    if "C" in have:
        have.add("O")
    return "".join(ch for ch in FLAG_LETTERS if ch in have)


class _Fields(NamedTuple):
    """What the kernel keeps of a register string (text fields still bytes)."""

    name: bytes
    kind: str
    interpreter: bytes
    flags: str
    offset: int
    magic: bytes
    mask: bytes | None
    extension: bytes | None


def _fail(reason: str, data: bytes, position: int, field: str) -> EntryParseError:
    return EntryParseError(reason, data, position, field)


def _show(byte: int) -> str:
    return repr(bytes([byte]))[1:]


def _field_end(buf: bytes, start: int, n: int, data: bytes, field: str) -> int:
    """Index of the delimiter ending a plain field (the kernel's strchr).

    strchr stops at a NUL, so a raw NUL before the delimiter is an error. A
    delimiter found only in the padding means the field was never closed: the
    kernel would go on, but can then only fail at the final length check.
    """
    delim = buf[0]
    end = buf.index(delim, start)
    nul = buf.find(_NUL, start, end)
    if delim != _NUL and nul >= 0:
        _raise(
            f"contains a NUL byte (\\0); the kernel stops reading the {field} there",
            data,
            nul,
            field,
        )
    if end >= n:
        _raise(f"missing delimiter {_show(delim)} after the {field}", data, n, field)
    return end


def _raise(reason: str, data: bytes, position: int, field: str) -> NoReturn:
    raise _fail(reason, data, position, field)


def _scan_escaped(buf: bytes, start: int, n: int, data: bytes, field: str) -> int:
    """Index of the delimiter ending magic or mask (the kernel's scanarg).

    Every ``\\x`` must be followed by two hex digits, and those two characters
    are consumed even when one of them is the delimiter. Unlike strchr this
    scan walks over raw NUL bytes.
    """
    delim = buf[0]
    i = start
    while True:
        c = buf[i]
        i += 1
        if c == delim:
            if i - 1 >= n:
                _raise(f"missing delimiter {_show(delim)} after the {field}", data, n, field)
            return i - 1
        if c == _BACKSLASH and buf[i] == _X:
            i += 1
            for _ in range(2):
                if buf[i] not in _HEX or i >= n:
                    _raise("\\x must be followed by two hex digits", data, min(i, n), field)
                i += 1


def unescape(raw: bytes) -> bytes:
    """Decode magic/mask as the kernel's string_unescape(UNESCAPE_HEX) does.

    Only ``\\x`` with one or two hex digits is decoded; any other backslash is
    kept together with the character after it, which is never itself an escape
    start (so ``\\\\x41`` stays five bytes). Decoding stops at a raw NUL.
    """
    raw = raw.split(b"\0", 1)[0]
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        if raw[i] == _BACKSLASH and i + 1 < n:
            i += 1
            if raw[i] == _X and i + 1 < n and raw[i + 1] in _HEX:
                value = int(chr(raw[i + 1]), 16)
                i += 2
                if i < n and raw[i] in _HEX:
                    value = value * 16 + int(chr(raw[i]), 16)
                    i += 1
                out.append(value)
                continue
            out.append(_BACKSLASH)
        out.append(raw[i])
        i += 1
    return bytes(out)


def _parse_offset(text: bytes, start: int, data: bytes) -> int:
    """The kernel's kstrtoint(text, 10) followed by its ``>= 0`` check."""
    i = 0
    negative = text[:1] == b"-"
    if text[:1] in (b"-", b"+"):
        i = 1
    first = i
    while i < len(text) and text[i] in _DIGITS:
        i += 1
    if i == first:
        _raise("must be a decimal number", data, start + i, "offset")
    value = int(text[first:i])
    if i < len(text) and text[i] == _NL:
        i += 1
    if i != len(text):
        _raise(f"unexpected {_show(text[i])} in the number", data, start + i, "offset")
    if negative and value:
        _raise("cannot be negative", data, start, "offset")
    if value > INT_MAX:
        _raise(f"{value} is out of range", data, start, "offset")
    return value


def _scan(data: bytes, *, check_length: bool = True) -> _Fields:
    """Parse a register string exactly as create_entry() in fs/binfmt_misc.c does."""
    n = len(data)
    if check_length and n < MIN_REGISTER_LENGTH:
        _raise(
            f"the register string is {n} bytes; the kernel needs at least {MIN_REGISTER_LENGTH}",
            data,
            n,
            "length",
        )
    if check_length and n > MAX_REGISTER_LENGTH:
        _raise(
            f"the register string is {n} bytes; the kernel accepts at most {MAX_REGISTER_LENGTH}",
            data,
            MAX_REGISTER_LENGTH,
            "length",
        )
    if n == 0:
        _raise("the register string is empty", data, 0, "length")
    delim = data[0]
    if delim in b"POCF":
        _raise("cannot be P, O, C or F, which are flag letters", data, 0, "delimiter")
    buf = data + bytes([delim]) * _PAD

    end = _field_end(buf, 1, n, data, "name")
    name = buf[1:end]
    if not name:
        _raise("the name is empty", data, 1, "name")
    if name in (b".", b".."):
        _raise(f"{name.decode()!r} is not allowed as a name", data, 1, "name")
    if b"/" in name:
        _raise("a name cannot contain '/'", data, 1 + name.index(b"/"), "name")

    p = end + 1
    if p >= n:
        _raise("missing type (M or E)", data, n, "type")
    kind = chr(buf[p])
    if kind not in ("M", "E"):
        _raise(f"must be M (magic) or E (extension), not {_show(buf[p])}", data, p, "type")
    if p + 1 >= n:
        _raise(f"missing delimiter {_show(delim)} after the type", data, n, "type")
    if buf[p + 1] != delim:
        _raise("must be the single letter M or E", data, p + 1, "type")
    p += 2

    offset, magic, mask, extension = 0, b"", None, None
    if kind == "M":
        end = _field_end(buf, p, n, data, "offset")
        if end > p:
            offset = _parse_offset(buf[p:end], p, data)
        offset_at, p = p, end + 1

        end = _scan_escaped(buf, p, n, data, "magic")
        raw_magic, magic_at, p = buf[p:end], p, end + 1
        if not raw_magic:
            _raise("the magic is empty", data, magic_at, "magic")
        if raw_magic[0] == _NUL:
            _raise(
                "the magic starts with a raw NUL byte (write it as \\x00)", data, magic_at, "magic"
            )

        end = _scan_escaped(buf, p, n, data, "mask")
        raw_mask, mask_at, p = buf[p:end], p, end + 1

        magic = unescape(raw_magic)
        if raw_mask and raw_mask[0] != _NUL:
            mask = unescape(raw_mask)
            if len(mask) != len(magic):
                _raise(
                    f"the mask is {len(mask)} bytes but the magic is {len(magic)}; "
                    "they must be the same length",
                    data,
                    mask_at,
                    "mask",
                )
        if len(magic) > BINPRM_BUF_SIZE:
            _raise(
                f"the magic is {len(magic)} bytes; at most {BINPRM_BUF_SIZE}",
                data,
                magic_at,
                "magic",
            )
        if offset > BINPRM_BUF_SIZE - len(magic):
            _raise(
                f"offset {offset} + magic size {len(magic)} runs past the "
                f"{BINPRM_BUF_SIZE} bytes the kernel reads",
                data,
                offset_at,
                "offset",
            )
    else:
        p = _field_end(buf, p, n, data, "offset") + 1
        end = _field_end(buf, p, n, data, "extension")
        extension = buf[p:end]
        if not extension:
            _raise("the extension is empty", data, p, "extension")
        if b"/" in extension:
            _raise("an extension cannot contain '/'", data, p + extension.index(b"/"), "extension")
        p = _field_end(buf, end + 1, n, data, "mask") + 1

    end = _field_end(buf, p, n, data, "interpreter")
    interpreter = buf[p:end]
    if not interpreter:
        _raise("the interpreter is empty", data, p, "interpreter")

    p = end + 1
    flag_start = p
    while chr(buf[p]) in FLAG_LETTERS:
        p += 1
    flags = buf[flag_start:p].decode("ascii")
    if buf[p] == _NL:
        p += 1
    if p > n:  # the newline came from the padding: delimiter is '\n'
        _raise(
            "with a newline delimiter the string must end with a newline after the flags",
            data,
            n,
            "flags",
        )
    if p < n:
        _raise(
            f"unexpected {_show(buf[p])}; flags are P, O, C, F and then at most one newline",
            data,
            p,
            "flags",
        )

    if len(name) > NAME_MAX:
        raise NameTooLongError(
            f"the name is {len(name)} bytes; at most {NAME_MAX}", data, 1 + NAME_MAX, "name"
        )
    return _Fields(name, kind, interpreter, normalize_flags(flags), offset, magic, mask, extension)


def _encode_bytes(value: bytes, delim: int, compact: bool) -> bytes:
    """Write magic/mask so the kernel decodes them back to ``value``.

    Normally every byte is ``\\xHH``. ``compact`` writes bytes raw wherever the
    kernel's scan and decode leave them unchanged -- needed when a long magic and
    mask escaped in full do not fit in 1920 bytes.
    """
    if not compact:
        return "".join(f"\\x{b:02x}" for b in value).encode("ascii")
    out = bytearray()
    i, n = 0, len(value)
    escape_x = False  # after a raw "\\\\" pair a raw 'x' would be read as "\\x"
    while i < n:
        b = value[i]
        nxt = value[i + 1] if i + 1 < n else None
        if b == _BACKSLASH:
            if nxt == _BACKSLASH:
                out += b"\\\\"
                i += 2
                escape_x = True
                continue
            if (nxt is None and delim != _X) or (nxt is not None and nxt not in (_NUL, delim, _X)):
                out.append(b)
            else:
                out += b"\\x5c"
        elif b in (_NUL, delim) or (b == _X and escape_x):
            out += f"\\x{b:02x}".encode("ascii")
        else:
            out.append(b)
        escape_x = False
        i += 1
    return bytes(out)


def _fsencode(value: str, what: str) -> bytes:
    try:
        return os.fsencode(value)
    except UnicodeEncodeError as err:
        raise _fail(
            f"cannot be encoded for the file system: {err.reason}",
            value.encode("utf-8", "replace"),
            err.start,
            what,
        ) from err


@dataclass(frozen=True)
class Entry:
    """One binfmt_misc handler, as the kernel stores it.

    Text fields are ``os.fsdecode``d (surrogateescape), so any byte the kernel
    accepts in a name or path survives a round trip.
    """

    name: str
    kind: str
    interpreter: str
    flags: str = ""
    offset: int = 0
    magic: bytes = b""
    mask: bytes | None = None
    extension: str | None = None
    _encoded: bytes = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.mask == b"":
            object.__setattr__(self, "mask", None)
        # Normalise flags before encoding, so equal entries print equal ("C" as "OC").
        # Unknown letters are left for _encode to reject with the field and position.
        if set(self.flags) <= set(FLAG_LETTERS):
            object.__setattr__(self, "flags", normalize_flags(self.flags))
        object.__setattr__(self, "_encoded", self._encode())

    @classmethod
    def parse(cls, data: bytes | str) -> Entry:
        """Parse a register string; raises EntryParseError where the kernel says EINVAL."""
        raw = os.fsencode(data) if isinstance(data, str) else bytes(data)
        f = _scan(raw)
        return cls(
            name=os.fsdecode(f.name),
            kind=f.kind,
            interpreter=os.fsdecode(f.interpreter),
            flags=f.flags,
            offset=f.offset,
            magic=f.magic,
            mask=f.mask,
            extension=None if f.extension is None else os.fsdecode(f.extension),
        )

    def register_bytes(self) -> bytes:
        """What to write to ``register``, in one write(2); no trailing newline."""
        return self._encoded

    def __str__(self) -> str:
        return os.fsdecode(self._encoded)

    def _compose(self, delim: int, compact: bool, flags: bytes) -> bytes:
        d = bytes([delim])
        name = _fsencode(self.name, "name")
        interpreter = _fsencode(self.interpreter, "interpreter")
        kind = self.kind.encode("ascii", "replace")
        if self.kind == "E":
            ext = _fsencode(self.extension or "", "extension")
            middle = [b"", ext, b""]
        else:
            offset = str(self.offset).encode("ascii") if self.offset else b""
            magic = _encode_bytes(self.magic, delim, compact)
            mask = _encode_bytes(self.mask or b"", delim, compact)
            middle = [offset, magic, mask]
        return d + d.join([name, kind, *middle, interpreter, flags])

    def _expected(self) -> _Fields:
        ext = None if self.extension is None else _fsencode(self.extension, "extension")
        return _Fields(
            _fsencode(self.name, "name"),
            self.kind,
            _fsencode(self.interpreter, "interpreter"),
            normalize_flags(self.flags),
            self.offset,
            self.magic,
            self.mask,
            ext,
        )

    def _encode(self) -> bytes:
        """Validate by writing the entry out and parsing it back; return the bytes.

        ':' and full ``\\xHH`` escapes are preferred; other delimiters and raw
        bytes are used only when needed to express the entry within 1920 bytes.
        """
        texts = b"".join(
            _fsencode(t, w)
            for t, w in (
                (self.name, "name"),
                (self.interpreter, "interpreter"),
                (self.extension or "", "extension"),
            )
        )
        flags = self.flags.encode("utf-8", "replace")
        candidates = [d for d in _ALL_DELIMITERS if d not in texts]
        primary = next((d for d in candidates if d in _SAFE_DELIMITERS), None)
        too_long: EntryParseError | None = None
        if primary is not None:
            data = self._compose(primary, False, b"")
            bad = next((i for i, ch in enumerate(self.flags) if ch not in FLAG_LETTERS), None)
            if bad is not None:
                raise _fail(
                    f"unknown flag {self.flags[bad]!r}; flags are P, O, C and F",
                    data + flags,
                    len(data) + len(self.flags[:bad].encode()),
                    "flags",
                )
            self._check_kind_fields(data)
            data = self._compose(primary, False, flags)
            self._verify(_scan(data, check_length=False), data)
            if len(data) <= MAX_REGISTER_LENGTH:
                return data
            try:
                _scan(data)
            except EntryParseError as err:
                too_long = err
        for delim in candidates:
            data = self._compose(delim, True, flags)
            if len(data) > MAX_REGISTER_LENGTH:
                continue
            try:
                fields = _scan(data)
            except EntryParseError:
                continue
            if fields == self._expected():
                return data
        if too_long is not None:
            raise too_long
        raise _fail(
            "no delimiter byte is left that the name and interpreter do not contain",
            self._compose(_ALL_DELIMITERS[0], True, flags),
            0,
            "delimiter",
        )

    def _check_kind_fields(self, data: bytes) -> None:
        at = 1 + len(_fsencode(self.name, "name")) + 1
        if self.kind == "E" and (self.offset or self.magic or self.mask is not None):
            raise _fail("offset, magic and mask only apply to M entries", data, at, "type")
        if self.kind == "M" and self.extension is not None:
            raise _fail("an extension only applies to E entries", data, at, "type")

    def _verify(self, fields: _Fields, data: bytes) -> None:
        expected = self._expected()
        for index, name in enumerate(_Fields._fields):
            if fields[index] != expected[index]:
                raise _fail(
                    f"the {name} does not survive being written out (read back {fields[index]!r})",
                    data,
                    0,
                    name,
                )
        if len(fields.name) > NAME_MAX:  # pragma: no cover - _scan raises first
            raise NameTooLongError("name too long", data, 1 + NAME_MAX, "name")

    def matches(self, header: bytes, path: str = "") -> bool:
        """The kernel's test at exec.

        ``header`` is the start of the file (the kernel reads 256 bytes, zeros
        past end of file); E entries compare the text after the last '.' of
        ``path`` as given to execve, case-sensitively.
        """
        if self.kind == "E":
            raw = os.fsencode(path)
            dot = raw.rfind(b".")
            return dot >= 0 and raw[dot + 1 :] == _fsencode(self.extension or "", "extension")
        buf = header[:BINPRM_BUF_SIZE].ljust(BINPRM_BUF_SIZE, b"\0")
        window = int.from_bytes(buf[self.offset : self.offset + len(self.magic)], "big")
        magic = int.from_bytes(self.magic, "big")
        if self.mask is None:
            return window == magic
        return (window ^ magic) & int.from_bytes(self.mask, "big") == 0

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view; magic and mask as lowercase hex, null where not applicable."""
        magic_entry = self.kind == "M"
        return {
            "name": self.name,
            "type": self.kind,
            "offset": self.offset if magic_entry else None,
            "magic": self.magic.hex() if magic_entry else None,
            "mask": self.mask.hex() if self.mask is not None else None,
            "extension": self.extension,
            "interpreter": self.interpreter,
            "flags": self.flags,
        }

    def replace(self, **changes: Any) -> Entry:
        """A copy with ``changes`` applied, validated and with flags normalised."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Handler:
    """A registered entry and whether it is enabled: what the kernel consults at exec.

    The one type for it, from /proc to the renderer; its name is the entry's.
    """

    entry: Entry
    enabled: bool

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def state(self) -> Handler:
        """Itself: for callers written against the old ``Named.state`` (sandbox.py)."""
        return self

    def to_dict(self) -> dict[str, object]:
        return {
            "entry": self.name,
            "interpreter": self.entry.interpreter,
            "flags": self.entry.flags,
        }

    def describe(self) -> str:
        flags = f", flags {self.entry.flags}" if self.entry.flags else ", no flags"
        return f"{self.name} ({self.entry.interpreter}{flags})"


EntryState = Handler  # the old name, until every caller says Handler


_PROC_M = re.compile(
    rb"(enabled|disabled)\ninterpreter (.+)\nflags: ([POCF]*)\n"
    rb"offset ([0-9]+)\nmagic ([0-9a-f]+)(?:\nmask ([0-9a-f]+))?\n",
    re.DOTALL,
)
# Interpreter and extension may both contain newlines; the split is then
# ambiguous and we take the shortest interpreter.
_PROC_E = re.compile(
    rb"(enabled|disabled)\ninterpreter (.+?)\nflags: ([POCF]*)\nextension \.(.+)\n",
    re.DOTALL,
)


def parse_proc_entry(name: str, text: bytes) -> Handler:
    """Parse /proc/sys/fs/binfmt_misc/NAME (which does not print the name itself)."""
    m = _PROC_M.fullmatch(text)
    if m is not None:
        entry = Entry(
            name=name,
            kind="M",
            interpreter=os.fsdecode(m[2]),
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
            interpreter=os.fsdecode(e[2]),
            flags=e[3].decode("ascii"),
            extension=os.fsdecode(e[4]),
        )
        return Handler(entry, e[1] == b"enabled")
    raise _fail("not a binfmt_misc entry file", text, 0, "entry")
