"""Concurrency: binfmtctl processes racing on one instance all tell the truth.

Real processes, started together in one private instance: each imports
binfmtctl, then waits on its stdin until every one is ready, so they reach
the kernel at nearly the same moment. Which one wins is up to the scheduler;
what every one of them reports must hold whatever the order.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from binfmtctl import sandbox
from binfmtctl.arch import Profile, resolve
from binfmtctl.cli import entries
from binfmtctl.entry import EntryState
from binfmtctl.instance import Instance
from binfmtctl.plan import ENABLE, REGISTER, UNCHANGED, Step, apply, build_entry
from conftest import cli, foreign_busybox, qemu, run_in

MP = "/proc/sys/fs/binfmt_misc"
COUNT = 8
GATED = "import sys; from binfmtctl.cli import run; sys.stdin.read(1); run()"


def together(argv: list[str], count: int = COUNT) -> list[tuple[int, str, str]]:
    """Start ``count`` binfmtctl processes, release them at once; (exit, stdout, stderr)."""
    return mixed([argv] * count)


def mixed(argvs: list[list[str]]) -> list[tuple[int, str, str]]:
    """One binfmtctl process per argv, released at once; (exit, stdout, stderr) each."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", GATED, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in argvs
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("g")
        proc.stdin.flush()
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate()
        out.append((proc.returncode, stdout, stderr))
    return out


def listing(sb: sandbox.Sandbox) -> list[str]:
    return sorted(sb.run(os.listdir, MP))


