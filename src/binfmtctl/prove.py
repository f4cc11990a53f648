"""``binfmtctl test`` as a library call: which arches to prove, run, one typed report.

Above :mod:`binfmtctl.proving` (running and judging one probe at a time) and
:mod:`binfmtctl.engines` (the same probes inside a container).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from binfmtctl import probes, proving
from binfmtctl.arch import resolve_all
from binfmtctl.errors import BinfmtError, UsageError
from binfmtctl.instance import Instance

#: Given the labels of the runs about to start, a context that is told of each
#: outcome as it finishes (``binfmtctl test``'s progress line on a terminal).
Watch = Callable[[list[str]], contextlib.AbstractContextManager[Callable[[proving.Outcome], None]]]


@dataclass(frozen=True)
class TestReport:
    """What ``binfmtctl test`` found: one result per run, in the order they were asked for."""

    __test__ = False  # a report, not a pytest test class

    mountpoint: str
    chroot: bool
    engine: str | None
    timeout: float
    seconds: float
    outcomes: tuple[proving.Outcome, ...]  # probe runs, then arches that have no probe
    # Results of runs inside a container engine, as binfmtctl.engines.verify shapes them.
    by_engine: tuple[dict[str, object], ...] = ()

    @property
    def passed(self) -> int:
        return sum(o.ok for o in self.outcomes) + sum(bool(r["ok"]) for r in self.by_engine)

    @property
    def failed(self) -> int:
        return len(self.outcomes) + len(self.by_engine) - self.passed

    def to_dict(self) -> dict[str, object]:
        # Probe runs and engine runs never come together: one of the two is empty.
        runs = [o.to_dict() for o in self.outcomes if o.code is not proving.OutcomeCode.NO_PROBE]
        missing = [o.to_dict() for o in self.outcomes if o.code is proving.OutcomeCode.NO_PROBE]
        return {
            "mountpoint": self.mountpoint,
            "chroot": self.chroot,
            "engine": self.engine,
            "timeout": self.timeout,
            "seconds": round(self.seconds, 4),
            "results": [*runs, *self.by_engine, *missing],
        }


def prove(
    instance: Instance,
    words: Sequence[str] = (),
    *,
    timeout: float = proving.DEFAULT_TIMEOUT,
    chroot: bool = False,
    watch: Watch | None = None,
    engine: str | None = None,
    image: str | None = None,
) -> TestReport:
    """Run the probes of ``words`` (or of every arch a registered handler claims).

    Arches the catalog has but no probe program covers come back as failed
    outcomes with the code ``no_probe``. With ``engine`` (docker or podman)
    the probes run inside a container instead (:func:`binfmtctl.engines.verify`).
    """
    snapshot = instance.snapshot()
    if words:
        rows = resolve_all(words)
        names = [a.name for a in rows if a.name in probes.PROBES]
        missing = [a.name for a in rows if a.name not in probes.PROBES]
    else:
        names, missing = proving.claimed(snapshot), []
        if not names:
            raise BinfmtError(
                f"nothing to test: no handler in {instance.mountpoint} claims any "
                "architecture; name the ARCHes to test (e.g. `binfmtctl test aarch64`) "
                "to be told how to get handlers for them",
                mountpoint=instance.mountpoint,
            )
    if image is not None and engine is None:
        raise UsageError("--image needs --engine docker|podman")
    if engine is not None and chroot:
        raise UsageError("--chroot and --engine are separate tests; give one of them")
    start = time.perf_counter()
    outcomes: list[proving.Outcome] = []
    by_engine: list[dict[str, object]] = []
    if engine is not None:
        # Start-up speed: the container-engine module (~7 ms to import) only for --engine.
        from binfmtctl import engines

        runs = engines.verify(engine, names, image=image, mountpoint=instance.mountpoint)
        by_engine = [run.to_dict() for run in runs]
    elif watch is not None:
        labels = names + ([f"{n} chroot" for n in names] if chroot else [])
        with watch(labels) as on_done:
            outcomes = proving.run(names, snapshot, timeout=timeout, chroot=chroot, on_done=on_done)
    else:
        outcomes = proving.run(names, snapshot, timeout=timeout, chroot=chroot)
    wall = time.perf_counter() - start
    return TestReport(
        mountpoint=instance.mountpoint,
        chroot=chroot,
        engine=engine,
        timeout=timeout,
        seconds=wall,
        outcomes=(*outcomes, *(proving.no_probe(name) for name in missing)),
        by_engine=tuple(by_engine),
    )
