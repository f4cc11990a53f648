"""The handlers ``run`` and ``shell`` register: planned as ``install`` plans, and kept.

Apart from :mod:`binfmtctl.rootless` because a run whose plan was kept
(:mod:`binfmtctl.runcache`) registers those lines and never loads this module,
the catalog, the planner or the emulator search.
"""

from __future__ import annotations

import os

from binfmtctl import arch as _arch
from binfmtctl import hostfacts, interpreters, plan, runcache
from binfmtctl.errors import InterpreterError, RefusedError
from binfmtctl.instance import DEFAULT_MOUNTPOINT, Instance

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Sequence

    from binfmtctl.rootless import RunOptions


def register_handlers(
    arches: Sequence[str | _arch.Arch] | None = None,
    *,
    flags: str | None = None,
    mountpoint: str = DEFAULT_MOUNTPOINT,
    interpreter_dirs: Sequence[str] | None = None,
    searched: plan.Searched | None = None,
) -> list[plan.Step]:
    """Register QEMU handlers in the (private) instance at ``mountpoint``.

    Uses the same planning as ``binfmtctl install`` (:func:`plan.plan_install`);
    any arch that cannot be registered (no emulator: the error says which
    package has it; the host's own arch) raises before anything is written.
    Returns the steps; ``searched`` (if given) gets every emulator search made.
    """
    options = plan.Options(
        flags=plan.DEFAULT_FLAGS if flags is None else flags,
        interpreter_dirs=tuple(interpreter_dirs or interpreters.DEFAULT_DIRS),
    )
    searched = {} if searched is None else searched  # each arch's emulator looked for once
    if arches is None:
        chosen = hostfacts.default_arches(options, searched)
        if not chosen:
            raise InterpreterError(
                "no foreign emulator found, so there is nothing to register; "
                f"{plan.INSTALL_EMULATORS} or pass --interpreter-dir"
            )
    else:
        chosen = [a if isinstance(a, _arch.Arch) else _arch.resolve(a) for a in arches]
    instance = Instance(mountpoint)
    current = {n.name: n.state for n in instance.entries()}
    chosen = list(dict.fromkeys(chosen))
    steps = plan.plan_install(chosen, current, options, hostfacts.gather(chosen, options, searched))
    for step in steps:
        if step.action == plan.MISSING:
            raise InterpreterError(step.reason, arch=step.arch.name)
        if step.failed:
            raise RefusedError(step.reason, arch=step.arch.name)
    for step in steps:
        plan.apply(instance, step)
    return steps


def register_and_keep(options: RunOptions, plan_key: str | None) -> list[plan.Step]:
    """:func:`register_handlers`, and with ``plan_key`` the plan kept for the next run."""
    searched: plan.Searched = {}
    steps = register_handlers(
        options.arches,
        flags=options.flags,
        mountpoint=options.mountpoint,
        interpreter_dirs=options.interpreter_dirs,
        searched=searched,
    )
    if plan_key is not None and all(s.action == plan.REGISTER and s.entry for s in steps):
        dirs = options.interpreter_dirs or interpreters.DEFAULT_DIRS
        looked_at = [
            os.path.join(directory, name)
            for arch in searched
            for name in interpreters.candidates(_arch.CATALOG[arch])
            for directory in dirs
        ]
        lines = [s.entry.register_bytes() for s in steps if s.entry is not None]
        runcache.store(plan_key, looked_at, lines)
    return steps
