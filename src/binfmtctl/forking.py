"""Call a function in a forked child and get back its result, or its exception.

The mechanics under :func:`binfmtctl.sandbox.run` and :class:`~binfmtctl.sandbox.Sandbox`:
the child pickles what ``body`` returned or raised into a pipe; an interrupt
while it runs is passed on to it (:func:`stop_child`) so nothing forked
outlives the caller.
"""

from __future__ import annotations

import os

from binfmtctl import signals
from binfmtctl.errors import SandboxError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")


class _Failure:
    """An exception from the child that could not be pickled as itself."""

    def __init__(self, text: str) -> None:
        self.text = text


def _child_main(write_fd: int, body: Callable[[], Any]) -> None:
    """Run ``body`` in a forked child, report its outcome, and never return."""
    import pickle  # here, not at the top: `binfmtctl run` execs and never needs it

    status = 0
    try:
        outcome: tuple[str, Any] = ("ok", body())
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        outcome = ("err", exc)
        status = 1
    try:
        payload = pickle.dumps(outcome)
    except Exception:  # noqa: BLE001
        import traceback  # here, not at the top: only for an outcome pickle refuses

        payload = pickle.dumps(("err", _Failure(traceback.format_exc())))
    with os.fdopen(write_fd, "wb") as pipe:
        pipe.write(payload)
    os._exit(status)


def fork_call(body: Callable[[], T]) -> T:
    """``body()`` in a forked child: its result, or its exception raised here."""
    import pickle  # here, not at the top: `binfmtctl run` execs and never needs it

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read_fd)
        try:
            _child_main(write_fd, body)
        finally:
            os._exit(70)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd, "rb") as pipe:
            payload = pipe.read()
    except BaseException as stop:
        stop_child(pid, stop)
        raise
    _, wait_status = os.waitpid(pid, 0)
    if not payload:
        if os.WIFSIGNALED(wait_status):
            sig = signals.signal_name(os.WTERMSIG(wait_status))
            raise SandboxError(f"sandboxed call was killed by {sig}")
        code = os.waitstatus_to_exitcode(wait_status)
        raise SandboxError(f"sandboxed call exited with status {code}")
    kind, value = pickle.loads(payload)  # noqa: S301 - our own child's bytes
    if kind == "ok":
        return value  # type: ignore[no-any-return]
    if isinstance(value, _Failure):
        raise SandboxError(f"sandboxed call failed:\n{value.text}")
    raise value


def stop_child(pid: int, stop: BaseException) -> None:
    """We are interrupted while a child runs: pass the signal on, as a shell does, and reap it.

    The child gets the signal that stopped us (SIGINT for a plain
    KeyboardInterrupt; SIGKILL for any other exception, which no signal
    explains), so nothing we forked outlives us.
    """
    if isinstance(stop, signals.Interrupted):
        signum = stop.signum
    elif isinstance(stop, KeyboardInterrupt):
        signum = signals.SIGINT
    else:
        signum = signals.SIGKILL
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
