"""Termination signals as an exception, so ``finally:`` blocks clean up.

SIGINT already arrives as KeyboardInterrupt; SIGTERM and SIGHUP would kill
the process on the spot, leaving probe processes running and probe files in
/dev/shm. Inside :func:`interruptible` all three raise :class:`Interrupted`
(a KeyboardInterrupt carrying the signal number) in the main thread, so the
code that started children or made temporary files can undo that on the way
out, and the CLI can exit 128+N as a shell would report it.

Only the first signal interrupts: later ones, while cleanup runs, are
recorded and otherwise ignored, so a second Ctrl-C cannot cut a cleanup
short and leave files behind (SIGKILL still stops everything).
"""

from __future__ import annotations

import _thread
import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import signal as _signal
    from types import FrameType, TracebackType
else:
    try:  # signal's C core: the same calls without the module's enum wrappers, whose
        import _signal  # import (enum, functools, collections) costs `run` a few ms
    except ImportError:  # pragma: no cover - an interpreter without it
        import signal as _signal

SIGINT = _signal.SIGINT
SIGKILL = _signal.SIGKILL
HANDLED = (SIGINT, _signal.SIGTERM, _signal.SIGHUP)


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, ``signal 40`` for one without a name.

    The signal module (and its enum) is imported here only: naming a signal is
    for reports, never on a start-up path.
    """
    import signal  # start-up speed: names are needed only to report a signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _in_main_thread() -> bool:
    """Python delivers signals to the main thread only; handlers can be set only there."""
    if _thread._count() == 0:  # no other thread is running: this is the main one
        return True
    import threading  # start-up speed: only a process that started threads asks it

    return threading.current_thread() is threading.main_thread()


class Interrupted(KeyboardInterrupt):
    """A termination signal arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal_name(self.signum)

    @property
    def exit_code(self) -> int:
        """What a shell reports for a command that died of this signal."""
        return 128 + self.signum


class _State:
    first: int | None = None  # the signal being handled, once one arrived
    deferred = 0  # depth of deferred() blocks in the main thread
    pending: int | None = None  # a signal that arrived inside deferred()


def _handler(signum: int, _frame: FrameType | None) -> None:
    if _State.first is not None:
        return  # cleanup of the first one is under way
    if _State.deferred:
        _State.pending = _State.pending or signum
        return
    _State.first = signum
    raise Interrupted(signum)


def _install(handler: _signal._HANDLER) -> dict[int, _signal._HANDLER]:
    """Set ``handler`` for the signals not ignored now; what they had before."""
    previous: dict[int, _signal._HANDLER] = {}
    for sig in HANDLED:
        if _signal.getsignal(sig) != _signal.SIG_IGN:
            previous[sig] = _signal.signal(sig, handler)
    return previous


def _restore(previous: dict[int, _signal._HANDLER]) -> None:
    for sig, handler in previous.items():
        _signal.signal(sig, handler)


class _Block:
    """A ``with`` block that propagates whatever ends it (a plain class, not
    contextlib: `binfmtctl run` starts without contextlib's imports)."""

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        raise NotImplementedError


class interruptible(_Block):  # used as a function: ``with interruptible():``
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` for the block.

    A signal that was ignored when the block starts (``nohup``, a background
    job's SIGINT) stays ignored, as a shell leaves it. Outside the main thread
    nothing is changed (Python delivers signals there only).
    """

    def __enter__(self) -> None:
        self.main = _in_main_thread()
        self.previous = _install(_handler) if self.main else {}
        if self.main:
            _State.first = _State.pending = None

    def close(self) -> None:
        _restore(self.previous)
        if self.main:
            _State.first = _State.pending = None


class deferred(_Block):  # used as a function: ``with deferred():``
    """Hold an interrupt back until the block ends (a resource and its owner are linked).

    E.g. between creating a temporary directory and entering the ``try`` that
    removes it. Cheap; a no-op outside :func:`interruptible`.
    """

    def __enter__(self) -> None:
        self.counted = _in_main_thread()
        if self.counted:
            _State.deferred += 1

    def close(self) -> None:
        if not self.counted:
            return
        _State.deferred -= 1
        if not _State.deferred and _State.pending is not None and _State.first is None:
            signum, _State.pending = _State.pending, None
            _State.first = signum
            raise Interrupted(signum)


class forwarded_to(_Block):  # used as a function: ``with forwarded_to(pid):``
    """While the block runs, SIGINT, SIGTERM and SIGHUP go on to ``pid`` instead of raising.

    What a shell wrapper does for the command it waits for: the command
    decides what a signal means, and its exit status is the answer. Signals
    ignored when the block starts stay ignored; outside the main thread
    nothing changes.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid  # None: nothing to forward to (signals keep their meaning)

    def forward(self, signum: int, _frame: FrameType | None) -> None:
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def __enter__(self) -> None:
        wanted = self.pid is not None and _in_main_thread()
        self.previous = _install(self.forward) if wanted else {}

    def close(self) -> None:
        _restore(self.previous)


def reset_for_exec() -> None:
    """Give SIGPIPE and SIGXFSZ back their default action before an exec.

    Python ignores both at start-up, and an ignored signal stays ignored
    across exec: ``yes | head`` would then never end through the program.
    """
    for sig in (_signal.SIGPIPE, _signal.SIGXFSZ):
        _signal.signal(sig, _signal.SIG_DFL)


class _Wake(Exception):
    """SIGHUP during :meth:`Hangups.sleep`: end the sleep early."""


class Hangups:
    """SIGHUP as "do the next round now" for a long-running loop (``binfmtctl agent``)."""

    def __init__(self) -> None:
        self.pending = False  # a SIGHUP arrived while the loop was busy
        self.sleeping = False

    def on_hangup(self, _signum: int, _frame: FrameType | None) -> None:
        if self.sleeping:
            raise _Wake
        self.pending = True

    def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``; True when a SIGHUP ended it early (or came before it)."""
        if self.pending:
            self.pending = False
            return True
        try:
            self.sleeping = True
            time.sleep(seconds)
        except _Wake:
            return True
        finally:
            self.sleeping = False
        return False


class hangup_wakes(_Block):  # used as a function: ``with hangup_wakes() as h:``
    """Inside the block SIGHUP wakes :meth:`Hangups.sleep` instead of interrupting.

    SIGINT and SIGTERM keep their meaning (:class:`Interrupted` inside
    :func:`interruptible`). Outside the main thread SIGHUP is left alone.
    """

    def __enter__(self) -> Hangups:
        hangups = Hangups()
        self.previous: dict[int, _signal._HANDLER] = {}
        if _in_main_thread():
            self.previous[_signal.SIGHUP] = _signal.signal(_signal.SIGHUP, hangups.on_hangup)
        return hangups

    def close(self) -> None:
        _restore(self.previous)
