"""The register string as the kernel reads it: fs/binfmt_misc.c's create_entry() step by step.

``scan`` accepts exactly the strings the kernel accepts and rejects the rest
with the kernel's errno class (EINVAL -> ``invalid_entry``, ENAMETOOLONG ->
``name_too_long``), pointing at the byte; ``unescape`` and ``escape`` are the
kernel's magic/mask decoding and its inverse. ``entry.Entry`` is built on these.
"""

from __future__ import annotations

from binfmtctl.errors import EntryParseError, NameTooLongError
from binfmtctl.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import NoReturn

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


class Fields(NamedTuple):
    """What the kernel keeps of a register string (text fields still bytes)."""

    name: bytes
    kind: str
    interpreter: bytes
    flags: str
    offset: int
    magic: bytes
    mask: bytes | None
    extension: bytes | None


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
    raise EntryParseError(reason, data, position, field)


def _scan_escaped(buf: bytes, start: int, n: int, data: bytes, field: str) -> int:
    """Index of the delimiter ending magic or mask (the kernel's scanarg).

    Every ``\\x`` must be followed by two hex digits, and those two characters
    are consumed even when one of them is the delimiter. Unlike strchr this
    scan walks over raw NUL bytes.
    """
    delim = buf[0]
    end = buf.index(delim, start)
    if end < n and (end - start) % 4 == 0 and _all_full_escapes(buf[start:end], end - start):
        # Only whole \xHH groups up to the first delimiter: the walk below would
        # consume them group by group and stop at that delimiter, without error.
        return end
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
    n = len(raw)
    if n % 4 == 0 and _all_full_escapes(raw, n):  # the common form: bytes.fromhex does it
        return bytes.fromhex(raw.replace(b"\\x", b"").decode("ascii"))
    out = bytearray()
    i = 0
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


def _all_full_escapes(raw: bytes, n: int) -> bool:
    """``raw`` is ``\\xHH`` repeated (n bytes, a multiple of 4): every 4th byte a
    backslash, then an ``x``, then two hex digits."""
    groups = n // 4
    return (
        raw[0::4] == b"\\" * groups
        and raw[1::4] == b"x" * groups
        and _HEX.issuperset(raw[2::4])
        and _HEX.issuperset(raw[3::4])
    )


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


def scan(data: bytes, *, check_length: bool = True) -> Fields:
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
    return Fields(name, kind, interpreter, normalize_flags(flags), offset, magic, mask, extension)


def escape(value: bytes, delim: int, compact: bool) -> bytes:
    """Write magic/mask so the kernel decodes them back to ``value``.

    Normally every byte is ``\\xHH``. ``compact`` writes bytes raw wherever the
    kernel's scan and decode leave them unchanged -- needed when a long magic and
    mask escaped in full do not fit in 1920 bytes.
    """
    if not compact:
        return b"\\x" + value.hex(" ").replace(" ", "\\x").encode("ascii") if value else b""
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
