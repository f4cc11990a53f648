"""Command results and the one renderer that prints them (human or --json).

Names and paths come from outside binfmtctl: entries registered by other
tools (any bytes but ``/`` and NUL), files in a scanned tree, command-line
words. They are decoded with ``surrogateescape`` (each undecodable byte is a
lone surrogate U+DC80..U+DCFF) and reach this module unchanged. Here, and only
here, they are made safe to print:

- Text output (stdout and stderr): every character that is not printable
  (control characters such as ESC, newline, tab; format characters such as
  bidi overrides; undecodable bytes) is shown escaped, C style: ``\\n``,
  ``\\t``, ``\\r``, ``\\xHH`` (ASCII control characters and undecodable bytes,
  HH the byte), ``\\uXXXX`` (other code points, C1 controls included). A
  string that needs any escape has its backslashes doubled too, so it reads
  back exactly; strings without such characters print unchanged (register
  strings keep their ``\\x7fELF``).
  Every string of a result's data is escaped before its human view is built,
  so no verb can print a foreign name raw, and no name can start a line.
  A warning or error is one line on stderr; only a line break followed by an
  indented line (a register string and its caret) is kept.
- ``--json``: lossless. A string that is valid UTF-8 is an ordinary JSON
  string (JSON's own escapes carry control characters, the output is ASCII).
  A string that is not (it holds undecodable bytes) is written as an array of
  its byte values, 0..255, as ``journalctl -o json`` does: strict JSON
  parsers accept it, and the bytes are exactly the name the kernel holds.
"""

from __future__ import annotations

import sys

from binfmtctl.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TextIO

    from binfmtctl.errors import BinfmtError

JSON_VERSION = 1


class Result:
    """What a command did: data for scripts, a human view, an exit code.

    A small mutable ``__slots__`` class (not a dataclass: start-up time): verbs
    add warnings and errors to it as they go.
    """

    __slots__ = ("command", "compact", "data", "errors", "exit_code", "human", "warnings")

    def __init__(
        self,
        command: str,
        data: dict[str, Any] | None = None,
        errors: list[dict[str, Any]] | None = None,
        warnings: list[str] | None = None,
        exit_code: int = EXIT_OK,
        human: Callable[[dict[str, Any]], str] | None = None,
        compact: bool = False,
    ) -> None:
        self.command = command
        self.data: dict[str, Any] = {} if data is None else data
        self.errors: list[dict[str, Any]] = [] if errors is None else errors
        self.warnings: list[str] = [] if warnings is None else warnings
        self.exit_code = exit_code
        self.human = human
        #: --json on one line: the last line of a JSON Lines stream (``agent``).
        self.compact = compact

    def __repr__(self) -> str:
        return (
            f"Result(command={self.command!r}, data={self.data!r}, errors={self.errors!r}, "
            f"warnings={self.warnings!r}, exit_code={self.exit_code!r}, human={self.human!r}, "
            f"compact={self.compact!r})"
        )

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    def fail(self, error: BinfmtError) -> None:
        self.errors.append(error.to_dict())
        if self.exit_code == EXIT_OK:
            self.exit_code = error.exit_code


def outcome_code(succeeded: int, failed: int) -> int:
    """0 all done, 3 partly done, 1 nothing done (and something failed)."""
    if not failed:
        return EXIT_OK
    return EXIT_PARTIAL if succeeded else EXIT_FAILED


# -- text: escape what a terminal would act on -----------------------------------

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def escape(text: str) -> str:
    """``text`` with every non-printable character escaped (see the module docstring).

    Printable text is returned unchanged, so escaping twice is escaping once.
    """
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
                out.append(f"\\x{code - 0xDC00:02x}")
            elif code < 0x80:
                out.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
    return "".join(out)


def escape_lines(text: str) -> str:
    """Each line of ``text`` escaped; its own line breaks kept."""
    return "\n".join(escape(line) for line in text.split("\n"))


def escape_message(text: str) -> str:
    """An error or warning on one line, except continuation lines (indented by us).

    Messages such as a register-string error show the input and a caret on
    lines of their own, indented; any other line break (one inside a name) is
    escaped, so a message cannot forge a ``binfmtctl: error:`` line.
    """
    groups: list[str] = []
    for line in text.split("\n"):
        if groups and not line.startswith(" "):
            groups[-1] += "\n" + line
        else:
            groups.append(line)
    return "\n".join(escape(g) for g in groups)


def escape_data(value: Any) -> Any:
    """A copy of result data with every string (and string key) escaped."""
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, dict):
        return {escape(k) if isinstance(k, str) else k: escape_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_data(v) for v in value]
    return value


# -- JSON: lossless, strict ------------------------------------------------------


