"""``binfmtctl status``: the host, the instance, and every entry with its problems."""

from __future__ import annotations

import os

from binfmtctl import arch as _arch
from binfmtctl import boot_report, engine_survey, host, interpreters, native
from binfmtctl.boot_report import BootReport
from binfmtctl.cli import quick
from binfmtctl.cli.output import Result, table
from binfmtctl.entry import Handler
from binfmtctl.instance import Instance, disabled_warning
from binfmtctl.namespaces import changes_reach_host
from binfmtctl.persist import Layout

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import argparse
    from typing import Any


STATUS_SECTIONS = """\
sections of the output, in order:
  host:               this machine's architecture and the ones it runs natively
                      (those need no handler)
  binfmt_misc:        the instance: where it is mounted (or how to mount it),
                      enabled or DISABLED, the host's or a private one
  entry table         ENTRY ARCH ENABLED FLAGS INTERPRETER, one row per entry
                      (ARCH is recognised from the magic; - when none fits)
  NAME: problem       what is wrong with an entry: disabled, interpreter missing,
                      dynamically linked with F, shadowed by a newer entry
  container engines:  per engine found, which instance its containers consult:
                      the same as binfmtctl's, inherited, or a private one
  boot configuration: per entry name, the binfmt.d files and binfmt-support
                      records that define it and which wins at boot; then how
                      the running entries differ from what boot would register
With --boot only what boot would register is shown.
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    import argparse  # start-up speed: only when the parser is built (see QUICK)

    p = sub.add_parser(
        "status",
        parents=[common],
        help="show the host, the binfmt_misc instance and every entry (the default)",
        description="Show this machine's architecture, the binfmt_misc instance "
        "(mounted? enabled? the host's or a private one?) and every entry in it — "
        "ours and foreign — with the architecture recognised from its magic, the "
        "interpreter, the flags and any problem: interpreter missing, not static "
        "while F is set, shadowed by a newer entry.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=STATUS_SECTIONS,
    )
    p.add_argument(
        "--boot",
        action="store_true",
        help="show what boot would register: systemd-binfmt applying the binfmt.d "
        "files in /etc, /run, /usr/local/lib and /usr/lib (simulated; nothing changes)",
    )
    p.add_argument(
        "--root",
        metavar="DIR",
        help="read the configuration (binfmt.d, binfmt-support's database) below DIR, "
        "every path resolved inside DIR as a chroot would (interpreters too)",
    )
    p.set_defaults(handler=handle)


class Seen:
    """Every interpreter path as status looks at it: once, however many entries name it.

    One stat (does it exist? the argv[0] verdict's key) and one open (its header
    judged by :func:`interpreters.fitness`, and for an F entry its loader, read
    through the same open file); ``host_arch`` asked once, not per entry.
    """

    def __init__(self) -> None:
        me = host.host_arch()
        self.families = {me.family} if me else None
        self._stats: dict[str, os.stat_result | None] = {}
        self._looks: dict[str, tuple[interpreters.Fitness, str | None, bool]] = {}

    def stat(self, path: str) -> os.stat_result | None:
        """``os.stat(path)``; None where ``os.path.exists(path)`` is False."""
        if path not in self._stats:
            try:
                self._stats[path] = os.stat(path)
            except (OSError, ValueError):
                self._stats[path] = None
        return self._stats[path]

    def look(self, path: str, loader: bool = False) -> tuple[interpreters.Fitness, str | None]:
        """The file's fitness here and (``loader``) its PT_INTERP: None if static or
        unreadable (a FIFO is never read: interpreter_problems says what it is)."""
        known = self._looks.get(path)
        if known is None or (loader and not known[2]):
            fit, found = interpreters.look(path, self.families, loader)
            known = (fit, found, loader)
            self._looks[path] = known
        return known[0], known[1]


def entry_problems(
    handler: Handler, newer: list[Handler], seen: Seen | None = None
) -> tuple[str | None, list[str]]:
    """The arch an entry is for, and what is wrong with it, in words (``seen``: the
    interpreters already looked at by this status)."""
    from binfmtctl.explain import recognise, sample_header

    seen = Seen() if seen is None else seen
    entry = handler.entry
    problems: list[str] = []
    found = recognise(entry)
    if not handler.enabled:
        problems.append("disabled: the kernel skips it")
    path = entry.interpreter
    if seen.stat(path) is None:
        if "F" in entry.flags:
            problems.append(
                f"interpreter {path} no longer exists (the kernel still holds the file "
                "it opened at registration; it will be gone after a reboot)"
            )
        else:
            problems.append(f"interpreter {path} does not exist: every exec will fail")
    elif "F" in entry.flags and found is not None and seen.look(path, loader=True)[1]:
        problems.append(
            f"interpreter {path} is dynamically linked: with F it still needs its "
            "libraries inside chroots and containers"
        )
    problems.extend(interpreter_problems(entry.interpreter, entry.flags, found, seen))
    if found is not None:
        sample = sample_header(found)
        for other in newer:
            if other.enabled and other.entry.matches(sample):
                problems.append(
                    f"shadowed by the newer entry {other.name}: the kernel tries it first"
                )
                break
    return (found.name if found else None), problems


def interpreter_problems(
    path: str, flags: str, found: _arch.Arch | None, seen: Seen | None = None
) -> list[str]:
    """An interpreter that cannot run here, emulates another arch, or is unsafe with C."""
    seen = Seen() if seen is None else seen
    out: list[str] = []
    if seen.stat(path) is not None:  # a missing one is reported above
        for code, words in seen.look(path)[0].problems:
            if code is not interpreters.Problem.SCRIPT:  # the kernel runs it by its #! line
                out.append(f"interpreter {path} cannot run on this machine: {words}")
        meant = interpreters.targets(path)
        if found is not None and meant and found not in meant:
            names = ", ".join(a.name for a in meant)
            out.append(f"interpreter {path} emulates {names}, not {found.name}")
    if "C" in flags:
        from binfmtctl import credentials  # start-up speed: only entries with C need it

        unsafe = credentials.check(path)
        if unsafe is not None:
            out.append(f"C flag with an interpreter others can change: {unsafe}")
    return out


def collect(instance: Instance, handlers: list[Handler] | None = None) -> dict[str, Any]:
    """Host, instance and entries; ``handlers``: the instance's entries if already read."""
    me = host.host_arch()
    mounted = instance.mounted  # one statfs proof, not one per use
    data: dict[str, Any] = {
        "host": {
            "machine": host.machine(),
            "arch": me.name if me else None,
            "native": [a.name for a in native.native_arches()],
        },
        "instance": {
            "mountpoint": instance.mountpoint,
            "mounted": mounted,
            "enabled": None,
            "host": changes_reach_host(),
        },
        "entries": [],
    }
    if not mounted:
        return data
    data["instance"]["enabled"] = instance.enabled()
    handlers = instance.entries() if handlers is None else handlers
    seen = Seen()
    for index, item in enumerate(handlers):
        arch_name, problems = entry_problems(item, handlers[:index], seen)
        data["entries"].append(
            {
                "name": item.name,
                "arch": arch_name,
                "enabled": item.enabled,
                "entry": item.entry.to_dict(),
                "problems": problems,
                "argv0": _argv0(arch_name, item.entry.interpreter, seen),
            }
        )
    return data


