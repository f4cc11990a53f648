"""Advice lines, as every verb prints them: the rootless way first, then the root fix."""

from __future__ import annotations

from typing import Any

from binfmtctl.advice import AdviceKind


def fix_lines(advice: list[dict[str, Any]], fix: str | None = None, indent: str = "") -> list[str]:
    """``fix: CMD``; with a rootless way, ``fix without root: ...`` then ``fix as root: ...``.

    ``fix``: the root fix as the cause words it (with its note), instead of the bare command.
    """
    rootless = [a["command"] for a in advice if a["kind"] == AdviceKind.ROOTLESS.value]
    root = [a["command"] for a in advice if a["kind"] == AdviceKind.ROOT.value]
    shown = fix or (root[0] if root else None)
    if not rootless:
        return [f"{indent}fix: {shown}"] if shown else []
    return [f"{indent}fix without root: {rootless[0]}", f"{indent}fix as root: {shown}"]
