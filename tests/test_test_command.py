"""``binfmtctl test``: probes exec'd through the real kernel in a private instance.

Every test registers handlers only inside its own sandbox (a private
binfmt_misc instance) and runs Debian's qemu-user-static.  Slow, hung and
crashing emulators are real programs too: small shell scripts registered as
interpreters (the kernel runs a ``#!`` interpreter like any other).
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import conftest
from binfmtctl import elf, host, probes, proving, sandbox
from binfmtctl.arch import CATALOG, Profile
from binfmtctl.entry import Entry
from binfmtctl.instance import Instance, Snapshot
from binfmtctl.native import native_arches
from binfmtctl.plan import build_entry
from conftest import cli, foreign_busybox, qemu, run_in

FOREIGN = [name for name in probes.available() if name not in {a.name for a in native_arches()}]
WITH_QEMU = [n for n in FOREIGN if os.path.exists(f"/usr/bin/{CATALOG[n].emulator_name}-static")]


def envelope(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["version"] == 1 and data["command"] in ("test", "install")
    return data


def results(proc: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    return {
        r["arch"] + (" chroot" if r["chroot"] else ""): r for r in envelope(proc)["data"]["results"]
    }


def register(box: sandbox.Sandbox, entry: Entry) -> None:
    box.run(Instance().register, entry)


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_every_probe_fails_before_install_and_runs_after(sb: sandbox.Sandbox) -> None:
    assert len(WITH_QEMU) >= 20, "scripts/test-deps installs qemu-user-static"
    before = cli(sb, "test", *WITH_QEMU, "--json")
    assert before.returncode == 1, before.stderr
    for name, r in results(before).items():
        assert (r["ok"], r["code"], r["entry"]) == (False, "no_handler", None)
        assert r["error"] == f"exec format error: nothing is registered for {name}"
    assert cli(sb, "install").returncode == 0
    after = cli(sb, "test", "--json")  # no ARCH: every registered handler
    assert after.returncode == 0, after.stdout
    found = results(after)
    assert sorted(found) == sorted(WITH_QEMU)
    for name, r in found.items():
        assert (r["ok"], r["code"], r["error"]) == (True, "ok", None), r
        assert r["output"] == f"binfmtctl-probe {name}\n"
        assert r["entry"] == CATALOG[name].entry_name
        assert r["interpreter"] == f"/usr/bin/{CATALOG[name].emulator_name}-static"
        assert r["seconds"] > 0


def test_wrong_emulator_is_not_ok(sb: sandbox.Sandbox) -> None:
    arm = qemu("qemu-arm")
    assert (
        cli(sb, "install", "aarch64", "--interpreter", arm, "--force-interpreter").returncode == 0
    )
    proc = cli(sb, "test", "aarch64", "--json")
    assert proc.returncode == 1
    r = results(proc)["aarch64"]
    assert (r["ok"], r["code"], r["entry"], r["interpreter"]) == (
        False,
        "wrong_emulator",
        "qemu-aarch64",
        arm,
    )
    assert r["error"].startswith(
        f"wrong emulator: qemu-aarch64 sends aarch64 programs to {arm} (an emulator for "
        "arm), which printed 'qemu-arm-static: "
    )
    assert "Invalid ELF image for this architecture" in r["error"]
    assert r["error"].endswith("; expected 'binfmtctl-probe aarch64' and exit 0")


def test_disabled_and_missing_interpreter_and_mixed_exit_code(sb: sandbox.Sandbox) -> None:
    qemu("qemu-riscv64")
    assert cli(sb, "install", "riscv64", "s390x", "ppc64le").returncode == 0
    assert cli(sb, "disable", "qemu-riscv64").returncode == 0
    register(
        sb,
        build_entry(CATALOG["s390x"], "/nonexistent/qemu-s390x", "", Profile.QEMU).replace(
            name="my-s390x"
        ),
    )
    proc = cli(sb, "test", "--json")
    assert proc.returncode == 3  # some failed
    found = results(proc)
    assert found["riscv64"]["code"] == "disabled"
    assert found["riscv64"]["entry"] == "qemu-riscv64"
    assert found["riscv64"]["error"] == (
        "exec format error: the handler qemu-riscv64 for riscv64 is disabled"
    )
    # The newer entry wins: the kernel tries entries newest first.
    assert found["s390x"]["code"] == "interpreter_missing"
    assert found["s390x"]["entry"] == "my-s390x"
    assert found["s390x"]["error"] == (
        "the interpreter of my-s390x, /nonexistent/qemu-s390x, does not exist; install it "
        "or re-register"
    )
    assert (found["ppc64le"]["ok"], found["ppc64le"]["code"]) == (True, "ok")
    human = cli(sb, "test")
    assert human.returncode == 3
    assert "2 of 3 failed in " in human.stdout
    assert "riscv64  FAILED  qemu-riscv64" in human.stdout


def test_signal_and_timeout(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    crash = script(tmp_path, "crash", "kill -SEGV $$")
    hang = script(tmp_path, "hang", "exec sleep 30")
    register(sb, build_entry(CATALOG["sparc64"], crash, "", Profile.QEMU))
    register(sb, build_entry(CATALOG["hppa"], hang, "", Profile.QEMU))
    proc = cli(sb, "test", "--json", "--timeout", "0.5")
    assert proc.returncode == 1  # none could run
    found = results(proc)
    assert found["sparc64"]["code"] == "signal"
    assert found["sparc64"]["error"] == f"crashed with signal SIGSEGV: {crash} (entry qemu-sparc64)"
    assert found["hppa"]["code"] == "timeout"
    assert (
        found["hppa"]["error"] == f"timed out after 0.5 s: {hang} (entry qemu-hppa) did not finish"
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["test"], 1, "nothing to test: no handler in /proc/sys/fs/binfmt_misc claims any "
         "architecture; name the ARCHes to test (e.g. `binfmtctl test aarch64`) to be told "
         "how to get handlers for them"),
        (["test", "nosuch"], 2, "unknown architecture 'nosuch'"),
        (["test", "--timeout", "0"], 2, "must be more than 0 seconds: '0'"),
        (["test", "--timeout", "soon"], 2, "not a number of seconds: 'soon'"),
        (["test", "x86_64"], 0, ""),  # runs natively: ok with no handler
    ],
)  # fmt: skip
@conftest.x86_64_host
def test_exit_codes(sb: sandbox.Sandbox, args: list[str], code: int, message: str) -> None:
    proc = cli(sb, *args)
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr
    if code == 0:
        assert "ok (native)" in proc.stdout


def test_chroot_needs_the_f_flag(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    assert cli(sb, "install", "aarch64").returncode == 0
    assert cli(sb, "install", "riscv64", "--flags", "").returncode == 0
    proc = cli(sb, "test", "--chroot", "--json")
    assert proc.returncode == 3
    found = results(proc)
    assert {k: v["ok"] for k, v in found.items()} == {
        "aarch64": True,
        "riscv64": True,
        "aarch64 chroot": True,
        "riscv64 chroot": False,
    }
    assert found["aarch64 chroot"]["output"] == "binfmtctl-probe aarch64\n"
    assert found["riscv64 chroot"]["code"] == "interpreter_not_in_chroot"
    assert found["riscv64 chroot"]["error"] == (
        "qemu-riscv64 has no F flag, so the kernel looks its interpreter "
        "/usr/bin/qemu-riscv64-static up inside the chroot, where it is missing; "
        "re-register it with F"
    )


def test_chroot_not_permitted_is_said(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    assert cli(sb, "install", "aarch64").returncode == 0
    argv = ["setpriv", "--bounding-set", "-sys_chroot", "--inh-caps", "-sys_chroot"]
    argv += [sys.executable, "-m", "binfmtctl", "test", "--chroot", "--json", "aarch64"]
    proc = sb.run(subprocess.run, argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 3, proc.stderr
    found = results(proc)
    assert found["aarch64"]["ok"] is True
    assert found["aarch64 chroot"]["code"] == "chroot_refused"
    assert found["aarch64 chroot"]["error"].startswith("chroot is not permitted here (chroot ")
    assert found["aarch64 chroot"]["error"].endswith(
        "Operation not permitted); --chroot needs root (CAP_SYS_CHROOT), or run it inside "
        "`binfmtctl run`"
    )


DEBIAN = ["arm64", "armhf", "armel", "i386", "mips64el", "mipsel", "ppc64el", "s390x"]


def _handler_of(path: str) -> str | None:
    found = Instance().snapshot().winner(elf.read_header(path))
    return found.name if found else None


def test_the_handler_that_runs_a_probe_runs_real_debian_binaries(sb: sandbox.Sandbox) -> None:
    binaries = {deb: str(foreign_busybox(deb)) for deb in DEBIAN}
    assert cli(sb, "install").returncode == 0
    proc = cli(sb, "test", "--json", *DEBIAN)
    found = results(proc)
    for deb, busybox in binaries.items():
        name = CATALOG[_probe_arch(deb)].name
        r = found[name]
        assert r["ok"], r
        ran = run_in(sb, busybox, "echo", "hello")
        assert (ran.returncode, ran.stdout) == (0, "hello\n"), (deb, ran.stderr)
        # The same handler (or, for i386, the same native loader) runs both.
        assert sb.run(_handler_of, busybox) == r["entry"], deb


def _probe_arch(debian: str) -> str:
    from binfmtctl.arch import resolve

    return resolve(debian).name


def _on_a_pty(argv: list[str]) -> tuple[int, bytes, bytes]:
    """Run argv with stderr on a pty (stdout a pipe); its exit code, stdout, and the pty's bytes."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    seen = bytearray()
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every writer closed the pty
            break
        if not chunk:
            break
        seen += chunk
    out = proc.stdout.read() if proc.stdout else b""
    os.close(master)
    return proc.wait(), out, bytes(seen)