def _argv0(arch: str | None, interpreter: str, seen: Seen) -> dict[str, object] | None:
    """Whether the emulator keeps argv[0] behind P, as found this boot (never probed here)."""
    info = None if arch is None else seen.stat(interpreter)
    if arch is None or info is None:  # a missing interpreter has no verdict
        return None
    # Start-up speed: one small per-boot file, read only when there are entries.
    from binfmtctl import argv0

    found = argv0.row(arch, interpreter, info)
    return dict(found) if found is not None else None


def not_mounted_text(mountpoint: str, advice: list[dict[str, str]] | None = None) -> str:
    """What "not mounted" means and how to mount it (containers included); ``advice``
    (data.advice) offers ``binfmtctl run`` first when it works for the caller."""
    ways = {a["kind"]: a["command"] for a in reversed(advice or [])}  # by AdviceKind value
    mount = ways.get("root", f"mount -t binfmt_misc binfmt_misc {mountpoint}")
    rootless = ways.get("rootless")
    first = (
        f"without root, run foreign programs in a private instance with\n  {rootless}\n"
        "or mount it as root with"
        if rootless
        else "mount it as root with"
    )
    return (
        f"binfmt_misc: not mounted at {mountpoint}; {first}\n"
        f"  {mount}\n"
        "(systemd mounts it at boot; `binfmtctl install` and `apply` mount it themselves).\n"
        "In a container run with --privileged that is the\n"
        "host's instance: what is registered there runs on the host too. Without\n"
        "--privileged the mount is refused; `binfmtctl run` needs no mount at all."
    )


