"""Whether an emulator keeps argv[0] behind binfmt_misc's P flag, asked of the emulator.

With F alone the kernel hands the emulator ``[emulator, path, argv1...]``: the
program's argv[0] is lost and becomes its path, so a login shell (``-bash``)
is no login shell and ``exec -a NAME`` does nothing. With P the kernel passes
``[emulator, path, argv0, argv1...]`` and sets AT_FLAGS_PRESERVE_ARGV0 in the
emulator's auxv; QEMU honours it since 6.0 ("linux-user: manage binfmt-misc
preserve-arg[0] flag"). An emulator that does not would see the kept argv[0]
as one more argument and break every program, so P is given only where a
probe proved it: an argv[0] probe (:func:`binfmtctl.probes.build_argv0`) is
exec'd as ``-binfmtctl-argv0`` through an FP entry in a private instance, and
exits with the first byte of the argv[0] it got.

The verdict is kept per boot (beside :func:`binfmtctl.native.detect_native`'s
answer), keyed by the emulator file's identity (device, inode, size, mtime),
so a cold cache costs one probe per emulator and a replaced emulator is
probed again.
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
from pathlib import Path

from binfmtctl import native
from binfmtctl.errors import BinfmtError

CACHE_NAME = "argv0.json"
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

    def to_dict(self) -> dict[str, object]:
        return {"keeps": self.keeps, "code": self.code.value, "detail": self.detail or None}


def identity(path: str) -> str | None:
    """The emulator file's identity as the cache keys it; None if it cannot be looked at."""
    try:
        st = os.stat(path)  # the kernel follows symlinks when it opens an F interpreter
    except OSError:
        return None
    return f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


_known: dict[str, Verdict] = {}  # this process's verdicts (any code), by cache key
_loaded: list[bool] = []  # whether this boot's stored verdicts were read into _known


def _key(arch: str, path: str) -> str | None:
    ident = identity(path)
    return None if ident is None else f"{arch} {ident}"


def _load() -> None:
    """Read this boot's stored verdicts into :data:`_known`, once per process."""
    if not _loaded:
        _loaded.append(True)
        for key, verdict in _stored(native.boot_cache_path(CACHE_NAME)).items():
            _known.setdefault(key, verdict)


def known(arch: str, path: str) -> Verdict | None:
    """The verdict already found (by this process, or this boot) for ``path`` running
    ``arch`` programs; never probes."""
    key = _key(arch, path)
    if key is None:
        return None
    _load()
    return _known.get(key)


def verdicts(pairs: Sequence[tuple[str, str]]) -> dict[str, Verdict]:
    """A verdict per emulator path for ``pairs`` of (catalog arch, emulator path).

    Answers come from this process or this boot's cache (one small file
    read); whatever is left is probed, all in one private instance, and stored.
    """
    out: dict[str, Verdict] = {}
    todo: dict[str, tuple[str, str]] = {}  # key -> (arch, path)
    _load()
    for arch, path in pairs:
        key = _key(arch, path)
        if key is None:
            out[path] = Verdict(False, Argv0Code.UNREADABLE, f"{path} cannot be looked at")
        elif key in _known:
            out[path] = _known[key]
        else:
            todo[key] = (arch, path)
    if not todo:
        return out
    found = _probe(list(todo.values()))
    for key, (arch, path) in todo.items():
        out[path] = _known[key] = found[(arch, path)]  # for this process, whatever it is
    cache = native.boot_cache_path(CACHE_NAME)
    if cache is not None:
        rows = _stored(cache)  # another process may have stored its own meanwhile
        rows.update({k: _known[k] for k in todo if _known[k].code in CACHED})
        native.write_boot_cache(cache, {"emulators": {k: v.to_dict() for k, v in rows.items()}})
    return out


def _stored(cache: Path | None) -> dict[str, Verdict]:
    """The verdicts kept this boot, by cache key; a malformed row is left out."""
    if cache is None:
        return {}
    data = native.read_boot_cache(cache)
    rows = data.get("emulators") if data else None
    if not isinstance(rows, dict):
        return {}
    out = {}
    for key, row in rows.items():
        if not isinstance(row, dict) or not isinstance(row.get("keeps"), bool):
            continue
        try:
            code = Argv0Code(row.get("code"))
        except ValueError:
            continue
        detail = row.get("detail")
        if code in CACHED and isinstance(key, str):
            out[key] = Verdict(row["keeps"], code, detail if isinstance(detail, str) else "")
    return out


def _probe(jobs: list[tuple[str, str]]) -> dict[tuple[str, str], Verdict]:
    """Run the argv[0] probe for each (arch, emulator), all in one fresh private instance."""
    # Start-up speed: a warm cache (every call but the first per boot and
    # emulator) needs neither the probe programs nor the namespace code.
    from binfmtctl import probes, sandbox

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
    from binfmtctl import probes  # start-up speed, as in _probe

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
    # Start-up speed, as in _probe: only a cold cache gets here.
    from dataclasses import replace

    from binfmtctl import plan, probes, proving
    from binfmtctl.arch import CATALOG, Profile
    from binfmtctl.instance import Instance

    instance = Instance()
    top = tempfile.mkdtemp(prefix="binfmtctl-argv0-", dir=proving.scratch_dir())
    try:
        ready: list[tuple[int | None, str] | str] = []  # a program to run, or the outcome
        for i, (arch, path) in enumerate(jobs):
            entry = plan.build_entry(CATALOG[arch], path, "FP", Profile.QEMU)
            try:
                instance.register(replace(entry, name=f"{_ENTRY_PREFIX}{i}"))
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
    from binfmtctl import probes  # start-up speed, as in _probe

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
