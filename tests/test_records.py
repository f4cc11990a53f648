"""binfmtctl.records.NamedTuple makes the class typing.NamedTuple makes, without typing.

Each class body of the table is built twice, once with ``typing.NamedTuple`` and once
with ``records.NamedTuple``, into a real module in ``sys.modules`` (so pickle can find
it), and the two classes and their instances are compared. Then what records refuses,
with the exact messages (the same as typing's where typing refuses too), and every
record of the package: pickled and loaded again, here and in a fresh interpreter.
"""

from __future__ import annotations

import copy
import importlib
import pickle
import pkgutil
import subprocess
import sys
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

import binfmtctl
from binfmtctl import records

HEADER = "from __future__ import annotations\n\n"

# (name, class body source, arguments, _replace keywords, expressions on P and r)
# The record is the last class of the source; P is it, r = P(*arguments).
BODIES: list[tuple[str, str, tuple[Any, ...], dict[str, Any], list[str]]] = [
    (
        "plain",
        "class Point(NamedTuple):\n    x: int\n    y: int\n",
        (1, 2),
        {"y": 5},
        ["r.x + r.y", "r[0]", "r[-1]", "list(r)"],
    ),
    (
        "defaults and docstring",
        '''\
class Options(NamedTuple):
    """Options, with defaults."""

    name: str
    flags: str = "F"
    paths: tuple[str, ...] = ()
    force: bool = False
''',
        ("a",),
        {"flags": "OC", "force": True},
        ["r.flags", "r.paths", "P('b', 'P', ('/x',))", "P(name='c', force=True)"],
    ),
    (
        "methods, properties, class and static methods, a class attribute",
        '''\
class Span(NamedTuple):
    """A span of bytes."""

    start: int
    end: int = 10
    KIND = "span"  # not annotated: a class attribute, not a field

    @property
    def size(self) -> int:
        """How many bytes."""
        return self.end - self.start

    def shifted(self, by: int) -> Span:
        return self._replace(start=self.start + by, end=self.end + by)

    @classmethod
    def empty(cls) -> Span:
        return cls(0, 0)

    @staticmethod
    def unit() -> int:
        return 1

    def __str__(self) -> str:
        return f"{self.start}..{self.end}"
''',
        (3,),
        {"end": 4},
        [
            *("r.size", "r.shifted(2)", "P.empty()", "P.unit()", "r.unit()", "P.KIND", "r.KIND"),
            *("str(r)", "P.size.__doc__", "P.empty().size"),
        ],
    ),
    (
        "a record's default is another record",
        '''\
class Layout(NamedTuple):
    root: str = "/"
    dirs: tuple[str, ...] = ("/etc/binfmt.d",)

class Store(NamedTuple):
    """Where entries are kept."""

    layout: Layout = Layout()
    kind: str = "systemd"

    @classmethod
    def under(cls, root: str) -> Store:
        return cls(Layout(root))
''',
        (),
        {"kind": "binfmts"},
        ["r.layout", "r.layout.root", "P.under('/srv').layout.root", "P().layout == P().layout"],
    ),
    (
        "nested in a class (pickle finds it by its qualified name)",
        """\
class Holder:
    class Inner(NamedTuple):
        x: int = 0

Inner = Holder.Inner
""",
        (1,),
        {"x": 2},
        ["P.__qualname__", "P()", "r.x"],
    ),
]


def round_trip(value: Any, protocol: int = pickle.DEFAULT_PROTOCOL) -> Any:
    return pickle.loads(pickle.dumps(value, protocol))  # noqa: S301 - our own bytes


def build(maker: object, source: str, module_name: str) -> tuple[type, types.ModuleType]:
    """Run ``source`` as the module ``module_name``: (its last class, the module)."""
    module = types.ModuleType(module_name)
    module.NamedTuple = maker  # type: ignore[attr-defined]
    exec(compile(HEADER + source, f"<{module_name}>", "exec"), vars(module))  # noqa: S102
    classes = [v for v in vars(module).values() if isinstance(v, type) and v is not maker]
    return classes[-1], module


@pytest.fixture
def pair(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[type, type, tuple[Any, ...], dict[str, Any], list[str]]]:
    """The table row's class made by typing and by records, each in a module pickle finds."""
    _, source, args, replace, expressions = request.param
    made = []
    for maker, name in (
        (typing.NamedTuple, "records_sample_typing"),
        (records.NamedTuple, "records_sample"),
    ):
        cls, module = build(maker, source, name)
        monkeypatch.setitem(sys.modules, name, module)
        made.append(cls)
    yield made[0], made[1], args, replace, expressions


def shape(cls: type) -> dict[str, object]:
    """What a caller sees of a record class, comparable across the two makers."""
    fields: tuple[str, ...] = cls._fields  # type: ignore[attr-defined]
    return {
        "name": (cls.__name__, cls.__qualname__),
        "fields": fields,
        "defaults": repr(cls._field_defaults),  # type: ignore[attr-defined]
        "match_args": cls.__match_args__,  # type: ignore[attr-defined]
        "doc": cls.__doc__,
        "mro": [c.__name__ for c in cls.__mro__],
        "metaclass": type(cls),
        "annotated": list(cls.__annotations__),
        "field docs": [getattr(cls, f).__doc__ for f in fields],
        "slots": vars(cls).get("__slots__"),
    }


