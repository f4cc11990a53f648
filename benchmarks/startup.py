"""Start-up benchmark: each hot verb against the hand-written equivalent, same run.

    .venv/bin/python benchmarks/startup.py [--repeat N] [--quick] [--user NAME]

Everything runs inside a private user + mount namespace with its own
binfmt_misc instance (:func:`binfmtctl.sandbox.run`), never the host's; the
commands that need a fresh instance per run (``run``, ``install`` and their
baselines) unshare once more themselves. Each row times a command (A) and its
baseline (B) alternately, A B A B ..., so both see the same machine load; it
prints the median of each and the ratio A/B.

Rows:

* floor: ``python -c pass`` (this interpreter's own start) and a bare QEMU
  start of the foreign busybox;
* ``binfmtctl run --arch arm64 -- BUSYBOX true`` against ``unshare --user
  --map-root-user --mount sh -c 'mount binfmt_misc; printf LINE > register;
  exec "$@"'``;
* ``install`` of Debian's QEMU arches (the qemu-*.conf files in
  /usr/lib/binfmt.d) against ``systemd-binfmt`` on those files, each in a
  fresh instance (unshare and mount included in both);
* ``status`` and ``status --json`` with every /usr/lib/binfmt.d file
  registered (Debian's QEMU set plus whatever else is there), against the
  floor (the goal is 50 ms);
* with ``--user NAME``, ``run`` as that ordinary user (its default: ids
  0..65535 through newuidmap and newgidmap, from NAME's subordinate range)
  against ``unshare --map-auto --map-root-user --mount sh -c ...``, which does
  the same, both started through setpriv, on the host (each makes its own
  user namespace and binfmt_misc instance), and that user's ``python3 -c
  pass`` as its floor. The user runs /usr/bin/python3 with PYTHONPATH at this
  checkout's src/ (the venv's interpreter may sit where only root may enter),
  and keeps its plan in a fresh $XDG_RUNTIME_DIR.

Besides the median wall time, each row shows the median CPU time (user +
system of the command and everything it waited for): on a shared machine it
moves less with the load than the wall time does.

The commands run with Python's defaults: PYTHONDONTWRITEBYTECODE and
PYTHONUNBUFFERED are dropped, and the bytecode cache is kept in a private
directory (PYTHONPYCACHEPREFIX), so every Python start reads compiled modules,
as an installed package does.

BUSYBOX is the static arm64 busybox of the test cache
($BINFMTCTL_TEST_CACHE, default .cache/, then foreign/arm64/bin/busybox).
``--command`` measures another binfmtctl (e.g. ``python -m binfmtctl`` with
PYTHONPATH set to an older tree). ``--quick`` runs each pair a few times only,
to check the benchmark works; its numbers support no claim.
"""

from __future__ import annotations

import argparse
import os
import platform
import pwd
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from binfmtctl import sandbox
from binfmtctl.arch import CATALOG

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("BINFMTCTL_TEST_CACHE", ROOT / ".cache"))
BUSYBOX = CACHE / "foreign" / "arm64" / "bin" / "busybox"
QEMU = Path("/usr/bin/qemu-aarch64-static")
BINFMT_D = Path("/usr/lib/binfmt.d")
SYSTEMD_BINFMT = Path("/usr/lib/systemd/systemd-binfmt")
MOUNTPOINT = sandbox.DEFAULT_MOUNTPOINT
GOAL_STATUS_MS = 50.0
UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


@dataclass(frozen=True)
class Row:
    what: str
    command: list[str]
    baseline_name: str
    baseline: list[str]
    goal: str = ""


@dataclass(frozen=True)
class Timing:
    row: Row
    a: float  # median wall seconds of the command
    b: float  # median wall seconds of the baseline
    a_cpu: float  # median CPU seconds (user + system) of the command
    b_cpu: float

    @property
    def ratio(self) -> float:
        return self.a / self.b

    @property
    def cpu_ratio(self) -> float:
        return self.a_cpu / self.b_cpu


