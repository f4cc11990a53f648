"""Run a program with QEMU handlers registered, without root (``run``, ``shell``).

One floor above planning and the namespace mechanics: :func:`prepare` enters
a fresh private instance (:func:`binfmtctl.sandbox.enter`), registers the
handlers ``install`` would plan (:func:`binfmtctl.runplan.register_handlers`,
through :func:`binfmtctl.plan.plan_install`) and optionally chroots into a root file
system (:func:`binfmtctl.sandbox.enter_rootfs`);

* :func:`exec_command` does that and then replaces this process with the
  command, so stdin/stdout/stderr, signals and the exit status are the
  command's own;
* :func:`call` does the same in a child and returns its exit status.

What to run with is one :class:`RunOptions`, the same for all three.

>>> from binfmtctl import rootless                         # doctest: +SKIP
>>> rootless.call(["arm64/busybox", "uname", "-m"], rootless.RunOptions(arches=["arm64"]))
aarch64
0
"""

from __future__ import annotations

import os
import stat
import sys

from binfmtctl import forking, runcache, sandbox, signals
from binfmtctl.chroot import Bind
from binfmtctl.errors import CommandNotFoundError, ExecError, SandboxError, UsageError, exec_error
from binfmtctl.idnotice import NOTICE_FD, only_root_notice
from binfmtctl.rootenv import KEPT_IN_ROOT, ROOTFS_PATH, login_shell, root_environment
from binfmtctl.syscalls import CLONE_NEWNS, setns

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import NoReturn

    from binfmtctl import arch as _arch
    from binfmtctl import plan

__all__ = [
    "KEPT_IN_ROOT",
    "ROOTFS_PATH",
    "RunOptions",
    "call",
    "call_captured",
    "environment",
    "exec_command",
    "exec_prepared",
    "login_shell",
    "only_root_notice",
    "prepare",
    "root_environment",
]


