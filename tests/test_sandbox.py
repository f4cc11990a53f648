"""sandbox and the modules under it: system calls, fork-and-call, a fresh private instance.

Everything runs in real forked children and real user namespaces; nothing
here registers a handler (that is rootless's job, tested in test_run.py).
"""

from __future__ import annotations

import errno
import os
import signal

import pytest

from binfmtctl import forking, rootless, sandbox, syscalls
from binfmtctl.errors import SandboxError, UnknownArchError
from conftest import _NO_SANDBOX

needs_sandbox = pytest.mark.skipif(
    _NO_SANDBOX is not None, reason=f"no private binfmt_misc: {_NO_SANDBOX}"
)


def _raise_unknown() -> None:
    raise UnknownArchError("unknown architecture 'x'; `binfmtctl arches` lists them")


def test_fork_call_returns_the_child_result_and_raises_its_exception() -> None:
    assert forking.fork_call(os.getpid) != os.getpid()
    with pytest.raises(UnknownArchError) as caught:
        forking.fork_call(_raise_unknown)
    assert caught.value.code == "unknown_arch"


def test_fork_call_says_how_a_silent_child_ended() -> None:
    with pytest.raises(SandboxError) as caught:
        forking.fork_call(lambda: os.kill(os.getpid(), signal.SIGKILL))
    assert caught.value.message == "sandboxed call was killed by SIGKILL"
    with pytest.raises(SandboxError) as caught:
        forking.fork_call(lambda: os._exit(3))
    assert caught.value.message == "sandboxed call exited with status 3"


def _mount_missing() -> tuple[int | None, str]:
    try:
        syscalls.mount("tmpfs", "/nonexistent-binfmtctl-target", "tmpfs")
    except OSError as err:
        return err.errno, str(err)
    return None, "mounted"


def _instance_and_ids() -> tuple[list[str], int, int]:
    return sorted(os.listdir(sandbox.DEFAULT_MOUNTPOINT)), os.getuid(), os.getgid()


@needs_sandbox
def test_mount_raises_oserror_with_the_target_named() -> None:
    assert sandbox.run(_mount_missing) == (
        errno.ENOENT,
        "[Errno 2] mount /nonexistent-binfmtctl-target: No such file or directory",
    )


@needs_sandbox
def test_run_gives_a_fresh_empty_instance_and_root_inside() -> None:
    assert sandbox.run(_instance_and_ids) == (["register", "status"], 0, 0)


def test_run_options_are_frozen_and_keep_sequences_as_tuples() -> None:
    options = rootless.RunOptions(arches=["arm64", "riscv64"], interpreter_dirs=["/opt/q"])
    assert (options.arches, options.interpreter_dirs) == (("arm64", "riscv64"), ("/opt/q",))
    assert rootless.RunOptions() == rootless.RunOptions(
        arches=None,
        flags=None,  # plan.DEFAULT_FLAGS, decided when the handlers are planned
        rootfs=None,
        uid_map=None,
        gid_map=None,
        mountpoint="/proc/sys/fs/binfmt_misc",
        interpreter_dirs=None,
    )
    with pytest.raises(AttributeError, match="read-only"):
        options.flags = "C"
    assert options.replace(flags="C").flags == "C"
    assert options.flags is None
