"""Which catalog arches this host runs natively, asked of the kernel itself.

Every arch's probe program is exec'd with no binfmt_misc handler in the way
(in a fresh private instance); the ones the kernel runs itself are native.
The answer is kept per boot (:func:`detect_native`), so only the first call
after a boot pays for the 36 execs.
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat

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
        write_boot_cache(cache, {"native": list(found)})
    return found


CACHE_MAX = 64 * 1024  # a larger native.json is not ours


def _read_cache(path: str) -> tuple[str, ...] | None:
    """The stored answer if it is for this boot and a list of names; None for anything else."""
    stored = read_boot_cache(path)
    names = None if stored is None else stored.get("native")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return None
    return tuple(names)


def _cache_file() -> str | None:
    """Where detect_native keeps its answer.

    $XDG_RUNTIME_DIR, else /run for root (both are emptied at every boot),
    else $XDG_CACHE_HOME or ~/.cache (the boot id in the key makes an answer of
    an earlier boot miss). Root is judged by the uid outside this user
    namespace: inside ``binfmtctl run``'s, everyone is uid 0 but only real
    root can write /run.
    """
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "binfmtctl", "native.json")
    if _outside_uid() == 0:
        return "/run/binfmtctl/native.json"
    home = os.environ.get("HOME")
    cache = os.environ.get("XDG_CACHE_HOME") or (os.path.join(home, ".cache") if home else None)
    if not cache or not os.path.isabs(cache):
        return None
    return os.path.join(cache, "binfmtctl", "native.json")


class BootMarker:
    """A file in the per-boot cache saying something was done this boot (a notice said)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def seen(self) -> bool:
        """Whether it was marked during this boot (never blocks on a FIFO, never follows a link)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return False
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return False
            return os.read(fd, 4096).decode(errors="replace") == _cache_key()
        except OSError:
            return False
        finally:
            os.close(fd)

    def mark(self) -> None:
        """Mark it for this boot; a cache that cannot be written only means saying it again."""
        directory = os.path.dirname(self.path)
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}")
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(_cache_key())
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def boot_marker(name: str) -> BootMarker | None:
    """The marker ``name`` next to the native-arch answer; None where there is no cache."""
    cache = _cache_file()
    return None if cache is None else BootMarker(os.path.join(os.path.dirname(cache), name))


def _outside_uid(uid_map: str = "/proc/self/uid_map") -> int | None:
    """This process's effective uid as the parent user namespace knows it (None: unknown)."""
    uid = os.geteuid()
    try:
        with open(uid_map) as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) == 3 and all(f.isdigit() for f in fields):
            inside, outside, count = (int(f) for f in fields)
            if inside <= uid < inside + count:
                return outside + uid - inside
    return None


def _cache_key() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            boot = fh.read().strip()
    except OSError:
        boot = "?"
    uname = os.uname()  # host.machine(), without the catalog's import
    return f"{boot} {uname.release} {uname.machine}"


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


# Per-boot answers (native.json above, binfmtctl.argv0's, run's kept plans): one
# place, one boot key, one careful read and one atomic write.


def boot_cache_path(name: str) -> str | None:
    """Where a per-boot answer called ``name`` is kept (beside native.json); None: nowhere."""
    found = _cache_file()
    return None if found is None else os.path.join(os.path.dirname(found), name)


def read_boot_cache(path: str | os.PathLike[str]) -> dict[str, object] | None:
    """The JSON object at ``path`` if it was stored this boot; None for anything else.

    Never blocks on a FIFO or reads a device (O_NONBLOCK, then fstat), never
    follows a symlink, reads at most CACHE_MAX bytes.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        import json  # start-up speed: only a per-boot answer is JSON

        stored = json.loads(os.read(fd, CACHE_MAX))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(stored, dict) or stored.get("key") != _cache_key():
        return None
    return stored


def write_boot_cache(path: str | os.PathLike[str], payload: dict[str, object]) -> None:
    """Store ``payload`` at ``path`` under this boot's key, atomically; failing only costs speed."""
    import json  # start-up speed: written once per boot

    directory, name = os.path.split(os.fspath(path))
    tmp = os.path.join(directory, f".{name}.{os.getpid()}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        with open(tmp, "w") as fh:
            fh.write(json.dumps({**payload, "key": _cache_key()}))
        os.replace(tmp, path)
    except OSError:
        pass