def human(data: dict[str, Any]) -> str:
    h, inst = data["host"], data["instance"]
    lines = [f"host: {h['machine']} (runs natively: {', '.join(h['native']) or '-'})"]
    if not inst["mounted"]:
        lines.append(not_mounted_text(inst["mountpoint"], data.get("advice")))
        return "\n".join(lines)
    scope = "the host's" if inst["host"] else "a private instance (user namespace)"
    state = "enabled" if inst["enabled"] else "DISABLED (no handler runs)"
    lines.append(f"binfmt_misc: {inst['mountpoint']}, {state}, {scope}")
    if not data["entries"]:
        ways = {
            a["kind"]: a["command"] for a in reversed(data.get("advice", []))
        }  # by AdviceKind value
        rootless = ways.get("rootless")
        without = (
            f"without root, `{rootless}` runs foreign programs in a private instance; "
            if rootless
            else ""
        )
        install = ways.get("root", "binfmtctl install")
        lines.append(f"no entries; {without}`{install}` registers every foreign arch")
        return "\n".join(lines)
    rows = []
    for e in data["entries"]:
        rows.append(
            [
                e["name"],
                e["arch"] or "-",
                "yes" if e["enabled"] else "no",
                e["entry"]["flags"] or "-",
                e["entry"]["interpreter"],
            ]
        )
    lines.append("")
    lines.append(table(rows, ["ENTRY", "ARCH", "ENABLED", "FLAGS", "INTERPRETER"]))
    problems = [(e["name"], p) for e in data["entries"] for p in e["problems"]]
    if problems:
        lines.append("")
        lines.extend(f"{name}: {p}" for name, p in problems)
    return "\n".join(lines)


def engines_human(engines: list[dict[str, Any]]) -> list[str]:
    """One line per container engine: which instance its containers will consult."""
    lines = []
    for e in engines:
        where = f" (pid {e['pid']})" if e.get("pid") else ""
        mode = " rootless" if e.get("rootless") else ""
        lines.append(f"{e['name']}{mode}{where}: {e['detail'] or e['instance']}")
    return ["", "container engines:", *lines] if lines else []


def human_with_engines(data: dict[str, Any]) -> str:
    return "\n".join([human(data), *engines_human(data.get("engines", []))])


def handle(args: argparse.Namespace) -> Result:
    instance = Instance(args.mountpoint)
    layout = Layout.under(args.root)
    if args.boot:
        report = config_of(instance, layout)
        return Result("status", {"config": report.to_dict()}, human=boot_human)
    handlers = instance.entries() if instance.mounted else []  # read once for both sections
    data = collect(instance, handlers)
    data["engines"] = [view.to_dict() for view in engine_survey.survey(args.mountpoint)]
    report = config_of(instance, layout, handlers)
    data["config"] = report.to_dict()
    data["advice"] = (
        advice_for(instance.mountpoint, mounted=data["instance"]["mounted"])
        if not data["entries"]
        else []
    )
    # A private instance's entries vanish with it: no boot configuration registers them.
    data["boot_applies"] = args.root is not None or not _private_instance(instance.mountpoint)
    result = Result("status", data, human=lambda d: human_with_engines(d) + config_human(d))
    if data["instance"]["enabled"] is False:
        result.warnings.append(disabled_warning(instance.mountpoint))
    return result


def config_of(
    instance: Instance, layout: Layout, handlers: list[Handler] | None = None
) -> BootReport:
    """The persistent configuration, compared with the running kernel (``handlers``:
    its entries, when already read)."""
    if handlers is None:
        handlers = instance.entries() if instance.mounted else []
    return boot_report.describe(layout, handlers)


def _not_registered(name: dict[str, Any]) -> list[str]:
    """A name's ``not_registered`` problem: boot registers it (``boot`` set), the kernel
    does not hold it now (``running`` null); then it is the last of its problems
    (:class:`binfmtctl.boot_report.ProblemCode`). Read from the data, never from words."""
    if name["running"] is None and name["boot"] is not None and name["problems"]:
        return list(name["problems"][-1:])
    return []


