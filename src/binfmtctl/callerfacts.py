"""Who is asking, for advice: root or not, and whether private instances work here.

Asked only when something will not run, and at most once per process (cached):
the answer decides whether ``binfmtctl run`` is offered before the root fix.
"""

from __future__ import annotations

import functools
import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from binfmtctl.advice import Caller


@functools.cache
def private_instances_work() -> bool:
    """Whether this process can make a private binfmt_misc instance (what `run` needs).

    Linux 6.7+ and user namespaces allowed (no sysctl or AppArmor forbids them,
    no seccomp filter refuses unshare, no limit reached): told for real by a
    forked child that enters one (unshare, id maps, mount binfmt_misc) and exits;
    its exit status is the answer (no pipe, no pickle: a few milliseconds).
    """
    # Start-up speed: the sandbox machinery only when advice is asked for.
    from binfmtctl import forking, sandbox

    if not sandbox.kernel_supports_private_instances():
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: its exit status is the answer
        try:
            sandbox.enter()
        except BaseException:  # noqa: BLE001 - any refusal means no
            os._exit(1)
        os._exit(0)
    try:
        _, status = os.waitpid(pid, 0)
    except BaseException as stop:  # interrupted: nothing forked outlives us
        forking.stop_child(pid, stop)
        raise
    return os.waitstatus_to_exitcode(status) == 0


def caller() -> Caller:
    """This process as a :class:`Caller`; whether private instances work is asked only
    when advice for an ordinary user needs it."""
    from binfmtctl.advice import Caller  # start-up speed: status's private_instance needs none

    return Caller(root=os.geteuid() == 0, rootless=private_instances_work)


def private_instance(mountpoint: str, proc: str = "/proc") -> bool:
    """Whether the binfmt_misc at ``mountpoint`` is not the host's.

    It is private when this process is in a user namespace other than the
    initial one, or when the mountpoint shows another superblock than the
    host's instance (a container's, seen through /proc/PID/root): in the
    initial user namespace every mount of the host's instance shares one.
    With no mount of the host's instance to compare, one seen through
    /proc/PID/root is that process's user namespace's.
    """
    from binfmtctl import namespaces  # start-up speed: only status asks

    if not namespaces.in_initial_user_namespace(proc):
        return True
    try:
        st = os.stat(mountpoint)
    except OSError:
        return False  # nothing mounted there: nothing to tell
    if not _is_binfmt_misc(mountpoint):
        return False
    ours = namespaces.binfmt_mounts(namespaces.read_text(f"{proc}/self/mountinfo") or "")
    if ours:
        return f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}" not in {m.dev for m in ours}
    # None of ours to compare with: one seen through /proc/PID/root was mounted there
    # by that process, and is its user namespace's own unless that is the initial one.
    path, prefix = os.path.abspath(mountpoint), f"{proc}/"  # PROC/PID/root/...
    pid, slash, rest = path[len(prefix) :].partition("/")
    if not (path.startswith(prefix) and slash and pid.isascii() and pid.isdigit()):
        return False
    if not rest.startswith("root/"):
        return False
    try:
        ino = os.stat(f"{proc}/{pid}/ns/user").st_ino
    except OSError:
        return False
    return ino != namespaces.INITIAL_USERNS_INO


def _is_binfmt_misc(mountpoint: str) -> bool:
    """A mounted binfmt_misc has a ``register`` file; a plain directory has not."""
    return os.path.exists(os.path.join(mountpoint, "register"))
