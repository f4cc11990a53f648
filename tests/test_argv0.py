"""argv[0] survives emulation: FP by default where the emulator honours P, F otherwise.

Everything here is real: the kernel's private binfmt_misc instance, Debian's
qemu-user-static, Debian's arm64 busybox, and (for an emulator that does not
honour P) a real static wrapper compiled here that execs QEMU afresh, so QEMU
never sees AT_FLAGS_PRESERVE_ARGV0 -- the way a wrapper script or an old QEMU
loses it. argv[0] is watched the way a login shell sees it: ``exec -a -sh``
through the entry binfmtctl registered, and ``echo $0``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from binfmtctl import argv0, argv0_probe, plan, probes
from binfmtctl.arch import CATALOG, resolve
from binfmtctl.errors import BinfmtError
from binfmtctl.interpreters import Interpreter, Search
from conftest import cli, foreign_busybox, missing, qemu, require_sandbox, run_in

AARCH64_QEMU = "/usr/bin/qemu-aarch64-static"
KEPT_DETAIL = "the program saw the argv[0] it was started with"


def envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert proc.stdout, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A per-boot cache of this test's own (XDG_RUNTIME_DIR); the path of argv0.json."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    # This process's view of the verdicts starts empty too (and is put back after).
    monkeypatch.setattr(argv0, "_seen", {})
    monkeypatch.setattr(argv0, "_read", [])
    return runtime / "binfmtctl" / argv0.CACHE_NAME


@pytest.fixture
def login_sh(tmp_path: Path) -> Path:
    """Debian's arm64 busybox as ``sh`` (busybox picks its applet by the file name)."""
    qemu("qemu-aarch64")
    link = tmp_path / "bin" / "sh"
    link.parent.mkdir()
    link.symlink_to(foreign_busybox("arm64"))
    return link


def dollar0_argv(sh: Path) -> list[str]:
    """``exec -a -sh SH -c 'echo $0'``: a login shell's argv[0], through binfmt_misc."""
    return ["bash", "-c", f"exec -a -sh {sh} -c 'echo $0'"]


def stored(cache: Path) -> dict[str, Any]:
    rows: dict[str, Any] = json.loads(cache.read_text())["emulators"]
    return rows


WRAPPER_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    FILE *log = fopen(LOG, "a");
    if (log) {
        for (int i = 1; i < argc; i++) fprintf(log, "%s\n", argv[i]);
        fputs("--\n", log);
        fclose(log);
    }
    argv[0] = QEMU;
    execv(QEMU, argv); /* a fresh auxv: QEMU never learns of the P flag */
    return 127;
}
"""


@pytest.fixture
def deaf_emulator(tmp_path: Path) -> tuple[Path, Path]:
    """A real static emulator that does not honour P: (its directory, its argv log)."""
    qemu("qemu-aarch64")
    if shutil.which("gcc") is None:
        missing("gcc is missing (the wrapper that ignores P is compiled here)")
    directory, log = tmp_path / "deaf", tmp_path / "deaf.log"
    directory.mkdir()
    source = tmp_path / "wrapper.c"
    source.write_text(WRAPPER_C)
    done = subprocess.run(
        [
            *("gcc", "-static", "-O1", f'-DLOG="{log}"', f'-DQEMU="{AARCH64_QEMU}"'),
            *("-o", str(directory / "qemu-aarch64-static"), str(source)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        missing(f"gcc cannot build a static program here: {done.stderr.strip()}")
    return directory, log


def runs(log: Path) -> list[list[str]]:
    """The argument lists the wrapper was started with, in order."""
    return [chunk.strip("\n").split("\n") for chunk in log.read_text().split("--\n")[:-1]]


# -- the probe programs -------------------------------------------------------------


def test_every_arch_with_a_probe_has_an_argv0_probe_or_says_why() -> None:
    for name in probes.available():
        assert (name in probes.ARGV0_CODE) != (name in probes.NO_ARGV0_PROBE), name
    assert probes.NO_ARGV0_PROBE == {}


def test_an_arch_without_an_argv0_probe_gets_f_and_is_not_stored(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every arch has one today, so one is taken away (the only stand-in in this file)."""
    emulator = qemu("qemu-cris")
    monkeypatch.delitem(probes.ARGV0_CODE, "cris")
    monkeypatch.setitem(probes.NO_ARGV0_PROBE, "cris", "taken away by this test")
    with pytest.raises(BinfmtError, match=r"^no argv\[0\] probe for cris: taken away"):
        probes.build_argv0("cris")
    found = argv0_probe.verdicts([("cris", emulator)])
    assert found == {
        emulator: argv0_probe.Verdict(
            False,
            argv0_probe.Argv0Code.NO_PROBE,
            "no argv[0] probe for cris: taken away by this test",
        )
    }
    assert not cache.exists()  # a verdict about binfmtctl, not the emulator: never kept