def test_identical_installs_all_succeed(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    results = sb.run(together, ["install", "arm64", "--json"])
    assert [(code, err) for code, _, err in results] == [(0, "")] * COUNT
    actions = sorted(json.loads(out)["data"]["steps"][0]["action"] for _, out, _ in results)
    # Exactly one process registered it; every other one found it (or met it) there.
    assert actions == ["register"] + ["unchanged"] * (COUNT - 1)
    assert listing(sb) == ["qemu-aarch64", "register", "status"]
    assert run_in(sb, str(foreign_busybox("arm64")), "uname", "-m").stdout == "aarch64\n"


def test_racing_replaces_never_say_use_replace(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    real = qemu("qemu-aarch64")
    other = build_entry(resolve("arm64"), "/usr/bin/true", "", Profile.QEMU)
    sb.run(Instance().register, other)
    results = sb.run(together, ["install", "arm64", "--replace", "--json"])
    for code, out, err in results:
        assert (code, err) == (0, ""), err
        assert "use --replace" not in out
        assert json.loads(out)["data"]["steps"][0]["action"] in ("replace", "unchanged")
    assert listing(sb) == ["qemu-aarch64", "register", "status"]  # no temporary entry left
    state = sb.run(Instance().get, "qemu-aarch64")
    assert (state.entry.interpreter, state.enabled) == (real, True)


def test_racing_uninstalls_say_already_absent(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    assert cli(sb, "install", "arm64").returncode == 0
    results = sb.run(together, ["uninstall", "arm64", "--json"])
    assert [(code, err) for code, _, err in results] == [(0, "")] * COUNT
    actions = sorted(json.loads(out)["data"]["removed"][0]["action"] for _, out, _ in results)
    assert actions == ["absent"] * (COUNT - 1) + ["removed"]
    assert listing(sb) == ["register", "status"]


def test_racing_applies_all_succeed(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    entry = build_entry(resolve("arm64"), qemu("qemu-aarch64"), "F", Profile.QEMU)
    conf = tmp_path / "qemu-aarch64.conf"
    conf.write_text(f"{entry}\n")
    results = sb.run(together, ["apply", str(conf)])
    assert [(code, err) for code, _, err in results] == [(0, "")] * COUNT
    assert listing(sb) == ["qemu-aarch64", "register", "status"]
    assert sb.run(Instance().get, "qemu-aarch64").entry == entry


# -- the same races, with the moment staged ----------------------------------
# The concurrent runs above may or may not hit each window; these put another
# process's change exactly in it (a real kernel, a real second registration).


def test_an_identical_entry_registered_after_planning_is_unchanged(sb: sandbox.Sandbox) -> None:
    entry = build_entry(resolve("arm64"), qemu("qemu-aarch64"), "F", Profile.QEMU)

    def scenario() -> str:
        step = Step(resolve("arm64"), REGISTER, entry)  # planned when it was absent
        Instance().register(entry)  # another process, meanwhile
        return apply(Instance(), step)

    assert sb.run(scenario) == UNCHANGED


def test_a_different_entry_registered_after_planning_is_still_a_conflict(
    sb: sandbox.Sandbox,
) -> None:
    entry = build_entry(resolve("arm64"), qemu("qemu-aarch64"), "F", Profile.QEMU)
    theirs = build_entry(resolve("arm64"), "/usr/bin/true", "", Profile.QEMU)

    def scenario() -> str:
        Instance().register(theirs)
        try:
            apply(Instance(), Step(resolve("arm64"), REGISTER, entry))
        except Exception as err:  # noqa: BLE001 - the message is what is checked
            return str(err)
        return ""

    assert sb.run(scenario) == (
        "qemu-aarch64 is already registered with another definition; use --replace to replace it"
    )


class Stale(Instance):
    """An Instance whose first look at an entry is from before another process
    removed it (the removal itself is real)."""

    def __init__(self, seen: EntryState) -> None:
        super().__init__()
        self.seen: EntryState | None = seen

    def find(self, name: str) -> EntryState | None:
        if self.seen is not None:
            seen, self.seen = self.seen, None
            super().remove(name)  # the other process
            return seen
        return super().find(name)


def test_a_replace_whose_old_entry_vanished_meanwhile_succeeds(sb: sandbox.Sandbox) -> None:
    entry = build_entry(resolve("arm64"), qemu("qemu-aarch64"), "F", Profile.QEMU)
    old = build_entry(resolve("arm64"), "/usr/bin/true", "", Profile.QEMU)

    def scenario() -> tuple[Any, list[str]]:
        Instance().register(old)
        inst = Stale(Instance().get("qemu-aarch64"))
        replaced = inst.replace(entry)
        return replaced.entry if replaced else None, sorted(os.listdir(MP))

    replaced, names = sb.run(scenario)
    assert replaced == old
    assert names == ["qemu-aarch64", "register", "status"]


class RemovedJustBefore(Instance):
    """An Instance where another process removes the entry between this one's
    listing and its write (the removal and the write's ENOENT are real)."""

    def _control(self, name: str, value: bytes, action: str) -> None:
        if name != "status":
            Instance(self.mountpoint).remove(name)  # the other process
        super()._control(name, value, action)


@pytest.mark.parametrize("verb", ["enable", "disable"])
def test_an_entry_removed_meanwhile_is_already_absent(sb: sandbox.Sandbox, verb: str) -> None:
    entry = build_entry(resolve("arm64"), qemu("qemu-aarch64"), "F", Profile.QEMU)

    def scenario() -> tuple[int, dict[str, Any], list[dict[str, Any]]]:
        Instance().register(entry)
        args = argparse.Namespace(
            names=["arm64"], instance=False, on=verb == "enable", mountpoint=MP
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(entries, "Instance", RemovedJustBefore)
            result = entries.handle(args)
        return result.exit_code, result.data, result.errors

    code, data, errors = sb.run(scenario)
    assert (code, data, errors) == (0, {"changed": [], "absent": ["qemu-aarch64"]}, [])
    human = entries._lines(data, verb)
    assert human == ["qemu-aarch64: already absent (removed meanwhile)"]


def test_an_entry_to_enable_that_was_removed_meanwhile_is_registered(
    sb: sandbox.Sandbox,
) -> None:
    entry = build_entry(resolve("arm64"), qemu("qemu-aarch64"), "F", Profile.QEMU)

    def scenario() -> tuple[str, bool]:
        step = Step(resolve("arm64"), ENABLE, entry)  # planned when it was there, disabled
        done = apply(Instance(), step)  # but another process removed it meanwhile
        return done, Instance().get("qemu-aarch64").enabled

    assert sb.run(scenario) == (REGISTER, True)
