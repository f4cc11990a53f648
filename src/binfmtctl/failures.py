"""One item a command could not do, as reports and the --json ``errors`` list carry it.

Kept apart from :mod:`binfmtctl.errors` so that raising an error (every verb,
``run`` included) does not import ``typing`` for this record.
"""

from __future__ import annotations

from binfmtctl.errors import BinfmtError
from binfmtctl.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any


class Failure(NamedTuple):
    """One item a command could not do, as the --json ``errors`` list shows it:
    the error's code and message, then its context and what names the item."""

    code: str
    message: str
    exit_code: int
    context: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, err: BinfmtError, message: str | None = None, **where: Any) -> Failure:
        """``err``, optionally restated, with ``where`` (arch, path, line) added."""
        shown = err.to_dict()
        context = {k: v for k, v in shown.items() if k not in ("code", "message")}
        context.update(where)
        return cls(err.code, message or err.message, err.exit_code, tuple(context.items()))

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **dict(self.context)}
