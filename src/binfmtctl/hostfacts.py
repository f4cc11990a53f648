"""The facts of this machine that install planning needs, gathered before it plans.

:func:`binfmtctl.plan.plan_install` is pure; this is its I/O: the host's arch,
the arches it runs natively (:mod:`binfmtctl.native`), each arch's emulator
search, an explicit ``--interpreter`` inspected, whether an emulator is safe
with the C flag, and the distro family for hints. Each fact is gathered only
where the plan will read it, so nothing is looked at that was not before.
"""

from __future__ import annotations

from binfmtctl import host, interpreters, plan
from binfmtctl.arch import CATALOG, Arch
from binfmtctl.native import native_arches
from binfmtctl.register_string import normalize_flags

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from collections.abc import Sequence


def default_arches(options: plan.Options, searched: plan.Searched | None = None) -> list[Arch]:
    """With no ARCH given: every foreign arch whose emulator is found.

    Pass the same ``searched`` to :func:`gather` to reuse the searches.
    """
    native = {a.name for a in native_arches()}
    out = []
    for arch in CATALOG.values():
        if arch.name in native:
            continue
        if _search(arch, options, searched).best is not None:
            out.append(arch)
    return out


def _search(
    arch: Arch, options: plan.Options, searched: plan.Searched | None
) -> interpreters.Search:
    """``arch``'s emulator search, done once per ``searched``."""
    if searched is None:
        return interpreters.search(arch, options.interpreter_dirs)
    found = searched.get(arch.name)
    if found is None:
        found = searched[arch.name] = interpreters.search(arch, options.interpreter_dirs)
    return found


def gather(
    arches: Sequence[Arch], options: plan.Options, searched: plan.Searched | None = None
) -> plan.HostFacts:
    """The facts :func:`binfmtctl.plan.plan_install` reads for ``arches`` with ``options``."""
    me = host.host_arch()
    native = frozenset(a.name for a in native_arches())
    # The arches the plan refuses before it looks for an emulator.
    looked = [
        a
        for a in arches
        if not (me is not None and a.name == me.name)
        and not (a.name in native and not options.force)
    ]
    emulators: dict[str, interpreters.Search] = {}
    interpreter = None
    if options.interpreter is None:
        emulators = {a.name: _search(a, options, searched) for a in looked}
    elif len(arches) == 1 and looked and options.interpreter.startswith("/"):
        interpreter = interpreters.inspect(options.interpreter)
    try:
        c_flag = "C" in normalize_flags(options.flags)
    except ValueError:
        c_flag = False  # the plan refuses the flags themselves
    chosen = [s.best for s in emulators.values() if s.best is not None]
    chosen += [interpreter] if interpreter is not None and not interpreter.problems else []
    unsafe = {}
    for found in chosen if c_flag else []:
        problem = credentials_problem(found.path)
        if problem is not None:
            unsafe[found.path] = problem
    missing = any(s.best is None for s in emulators.values())
    distro = interpreters.distro_family(interpreters.os_release()) if missing else None
    keeps = argv0_facts(arches, options, emulators, interpreter)
    return plan.HostFacts(me, native, emulators, interpreter, unsafe, distro, keeps)


def argv0_facts(
    arches: Sequence[Arch],
    options: plan.Options,
    emulators: dict[str, interpreters.Search],
    interpreter: interpreters.Interpreter | None,
) -> dict[str, bool]:
    """Whether each chosen emulator keeps argv[0] (P), only when the flags are left to us."""
    if options.flags != plan.AUTO_FLAGS:
        return {}
    # Start-up speed: only the default flags need the verdicts (a per-boot file read)
    # and only a cold cache the probe.
    from binfmtctl import argv0

    pairs = [(a, s.best.path) for a, s in emulators.items() if s.best is not None]
    if interpreter is not None and not interpreter.problems and len(arches) == 1:
        pairs.append((arches[0].name, interpreter.path))
    found, todo = argv0.cached(pairs)
    if todo:
        from binfmtctl import argv0_probe

        found.update({path: v.keeps for path, v in argv0_probe.verdicts(todo).items()})
    return found


def credentials_problem(interpreter: str) -> str | None:
    """Why ``interpreter`` must not get the C flag, as the refusal reason; None if safe.

    One rule for every path that registers (install, export, run/shell, apply).
    """
    # Start-up speed: only the C flag needs the credentials check (run, install).
    from binfmtctl import credentials

    unsafe = credentials.check(interpreter)
    if unsafe is None:
        return None
    return (
        "the C flag runs the interpreter with the program's credentials (a setuid "
        "program's emulator runs as root), so every component of its path must be "
        f"owned by root and writable by root only: {unsafe}"
    )
