"""One parser for options that take a number of seconds (``--timeout``, ``--interval``).

A finite decimal number within a range; each refusal says which rule the
text broke, in the words argparse puts after ``argument --OPTION:``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def seconds(
    low: float, high: float, span: str, *, above_low: bool = False
) -> Callable[[str], float]:
    """An argparse ``type=`` for seconds from ``low`` to ``high`` (``span`` names ``high``).

    With ``above_low`` the low end is excluded (a timeout of 0 makes no
    sense, and any positive one does): the refusals then name each end on
    its own; otherwise they give the whole range.
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"not a finite number of seconds: {text!r}")
        if above_low:
            if not value > low:
                raise argparse.ArgumentTypeError(f"must be more than {low:g} seconds: {text!r}")
            if value > high:
                raise argparse.ArgumentTypeError(
                    f"must be at most {high:g} seconds ({span}): {text!r}"
                )
        elif not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be from {low:g} to {high:g} seconds ({span}): {text!r}"
            )
        return value

    return parse
