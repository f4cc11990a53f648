"""The host: its architecture, and which catalog arches it runs natively."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

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


def family_arches(uname_m: str | None = None) -> list[_arch.Arch]:
    """QEMU's notion of native: every arch of the host's family.

    i386 and x86_64 on an x86_64 host; arm and aarch64 on arm64.  Only a
    fallback now: it is wrong where the kernel lacks 32-bit support (arm64
    CPUs without AArch32) and blind to what it does run.
    """
    me = host_arch(uname_m)
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
    is kept under $XDG_RUNTIME_DIR (or /run for root), both cleared at every boot.
    """
    cache = _cache_file()
    if cache is not None:
        try:
            stored = json.loads(cache.read_text())
            if stored.get("key") == _cache_key():
                return tuple(stored["native"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    found = _detect()
    if cache is not None:
        try:
            cache.parent.mkdir(mode=0o700, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"key": _cache_key(), "native": list(found)}))
            os.replace(tmp, cache)
        except OSError:
            pass  # a cache we cannot write is only slower
    return found


def _cache_file() -> Path | None:
    """$XDG_RUNTIME_DIR, or /run for root: both are emptied at every boot."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or ("/run" if os.geteuid() == 0 else None)
    return Path(runtime) / "binfmtctl" / "native.json" if runtime else None


def _cache_key() -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = "?"
    return f"{boot} {os.uname().release} {machine()}"


def _run_natively(names: list[str]) -> list[str]:
    """Exec each probe here, treating the instance as empty; the names that ran."""
    from binfmtctl import probes
    from binfmtctl.instance import Snapshot

    return [o.arch for o in probes.run(names, Snapshot(), timeout=5.0) if o.ok]


def _detect() -> tuple[str, ...]:
    from binfmtctl import probes, sandbox
    from binfmtctl.errors import BinfmtError
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
    me = host_arch()
    keep = ran | (unsure & family) | ({me.name} if me else set())
    keep |= {a for a in family if a not in names}  # arches without a probe
    return tuple(a for a in _arch.CATALOG if a in keep)
