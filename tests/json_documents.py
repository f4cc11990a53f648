"""Hypothesis strategies for what ``--json`` writes: result data of every shape.

Shared by the renderer's tests (tests/test_startup.py: the text is json.dumps';
tests/test_status_speed.py: made safe in the same walk).
"""

from __future__ import annotations

from hypothesis import strategies as st

from binfmtctl.arch import Profile

#: Any text, lone surrogates included.
ANY_TEXT = st.text(st.characters(exclude_categories=()))

#: The leaves result data holds: JSON's scalars, and str enums.
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    ANY_TEXT,
    st.sampled_from(list(Profile)),  # a str enum, as result data holds
)

#: Dictionary keys as data may have them (json.dumps writes ints and None as strings).
KEYS = st.one_of(ANY_TEXT, st.integers(), st.none())


def documents(
    scalars: st.SearchStrategy[object] = SCALARS, keys: st.SearchStrategy[object] = KEYS
) -> st.SearchStrategy[object]:
    """Nested lists, tuples and dicts of ``scalars`` under ``keys``."""
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.lists(inner, max_size=4).map(tuple),
            st.dictionaries(keys, inner, max_size=4),
        ),
        max_leaves=30,
    )
