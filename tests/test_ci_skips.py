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


def _run(tmp_path: Path, ci: str | None) -> dict[str, tuple[str, str]]:
    """Each inner test's outcome and message, from pytest's JUnit XML report."""
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_inner.py").write_text(INNER)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
         "--junitxml=report.xml", "test_inner.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        check=False,
    )  # fmt: skip
    outcomes: dict[str, tuple[str, str]] = {}
    report = ElementTree.parse(tmp_path / "report.xml")  # noqa: S314 - pytest's own report
    for case in report.iter("testcase"):
        results = [(c.tag, c.get("message", "")) for c in case if c.tag != "system-out"]
        outcomes[case.get("name", "")] = results[0] if results else ("passed", "")
    return outcomes


@pytest.mark.parametrize("ci", [None, "false"])
def test_outside_ci_missing_things_skip(tmp_path: Path, ci: str | None) -> None:
    assert _run(tmp_path, ci) == {
        "test_missing_tool": ("skipped", "/usr/bin/qemu-nothing-static is missing"),
        "test_skipif_mark": ("skipped", "no frobnicator here"),
        "test_bare_skip": ("skipped", "podman is not installed"),
        "test_not_applicable": ("skipped", "not applicable here: the host is not x86_64"),
        "test_passes": ("passed", ""),
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
    }
