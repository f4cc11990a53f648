"""Enable or disable entries by name or arch: the use-case behind ``enable``/``disable``.

A disabled entry stays registered but the kernel skips it. Every word is
resolved before anything is switched, so one bad word changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from binfmtctl.errors import BinfmtError, NoSuchEntryError
from binfmtctl.failures import Failure
from binfmtctl.instance import Instance, entry_name
from binfmtctl.records import NamedTuple


class SwitchReport(NamedTuple):
    on: bool
    changed: tuple[str, ...]
    absent: tuple[str, ...]  # removed by another process meanwhile
    errors: tuple[Failure, ...]

    def to_dict(self) -> dict[str, object]:
        return {"changed": list(self.changed), "absent": list(self.absent)}


def switch(instance: Instance, words: Sequence[str], on: bool) -> SwitchReport:
    """Enable (``on``) or disable the entries ``words`` name (entry names or arches)."""
    instance.require_mounted()
    listed = instance.names()
    names = [entry_name(word, listed) for word in words]
    present = set(instance.names())
    changed: list[str] = []
    absent: list[str] = []
    errors: list[Failure] = []
    for name in dict.fromkeys(names):
        try:
            (instance.enable if on else instance.disable)(name)
            changed.append(name)
        except NoSuchEntryError as err:
            if name in present:
                absent.append(name)  # removed by another process meanwhile
            else:
                errors.append(Failure.of(err))
        except BinfmtError as err:
            errors.append(Failure.of(err))
    return SwitchReport(on, tuple(changed), tuple(absent), tuple(errors))