def test_progress_line_only_on_a_terminal(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    qemu("qemu-riscv64")
    slow = script(tmp_path, "slow", 'sleep 1; exec /usr/bin/qemu-riscv64-static "$@"')
    register(sb, build_entry(CATALOG["riscv64"], slow, "", Profile.QEMU))
    base = [sys.executable, "-m", "binfmtctl", "test", "riscv64"]
    code, out, tty = sb.run(_on_a_pty, base)
    assert code == 0
    assert b"\r\x1b[Ktesting: 0/1 done" in tty and b"running riscv64" in tty
    assert tty.endswith(b"\r\x1b[K")  # the line is cleared before the result is printed
    assert b"riscv64  ok" in out
    code, out, tty = sb.run(_on_a_pty, [*base, "--json"])
    assert (code, tty) == (0, b"")
    assert json.loads(out)["ok"] is True
    piped = cli(sb, "test", "riscv64")  # stderr a pipe, not a terminal
    assert (piped.returncode, piped.stderr) == (0, "")


def test_install_test_registers_and_proves(sb: sandbox.Sandbox) -> None:
    arm = qemu("qemu-arm")
    proc = cli(sb, "install", "--test", "--json", "riscv64", "s390x")
    assert proc.returncode == 0, proc.stdout
    data = envelope(proc)["data"]
    assert [s["action"] for s in data["steps"]] == ["register", "register"]
    assert {r["arch"]: r["code"] for r in data["test"]["results"]} == {
        "riscv64": "ok",
        "s390x": "ok",
    }
    # Installed fine, but the handler does not work: the exit code says so.
    wrong = cli(sb, "install", "--test", "aarch64", "--interpreter", arm, "--force-interpreter")
    assert wrong.returncode == 1
    assert "aarch64  registered" in wrong.stdout
    assert "aarch64  FAILED  qemu-aarch64" in wrong.stdout and "wrong emulator" in wrong.stdout
    # One arch installs and passes, one has no such emulator: partly done.
    mixed = cli(sb, "install", "--test", "--json", "riscv64", "--interpreter-dir", "/nonexistent")
    assert mixed.returncode == 1
    assert envelope(mixed)["data"].get("test") is None  # nothing left to test


def test_image_and_engine_usage_errors(sb: sandbox.Sandbox) -> None:
    proc = cli(sb, "test", "--image", "busybox", "x86_64")
    assert (proc.returncode, proc.stderr) == (
        2,
        "binfmtctl: error: --image needs --engine docker|podman\n",
    )
    proc = cli(sb, "test", "--engine", "docker", "--chroot", "x86_64")
    assert proc.returncode == 2
    assert "--chroot and --engine are separate tests; give one of them" in proc.stderr


def _native_in_fresh_instance() -> list[str]:
    return [o.arch for o in proving.run(probes.available(), Snapshot()) if o.ok]


def test_native_arches_are_the_probes_the_kernel_runs_itself(sb: sandbox.Sandbox) -> None:
    native = [a.name for a in native_arches()]
    me = host.host_arch()
    assert me is not None and me.name in native
    # The same answer by the other route: every probe exec'd with nothing registered.
    assert sb.run(_native_in_fresh_instance) == native
    status = envelope_any(cli(sb, "status", "--json"))
    assert status["data"]["host"]["native"] == native
    # A registered handler does not change the answer (it is found in a fresh instance).
    assert cli(sb, "install", "i386", "--force").returncode == 0
    assert run_in(sb, sys.executable, "-c", NATIVE_NOW).stdout.split() == native
    # ... though i386 probes now do run through it.
    assert results(cli(sb, "test", "--json", "i386"))["i386"]["entry"] == "qemu-i386"


NATIVE_NOW = "from binfmtctl import native; print(*[a.name for a in native.native_arches()])"


def envelope_any(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


@conftest.x86_64_host
def test_install_without_arch_follows_the_detected_native_set(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    """The per-boot cache is how the detection is read; seeding it proves install uses it."""
    qemu("qemu-aarch64")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    argv = [sys.executable, "-m", "binfmtctl", "status", "--json"]
    sb.run(subprocess.run, argv, capture_output=True, check=True, env=env)
    cache = tmp_path / "binfmtctl" / "native.json"
    stored = json.loads(cache.read_text())
    assert stored["native"] == [a.name for a in native_arches()]
    # Pretend this kernel also ran aarch64 natively (as an arm64 host runs arm).
    cache.write_text(json.dumps({**stored, "native": [*stored["native"], "aarch64"]}))
    argv = [sys.executable, "-m", "binfmtctl", "install", "--json"]
    proc = sb.run(subprocess.run, argv, capture_output=True, text=True, check=False, env=env)
    steps = {s["arch"]: s["action"] for s in envelope(proc)["data"]["steps"]}
    assert "aarch64" not in steps and steps["riscv64"] == "register"
    argv = [sys.executable, "-m", "binfmtctl", "install", "--json", "aarch64"]
    proc = sb.run(subprocess.run, argv, capture_output=True, text=True, check=False, env=env)
    assert proc.returncode == 1
    assert envelope(proc)["data"]["steps"][0]["reason"] == (
        "this x86_64 host runs aarch64 programs natively; a handler would send every one "
        "of them through QEMU (use --force if that is what you want)"
    )
