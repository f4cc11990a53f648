"""``binfmtctl test``: prove each handler works by exec'ing a tiny probe through it."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from binfmtctl import prove, proving, remedies
from binfmtctl.advice import Advice, advise
from binfmtctl.callerfacts import caller
from binfmtctl.cli.advising import fix_lines
from binfmtctl.cli.output import Result, outcome_code, table
from binfmtctl.cli.seconds import seconds
from binfmtctl.instance import Instance

PROGRESS_AFTER = 0.3  # seconds before a live progress line appears on a terminal


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "test",
        parents=[common],
        help="prove each registered handler runs its arch's programs",
        description="For each registered foreign handler (or each ARCH named), write a "
        "tiny probe program for that arch and exec it through the kernel, exactly as "
        "any foreign program would run; check it prints `binfmtctl-probe ARCH` and "
        "exits 0. All probes run in parallel, with no downloads. Each failure says "
        "why: nothing registered, handler disabled, interpreter missing, wrong "
        "emulator, crashed with a signal, timed out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 every probe ran, 3 some failed, 1 none could run.\n\n"
        "examples:\n"
        "  binfmtctl test                    every registered handler\n"
        "  binfmtctl test arm64 riscv64      these arches (Debian, OCI, uname -m names)\n"
        "  binfmtctl test --chroot           also inside an empty chroot, as containers\n"
        "                                    need (only handlers with the F flag pass)\n"
        "  binfmtctl install --test          register, then prove",
    )
    p.add_argument("arches", nargs="*", metavar="ARCH")
    p.add_argument(
        "--chroot",
        action="store_true",
        help="also run each probe inside an empty directory chroot (needs root, or a "
        "private instance); proves the handler works in containers",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=proving.DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds each probe may take before it counts as hung "
        f"(default {proving.DEFAULT_TIMEOUT:g})",
    )
    p.add_argument(
        "--engine",
        choices=("docker", "podman"),
        help="run each probe in a container of this engine instead (offline: a tiny "
        "image per arch is loaded, run with --pull=never, and removed)",
    )
    p.add_argument(
        "--image",
        metavar="REF",
        help="with --engine: run `uname -m` in this image (already pulled) instead of the probe",
    )
    p.set_defaults(handler=handle)


MAX_TIMEOUT = 3600.0  # a probe is a few instructions; an hour is beyond any emulator


#: --timeout: a finite number of seconds, more than 0 and at most MAX_TIMEOUT.
_seconds = seconds(0, MAX_TIMEOUT, "one hour", above_low=True)


class Progress:
    """A live one-line summary on a terminal, shown once the run takes a moment."""

    def __init__(self, names: Sequence[str], stream: TextIO, after: float = PROGRESS_AFTER):
        self.total = len(names)
        self.running = list(names)
        self.failed = 0
        self.stream = stream
        self.after = after
        self.start = time.monotonic()
        self.shown = False
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> Callable[[proving.Outcome], None]:
        self.ticker.start()
        return self.done

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.ticker.join()
        with self.lock:
            if self.shown:
                self.stream.write("\r\033[K")
                self.stream.flush()

    def done(self, outcome: proving.Outcome) -> None:
        label = outcome.arch + (" chroot" if outcome.chroot else "")
        with self.lock:
            if label in self.running:
                self.running.remove(label)
            self.failed += not outcome.ok
            self._draw()

    def _tick(self) -> None:
        while not self.stop.wait(0.1):
            with self.lock:
                self._draw()

    def _draw(self) -> None:
        elapsed = time.monotonic() - self.start
        if elapsed < self.after or self.stop.is_set():
            return
        finished = self.total - len(self.running)
        failed = f", {self.failed} failed" if self.failed else ""
        waiting = ", ".join(self.running[:6]) + (" ..." if len(self.running) > 6 else "")
        line = f"testing: {finished}/{self.total} done{failed}, {elapsed:.1f} s"
        if waiting:
            line += f"; running {waiting}"
        self.stream.write("\r\033[K" + line[:200])
        self.stream.flush()
        self.shown = True


def wants_progress(as_json: bool, stream: TextIO) -> bool:
    return not as_json and stream.isatty()


def run_tests(
    instance: Instance,
    words: Sequence[str],
    *,
    timeout: float = proving.DEFAULT_TIMEOUT,
    chroot: bool = False,
    progress: TextIO | None = None,
    engine: str | None = None,
    image: str | None = None,
) -> Result:
    """:func:`binfmtctl.prove.prove`, rendered; a progress line on ``progress`` if given."""
    report = prove.prove(
        instance,
        words,
        timeout=timeout,
        chroot=chroot,
        watch=(lambda labels: Progress(labels, progress)) if progress is not None else None,
        engine=engine,
        image=image,
    )
    data = report.to_dict()
    fixes: tuple[Advice, ...] = ()
    if report.failed and engine is None:  # a container engine's failures are its own
        fixes = advise(caller(), remedies.for_outcomes(instance.snapshot(), report.outcomes))
    data["advice"] = [a.to_dict() for a in fixes]
    result = Result("test", data, human=human)
    result.exit_code = outcome_code(report.passed, report.failed)
    return result


def human(data: dict[str, Any]) -> str:
    rows = []
    for r in data["results"]:
        verdict = {"ok": "ok", "native": "ok (native)"}.get(r["code"], "FAILED")
        where = " chroot" if r["chroot"] else f" {r['engine']}" if r.get("engine") else ""
        rows.append(
            [
                r["arch"] + where,
                verdict,
                r["entry"] or "-",
                f"{r['seconds'] * 1000:.0f} ms",
                r["error"] or "",
            ]
        )
    failed = sum(not r["ok"] for r in data["results"])
    total = len(data["results"])
    summary = (
        f"all {total} passed" if not failed else f"{failed} of {total} failed"
    ) + f" in {data['seconds']:.2f} s"
    fixes = fix_lines(data.get("advice", []))
    return "\n".join([table(rows, ["ARCH", "RESULT", "ENTRY", "TIME", "DETAIL"]), summary, *fixes])


def handle(args: argparse.Namespace) -> Result:
    stream = sys.stderr
    return run_tests(
        Instance(args.mountpoint),
        args.arches,
        timeout=args.timeout,
        chroot=args.chroot,
        engine=args.engine,
        image=args.image,
        progress=stream if wants_progress(args.json, stream) else None,
    )