@pytest.mark.parametrize("name", sorted(probes.ARGV0_CODE))
def test_argv0_probe_exits_with_the_first_byte_of_its_argv0(name: str, tmp_path: Path) -> None:
    """Run by QEMU itself (``-0`` sets the program's argv[0]): three argv[0]s, three answers."""
    emulator = qemu(CATALOG[name].emulator_name)
    program = tmp_path / name
    program.write_bytes(probes.build_argv0(name))
    program.chmod(0o755)
    got = [
        subprocess.run([emulator, *pre, str(program)], check=False).returncode
        for pre in (["-0", probes.ARGV0], [], ["-0", "Qx"])
    ]
    assert got == [probes.ARGV0_KEPT, probes.ARGV0_REPLACED, ord("Q")]


def test_the_hot_path_keeps_the_same_codes_as_the_verdicts() -> None:
    assert {c.value for c in argv0_probe.CACHED} == argv0.CACHED_CODES
    assert {c.value for c in argv0_probe.Argv0Code} > argv0.CACHED_CODES


# -- the rule (pure) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "keeps", "flags"),
    [
        (plan.AUTO_FLAGS, True, "PF"),
        (plan.AUTO_FLAGS, False, "F"),
        (plan.AUTO_FLAGS, None, "F"),  # no verdict for the emulator: F
        ("F", True, "F"),  # --flags wins
        ("FP", False, "PF"),
        ("OC", True, "OC"),
        ("", True, ""),
    ],
)
def test_plan_flags(given: str, keeps: bool | None, flags: str) -> None:
    arch = resolve("arm64")
    found = Interpreter(AARCH64_QEMU, static=True, host_native=True)
    facts = plan.HostFacts(
        emulators={arch.name: Search(found, ())},
        keeps_argv0={} if keeps is None else {AARCH64_QEMU: keeps},
    )
    (step,) = plan.plan_install([arch], {}, plan.Options(flags=given), facts)
    assert step.entry is not None and step.entry.flags == flags
    assert plan.default_flags(True) == "FP" and plan.default_flags(False) == "F"


def test_bad_flags_are_still_refused() -> None:
    with pytest.raises(Exception, match=r"^--flags: unknown flag 'a'"):
        plan.plan_install([resolve("arm64")], {}, plan.Options(flags="autoo"), plan.HostFacts())


# -- install through the kernel --------------------------------------------------------


def test_default_install_is_fp_and_argv0_survives(sb: Any, cache: Path, login_sh: Path) -> None:
    step = envelope(cli(sb, "install", "arm64", "--json"))["data"]["steps"][0]
    assert step["entry"]["flags"] == "PF"
    assert step["argv0"] == {"keeps": True, "code": "kept", "detail": KEPT_DETAIL}
    assert run_in(sb, *dollar0_argv(login_sh)).stdout == "-sh\n"
    # The verdict is kept per boot, keyed by arch and the emulator file's identity.
    st = os.stat(AARCH64_QEMU)
    key = f"aarch64 {st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    assert stored(cache) == {key: {"keeps": True, "code": "kept", "detail": KEPT_DETAIL}}
    # status shows it for the entry (read from the cache, never probed there).
    (entry,) = envelope(cli(sb, "status", "--json"))["data"]["entries"]
    assert (entry["entry"]["flags"], entry["argv0"]["code"]) == ("PF", "kept")