def behaviour(
    cls: type, args: tuple[Any, ...], replace: dict[str, Any], expressions: list[str]
) -> dict[str, object]:
    """What the instances do; results are shown as repr (the classes differ)."""
    r = cls(*args)
    fields = cls._fields  # type: ignore[attr-defined]
    loaded = [round_trip(r, protocol) for protocol in range(pickle.HIGHEST_PROTOCOL + 1)]
    match r:
        case cls(first):  # type: ignore[misc]
            matched = first
        case _:
            matched = "no match"
    return {
        "repr": repr(r),
        "tuple": tuple(r),
        "is tuple": isinstance(r, tuple),
        "eq": (r == cls(*args), r == tuple(r), r != cls._make(list(r)[::-1])),  # type: ignore[attr-defined]
        "hash": (hash(r) == hash(tuple(r)), hash(r) == hash(cls(*args))),
        "replace": repr(r._replace(**replace)),
        "asdict": repr(r._asdict()),
        "make": repr(cls._make(tuple(r))),  # type: ignore[attr-defined]
        "pickled": [(type(x) is cls, x == r) for x in loaded],
        "copied": (copy.copy(r) == r, copy.deepcopy(r) == r, type(copy.deepcopy(r)) is cls),
        "matched": matched,
        "keywords": repr(cls(**dict(zip(fields, args, strict=False)))),
        "no __dict__": not hasattr(r, "__dict__"),
        "expressions": [repr(eval(e, {"P": cls, "r": r})) for e in expressions],  # noqa: S307
    }


@pytest.mark.parametrize("pair", BODIES, ids=[b[0] for b in BODIES], indirect=True)
def test_records_make_the_class_typing_makes(pair: tuple[type, type, Any, Any, Any]) -> None:
    by_typing, by_records, args, replace, expressions = pair
    assert by_typing.__module__ == "records_sample_typing"
    assert by_records.__module__ == "records_sample"
    assert shape(by_records) == shape(by_typing)
    assert behaviour(by_records, args, replace, expressions) == behaviour(
        by_typing, args, replace, expressions
    )
    # The same attributes but two: records' refusal to be subclassed, and typing's
    # __orig_bases__ (typing.NamedTuple is a function that names the base it stands for).
    assert set(vars(by_records)) - set(vars(by_typing)) == {"__init_subclass__"}
    assert set(vars(by_typing)) - set(vars(by_records)) == {"__orig_bases__"}


def test_a_module_level_record_pickles_by_reference() -> None:
    """Pickle names the class (module and qualified name) rather than copying it."""
    span = Span(1, 4)
    assert b"test_records" in pickle.dumps(span) and b"Span" in pickle.dumps(span)
    assert round_trip(span) == span
    assert type(round_trip(span)) is Span
    assert Span.__qualname__ == "Span" and Span.__module__ == __name__


class Span(records.NamedTuple):
    """A module-level record of this test module."""

    start: int
    end: int = 0


# -- what records refuses ------------------------------------------------------------

# (what, class body source, exception type, exact message, whether typing refuses the same)
REFUSED: list[tuple[str, str, type[Exception], str, bool]] = [
    (
        "a field without default after one with a default",
        "class R(NamedTuple):\n    a: int = 1\n    b: int\n",
        TypeError,
        "Non-default namedtuple field b cannot follow default field a",
        True,
    ),
    (
        "after two with defaults",
        "class R(NamedTuple):\n    a: int = 1\n    b: int = 2\n    c: int\n",
        TypeError,
        "Non-default namedtuple field c cannot follow default fields a, b",
        True,
    ),
    (
        "a field name starting with _",
        "class R(NamedTuple):\n    _hidden: int\n",
        ValueError,
        "Field names cannot start with an underscore: '_hidden'",
        True,
    ),
    (
        "namedtuple's own method redefined",
        "class R(NamedTuple):\n    a: int\n\n    def _replace(self) -> R:\n        return self\n",
        AttributeError,
        "Cannot overwrite NamedTuple attribute _replace",
        True,
    ),
    (
        "__new__ redefined",
        "class R(NamedTuple):\n    a: int\n\n    def __new__(cls) -> R:\n        return cls\n",
        AttributeError,
        "Cannot overwrite NamedTuple attribute __new__",
        True,
    ),
    (
        "a generic record",
        "import typing\nT = typing.TypeVar('T')\n\n"
        "class R(NamedTuple, typing.Generic[T]):\n    a: T\n",
        TypeError,
        "R: a record's only base is NamedTuple (no Generic, no other class)",
        False,
    ),
    (
        "another base",
        "class Base:\n    pass\n\nclass R(NamedTuple, Base):\n    a: int\n",
        TypeError,
        "R: a record's only base is NamedTuple (no Generic, no other class)",
        False,  # typing: "can only inherit from a NamedTuple type and Generic"
    ),
    (
        "a subclass of a record",
        "class R(NamedTuple):\n    a: int\n\nclass Sub(R):\n    b: int\n",
        TypeError,
        "Sub: cannot subclass the record R (records are final: make a new record)",
        False,  # typing makes a subclass whose annotation b is not a field
    ),
    (
        "a subclass of a record, through another base",
        "class R(NamedTuple):\n    a: int\n\nclass Mixin:\n    pass\n\n"
        "class Sub(Mixin, R):\n    pass\n",
        TypeError,
        "Sub: cannot subclass the record R (records are final: make a new record)",
        False,
    ),
    (
        "a record and NamedTuple as bases",
        "class R(NamedTuple):\n    a: int\n\nclass Sub(R, NamedTuple):\n    b: int\n",
        TypeError,
        "Sub: a record's only base is NamedTuple (no Generic, no other class)",
        False,
    ),
    (
        "no fields",
        'class R(NamedTuple):\n    """Nothing."""\n',
        TypeError,
        "R: a record needs annotated fields (and its module 'from __future__ import annotations')",
        False,  # typing makes an empty tuple class
    ),
]