def binfmtctl_argv() -> list[str]:
    """The console script next to this interpreter, as users run it; else ``-m``."""
    script = Path(sys.executable).with_name("binfmtctl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "binfmtctl"]


def in_fresh_instance(script: str, *args: str) -> list[str]:
    """``sh -c SCRIPT`` in a new user + mount namespace with an empty binfmt_misc.

    The mount must succeed before SCRIPT runs (``&&``): nothing is ever written
    to an instance that is not the fresh one.
    """
    mount = f"mount -t binfmt_misc binfmt_misc {MOUNTPOINT}"
    return [*UNSHARE, "sh", "-c", f"{mount} && {script}", "sh", *args]


def register_line(arch: str, interpreter: Path) -> str:
    """The register line ``binfmtctl run`` writes for ``arch`` (F, qemu profile)."""
    from binfmtctl import plan

    entry = plan.build_entry(CATALOG[arch], str(interpreter), "F", plan.Options().profile)
    return str(entry)


def debian_conf() -> list[Path]:
    return sorted(BINFMT_D.glob("qemu-*.conf"))


def debian_arches(files: list[Path]) -> list[str]:
    """Arch names from Debian's file names (qemu-aarch64.conf: aarch64)."""
    return [f.name.removeprefix("qemu-").removesuffix(".conf") for f in files]


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run; exits the benchmark if the command fails."""
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    took = time.perf_counter() - start
    if done.returncode != 0:
        words = done.stderr.decode(errors="replace").strip()
        raise SystemExit(f"{shlex.join(argv)} exited {done.returncode}: {words}")
    return took, _children_cpu() - cpu


def pair(row: Row, repeat: int) -> Timing:
    """A and B alternately, after one untimed warm-up run of each (it also writes bytecode)."""
    timed(row.command)
    timed(row.baseline)
    a, b = [], []
    for _ in range(repeat):
        a.append(timed(row.command))
        b.append(timed(row.baseline))
    return Timing(
        row,
        statistics.median(t for t, _ in a),
        statistics.median(t for t, _ in b),
        statistics.median(c for _, c in a),
        statistics.median(c for _, c in b),
    )


def rows_fresh(me: list[str]) -> list[Row]:
    """The rows whose commands set up their own fresh instance."""
    floor = [sys.executable, "-c", "pass"]
    line = register_line("aarch64", QEMU)
    files = debian_conf()
    return [
        Row("python -c pass (floor)", floor, "itself", floor),
        Row(
            "qemu-aarch64-static BUSYBOX true (floor)",
            [str(QEMU), str(BUSYBOX), "true"],
            "python -c pass",
            floor,
        ),
        Row(
            "run --arch arm64 -- BUSYBOX true",
            [*me, "run", "--arch", "arm64", "--", str(BUSYBOX), "true"],
            "unshare + mount + printf > register + exec",
            in_fresh_instance(
                f'printf %s "$1" > {MOUNTPOINT}/register && shift && exec "$@"',
                line,
                str(BUSYBOX),
                "true",
            ),
            "<= 2x",
        ),
        Row(
            f"install of Debian's {len(files)} QEMU arches (unshare + mount)",
            in_fresh_instance(f"exec {shlex.join([*me, 'install', *debian_arches(files)])}"),
            f"systemd-binfmt on the same {len(files)} files",
            in_fresh_instance(f"exec {shlex.join([str(SYSTEMD_BINFMT), *map(str, files)])}"),
            "<= 2x",
        ),
    ]


def rows_installed(me: list[str]) -> list[Row]:
    """The rows that read an instance with every binfmt.d file's entry registered."""
    floor = [sys.executable, "-c", "pass"]
    return [
        Row("status", [*me, "status"], "python -c pass", floor, f"<= {GOAL_STATUS_MS:.0f} ms"),
        Row(
            "status --json",
            [*me, "status", "--json"],
            "python -c pass",
            floor,
            f"<= {GOAL_STATUS_MS:.0f} ms",
        ),
    ]


USER_PYTHON = "/usr/bin/python3"
# What pip's, pipx's and uv's console scripts do (a current pip's: no `import re`).
CONSOLE_SCRIPT = "import sys\nfrom binfmtctl.cli import run\nsys.exit(run())"


def as_user(user: pwd.struct_passwd, *argv: str) -> list[str]:
    ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    return ["setpriv", *ids, "--", *argv]


def rows_user(user: pwd.struct_passwd, runtime: str) -> list[Row]:
    """``run`` as an ordinary user, its default id maps, against the same by hand."""
    # Its own bytecode cache: the one the other rows use is root's, closed to the user
    # (Python would compile every module at every start).
    env = ["env", f"PYTHONPATH={ROOT / 'src'}", f"HOME={user.pw_dir}", f"XDG_RUNTIME_DIR={runtime}",
           f"PYTHONPYCACHEPREFIX={runtime}/pycache"]  # fmt: skip
    python = [*env, USER_PYTHON]
    floor = as_user(user, *python, "-c", "pass")
    line = register_line("aarch64", QEMU)
    mount = f"mount -t binfmt_misc binfmt_misc {MOUNTPOINT}"
    register = f'printf %s "$1" > {MOUNTPOINT}/register && shift && exec "$@"'
    by_hand = ["unshare", "--map-auto", "--map-root-user", "--mount", "sh", "-c",
               f"{mount} && {register}", "sh", line, str(BUSYBOX), "true"]  # fmt: skip
    return [
        Row(f"{USER_PYTHON} -c pass as {user.pw_name} (floor)", floor, "itself", floor),
        Row(
            f"run --arch arm64 -- BUSYBOX true as {user.pw_name} (ids 0..65535)",
            as_user(
                user,
                *python,
                "-c",
                CONSOLE_SCRIPT,
                "run",
                "--arch",
                "arm64",
                "--",
                str(BUSYBOX),
                "true",
            ),
            "unshare --map-auto --map-root-user + mount + printf > register + exec",
            as_user(user, *by_hand),
            "<= 2x",
        ),
    ]


def user_missing(name: str) -> list[str]:
    """Why ``--user NAME`` rows cannot run here."""
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return [f"no user {name}"]
    out = []
    for tool in ("setpriv", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            out.append(f"{tool} is missing")
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as fh:
                if not any(line.split(":")[0] == name for line in fh):
                    out.append(f"{name} has no range in {path}")
        except OSError:
            out.append(f"{path} cannot be read")
    check = as_user(user, "test", "-r", str(ROOT / "src" / "binfmtctl" / "__init__.py"),
                    "-a", "-x", str(BUSYBOX), "-a", "-x", USER_PYTHON)  # fmt: skip
    if not out and subprocess.run(check, check=False).returncode != 0:
        out.append(f"{name} cannot read {ROOT / 'src'} or run {BUSYBOX} and {USER_PYTHON}")
    return out


def measure(me: list[str], repeat: int) -> list[tuple[Timing, int]]:
    """Runs inside the outer private instance."""
    out = [(pair(row, repeat), 0) for row in rows_fresh(me)]
    files = sorted(BINFMT_D.glob("*.conf"))
    subprocess.run([str(SYSTEMD_BINFMT), *map(str, files)], check=True)
    entries = sum(1 for p in Path(MOUNTPOINT).iterdir() if p.name not in ("register", "status"))
    out += [(pair(row, repeat), entries) for row in rows_installed(me)]
    return out


def missing() -> list[str]:
    needs = [BUSYBOX, QEMU, SYSTEMD_BINFMT]
    out = [f"{p} is missing" for p in needs if not p.exists()]
    if not debian_conf():
        out.append(f"no qemu-*.conf in {BINFMT_D} (Debian's qemu-user-static)")
    if shutil.which("unshare") is None:
        out.append("unshare (util-linux) is missing")
    return out


def report(
    timings: list[tuple[Timing, int]], repeat: int, quick: bool, load: tuple[float, ...]
) -> str:
    loads = " -> ".join(f"{x:.2f}" for x in load)
    lines = [
        f"{platform.machine()}, {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}; median of {repeat}, A/B alternating; "
        f"1-minute load average before -> after: {loads}",
        "",
        "| what | binfmtctl (CPU) | baseline (CPU) | ratio (CPU) | goal |",
        "|---|---|---|---|---|",
    ]
    for t, entries in timings:
        what = f"{t.row.what} ({entries} entries)" if entries else t.row.what
        lines.append(
            f"| {what} | {t.a * 1000:.1f} ms ({t.a_cpu * 1000:.1f}) "
            f"| {t.b * 1000:.1f} ms ({t.b_cpu * 1000:.1f}): {t.row.baseline_name} "
            f"| {t.ratio:.2f}x ({t.cpu_ratio:.2f}x) | {t.row.goal} |"
        )
    if quick:
        lines += ["", "quick mode: too few runs for any claim"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=21, help="pairs per row (>= 11)")
    parser.add_argument("--quick", action="store_true", help="3 pairs per row; no claims")
    parser.add_argument(
        "--user",
        metavar="NAME",
        help="also time `run` as this ordinary user, with its default id maps (needs "
        "setpriv, newuidmap/newgidmap and a subordinate id range for NAME)",
    )
    parser.add_argument(
        "--command",
        metavar="CMD",
        help="the binfmtctl to measure, as a shell-quoted command line (default: the "
        "console script next to this Python, else `python -m binfmtctl`)",
    )
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else args.repeat
    if not args.quick and repeat < 11:
        parser.error("--repeat: at least 11 for a median worth printing (or --quick)")
    problems = missing() + (user_missing(args.user) if args.user else [])
    if problems:
        print("cannot run:", "; ".join(problems), file=sys.stderr)
        return 2
    me = shlex.split(args.command) if args.command else binfmtctl_argv()
    for name in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="binfmtctl-bench-pyc-") as pyc:
        os.environ["PYTHONPYCACHEPREFIX"] = pyc
        before = os.getloadavg()[0]
        timings = sandbox.run(measure, me, repeat)
        if args.user:
            user = pwd.getpwnam(args.user)
            with tempfile.TemporaryDirectory(prefix="binfmtctl-bench-run-") as runtime:
                os.chown(runtime, user.pw_uid, user.pw_gid)
                timings += [(pair(row, repeat), 0) for row in rows_user(user, runtime)]
        after = os.getloadavg()[0]
    print(report(timings, repeat, args.quick, (before, after)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