class RunOptions:
    """How to run a program: which handlers, which root, which ids, which binds.

    ``arches`` are catalog rows or any name ``binfmtctl arches`` knows (QEMU,
    Debian, OCI, uname -m); None means every foreign arch whose emulator is
    found. Handlers use ``flags``, by default (None) ``plan.DEFAULT_FLAGS`` (F:
    the emulator is opened at registration and keeps working in ``rootfs``).
    ``uid_map``/``gid_map``: see
    :func:`binfmtctl.sandbox.enter` (``"default"`` is what ``binfmtctl run``
    uses). ``binds`` (:class:`binfmtctl.chroot.Bind`) need ``rootfs``;
    ``workdir`` is where the command starts (default / in a root, else the
    current directory); ``env`` adds variables (``--env``). Lists are kept as
    tuples; the options are read-only (:meth:`replace` makes a changed copy).
    """

    __slots__ = (
        "arches", "binds", "env", "flags", "gid_map", "interpreter_dirs", "mountpoint",
        "rootfs", "uid_map", "workdir",
    )  # fmt: skip

    arches: tuple[str | _arch.Arch, ...] | None
    flags: str | None
    rootfs: str | None
    uid_map: str | None
    gid_map: str | None
    mountpoint: str
    interpreter_dirs: tuple[str, ...] | None
    binds: tuple[Bind, ...]
    workdir: str | None
    env: tuple[tuple[str, str], ...]

    def __init__(
        self,
        arches: Sequence[str | _arch.Arch] | None = None,
        flags: str | None = None,
        rootfs: str | None = None,
        uid_map: str | None = None,
        gid_map: str | None = None,
        mountpoint: str = sandbox.DEFAULT_MOUNTPOINT,
        interpreter_dirs: Sequence[str] | None = None,
        binds: Sequence[Bind] = (),
        workdir: str | None = None,
        env: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    ) -> None:
        pairs = env.items() if hasattr(env, "items") else env
        values = {
            "arches": None if arches is None else tuple(arches),
            "flags": flags,
            "rootfs": rootfs,
            "uid_map": uid_map,
            "gid_map": gid_map,
            "mountpoint": mountpoint,
            "interpreter_dirs": None if interpreter_dirs is None else tuple(interpreter_dirs),
            "binds": tuple(binds),
            "workdir": workdir,
            "env": tuple((str(k), str(v)) for k, v in pairs),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"RunOptions are read-only; use .replace({name}=...)")

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunOptions):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"RunOptions({fields})"

    def replace(self, **changes: object) -> RunOptions:
        """A copy with ``changes``, as :func:`dataclasses.replace` would make."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return RunOptions(**values)


def prepare(options: RunOptions | None = None) -> list[plan.Step]:
    """Enter a fresh private instance, register handlers, and chroot if asked.

    Everything :func:`exec_command` does before the exec: this process ends up
    root in its own user namespace, with the handlers of
    :func:`binfmtctl.runplan.register_handlers` and, with ``options.rootfs``, inside
    :func:`binfmtctl.sandbox.enter_rootfs` (with its binds), in
    ``options.workdir``. Returns the steps carried out.
    """
    steps = _prepare(options or RunOptions(), reuse=False)
    assert steps is not None
    return steps


def _prepare(options: RunOptions, *, reuse: bool) -> list[plan.Step] | None:
    """:func:`prepare`; with ``reuse``, the plan kept from an identical run is used if
    still valid (:mod:`binfmtctl.runcache`), and then no steps are returned."""
    if options.binds and options.rootfs is None:
        raise UsageError("--bind needs --rootfs: outside a root every host path is there already")
    plan_key = (
        runcache.key(options.arches, options.flags, options.interpreter_dirs, options.mountpoint)
        if reuse
        else None
    )
    why_not = sandbox.enter(
        mountpoint=options.mountpoint, uid_map=options.uid_map, gid_map=options.gid_map
    )
    if why_not is not None:
        only_root_notice(why_not)
    # Looked up inside the new namespace, where the plan was kept: a file's owner reads
    # differently outside (ids unmapped inside show as 65534), so only there is it the same.
    kept = runcache.lookup(plan_key) if plan_key else None
    steps = None
    if kept is None or not runcache.register(kept, options.mountpoint):
        from binfmtctl import runplan  # start-up speed: a kept plan needs no planning

        steps = runplan.register_and_keep(options, plan_key)
    if options.rootfs is not None:
        sandbox.enter_rootfs(options.rootfs, binds=options.binds, workdir=options.workdir or "/")
    elif options.workdir is not None:
        try:
            os.chdir(options.workdir)
        except OSError as err:
            what = "not a directory" if isinstance(err, NotADirectoryError) else err.strerror
            raise UsageError(f"--workdir {options.workdir}: {what or err}") from err
    return steps


def environment(options: RunOptions, shell: str | None = None) -> dict[str, str]:
    """What the command gets: :func:`root_environment` in a root, else the caller's; plus --env.

    ``shell`` is the root's login shell when the caller knows it already.
    """
    if options.rootfs is not None:
        env = root_environment(
            shell or login_shell(options.rootfs), options.workdir or "/", os.environ
        )
    else:
        env = dict(os.environ)
        if options.workdir is not None:
            env["PWD"] = os.path.abspath(options.workdir)
    env.update(options.env)
    return env


def exec_prepared(argv: Sequence[str], env: Mapping[str, str] | None = None) -> NoReturn:
    """Replace this process with ``argv`` (looked up in PATH), as a shell would.

    Signals Python ignores (SIGPIPE, SIGXFSZ) are reset first, since an ignored
    signal stays ignored across exec. Raises ExecError (126, or 127 when not
    found) if the exec fails; see :func:`_exec_search` for the lookup.
    """
    if not argv:
        raise UsageError("no command given: put it after `--`")
    signals.reset_for_exec()
    sys.stdout.flush()
    sys.stderr.flush()
    environ = dict(os.environ) if env is None else dict(env)
    if "/" in argv[0]:
        try:
            os.execve(argv[0], list(argv), environ)  # noqa: S606 - the user's own command
        except OSError as err:
            raise exec_error(err, argv[0]) from err
    _exec_search(argv, environ)


def _exec_search(argv: Sequence[str], env: dict[str, str]) -> NoReturn:
    """Try ``argv[0]`` in each PATH directory, with the shell's (bash's) exit statuses.

    A directory we may not search, or that lacks the name, is skipped, as are
    directories named like the command: not found anywhere is 127, like the
    shell (Python's execvp would report the unsearchable directory's EACCES,
    126). A file that is found but cannot be run is 126 unless a later PATH
    directory has one that runs.
    """
    path = env.get("PATH", os.defpath)
    failed: OSError | None = None
    for directory in path.split(":"):
        candidate = os.path.join(directory or ".", argv[0])
        try:
            if stat.S_ISDIR(os.stat(candidate).st_mode):
                continue
        except OSError:
            continue  # not there, or hidden in a directory we may not search
        try:
            os.execve(candidate, list(argv), env)  # noqa: S606 - the user's own command
        except OSError as err:
            failed = failed or err
    if failed is not None:
        raise exec_error(failed, argv[0]) from failed
    raise CommandNotFoundError(
        f"cannot run {argv[0]}: command not found in PATH ({path})",
        program=argv[0],
    )


def exec_command(
    argv: Sequence[str],
    options: RunOptions | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> NoReturn:
    """:func:`prepare`, then become ``argv``: this process never comes back.

    Because the command replaces this process (no fork), its stdin, stdout,
    stderr, signals and exit status are exactly its own: a parent shell sees
    ``128+N`` when it is killed by signal N. Nothing outlives it: the
    namespace, its binfmt_misc and the root's mounts go when it exits. Without
    ``env``, the command gets :func:`environment` (in a root: root's own
    variables, the standard PATH, TERM, the language and proxies kept).
    """
    options = options or RunOptions()
    rootfs = os.path.abspath(options.rootfs) if options.rootfs is not None else None
    if env is None:
        env = environment(options)  # before the chroot: the root's passwd is read by path
    _prepare(options, reuse=True)
    try:
        exec_prepared(argv, env)
    except ExecError as err:  # said in why's words: the program's arch, what is missing
        raise _explained(err, argv[0], options, env, rootfs) from err.__cause__


def _explained(
    err: ExecError,
    program: str,
    options: RunOptions,
    env: Mapping[str, str] | None,
    rootfs: str | None,
) -> ExecError:
    """``err`` restated by why's logic (:func:`binfmtctl.diagnose.explain_exec_error`)."""
    try:
        if rootfs is not None:  # out of the chroot, to the namespace's root: the library is there
            setns(os.open("/proc/self/ns/mnt", os.O_RDONLY), CLONE_NEWNS)
        from binfmtctl.diagnose import explain_exec_error  # start-up speed: only on failure

        return explain_exec_error(
            err,
            program,
            path_env=(os.environ if env is None else env).get("PATH"),
            named=options.arches,
            rootfs=rootfs,
            shown=options.rootfs,
            mountpoint=options.mountpoint,
        )
    except Exception:  # noqa: BLE001 - the plain error is still true
        return err


