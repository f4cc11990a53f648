"""Under CI=true a test that would skip for something missing fails, naming it.

A real inner pytest run (a subprocess) with this directory's conftest.py, once
with CI=true and once without: the outcomes and the reasons are compared exactly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

HERE = Path(__file__).resolve().parent

INNER = """
import pytest
from conftest import missing, not_applicable

def test_missing_tool():
    missing("/usr/bin/qemu-nothing-static is missing")

@pytest.mark.skipif(True, reason="no frobnicator here")
def test_skipif_mark():
    pass

def test_bare_skip():
    pytest.skip("podman is not installed")

def test_not_applicable():
    not_applicable("the host is not x86_64")

def test_passes():
    assert True
"""


MODULE = """
import pytest
pytest.importorskip("no_such_module_here")

def test_never_collected():
    pass
"""


def _run(tmp_path: Path, ci: str | None) -> dict[str, tuple[str, str]]:
    """Each inner test's outcome and message, from pytest's JUnit XML reports.

    The module-level skip runs on its own: a collection error stops a pytest run.
    """
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "test_module.py").write_text(MODULE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    outcomes: dict[str, tuple[str, str]] = {}
    for name in ("test_inner", "test_module"):
        subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
             f"--junitxml={name}.xml", f"{name}.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            check=False,
        )  # fmt: skip
        report = ElementTree.parse(tmp_path / f"{name}.xml")  # noqa: S314 - pytest's own report
        for case in report.iter("testcase"):
            results = [
                (c.tag, c.get("message", "") or "", (c.text or "").strip())
                for c in case
                if c.tag != "system-out"
            ]
            tag, message, text = results[0] if results else ("passed", "", "")
            # A collection report's message is generic; its text is what the run printed.
            generic = message in ("collection failure", "collection skipped")
            if generic and tag == "skipped":  # the text is repr((path, line, "Skipped: why"))
                text = text.split("Skipped: ", 1)[1][:-2]
            outcomes[case.get("name", "")] = (tag, text if generic else message)
    return outcomes


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_missing_things_skip(tmp_path: Path, ci: str | None) -> None:
    assert _run(tmp_path, ci) == {
        "test_missing_tool": ("skipped", "/usr/bin/qemu-nothing-static is missing"),
        "test_skipif_mark": ("skipped", "no frobnicator here"),
        "test_bare_skip": ("skipped", "podman is not installed"),
        "test_not_applicable": ("skipped", "not applicable here: the host is not x86_64"),
        "test_passes": ("passed", ""),
        "test_module": (
            "skipped",
            "could not import 'no_such_module_here': No module named 'no_such_module_here'",
        ),
    }


def test_in_ci_missing_things_fail_and_say_what(tmp_path: Path) -> None:
    assert _run(tmp_path, "true") == {
        "test_missing_tool": (
            "failure",
            "Failed: CI=true, but /usr/bin/qemu-nothing-static is missing",
        ),
        "test_skipif_mark": (
            "error",
            'failed on setup with "CI=true, but the test skipped: no frobnicator here"',
        ),
        "test_bare_skip": ("failure", "CI=true, but the test skipped: podman is not installed"),
        "test_not_applicable": ("skipped", "not applicable here: the host is not x86_64"),
        "test_passes": ("passed", ""),
        "test_module": (
            "error",
            "CI=true, but the module skipped: could not import 'no_such_module_here': "
            "No module named 'no_such_module_here'",
        ),
    }
