"""Container engines (Docker, Podman): is the container path as good as a plain exec?

A handler that runs a foreign program from a shell can still fail in a
container: no F flag (the emulator is not inside the image), or the engine runs
in another user namespace that consults another binfmt_misc instance.  This
module checks the real path, offline:

* :func:`verify` loads one tiny image per arch (its probe as the only file,
  labelled with the arch's OCI platform), runs it with
  ``run --rm --pull=never --network=none --platform P`` and compares the
  output; or, with ``image=``, runs ``uname -m`` in an image the user has.
  Images it loaded are removed again.  No registry is ever contacted.
Which engines are here and which instance their containers consult (for
``binfmtctl status``) is ``engine_survey``'s, a module light enough for
status's start-up. The images themselves (one probe each, labelled with its OCI platform) are
built by ``probe_images``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from binfmtctl import arch as _arch
from binfmtctl.engine_survey import ENGINES
from binfmtctl.errors import BinfmtError, EngineError, engine_error
from binfmtctl.instance import DEFAULT_MOUNTPOINT, Instance, Snapshot
from binfmtctl.probe_images import ProbeImage, image_archive, oci_platform

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import subprocess
    from typing import Any

IMAGE_REPO = "localhost/binfmtctl-probe"
DEFAULT_TIMEOUT = 120.0  # seconds for one engine command (a cold daemon can be slow)


# --- running the engine ------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """How to call one engine.

    ``options`` go before the subcommand (``-H unix:///…`` for Docker,
    ``--root``/``--runroot`` for Podman); ``run_options`` are added to every
    ``run`` (e.g. ``--ulimit`` where the runtime needs it).
    """

    name: str
    binary: str
    options: tuple[str, ...] = ()
    run_options: tuple[str, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    @classmethod
    def find(cls, name: str, **kwargs: Any) -> Engine:
        """The engine called ``name`` from PATH; EngineError if it is unknown or absent."""
        if name not in ENGINES:
            raise EngineError(
                f"unknown container engine {name!r}; choose one of {', '.join(ENGINES)}",
                engine=name,
            )
        binary = shutil.which(name)
        if binary is None:
            package = "docker.io" if name == "docker" else "podman"
            raise EngineError(
                f"{name} is not installed (not found on PATH); install it "
                f"(Debian/Ubuntu: apt-get install {package}) or choose the other engine",
                engine=name,
            )
        return cls(name, binary, **kwargs)

    def command(self, *argv: str) -> list[str]:
        return [self.binary, *self.options, *argv]

    def call(self, *argv: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        import subprocess  # here, not at the top: `status` imports this module, start-up time

        cmd = self.command(*argv)
        try:
            return subprocess.run(
                cmd, input=stdin, capture_output=True, check=False, timeout=self.timeout
            )
        except OSError as err:
            raise engine_error(err, self.name, cmd[0]) from err
        except subprocess.TimeoutExpired as err:
            raise EngineError(
                f"`{' '.join(cmd[:3])} …` did not finish in {self.timeout:g} s; is the "
                f"{self.name} daemon/service healthy?",
                engine=self.name,
            ) from err

    def run_argv(
        self, platform: str | None, image: str, *args: str, entrypoint: str = "", name: str = ""
    ) -> list[str]:
        argv = ["run", "--rm", "--pull=never", "--network=none", *self.run_options]
        if name:
            argv += ["--name", name]
        if platform:
            argv += ["--platform", platform]
        if entrypoint:
            argv += ["--entrypoint", entrypoint]
        return [*argv, image, *args]


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _engine_says(done: subprocess.CompletedProcess[bytes]) -> str:
    """The engine's own error text (stderr, else stdout).

    crun reports the container's failure as JSON lines (``{"msg": ...,
    "level": "error"}``); their ``msg`` is the text.
    """
    said = _text(done.stderr).strip() or _text(done.stdout).strip()
    lines = []
    for line in said.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        lines.append(str(record["msg"]) if isinstance(record, dict) and "msg" in record else line)
    return "\n".join(lines) or f"exit status {done.returncode}"


def check_reachable(engine: Engine) -> None:
    """Raise EngineError with the engine's own words when it cannot serve requests."""
    done = engine.call("version")
    if done.returncode != 0:
        hint = (
            "start the daemon (`systemctl start docker`) or point DOCKER_HOST at it"
            if engine.name == "docker"
            else "see `podman info`"
        )
        raise EngineError(
            f"{engine.name} cannot run containers: {_engine_says(done)}; {hint}",
            engine=engine.name,
        )


# --- verification ------------------------------------------------------------


class RunCode(str, Enum):
    """How one container run went (the ``code`` of a result)."""

    OK = "ok"
    ENGINE_FAILED = "engine_failed"  # the engine's run exited non-zero (its words in error)
    WRONG_OUTPUT = "wrong_output"  # it ran, but printed something else


@dataclass(frozen=True)
class ContainerRun:
    """One arch's run inside a container; its JSON is shaped like ``binfmtctl test``'s."""

    arch: str
    entry: str | None  # the handler that matches the probe, as far as binfmtctl can see
    engine: str
    image: str
    code: RunCode = RunCode.OK
    output: str = ""
    stderr: str = ""
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is RunCode.OK

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "entry": self.entry,
            "ok": self.ok,
            "output": self.output,
            "seconds": self.seconds,
            "error": self.error,
            "code": self.code.value,
            "interpreter": None,
            "stderr": self.stderr,
            "chroot": False,
            "engine": self.engine,
            "image": self.image,
        }


@dataclass(frozen=True)
class _Ran:
    """What one ``run`` of the engine gave back."""

    seconds: float
    output: str
    stderr: str
    error: str | None  # None: exit 0


