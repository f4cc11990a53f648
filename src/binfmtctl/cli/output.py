"""Command results and the one renderer that prints them (human or --json)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from binfmtctl.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, BinfmtError

JSON_VERSION = 1


@dataclass
class Result:
    """What a command did: data for scripts, a human view, an exit code."""

    command: str
    data: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    exit_code: int = EXIT_OK
    human: Callable[[dict[str, Any]], str] | None = None

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


def envelope(result: Result) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "command": result.command,
        "ok": result.ok,
        "data": result.data,
        "errors": result.errors,
        "warnings": result.warnings,
    }


def render(
    result: Result, as_json: bool, out: TextIO | None = None, err: TextIO | None = None
) -> None:
    out = out or sys.stdout
    err = err or sys.stderr
    if as_json:
        json.dump(envelope(result), out, indent=2, sort_keys=False)
        out.write("\n")
        return
    if result.human is not None:
        text = result.human(result.data)
        if text:
            out.write(text if text.endswith("\n") else text + "\n")
    for warning in result.warnings:
        err.write(f"binfmtctl: warning: {warning}\n")
    for error in result.errors:
        err.write(f"binfmtctl: error: {error['message']}\n")


def table(rows: list[list[str]], header: list[str]) -> str:
    """A plain left-aligned text table."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)
