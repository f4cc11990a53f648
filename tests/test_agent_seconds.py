"""The one seconds parser behind ``agent --interval`` and ``test --timeout``.

A table of texts, valid and invalid, with the exact value or message, for
both ranges the CLI uses; then through the real CLI, where argparse puts the
message after ``argument --OPTION:``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from binfmtctl.cli.agent import _interval
from binfmtctl.cli.seconds import seconds
from binfmtctl.cli.test import _seconds as _timeout

INTERVAL_RANGE = "must be from 0.1 to 86400 seconds (one day)"


@pytest.mark.parametrize(
    ("text", "interval", "timeout"),
    [
        ("30", 30.0, 30.0),
        ("0.1", 0.1, 0.1),  # the interval's low end is allowed
        ("86400", 86400.0, "must be at most 3600 seconds (one hour): '86400'"),
        ("3600", 3600.0, 3600.0),  # the timeout's high end is allowed
        ("1e1", 10.0, 10.0),
        (" 5 ", 5.0, 5.0),  # float() trims blanks
        ("1_0", 10.0, 10.0),  # and reads Python's digit separators
        ("0.05", f"{INTERVAL_RANGE}: '0.05'", 0.05),
        ("0", f"{INTERVAL_RANGE}: '0'", "must be more than 0 seconds: '0'"),
        ("-0", f"{INTERVAL_RANGE}: '-0'", "must be more than 0 seconds: '-0'"),
        ("-3", f"{INTERVAL_RANGE}: '-3'", "must be more than 0 seconds: '-3'"),
        ("86401", f"{INTERVAL_RANGE}: '86401'", "must be at most 3600 seconds (one hour): '86401'"),
        ("nan", "not a finite number of seconds: 'nan'", "not a finite number of seconds: 'nan'"),
        ("inf", "not a finite number of seconds: 'inf'", "not a finite number of seconds: 'inf'"),
        ("-inf", "not a finite number of seconds: '-inf'",
         "not a finite number of seconds: '-inf'"),
        ("1e999", "not a finite number of seconds: '1e999'",
         "not a finite number of seconds: '1e999'"),
        ("", "not a number of seconds: ''", "not a number of seconds: ''"),
        ("soon", "not a number of seconds: 'soon'", "not a number of seconds: 'soon'"),
        ("10s", "not a number of seconds: '10s'", "not a number of seconds: '10s'"),
        ("0x10", "not a number of seconds: '0x10'", "not a number of seconds: '0x10'"),
        ("1,5", "not a number of seconds: '1,5'", "not a number of seconds: '1,5'"),
        ("\x1b[2J", "not a number of seconds: '\\x1b[2J'",
         "not a number of seconds: '\\x1b[2J'"),
    ],
)  # fmt: skip
def test_seconds_table(text: str, interval: float | str, timeout: float | str) -> None:
    for parse, expected in ((_interval, interval), (_timeout, timeout)):
        if isinstance(expected, float):
            assert parse(text) == expected
        else:
            with pytest.raises(argparse.ArgumentTypeError) as caught:
                parse(text)
            assert str(caught.value) == expected


def test_both_options_use_the_one_parser() -> None:
    """Same code, two ranges: the closures come from the same function."""
    assert _interval.__code__ is _timeout.__code__ is seconds(1, 2, "x").__code__


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["agent", "--interval", "0"], f"argument --interval: {INTERVAL_RANGE}: '0'"),
        (["test", "--timeout", "0"], "argument --timeout: must be more than 0 seconds: '0'"),
        (["test", "--timeout", "nan"], "argument --timeout: not a finite number of seconds: 'nan'"),
        (["agent", "--interval", "x"], "argument --interval: not a number of seconds: 'x'"),
    ],
)
def test_through_the_cli(argv: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "binfmtctl", *argv], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"binfmtctl: error: {message} (see `binfmtctl {argv[0]} --help`)\n"
