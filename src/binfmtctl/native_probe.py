"""Native-arch detection itself: every probe exec'd with no handler in the way.

Apart from :mod:`binfmtctl.native`, which keeps the answer per boot, because
only the first call after a boot asks: the rest never load the probe programs,
the probe runner or the namespace code.
"""

from __future__ import annotations

from binfmtctl import arch as _arch
from binfmtctl import host, probes, proving, sandbox
from binfmtctl.errors import BinfmtError
from binfmtctl.instance import Instance, Snapshot


def _run_natively(names: list[str]) -> list[str]:
    """Exec each probe here, treating the instance as empty; the names that ran."""
    return [o.arch for o in proving.run(names, Snapshot(), timeout=5.0) if o.ok]


def detect(family: set[str]) -> tuple[str, ...]:
    """Names of the arches whose probe the kernel runs itself, asked afresh, in catalog order.

    ``family``: the host's family (:func:`binfmtctl.native.family_arches`), kept
    where a probe cannot be run without a handler possibly in the way.
    """
    names = probes.available()
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
    me = host.host_arch()
    keep = ran | (unsure & family) | ({me.name} if me else set())
    keep |= {a for a in family if a not in names}  # arches without a probe
    return tuple(a for a in _arch.CATALOG if a in keep)