def test_flags_f_overrides_and_argv0_is_the_path(sb: Any, cache: Path, login_sh: Path) -> None:
    step = envelope(cli(sb, "install", "arm64", "--flags", "F", "--json"))["data"]["steps"][0]
    assert (step["entry"]["flags"], step["argv0"]) == ("F", None)
    assert run_in(sb, *dollar0_argv(login_sh)).stdout == f"{login_sh}\n"
    assert not cache.exists()  # flags given: nothing was probed


def test_an_emulator_that_ignores_p_gets_f(
    sb: Any, cache: Path, login_sh: Path, deaf_emulator: tuple[Path, Path]
) -> None:
    directory, log = deaf_emulator
    wrapper = str(directory / "qemu-aarch64-static")
    proc = cli(sb, "install", "arm64", "--interpreter-dir", str(directory), "--json")
    (step,) = envelope(proc)["data"]["steps"]
    assert (step["entry"]["interpreter"], step["entry"]["flags"]) == (wrapper, "F")
    assert step["argv0"]["code"] == "replaced" and step["argv0"]["keeps"] is False
    # The probe really went through the wrapper with P: [path, kept argv[0]].
    (probe_run,) = runs(log)
    assert probe_run[1:] == [probes.ARGV0] and probe_run[0].endswith("/aarch64")
    # With F the program works, and sees its path as argv[0].
    assert run_in(sb, *dollar0_argv(login_sh)).stdout == f"{login_sh}\n"
    assert runs(log)[-1] == [str(login_sh), "-c", "echo $0"]
    # What P would have done: the kept argv[0] arrives as one more argument.
    forced = ["install", "arm64", "--interpreter-dir", str(directory), "--flags", "FP"]
    assert cli(sb, *forced, "--replace").returncode == 0
    run_in(sb, *dollar0_argv(login_sh))
    assert runs(log)[-1] == [str(login_sh), "-sh", "-c", "echo $0"]


