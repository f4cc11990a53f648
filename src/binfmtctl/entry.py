"""binfmt_misc entries: a frozen value type, its register string and its /proc file.

``Entry.parse`` reads a register string with ``register_string.scan``, which
models fs/binfmt_misc.c (Linux 6.18) step by step, so it accepts exactly the
strings the kernel accepts and rejects the rest with the kernel's errno class.
Checks the kernel makes *after* parsing -- opening the interpreter for ``F``,
EEXIST for taken names -- are not modelled: they depend on the system, not on
the string.

Construction validates by writing the entry out and parsing it back with the
same parser, so there is one rule book and an invalid ``Entry`` cannot exist.
"""

from __future__ import annotations

import os

from binfmtctl.errors import EntryParseError, NameTooLongError
from binfmtctl.records import NamedTuple
from binfmtctl.register_string import (
    BINPRM_BUF_SIZE,
    FLAG_LETTERS,
    MAX_REGISTER_LENGTH,
    NAME_MAX,
    Fields,
    escape,
    normalize_flags,
    scan,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

# Delimiters tried when writing an entry: ':' first (what everyone writes), then
# punctuation that cannot be confused with escapes, digits or flag letters.
_SAFE_DELIMITERS = b":|!#%,;@~^=&*+_?$<>'\"`()[]{} -."
_ALL_DELIMITERS = _SAFE_DELIMITERS + bytes(
    b for b in range(1, 256) if b not in _SAFE_DELIMITERS and b not in b"POCF\\"
)


def _fsencode(value: str, what: str) -> bytes:
    try:
        return os.fsencode(value)
    except UnicodeEncodeError as err:
        raise EntryParseError(
            f"cannot be encoded for the file system: {err.reason}",
            value.encode("utf-8", "replace"),
            err.start,
            what,
        ) from err


_FIELDS = ("name", "kind", "interpreter", "flags", "offset", "magic", "mask", "extension")


class Entry:
    """One binfmt_misc handler, as the kernel stores it.

    Text fields are ``os.fsdecode``d (surrogateescape), so any byte the kernel
    accepts in a name or path survives a round trip.

    Immutable. A small ``__slots__`` class rather than a NamedTuple: it validates
    on construction (an invalid Entry cannot exist), and an entry must not compare
    equal to, or unpack like, a tuple.
    """

    __slots__ = (*_FIELDS, "_encoded")

    name: str
    kind: str
    interpreter: str
    flags: str
    offset: int
    magic: bytes
    mask: bytes | None
    extension: str | None
    _encoded: bytes

    def __init__(
        self,
        name: str,
        kind: str,
        interpreter: str,
        flags: str = "",
        offset: int = 0,
        magic: bytes = b"",
        mask: bytes | None = None,
        extension: str | None = None,
    ) -> None:
        if mask == b"":
            mask = None
        # Normalise flags before encoding, so equal entries print equal ("C" as "OC").
        # Unknown letters are left for _encode to reject with the field and position.
        if set(flags) <= set(FLAG_LETTERS):
            flags = normalize_flags(flags)
        _set = object.__setattr__
        _set(self, "name", name)
        _set(self, "kind", kind)
        _set(self, "interpreter", interpreter)
        _set(self, "flags", flags)
        _set(self, "offset", offset)
        _set(self, "magic", magic)
        _set(self, "mask", mask)
        _set(self, "extension", extension)
        _set(self, "_encoded", self._encode())

    def _key(self) -> tuple[object, ...]:
        return (
            self.name,
            self.kind,
            self.interpreter,
            self.flags,
            self.offset,
            self.magic,
            self.mask,
            self.extension,
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Entry)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={v!r}" for n, v in zip(_FIELDS, self._key(), strict=True))
        return f"Entry({inner})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: an Entry is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: an Entry is immutable")

    def __reduce__(self) -> tuple[type[Entry], tuple[object, ...]]:
        return (Entry, self._key())  # unpickling validates again

    @classmethod
    def parse(cls, data: bytes | str) -> Entry:
        """Parse a register string; raises EntryParseError where the kernel says EINVAL."""
        raw = os.fsencode(data) if isinstance(data, str) else bytes(data)
        f = scan(raw)
        entry = cls.__new__(cls)
        _set = object.__setattr__
        _set(entry, "name", os.fsdecode(f.name))
        _set(entry, "kind", f.kind)
        _set(entry, "interpreter", os.fsdecode(f.interpreter))
        _set(entry, "flags", f.flags)  # scan normalises them
        _set(entry, "offset", f.offset)
        _set(entry, "magic", f.magic)
        _set(entry, "mask", f.mask)
        _set(entry, "extension", None if f.extension is None else os.fsdecode(f.extension))
        texts = f.name + f.interpreter + (f.extension or b"")
        _set(entry, "_encoded", entry._canonical_of(raw, texts))
        return entry

    def _canonical_of(self, raw: bytes, texts: bytes) -> bytes:
        """The register bytes of an entry just parsed from ``raw`` (validated once).

        When ``raw`` already is the canonical form (':' or the first free safe
        delimiter, every magic/mask byte ``\\xHH``) but for the order of its flags
        and a final newline, parsing the canonical bytes gives exactly the fields
        ``raw`` gave (scan normalises flags), so the scan just made is the check
        and ``_encode`` need not parse again. Otherwise ``_encode`` decides, as for
        any constructed entry. ``texts``: the name, interpreter and extension as
        read, where the delimiter must not occur.
        """
        body = raw[:-1] if raw.endswith(b"\n") else raw
        body = body.rstrip(b"POCF")
        primary = next((d for d in _SAFE_DELIMITERS if d not in texts), None)
        if primary is not None and body[:1] == bytes([primary]):
            flags = self.flags.encode("ascii")
            fits = len(body) + len(flags) <= MAX_REGISTER_LENGTH
            if fits and self._compose(primary, False, b"") == body:
                return body + flags
        return self._encode()

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
            magic = escape(self.magic, delim, compact)
            mask = escape(self.mask or b"", delim, compact)
            middle = [offset, magic, mask]
        return d + d.join([name, kind, *middle, interpreter, flags])

    def _expected(self) -> Fields:
        ext = None if self.extension is None else _fsencode(self.extension, "extension")
        return Fields(
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
        # The first safe delimiter the texts lack is the first such candidate.
        primary = next((d for d in _SAFE_DELIMITERS if d not in texts), None)
        too_long: EntryParseError | None = None
        if primary is not None:
            data = self._compose(primary, False, b"")
            bad = next((i for i, ch in enumerate(self.flags) if ch not in FLAG_LETTERS), None)
            if bad is not None:
                raise EntryParseError(
                    f"unknown flag {self.flags[bad]!r}; flags are P, O, C and F",
                    data + flags,
                    len(data) + len(self.flags[:bad].encode()),
                    "flags",
                )
            self._check_kind_fields(data)
            data += flags  # the flags are the last field: _compose(primary, False, flags)
            self._verify(scan(data, check_length=False), data)
            if len(data) <= MAX_REGISTER_LENGTH:
                return data
            try:
                scan(data)
            except EntryParseError as err:
                too_long = err
        candidates = [d for d in _ALL_DELIMITERS if d not in texts]
        for delim in candidates:
            data = self._compose(delim, True, flags)
            if len(data) > MAX_REGISTER_LENGTH:
                continue
            try:
                fields = scan(data)
            except EntryParseError:
                continue
            if fields == self._expected():
                return data
        if too_long is not None:
            raise too_long
        raise EntryParseError(
            "no delimiter byte is left that the name and interpreter do not contain",
            self._compose(_ALL_DELIMITERS[0], True, flags),
            0,
            "delimiter",
        )

    def _check_kind_fields(self, data: bytes) -> None:
        at = 1 + len(_fsencode(self.name, "name")) + 1
        if self.kind == "E" and (self.offset or self.magic or self.mask is not None):
            raise EntryParseError(
                "offset, magic and mask only apply to M entries", data, at, "type"
            )
        if self.kind == "M" and self.extension is not None:
            raise EntryParseError("an extension only applies to E entries", data, at, "type")

    def _verify(self, fields: Fields, data: bytes) -> None:
        expected = self._expected()
        for index, name in enumerate(Fields._fields):
            if fields[index] != expected[index]:
                raise EntryParseError(
                    f"the {name} does not survive being written out (read back {fields[index]!r})",
                    data,
                    0,
                    name,
                )
        if len(fields.name) > NAME_MAX:  # pragma: no cover - scan raises first
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
        fields: dict[str, Any] = dict(zip(_FIELDS, self._key(), strict=True))
        unknown = set(changes) - fields.keys()
        if unknown:
            raise TypeError(f"Entry has no field {sorted(unknown)[0]!r}")
        fields.update(changes)
        return Entry(**fields)


class Handler(NamedTuple):
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


_HEX = frozenset(b"0123456789abcdef")
_DIGITS = frozenset(b"0123456789")
_FLAGS = frozenset(b"POCF")


def _word(text: bytes, allowed: frozenset[int]) -> bool:
    """Non-empty and every byte in ``allowed``."""
    return bool(text) and all(c in allowed for c in text)


def _magic_tail(tail: bytes) -> tuple[bytes, bytes, bytes, bytes | None] | None:
    """``flags: F\noffset N\nmagic HEX[\nmask HEX]\n`` as (flags, offset, magic, mask)."""
    lines = tail.split(b"\n")
    if len(lines) not in (4, 5) or lines[-1] != b"":
        return None
    flags, offset, magic = lines[0], lines[1], lines[2]
    mask = lines[3] if len(lines) == 5 else None
    if not (flags.startswith(b"flags: ") and all(c in _FLAGS for c in flags[7:])):
        return None
    if not (offset.startswith(b"offset ") and _word(offset[7:], _DIGITS)):
        return None
    if not (magic.startswith(b"magic ") and _word(magic[6:], _HEX)):
        return None
    if mask is not None and not (mask.startswith(b"mask ") and _word(mask[5:], _HEX)):
        return None
    return flags[7:], offset[7:], magic[6:], None if mask is None else mask[5:]


def _extension_tail(tail: bytes) -> tuple[bytes, bytes] | None:
    """``flags: F\nextension .EXT\n`` as (flags, EXT); EXT may hold newlines."""
    flags, newline, rest = tail.partition(b"\n")
    if not (newline and flags.startswith(b"flags: ") and all(c in _FLAGS for c in flags[7:])):
        return None
    if not (rest.startswith(b"extension .") and rest.endswith(b"\n") and len(rest) > 12):
        return None
    return flags[7:], rest[11:-1]


def parse_proc_entry(name: str, text: bytes) -> Handler:
    """Parse /proc/sys/fs/binfmt_misc/NAME (which does not print the name itself).

    By hand rather than with ``re`` (start-up time), and as the kernel prints
    it: an interpreter may contain newlines, even ``\nflags: ``. For a magic
    entry nothing after the interpreter can contain ``flags: `` (offset and
    magic are digits and hex), so it ends at the last one; for an extension
    entry the extension may contain anything, so the interpreter is the
    shortest that leaves a well-formed rest.
    """
    state, newline, body = text.partition(b"\n")
    if newline and state in (b"enabled", b"disabled") and body.startswith(b"interpreter "):
        body = body[12:]
        cut = body.rfind(b"\nflags: ")
        fields = _magic_tail(body[cut + 1 :]) if cut > 0 else None
        if fields is not None:
            flags, offset, magic, mask = fields
            entry = Entry(
                name=name,
                kind="M",
                interpreter=os.fsdecode(body[:cut]),
                flags=flags.decode("ascii"),
                offset=int(offset),
                magic=bytes.fromhex(magic.decode("ascii")),
                mask=None if mask is None else bytes.fromhex(mask.decode("ascii")),
            )
            return Handler(entry, state == b"enabled")
        cut = body.find(b"\nflags: ", 1)
        while cut > 0:
            found = _extension_tail(body[cut + 1 :])
            if found is not None:
                entry = Entry(
                    name=name,
                    kind="E",
                    interpreter=os.fsdecode(body[:cut]),
                    flags=found[0].decode("ascii"),
                    extension=os.fsdecode(found[1]),
                )
                return Handler(entry, state == b"enabled")
            cut = body.find(b"\nflags: ", cut + 1)
    raise EntryParseError("not a binfmt_misc entry file", text, 0, "entry")