@pytest.mark.parametrize(
    ("source", "error", "message", "as_typing"),
    [r[1:] for r in REFUSED],
    ids=[r[0] for r in REFUSED],
)
def test_records_refuse(source: str, error: type[Exception], message: str, as_typing: bool) -> None:
    with pytest.raises(error) as raised:
        build(records.NamedTuple, source, "records_refused")
    assert str(raised.value) == message
    assert type(raised.value) is error
    if as_typing:
        with pytest.raises(error) as by_typing:
            build(typing.NamedTuple, source, "records_refused_typing")
        assert (type(by_typing.value), str(by_typing.value)) == (error, message)


# -- every record of the package ------------------------------------------------------


def package_records() -> list[type]:
    """Every namedtuple class the package's modules define (__main__ would run the CLI)."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(binfmtctl.__path__, "binfmtctl."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, tuple)
                and hasattr(value, "_fields")
                and value.__module__ == module.__name__
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[name] for name in sorted(found)]


RECORDS = package_records()

#: Records that pickle refuses with their defaults, and why that is right:
#: HostFacts holds read-only MappingProxyType views; planning input, never sent
#: from a forked child. With plain dicts in their place it round-trips.
NOT_PICKLED = {"binfmtctl.plan.HostFacts"}


def with_defaults(cls: type) -> Any:
    """An instance of ``cls``: its own defaults, stand-ins (0, 1, ...) for the other fields."""
    needed = len(cls._fields) - len(cls._field_defaults)  # type: ignore[attr-defined]
    return cls(*range(needed))


def test_the_package_makes_every_record_with_records() -> None:
    """One way everywhere: no record of the package comes from typing."""
    assert len(RECORDS) >= 30
    subclassed = []
    for cls in RECORDS:
        try:
            type("Sub", (cls,), {})
        except TypeError as refused:
            assert str(refused) == (
                f"Sub: cannot subclass the record {cls.__qualname__}"
                " (records are final: make a new record)"
            )
        else:
            subclassed.append(f"{cls.__module__}.{cls.__qualname__}")  # typing's would allow it
    assert subclassed == []


@pytest.mark.parametrize("cls", RECORDS, ids=[f"{c.__module__}.{c.__qualname__}" for c in RECORDS])
def test_each_record_of_the_package_round_trips_with_its_defaults(cls: type) -> None:
    record = with_defaults(cls)
    defaults = cls._field_defaults  # type: ignore[attr-defined]
    assert {k: getattr(record, k) for k in defaults} == defaults
    name = f"{cls.__module__}.{cls.__qualname__}"
    if name in NOT_PICKLED:
        with pytest.raises(TypeError, match=r"^cannot pickle 'mappingproxy' object$"):
            pickle.dumps(record)
        record = record._replace(
            **{k: dict(v) for k, v in record._asdict().items() if isinstance(v, Mapping)}
        )
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        loaded = round_trip(record, protocol)
        assert (type(loaded), loaded, loaded._asdict()) == (cls, record, record._asdict())


LOADER = """\
import pickle, sys
records = pickle.loads(sys.stdin.buffer.read())
named = [(type(r).__module__, type(r).__qualname__, r) for r in records]
sys.stdout.buffer.write(pickle.dumps(named))
"""


def test_the_package_records_load_in_a_fresh_interpreter() -> None:
    """What a forked child sends: the receiving side finds each class by its name."""
    sent = [
        with_defaults(c) for c in RECORDS if f"{c.__module__}.{c.__qualname__}" not in NOT_PICKLED
    ]
    done = subprocess.run(
        [sys.executable, "-c", LOADER], input=pickle.dumps(sent), capture_output=True, check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    back = pickle.loads(done.stdout)  # noqa: S301 - our own bytes
    assert [(m, q) for m, q, _ in back] == [
        (type(r).__module__, type(r).__qualname__) for r in sent
    ]
    assert [r for _, _, r in back] == sent