def _registers_nothing(name: dict[str, Any]) -> list[str]:
    """A name that neither runs now nor is registered at boot has only
    ``registers_nothing`` problems: its last boot line is refused."""
    if name["running"] is None and name["boot"] is None:
        return list(name["problems"])
    return []


def advice_for(mountpoint: str, *, mounted: bool) -> list[dict[str, str]]:
    """Nothing registered: `binfmtctl run` (when it works for the caller), then the root fix."""
    from binfmtctl import advice, callerfacts  # start-up speed: only when nothing is registered

    mount = advice.Remedy((("mount", "-t", "binfmt_misc", "binfmt_misc", mountpoint),))
    remedy = advice.binfmtctl("install", mountpoint=mountpoint) if mounted else mount
    return [a.to_dict() for a in advice.advise(callerfacts.caller(), remedy)]


def _private_instance(mountpoint: str) -> bool:
    from binfmtctl import callerfacts  # start-up speed: a stat and a look at mountinfo

    return callerfacts.private_instance(mountpoint)


PRIVATE_BOOT = (
    "  none applies here: this binfmt_misc is a private instance (of a user namespace, or\n"
    "  of another namespace than this host's); its entries vanish with it, and nothing\n"
    "  registers them at boot. /etc/binfmt.d, binfmt-support and systemd-binfmt configure\n"
    "  the host's instance, not this one (`--root DIR` shows a root file system's)."
)


def config_human(data: dict[str, Any]) -> str:
    if not data.get("boot_applies", True):
        return f"\n\nboot configuration:\n{PRIVATE_BOOT}"
    cfg = data["config"]
    lines = ["", "boot configuration:"]
    for name in cfg["names"]:
        where = [f"{f['path']}:{f['line']} ({f['role']})" for f in name["files"]]
        if name["binfmt_support"]:
            bs = name["binfmt_support"]
            where.append(f"{bs['path']} (binfmt-support, package {bs['package']})")
        if not where:
            continue
        lines.append(f"  {name['name']}: {'; '.join(where)}")
    if len(lines) == 2 and not file_problems(cfg):
        lines.append(f"  no binfmt.d files in {', '.join(cfg['dirs'])}")
    for f in cfg["files"]:
        lines.extend(f"  {e['path']}:{e['line']}: {e['error']['message']}" for e in f["errors"])
    lines.extend(f"  {p}" for p in file_problems(cfg))
    problems = [p for name in cfg["names"] for p in name["problems"]]
    if not data["instance"]["mounted"]:
        # Every configured name is "not registered now": say it once.
        absent = [p for name in cfg["names"] for p in _not_registered(name)]
        problems = []
        for name in cfg["names"]:
            keep = len(name["problems"]) - len(_not_registered(name))
            problems.extend(name["problems"][:keep])
        if absent:
            problems.append(
                f"binfmt_misc is not mounted, so none of the {len(absent)} entries above is "
                "registered now; `binfmtctl apply` registers them as boot would"
            )
    if problems:
        lines.append("")
        lines.extend(problems)
    return "\n" + "\n".join(lines)


def boot_human(data: dict[str, Any]) -> str:
    cfg = data["config"]
    unread = file_problems(cfg)
    if not cfg["boot"]:
        return "\n".join([f"at boot nothing is registered from {', '.join(cfg['dirs'])}", *unread])
    rows = [
        [
            b["name"],
            b["entry"]["flags"] or "-",
            b["entry"]["interpreter"],
            f"{b['path']}:{b['line']}",
        ]
        for b in cfg["boot"]
    ]
    head = "at boot systemd-binfmt registers (newest first, the order the kernel tries them):"
    dropped = [p for name in cfg["names"] for p in _registers_nothing(name)]
    return "\n".join(
        [head, table(rows, ["ENTRY", "FLAGS", "INTERPRETER", "FROM"]), *dropped, *unread]
    )


def file_problems(cfg: dict[str, Any]) -> list[str]:
    """Files and directories that could not be read (each registers nothing at boot)."""
    out: list[str] = [f["problem"] for f in cfg["files"] if f.get("problem")]
    return out + list(cfg.get("unreadable", []))


#: status's options as :mod:`binfmtctl.cli.quick` reads its plain forms without
#: argparse (the same as :func:`register`'s; tests/test_quick_args.py).
QUICK = {
    "status": quick.Verb(
        "status",
        None,
        {"--boot": quick.Option(quick.FLAG), "--root": quick.Option(quick.VALUE)},
        {"handler": handle},
    ),
}