def json_safe(value: Any) -> Any:
    """A copy of ``value`` in which a string that is not valid UTF-8 is its byte values.

    Object keys must stay strings: an undecodable key keeps its bytes as
    ``\\xHH`` escapes (no key is a name today; this only keeps the output valid).
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return list(_bytes_of(value))
        return value
    if isinstance(value, dict):
        return {_json_key(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _utf8(text: str) -> bool:
    """Whether ``text`` encodes as UTF-8 (no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_key(key: Any) -> Any:
    if not isinstance(key, str):
        return key
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return _bytes_of(key).decode("utf-8", "backslashreplace")
    return key


def _bytes_of(text: str) -> bytes:
    """The bytes a decoded name stands for; text that never came from bytes (a lone
    surrogate outside U+DC80..U+DCFF) is kept with ``surrogatepass``, never an error."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def from_json(value: str | list[int]) -> bytes:
    """The bytes a JSON string-or-byte-array field stands for (the inverse of json_safe)."""
    if isinstance(value, list):
        return bytes(value)
    return value.encode("utf-8")


def dumps(value: Any, safe: bool = False) -> str:
    """``json.dumps(value, indent=2)``, the same text, at C speed for strings.

    ``safe``: the text of ``dumps(json_safe(value))`` in the same single walk (a
    string or a dict's keys are made safe only where they are not ASCII).

    With ``indent`` set, json encodes with its pure-Python encoder; here the
    nesting is walked once and every string goes through json's C string
    encoder. Anything but str, int, bool, None, list, tuple and dict (a float,
    say) is left to json itself, whole. The string encoder is json's own C one
    (``_json``, what json.encoder uses), so json itself is imported only for
    such a value (start-up time).
    """
    try:
        from _json import encode_basestring_ascii as quote
    except ImportError:  # no C accelerator: json's pure-Python one
        from json.encoder import encode_basestring_ascii as quote

    parts: list[str] = []
    add = parts.append

    def walk(v: Any, pad: str) -> bool:
        if isinstance(v, str):
            if safe and not v.isascii() and not _utf8(v):
                return walk(json_safe(v), pad)
            add(quote(v))
        elif v is None:
            add("null")
        elif v is True:
            add("true")
        elif v is False:
            add("false")
        elif isinstance(v, int):
            add(int.__repr__(v))
        elif isinstance(v, list | tuple):
            if not v:
                add("[]")
                return True
            inner = pad + "  "
            add("[\n" + inner)
            for i, item in enumerate(v):
                if i:
                    add(",\n" + inner)
                if not walk(item, inner):
                    return False
            add("\n" + pad + "]")
        elif isinstance(v, dict):
            if not v:
                add("{}")
                return True
            if safe and not all(isinstance(k, str) and k.isascii() for k in v):
                v = {_json_key(k): item for k, item in v.items()}  # as json_safe merges them
            inner = pad + "  "
            add("{\n" + inner)
            for i, (key, item) in enumerate(v.items()):
                if not isinstance(key, str):
                    return False
                add((",\n" + inner if i else "") + quote(key) + ": ")
                if not walk(item, inner):
                    return False
            add("\n" + pad + "}")
        else:
            return False
        return True

    if walk(value, ""):
        return "".join(parts)
    import json

    return json.dumps(json_safe(value) if safe else value, indent=2, sort_keys=False)


def envelope(result: Result) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "command": result.command,
        "ok": result.ok,
        "data": result.data,
        "errors": result.errors,
        "warnings": result.warnings,
    }


def _tolerant(stream: TextIO) -> None:
    """No traceback for a character the locale's encoding lacks (LANG=C on an old
    Python, an ISO-8859 locale): such a character is written as a backslash escape."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and getattr(stream, "errors", None) == "strict":
        reconfigure(errors="backslashreplace")


def render(
    result: Result, as_json: bool, out: TextIO | None = None, err: TextIO | None = None
) -> None:
    out = out or sys.stdout
    err = err or sys.stderr
    _tolerant(out)
    _tolerant(err)
    if as_json:
        if result.compact:
            import json  # only --json pays for it (start-up time)

            out.write(json.dumps(json_safe(envelope(result)), sort_keys=False))
        else:
            out.write(dumps(envelope(result), safe=True))  # json_safe in the same walk
        out.write("\n")
        return
    if result.human is not None:
        text = result.human(escape_data(result.data))
        if text:
            # Text a view built from anything but its data (a closure) is escaped
            # line by line as well: no control character reaches the terminal.
            text = escape_lines(text)
            out.write(text if text.endswith("\n") else text + "\n")
    for warning in result.warnings:
        err.write(f"binfmtctl: warning: {escape_message(warning)}\n")
    for error in result.errors:
        err.write(f"binfmtctl: error: {escape_message(str(error['message']))}\n")


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain left-aligned text table; cells are escaped, so a cell is one line."""
    rows = [[escape(c) for c in row] for row in rows]
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
