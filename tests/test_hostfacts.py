"""hostfacts: the facts planning reads are gathered only where the plan reads them.

Runs against this machine's real emulators (/usr/bin/qemu-*-static) and its
real native set; the arch names are chosen from them, not assumed.
"""

from __future__ import annotations

import pytest

from binfmtctl import host, hostfacts, plan
from binfmtctl.arch import CATALOG
from binfmtctl.native import native_arches
from conftest import qemu

ME = host.host_arch()
FOREIGN = CATALOG["aarch64"] if ME is None or ME.name != "aarch64" else CATALOG["x86_64"]


@pytest.mark.skipif(ME is None, reason="this machine's arch is not in the catalog")
def test_the_host_facts_are_the_hosts() -> None:
    assert ME is not None
    facts = hostfacts.gather([ME], plan.Options())
    assert (facts.me, facts.native) == (ME, frozenset(a.name for a in native_arches()))
    # Its own arch is refused before any emulator is looked for.
    assert (facts.emulators, facts.interpreter, facts.unsafe) == ({}, None, {})


def test_each_planned_arch_has_its_search_and_a_shared_search_is_reused() -> None:
    qemu(FOREIGN.emulator_name)
    shared: plan.Searched = {}
    facts = hostfacts.gather([FOREIGN], plan.Options(), shared)
    assert list(facts.emulators) == [FOREIGN.name]
    assert facts.emulators[FOREIGN.name] is shared[FOREIGN.name]
    found = facts.emulators[FOREIGN.name].best
    assert found is not None and found.path.endswith(f"{FOREIGN.emulator_name}-static")
    assert facts.distro is None  # asked only when an emulator is missing


def test_an_explicit_interpreter_is_inspected_and_not_searched() -> None:
    path = qemu(FOREIGN.emulator_name)
    facts = hostfacts.gather([FOREIGN], plan.Options(interpreter=str(path)))
    assert facts.emulators == {}
    assert facts.interpreter is not None and facts.interpreter.path == str(path)
    # Two arches with one --interpreter is a usage error the plan raises; nothing is inspected.
    both = hostfacts.gather([FOREIGN, CATALOG["riscv64"]], plan.Options(interpreter=str(path)))
    assert both.interpreter is None
