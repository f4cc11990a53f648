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

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A termination signal arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

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


@contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` for the block.

    A signal that was ignored when the block starts (``nohup``, a background
    job's SIGINT) stays ignored, as a shell leaves it. Outside the main thread
    nothing is changed (Python delivers signals there only).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in HANDLED:
        if signal.getsignal(sig) != signal.SIG_IGN:
            previous[sig] = signal.signal(sig, _handler)
    _State.first = _State.pending = None
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _State.first = _State.pending = None


@contextmanager
def deferred() -> Iterator[None]:
    """Hold an interrupt back until the block ends (a resource and its owner are linked).

    E.g. between creating a temporary directory and entering the ``try`` that
    removes it. Cheap; a no-op outside :func:`interruptible`.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _State.deferred += 1
    try:
        yield
    finally:
        _State.deferred -= 1
        if not _State.deferred and _State.pending is not None and _State.first is None:
            signum, _State.pending = _State.pending, None
            _State.first = signum
            raise Interrupted(signum)


@contextmanager
def forwarded_to(pid: int) -> Iterator[None]:
    """While the block runs, SIGINT, SIGTERM and SIGHUP go on to ``pid`` instead of raising.

    What a shell wrapper does for the command it waits for: the command
    decides what a signal means, and its exit status is the answer. Signals
    ignored when the block starts stay ignored; outside the main thread
    nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous = {}
    for sig in HANDLED:
        if signal.getsignal(sig) != signal.SIG_IGN:
            previous[sig] = signal.signal(sig, forward)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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


@contextmanager
def hangup_wakes() -> Iterator[Hangups]:
    """Inside the block SIGHUP wakes :meth:`Hangups.sleep` instead of interrupting.

    SIGINT and SIGTERM keep their meaning (:class:`Interrupted` inside
    :func:`interruptible`). Outside the main thread SIGHUP is left alone.
    """
    hangups = Hangups()
    if threading.current_thread() is not threading.main_thread():
        yield hangups
        return
    previous = signal.signal(signal.SIGHUP, hangups.on_hangup)
    try:
        yield hangups
    finally:
        signal.signal(signal.SIGHUP, previous)
