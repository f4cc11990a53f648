"""Which catalog arches this host runs natively, asked of the kernel itself.

Every arch's probe program is exec'd with no binfmt_misc handler in the way
(in a fresh private instance); the ones the kernel runs itself are native.
The answer is kept per boot (:func:`detect_native`), so only the first call
after a boot pays for the 36 execs.
"""

from __future__ import annotations

import functools

from binfmtctl import arch as _arch
from binfmtctl import bootcache, host


def family_arches(uname_m: str | None = None) -> list[_arch.Arch]:
    """QEMU's notion of native: every arch of the host's family.

    i386 and x86_64 on an x86_64 host; arm and aarch64 on arm64.  The answer
    for another machine, where the kernel cannot be asked: it is wrong where
    the kernel lacks 32-bit support (arm64 CPUs without AArch32).
    """
    me = host.host_arch(uname_m)
    if me is None:
        return []
    return [a for a in _arch.CATALOG.values() if a.family == me.family]


def native_arches(uname_m: str | None = None) -> list[_arch.Arch]:
    """Arches the host's CPU and kernel run without emulation, in catalog order.

    Decided by exec'ing each arch's probe program with no binfmt_misc handler
    in the way (in a fresh private instance; see :func:`detect_native`).  With
    ``uname_m`` (another machine) only the family rule can answer.
    """
    if uname_m is not None:
        return family_arches(uname_m)
    names = set(detect_native())
    return [a for a in _arch.CATALOG.values() if a.name in names]


@functools.cache
def detect_native() -> tuple[str, ...]:
    """Names of the arches whose probe the kernel runs itself; cached per boot.

    About 40-90 ms on a 2-core x86_64 (36 execs plus a namespace); the answer
    is kept in :func:`_cache_file`, under a key naming this boot.
    """
    cache = _cache_file()
    if cache is not None:
        stored = _read_cache(cache)
        if stored is not None:
            return stored
    # Start-up speed: a kept answer (every call but the first per boot) needs
    # neither the probe programs nor the namespace code.
    from binfmtctl import native_probe

    found = native_probe.detect({a.name for a in family_arches()})
    if cache is not None:
        bootcache.write_json(cache, {"native": list(found)})
    return found


def _read_cache(path: str) -> tuple[str, ...] | None:
    """The stored answer if it is for this boot and a list of names; None for anything else."""
    stored = bootcache.read_json(path)
    names = None if stored is None else stored.get("native")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return tuple(names)


def _cache_file() -> str | None:
    """Where detect_native keeps its answer (see :mod:`binfmtctl.bootcache`)."""
    return bootcache.path("native.json")
