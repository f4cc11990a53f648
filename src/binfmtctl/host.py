"""The host's identity: its machine name and its row in the catalog.

Which arches it runs *natively* is a question for the kernel, answered by
:mod:`binfmtctl.native`.
"""

from __future__ import annotations

import os

from binfmtctl import arch as _arch
from binfmtctl.errors import UnknownArchError


def machine() -> str:
    """``uname -m`` (os.uname: the platform module costs start-up time for the same answer)."""
    return os.uname().machine


def host_arch(uname_m: str | None = None) -> _arch.Arch | None:
    """The catalog row for this machine (``uname -m``), if the catalog knows it."""
    try:
        return _arch.resolve(uname_m or machine())
    except UnknownArchError:
        return None
