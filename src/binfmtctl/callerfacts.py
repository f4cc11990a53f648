"""Who is asking, for advice: root or not, and whether private instances work here.

Asked only when something will not run, and at most once per process (cached):
the answer decides whether ``binfmtctl run`` is offered before the root fix.
"""

from __future__ import annotations

import functools
import os

from binfmtctl.advice import Caller


@functools.cache
def private_instances_work() -> bool:
    """Whether this process can make a private binfmt_misc instance (what `run` needs).

    Linux 6.7+ and user namespaces allowed (no sysctl or AppArmor forbids them,
    no seccomp filter refuses unshare, no limit reached): told for real by a
    forked child that enters one (unshare, id maps, mount binfmt_misc) and exits.
    """
    # Start-up speed: the sandbox machinery only when advice is asked for.
    from binfmtctl import sandbox
    from binfmtctl.errors import BinfmtError

    if not sandbox.kernel_supports_private_instances():
        return False
    try:
        sandbox.run(_nothing)
    except (BinfmtError, OSError):
        return False
    return True


def _nothing() -> None:
    """The child's whole job: having entered the instance, it has answered."""


def caller() -> Caller:
    """This process as a :class:`Caller`; whether private instances work is asked only
    when advice for an ordinary user needs it."""
    return Caller(root=os.geteuid() == 0, rootless=private_instances_work)
