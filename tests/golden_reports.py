"""Golden JSON reports of library calls (tests/golden/reports/NAME.json).

Kept apart from tests/golden/*.json, which tests/test_golden_json.py owns
(one file per CLI case). Text is ``json.dumps(data, indent=2)``, so a changed
value, a renamed, added or removed key and a change of key order all fail.
Each caller passes the substitutions that remove what differs between runs
(durations, random ids, times, temporary paths): nothing else is changed.
``BINFMTCTL_UPDATE_GOLDEN=1`` rewrites the files from the current output.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPORTS = Path(__file__).resolve().parent / "golden" / "reports"
UPDATE = os.environ.get("BINFMTCTL_UPDATE_GOLDEN") == "1"


def check(name: str, data: Any, subs: Sequence[tuple[str, str]] = ()) -> None:
    """``data`` as JSON, after the regex substitutions ``subs``, against NAME.json."""
    text = json.dumps(data, indent=2) + "\n"
    for pattern, replacement in subs:
        text = re.sub(pattern, replacement, text)
    path = REPORTS / f"{name}.json"
    if UPDATE:
        REPORTS.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing: record it with BINFMTCTL_UPDATE_GOLDEN=1"
    assert text == path.read_text()