def call(
    argv: Sequence[str],
    options: RunOptions | None = None,
    *,
    env: Mapping[str, str] | None = None,
    forward_signals: bool = False,
) -> int:
    """Run ``argv`` like :func:`exec_command`, but in a child; return its exit status.

    The status follows :mod:`subprocess`: the exit code, or ``-N`` if the
    command was killed by signal N. A failure before the command starts (no
    namespace, no emulator, exec failed) is raised here as the same BinfmtError.

    Interrupted while the command runs, the signal is passed on to it and it
    is reaped before the interrupt goes on up. With ``forward_signals``
    SIGINT, SIGTERM and SIGHUP are only passed on, as a shell wrapper does:
    the command decides, and its status is returned (``binfmtctl run --json``).

    >>> rootless.call(["arm64/busybox", "false"], RunOptions(arches=["aarch64"]))  # doctest: +SKIP
    1
    """
    import pickle  # here, not at the top: `binfmtctl run` without --json never needs it

    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        try:
            exec_command(argv, options, env=env)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            try:
                payload = pickle.dumps(exc)
            except Exception:  # noqa: BLE001
                import traceback  # here, not at the top: only for an error pickle refuses

                payload = pickle.dumps(SandboxError(traceback.format_exc()))
            os.write(write_fd, payload)
        finally:
            os._exit(127)
    os.close(write_fd)
    try:
        with (
            signals.forwarded_to(pid if forward_signals else None),
            os.fdopen(read_fd, "rb") as pipe,
        ):
            payload = pipe.read()  # empty: the exec happened and closed the pipe
            _, status = os.waitpid(pid, 0)
    except BaseException as stop:
        forking.stop_child(pid, stop)
        raise
    if payload:
        raise pickle.loads(payload)  # noqa: S301 - our own child's bytes
    return os.waitstatus_to_exitcode(status)


def call_captured(
    argv: Sequence[str],
    options: RunOptions | None = None,
    *,
    env: Mapping[str, str] | None = None,
    forward_signals: bool = False,
) -> tuple[int, str, str]:
    """:func:`call` with the command's stdout and stderr captured: (status, out, err).

    File descriptors 1 and 2 point at temporary files for the call's duration
    (the child inherits them), then come back; stdin stays the command's own.
    """
    import tempfile  # start-up speed: only run --json and rootfs capture output

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        NOTICE_FD[0] = saved[1]  # binfmtctl's own note stays on the real stderr
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            status = call(argv, options, env=env, forward_signals=forward_signals)
        finally:
            NOTICE_FD[0] = 2
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return status, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")