def _snapshot(mountpoint: str) -> Snapshot:
    """The handlers binfmtctl sees (none when it cannot read them)."""
    try:
        return Instance(mountpoint).snapshot()
    except BinfmtError:
        return Snapshot(mountpoint, mounted=False)


def _entry_for(snapshot: Snapshot, header: bytes) -> str | None:
    found = snapshot.winner(header)
    return found.name if found else None


def verify(
    engine_name: str,
    arches: Sequence[str | _arch.Arch],
    *,
    image: str | None = None,
    engine: Engine | None = None,
    mountpoint: str = DEFAULT_MOUNTPOINT,
) -> list[ContainerRun]:
    """Run each arch's probe (or ``uname -m`` in ``image``) in a container.

    One :class:`ContainerRun` per arch, in the order asked for: the handler
    in ``mountpoint`` that matches, the output, the ``run``'s duration, the
    engine's own text when it failed. ``engine`` overrides how the engine is
    called (tests, non-default sockets). Raises EngineError when the engine
    is missing or cannot run anything.
    """
    eng = engine or Engine.find(engine_name)
    rows = [_arch.resolve(a) if isinstance(a, str) else a for a in arches]
    check_reachable(eng)
    snapshot = _snapshot(mountpoint)
    if image is not None:
        return [_verify_image(eng, row, image, snapshot) for row in rows]
    return _verify_probes(eng, rows, snapshot)


def _container_name(row: _arch.Arch, run_id: str) -> str:
    """A name for the one container of ``row``, so an interrupt can remove it by name."""
    return f"binfmtctl-probe-{run_id}-{row.name}"


def _run_named(eng: Engine, argv: list[str], name: str) -> _Ran:
    """:func:`_run_one`; when interrupted, the container goes too (killing `run` leaves it)."""
    try:
        return _run_one(eng, argv)
    except BaseException:
        with contextlib.suppress(EngineError):
            eng.call("rm", "--force", name)
        raise


def _verify_probes(eng: Engine, rows: list[_arch.Arch], snapshot: Snapshot) -> list[ContainerRun]:
    from binfmtctl import probes  # here: `status` imports engines; probes loads tempfile

    run_id = os.urandom(4).hex()  # secrets.token_hex, without its imports
    images = [
        ProbeImage(f"{IMAGE_REPO}:{row.name}-{run_id}", oci_platform(row), probes.build(row))
        for row in rows
    ]
    results: list[ContainerRun] = []
    loaded = False
    try:
        done = eng.call("load", stdin=image_archive(images))
        loaded = True
        if done.returncode != 0:
            raise EngineError(
                f"{eng.name} load refused the probe images: {_engine_says(done)}",
                engine=eng.name,
            )
        for row, img in zip(rows, images, strict=True):
            name = _container_name(row, run_id)
            ran = _run_named(eng, eng.run_argv(img.platform, img.tag, name=name), name)
            expected = _text(probes.expected_output(row))
            code, error = _judged(ran)
            if code is RunCode.OK and ran.output != expected:
                code = RunCode.WRONG_OUTPUT
                error = f"expected {expected!r}, got {ran.output!r}" + (
                    f"; stderr: {ran.stderr.strip()}" if ran.stderr.strip() else ""
                )
            entry = _entry_for(snapshot, img.probe)
            results.append(_container_run(row, entry, eng, img.tag, ran, code, error))
    finally:
        if loaded:
            remove_images(eng, [img.tag for img in images])
    return results


def _judged(ran: _Ran) -> tuple[RunCode, str | None]:
    return (RunCode.OK, None) if ran.error is None else (RunCode.ENGINE_FAILED, ran.error)


def _container_run(
    row: _arch.Arch,
    entry: str | None,
    eng: Engine,
    image: str,
    ran: _Ran,
    code: RunCode,
    error: str | None,
) -> ContainerRun:
    return ContainerRun(
        arch=row.name,
        entry=entry,
        engine=eng.name,
        image=image,
        code=code,
        output=ran.output,
        stderr=ran.stderr,
        seconds=ran.seconds,
        error=error,
    )


def _run_one(eng: Engine, argv: list[str]) -> _Ran:
    import time  # here, not at the top: `status` imports this module, start-up time

    start = time.perf_counter()
    done = eng.call(*argv)
    seconds = round(time.perf_counter() - start, 4)
    error = None
    if done.returncode != 0:
        error = f"{eng.name} run exited {done.returncode}: {_engine_says(done)}"
    return _Ran(seconds, _text(done.stdout), _text(done.stderr), error)


def _verify_image(eng: Engine, row: _arch.Arch, image: str, snapshot: Snapshot) -> ContainerRun:
    from binfmtctl import host, native  # here: only `test --image` needs them (start-up)

    entry = _entry_for(snapshot, row.magic_mask()[0])
    name = _container_name(row, os.urandom(4).hex())
    argv = eng.run_argv(oci_platform(row), image, "-m", entrypoint="uname", name=name)
    ran = _run_named(eng, argv, name)
    code, error = _judged(ran)
    if code is RunCode.OK:
        said = ran.output.strip()
        expected = list(row.uname)
        if row in native.native_arches() and entry is None:
            expected.append(host.machine())  # a native program reports the host's kernel
        if said not in expected:
            code = RunCode.WRONG_OUTPUT
            error = f"`uname -m` printed {said!r}; expected {' or '.join(expected)}"
    return _container_run(row, entry, eng, image, ran, code, error)


def remove_images(eng: Engine, tags: Sequence[str]) -> None:
    """Remove images this module loaded (never anything else); errors are ignored."""
    if tags:
        with contextlib.suppress(EngineError):
            eng.call("rmi", "--force", *tags)
