"""Asking an emulator whether it keeps argv[0] behind the P flag, by a real exec.

An argv[0] probe (:func:`binfmtctl.probes.build_argv0`) is exec'd as
``-binfmtctl-argv0`` through an FP entry in a fresh private instance and exits
with the first byte of the argv[0] it got: ``-`` where the emulator honoured P,
``/`` (its path) where it did not. Only a cold cache gets here: the verdicts
are kept by :mod:`binfmtctl.argv0`, which the hot path reads alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum

from binfmtctl import argv0, plan, probes, proving, sandbox
from binfmtctl.arch import CATALOG, Profile
from binfmtctl.errors import BinfmtError
from binfmtctl.instance import Instance

TIMEOUT = 5.0  # seconds for one probe run
_ENTRY_PREFIX = "binfmtctl-argv0-"


class Argv0Code(str, Enum):
    """Why an emulator gets FP or F by default (the JSON ``argv0.code``)."""

    KEPT = "kept"  # the probe saw its own argv[0]: FP
    REPLACED = "replaced"  # the probe saw its path: the emulator ignores P
    PROBE_FAILED = "probe_failed"  # the probe did not run through an FP entry
    NO_PROBE = "no_probe"  # no argv[0] probe program for the arch
    NO_PRIVATE_INSTANCE = "no_private_instance"  # nowhere to try an FP entry safely
    UNREADABLE = "unreadable"  # the emulator file cannot be looked at


#: Codes that are a property of the emulator file, so they are kept per boot.
CACHED = frozenset({Argv0Code.KEPT, Argv0Code.REPLACED, Argv0Code.PROBE_FAILED})


@dataclass(frozen=True)
class Verdict:
    """What the probe found for one emulator running one arch's programs."""

    keeps: bool
    code: Argv0Code
    detail: str = ""

    def to_dict(self) -> argv0.Row:
        return {"keeps": self.keeps, "code": self.code.value, "detail": self.detail or None}


def verdicts(pairs: Sequence[tuple[str, str]]) -> dict[str, Verdict]:
    """Probe each of ``pairs`` (catalog arch, emulator path), all in one private instance.

    Every verdict is remembered for this process (:func:`binfmtctl.argv0.row`);
    those about the emulator file itself are kept for this boot too.
    """
    out: dict[str, Verdict] = {}
    todo: dict[str, tuple[str, str]] = {}  # cache key -> (arch, path)
    for arch, path in pairs:
        name = argv0.key(arch, path)
        if name is None:
            out[path] = Verdict(False, Argv0Code.UNREADABLE, f"{path} cannot be looked at")
        else:
            todo[name] = (arch, path)
    found = _probe(list(todo.values())) if todo else {}
    rows: dict[str, argv0.Row] = {}
    for name, job in todo.items():
        out[job[1]] = found[job]
        rows[name] = found[job].to_dict()
    argv0.remember(rows)
    argv0.store({k: r for k, r in rows.items() if r["code"] in argv0.CACHED_CODES})
    return out


def _probe(jobs: list[tuple[str, str]]) -> dict[tuple[str, str], Verdict]:
    """Run the argv[0] probe for each (arch, emulator), all in one fresh private instance."""
    out: dict[tuple[str, str], Verdict] = {}
    runnable = []
    for arch, path in jobs:
        if arch in probes.ARGV0_CODE:
            runnable.append((arch, path))
        else:
            why = probes.NO_ARGV0_PROBE.get(arch, "none was written")
            out[(arch, path)] = Verdict(
                False, Argv0Code.NO_PROBE, f"no argv[0] probe for {arch}: {why}"
            )
    if not runnable:
        return out
    try:
        results = sandbox.run(_run_in_instance, runnable)
    except BinfmtError as err:
        for job in runnable:
            out[job] = Verdict(
                False,
                Argv0Code.NO_PRIVATE_INSTANCE,
                f"no private binfmt_misc instance to try the P flag in: {err}",
            )
        return out
    for job, (status, detail) in zip(runnable, results, strict=True):
        out[job] = _judge(status, detail)
    return out


def _judge(status: int | None, detail: str) -> Verdict:
    """The verdict from the probe's exit status (None: it did not exit by itself)."""
    if status == probes.ARGV0_KEPT:
        return Verdict(True, Argv0Code.KEPT, "the program saw the argv[0] it was started with")
    if status == probes.ARGV0_REPLACED:
        return Verdict(
            False,
            Argv0Code.REPLACED,
            "the emulator ignores the P flag: the program saw its path as argv[0] and "
            "would see its real argv[0] as an extra argument",
        )
    said = f"exited {status}" if status is not None else detail
    return Verdict(False, Argv0Code.PROBE_FAILED, f"the argv[0] probe failed through FP: {said}")


def _run_in_instance(jobs: list[tuple[str, str]]) -> list[tuple[int | None, str]]:
    """In a fresh private instance: register an FP entry per job, run each probe."""
    instance = Instance()
    top = tempfile.mkdtemp(prefix="binfmtctl-argv0-", dir=proving.scratch_dir())
    try:
        ready: list[tuple[int | None, str] | str] = []  # a program to run, or the outcome
        for i, (arch, path) in enumerate(jobs):
            entry = plan.build_entry(CATALOG[arch], path, "FP", Profile.QEMU)
            try:
                instance.register(entry.replace(name=f"{_ENTRY_PREFIX}{i}"))
            except BinfmtError as err:
                ready.append((None, f"the kernel refused the FP entry: {err}"))
                continue
            program = os.path.join(top, arch)
            if not os.path.exists(program):
                fd = os.open(program, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
                with os.fdopen(fd, "wb") as f:
                    f.write(probes.build_argv0(arch))
            ready.append(program)
        workers = min(len(jobs), 4 * (os.cpu_count() or 1))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda r: _execute(r) if isinstance(r, str) else r, ready))
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _execute(program: str) -> tuple[int | None, str]:
    """Exec ``program`` as ``-binfmtctl-argv0``: its exit status, or what went wrong."""
    try:
        done = subprocess.run(  # our own probe, no shell
            [probes.ARGV0],
            executable=program,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"no exit after {TIMEOUT:g} s"
    except OSError as err:
        return None, f"exec failed: {err.strerror}"
    if done.returncode < 0:
        return None, f"killed by signal {-done.returncode}"
    return done.returncode, ""