def test_the_cache_is_used_and_follows_the_emulator_file(
    sb: Any, cache: Path, tmp_path: Path, login_sh: Path
) -> None:
    emulators = tmp_path / "emulators"
    emulators.mkdir()
    emulator = emulators / "qemu-aarch64-static"
    shutil.copy2(AARCH64_QEMU, emulator)
    install = ["install", "arm64", "--interpreter-dir", str(emulators), "--dry-run", "--json"]

    def decided() -> tuple[str, dict[str, Any]]:
        (step,) = envelope(cli(sb, *install))["data"]["steps"]
        return step["entry"]["flags"], step["argv0"]

    assert decided() == ("PF", {"keeps": True, "code": "kept", "detail": KEPT_DETAIL})
    (key,) = stored(cache)
    st = emulator.stat()
    assert key == f"aarch64 {st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
    # A verdict planted in the cache is what the next call uses: it did not probe.
    planted = {"keeps": False, "code": "replaced", "detail": "planted"}
    data = json.loads(cache.read_text())
    data["emulators"][key] = planted
    cache.write_text(json.dumps(data))
    assert decided() == ("F", planted)
    # run's hot path reads the same cache (here: F, so argv[0] is the path).
    ran = subprocess.run(
        [
            *(sys.executable, "-m", "binfmtctl", "run", "--arch", "arm64"),
            *("--interpreter-dir", str(emulators), "--", *dollar0_argv(login_sh)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.stdout == f"{login_sh}\n", ran.stderr
    # The emulator file changes (a new mtime): probed again, and kept under its new identity.
    os.utime(emulator, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert decided() == ("PF", {"keeps": True, "code": "kept", "detail": KEPT_DETAIL})
    rows = stored(cache)
    assert rows[key] == planted and len(rows) == 2
    (new,) = set(rows) - {key}
    now = emulator.stat()
    assert new.endswith(f":{st.st_mtime_ns + 1_000_000_000}:{now.st_ctime_ns}")


@pytest.mark.parametrize(
    "plant",
    [
        "fifo",
        "symlink",
        '{"key": "another boot", "emulators": {}}',
        "not json",
        "forged rows",
        '{"key": ' + "[" * 100_000 + "]" * 100_000 + "}",  # deeper than Python recurses
    ],
    ids=["fifo", "symlink", "another boot", "not json", "forged rows", "deep"],
)
def test_a_hostile_cache_file_is_ignored(sb: Any, cache: Path, tmp_path: Path, plant: str) -> None:
    qemu("qemu-aarch64")
    cache.parent.mkdir(mode=0o700)
    victim = tmp_path / "victim"
    victim.write_text("not yours\n")
    if plant == "fifo":
        os.mkfifo(cache)
    elif plant == "symlink":
        cache.symlink_to(victim)
    elif plant == "forged rows":
        # The right boot key, rows of the wrong shape: each is dropped, none believed.
        from binfmtctl import bootcache

        st = os.stat(AARCH64_QEMU)
        key = f"aarch64 {st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        bootcache.write_json(
            cache, {"emulators": {key: {"keeps": "yes", "code": "kept"}, "x": [1]}}
        )
    else:
        cache.write_text(plant)
    (step,) = envelope(cli(sb, "install", "arm64", "--dry-run", "--json"))["data"]["steps"]
    assert (step["entry"]["flags"], step["argv0"]["code"]) == ("PF", "kept")
    assert victim.read_text() == "not yours\n"  # a symlink is replaced, never written through
    assert cache.is_file() and not cache.is_symlink()
    assert [row["code"] for row in stored(cache).values()] == ["kept"]


# -- the other verbs agree ----------------------------------------------------------


def test_run_and_shell_default_to_fp(cache: Path, tmp_path: Path, login_sh: Path) -> None:
    require_sandbox()
    base = [sys.executable, "-m", "binfmtctl"]

    def run(*extra: str) -> str:
        argv = [*base, "run", "--arch", "arm64", *extra, "--", *dollar0_argv(login_sh)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert run() == "-sh\n"
    assert run("--flags", "F") == f"{login_sh}\n"
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(foreign_busybox("arm64"), root / "bin" / "busybox")
    for applet in ("sh", "cat"):
        (root / "bin" / applet).symlink_to("busybox")
    done = subprocess.run(
        [*base, "shell", "--arch", "arm64", str(root)],
        input="cat /proc/sys/fs/binfmt_misc/qemu-aarch64\n",
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SHELL": "/bin/sh"},
    )
    assert "\nflags: PF\n" in done.stdout, done.stdout + done.stderr


def test_export_persist_and_apply_agree(
    sb: Any, cache: Path, tmp_path: Path, deaf_emulator: tuple[Path, Path]
) -> None:
    qemu("qemu-aarch64")
    directory, _log = deaf_emulator
    export = ["export", "arm64", "--format", "register"]
    assert cli(sb, *export).stdout.endswith(":/usr/bin/qemu-aarch64-static:PF\n")
    deaf = cli(sb, *export, "--interpreter-dir", str(directory)).stdout
    assert deaf.endswith(f":{directory}/qemu-aarch64-static:F\n")
    assert cli(sb, *export, "--flags", "F").stdout.endswith(":F\n")
    # binfmt-support's format says the same (update-binfmts' "preserve").
    support = [*export[:2], "--format", "binfmt-support"]
    assert "\npreserve yes\n" in cli(sb, *support).stdout
    assert "\npreserve no\n" in cli(sb, *support, "--interpreter-dir", str(directory)).stdout
    # install --persist writes what it registered; apply registers the file as written.
    root = tmp_path / "root"
    (root / "etc/binfmt.d").mkdir(parents=True)
    proc = cli(sb, "install", "arm64", "--persist", "--root", str(root))
    assert proc.returncode == 0, proc.stderr
    conf = root / "etc/binfmt.d/qemu-aarch64.conf"
    (line,) = [x for x in conf.read_text().splitlines() if x.startswith(":")]
    assert line.endswith(":/usr/bin/qemu-aarch64-static:PF")
    assert cli(sb, "uninstall", "arm64").returncode == 0
    assert cli(sb, "apply", str(conf)).returncode == 0
    (entry,) = envelope(cli(sb, "status", "--json"))["data"]["entries"]
    assert entry["entry"]["flags"] == "PF"
