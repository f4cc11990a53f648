"""The host: its architecture, and which catalog arches it runs natively."""

from __future__ import annotations

import platform

from binfmtctl import arch as _arch
from binfmtctl.errors import UnknownArchError


def machine() -> str:
    return platform.machine()


def host_arch(uname_m: str | None = None) -> _arch.Arch | None:
    """The catalog row for this machine (``uname -m``), if the catalog knows it."""
    try:
        return _arch.resolve(uname_m or machine())
    except UnknownArchError:
        return None


def native_arches(uname_m: str | None = None) -> list[_arch.Arch]:
    """Arches the host's CPU and kernel run without emulation.

    QEMU's own notion: every arch of the host's family (i386 and x86_64 on an
    x86_64 host; arm and aarch64 on arm64).  The host's own arch is always in it.
    """
    me = host_arch(uname_m)
    if me is None:
        return []
    return [a for a in _arch.CATALOG.values() if a.family == me.family]
