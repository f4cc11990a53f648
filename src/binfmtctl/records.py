"""``class X(NamedTuple)`` records without importing ``typing`` (start-up time).

Importing ``typing`` costs 5-7 ms of CPU, a tenth of a hot verb's whole start (and
its NamedTuple checks every field's annotation on top), while at run time the core
needs it for nothing but its records. Type checkers see ``typing.NamedTuple``
here; at run time :class:`NamedTuple` makes, with :func:`collections.namedtuple`, the
class ``typing.NamedTuple`` makes: fields in annotation order, defaults, docstring,
methods, properties, class and static methods, ``__module__`` and ``__qualname__``
(pickle finds the class: forked sandbox calls send records through pipes).

What the package does not use is refused with a TypeError rather than made half-way:
generic records (another base than NamedTuple) and subclasses of a record (the fields
and annotations would not follow). As in typing, a field without a default after one
with a default is a TypeError, a field name starting with ``_`` a ValueError, and
redefining namedtuple's own attributes (``__new__``, ``_replace``, ...) an AttributeError.
The class body's annotations must be in ``__annotations__``: every module of the
package has ``from __future__ import annotations`` (Python 3.14 would otherwise hand
them over as a function); a record without fields is refused, which catches that too.
"""

from __future__ import annotations

__all__ = ["NamedTuple"]  # re-exported for type checkers

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import NamedTuple

# Not seen by type checkers: they read the import above.
if not TYPE_CHECKING:
    from collections import namedtuple

    # As typing: what namedtuple itself defines, and what it sets from the call.
    _PROHIBITED = frozenset(
        {"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults"}
        | {"_make", "_replace", "_asdict", "_source"}
    )
    _SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})

    def _final(cls, **kwargs):
        """``__init_subclass__`` of every record: a record is not subclassed."""
        record = next(b for b in cls.__mro__[1:] if vars(b).get("__init_subclass__") is _FINAL)
        raise TypeError(
            f"{cls.__qualname__}: cannot subclass the record {record.__qualname__}"
            " (records are final: make a new record)"
        )

    _FINAL = classmethod(_final)

    class _RecordMaker(type):
        """``class X(NamedTuple): ...`` calls this with the body; it returns a namedtuple."""

        def __new__(mcls, name, bases, ns):
            if bases != (NamedTuple,):
                raise TypeError(
                    f"{name}: a record's only base is NamedTuple (no Generic, no other class)"
                )
            fields = ns.get("__annotations__", {})
            if not fields:
                raise TypeError(
                    f"{name}: a record needs annotated fields"
                    " (and its module 'from __future__ import annotations')"
                )
            defaulted = []
            for field in fields:
                if field in ns:
                    defaulted.append(field)
                elif defaulted:
                    raise TypeError(
                        f"Non-default namedtuple field {field} cannot follow default"
                        f" field{'s' if len(defaulted) > 1 else ''} {', '.join(defaulted)}"
                    )
            cls = namedtuple(
                name, list(fields), defaults=[ns[f] for f in defaulted], module=ns["__module__"]
            )
            cls.__annotations__ = cls.__new__.__annotations__ = fields
            for key, value in ns.items():
                if key in _PROHIBITED:
                    raise AttributeError("Cannot overwrite NamedTuple attribute " + key)
                if key not in _SPECIAL and key not in fields:
                    setattr(cls, key, value)
            cls.__init_subclass__ = _FINAL
            return cls

    NamedTuple = type.__new__(
        _RecordMaker,
        "NamedTuple",
        (),
        {"__module__": __name__, "__doc__": "Base of a record: ``class X(NamedTuple)``."},
    )
