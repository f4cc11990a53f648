"""The declared public API: ``binfmtctl.__all__``, README's list of it, and its cost."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import binfmtctl

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_lists_exactly_the_public_names() -> None:
    text = README.read_text()
    listed = text[text.index("\nNames: ") : text.index("Every use-case returns")]
    assert set(re.findall(r"`(\w+)`", listed)) | {"__version__"} == set(binfmtctl.__all__)


def test_every_public_name_resolves_to_what_its_module_defines() -> None:
    from binfmtctl import instance, rootless

    for name in binfmtctl.__all__:
        assert getattr(binfmtctl, name) is not None, name
    assert binfmtctl.Instance is instance.Instance
    assert binfmtctl.call is rootless.call
    assert binfmtctl.install.__name__ == "binfmtctl.install"


def test_an_unknown_name_is_an_attribute_error() -> None:
    name = "no_such_name"
    try:
        getattr(binfmtctl, name)
    except AttributeError as err:
        assert str(err) == "module 'binfmtctl' has no attribute 'no_such_name'"
    else:
        raise AssertionError("no AttributeError")


def test_import_binfmtctl_loads_no_other_module_of_it() -> None:
    code = "import sys, binfmtctl; print(sorted(m for m in sys.modules if 'binfmtctl' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['binfmtctl']"
