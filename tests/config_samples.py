"""Entries and configuration trees shared by the tests/test_config_*.py modules."""

from __future__ import annotations

from pathlib import Path

from binfmtctl import persist, plan
from binfmtctl.arch import CATALOG, Profile

ARM = plan.build_entry(CATALOG["arm"], "/usr/bin/qemu-arm-static", "F", Profile.QEMU)
AARCH64 = plan.build_entry(CATALOG["aarch64"], "/usr/bin/qemu-aarch64-static", "F", Profile.QEMU)


def tree(tmp_path: Path, files: dict[str, str | bytes]) -> persist.Layout:
    """A configuration root holding ``files`` (paths relative to the root)."""
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return persist.Layout.under(str(tmp_path))
