"""Which catalog arches this host runs natively, asked of the kernel itself.

Every arch's probe program is exec'd with no binfmt_misc handler in the way
(in a fresh private instance); the ones the kernel runs itself are native.
The answer is kept per boot (:func:`detect_native`), so only the first call
after a boot pays for the 36 execs.
"""

from __future__ import annotations

import functools

from binfmtctl import bootcache
from binfmtctl.errors import BinfmtError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from binfmtctl import arch as _arch


def family_arches(uname_m: str | None = None) -> list[_arch.Arch]:
    """QEMU's notion of native: every arch of the host's family.

    i386 and x86_64 on an x86_64 host; arm and aarch64 on arm64.  The answer
    for another machine, where the kernel cannot be asked: it is wrong where
    the kernel lacks 32-bit support (arm64 CPUs without AArch32).
    """
    # Start-up speed: the catalog only where an answer is computed (not for the
    # cache's place, which `run` asks for on every start).
    from binfmtctl import arch as _arch
    from binfmtctl import host

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
    from binfmtctl import arch as _arch  # start-up speed, as in family_arches

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
    found = _detect()
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


def _run_natively(names: list[str]) -> list[str]:
    """Exec each probe here, treating the instance as empty; the names that ran."""
    # Start-up speed: a cached answer (every call but the first per boot) needs
    # neither the probe programs nor the namespace code.
    from binfmtctl import proving
    from binfmtctl.instance import Snapshot

    return [o.arch for o in proving.run(names, Snapshot(), timeout=5.0) if o.ok]


def _detect() -> tuple[str, ...]:
    # Start-up speed, as in _run_natively.
    from binfmtctl import probes, sandbox
    from binfmtctl.instance import Instance, Snapshot

    names = probes.available()
    family = {a.name for a in family_arches()}
    try:
        ran = set(sandbox.run(_run_natively, names))
        unsure: set[str] = set()
    except BinfmtError:
        # No private instance here: exec only what no enabled handler of ours claims.
        try:
            current = Instance().snapshot()
        except BinfmtError:
            current = Snapshot(mounted=False)
        clear = [n for n in names if current.winner(probes.build(n)) is None]
        ran = set(_run_natively(clear))
        unsure = set(names) - set(clear)
    from binfmtctl import arch as _arch  # start-up speed, as in family_arches
    from binfmtctl import host

    me = host.host_arch()
    keep = ran | (unsure & family) | ({me.name} if me else set())
    keep |= {a for a in family if a not in names}  # arches without a probe
    return tuple(a for a in _arch.CATALOG if a in keep)
