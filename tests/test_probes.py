"""Probe programs: recognised as their arch, matched by their entry, run by real QEMU.

QEMU is invoked directly (never through binfmt_misc), so these tests touch no
kernel state.  All probes run once, in parallel, in a module fixture.
"""

from __future__ import annotations

import os
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from binfmtctl import probes
from binfmtctl.arch import CATALOG, Profile, identify
from binfmtctl.errors import BinfmtError, UnknownArchError

ARCHES = probes.available()


def _qemu(name: str) -> Path:
    return Path("/usr/bin") / f"{CATALOG[name].emulator_name}-static"


def _matches(data: bytes, magic: bytes, mask: bytes) -> bool:
    """binfmt_misc's test: every masked byte of the file equals the masked magic."""
    return len(data) >= len(magic) and all(
        (data[i] ^ magic[i]) & mask[i] == 0 for i in range(len(magic))
    )


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[bytes]]:
    """Every probe whose QEMU is installed, run once; arch name -> result."""
    where = tmp_path_factory.mktemp("probes")
    todo = [name for name in ARCHES if _qemu(name).exists()]

    def run(name: str) -> subprocess.CompletedProcess[bytes]:
        path = probes.write(name, where / name)
        return subprocess.run(
            [str(_qemu(name)), str(path)], capture_output=True, timeout=30, check=False
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(todo, pool.map(run, todo), strict=True))


@pytest.mark.parametrize("name", ARCHES)
def test_runs_under_qemu(name: str, runs: dict[str, subprocess.CompletedProcess[bytes]]) -> None:
    if name not in runs:
        pytest.skip(f"{_qemu(name)} is not installed (apt-get install qemu-user-static)")
    result = runs[name]
    assert (result.stdout, result.returncode) == (probes.expected_output(name), 0), result.stderr


@pytest.mark.parametrize("name", ARCHES)
def test_header_is_identified_as_its_arch(name: str) -> None:
    assert identify(probes.build(name)) is CATALOG[name]


@pytest.mark.parametrize("profile", list(Profile))
@pytest.mark.parametrize("name", ARCHES)
def test_matched_by_its_own_entry(name: str, profile: Profile) -> None:
    magic, mask = CATALOG[name].magic_mask(profile)
    assert _matches(probes.build(name), magic, mask)


@pytest.mark.parametrize("name", ARCHES)
def test_matched_by_no_other_qemu_entry(name: str) -> None:
    """The kernel uses the first matching entry: another arch's must not claim the probe."""
    data = probes.build(name)
    claimed = [
        other.name
        for other in CATALOG.values()
        if other.name != name and _matches(data, *other.magic_mask(Profile.QEMU))
    ]
    assert claimed == []


@pytest.mark.parametrize("name", ARCHES)
def test_is_small(name: str) -> None:
    assert len(probes.build(name)) < 1024


def test_most_of_the_catalog_has_a_probe() -> None:
    assert len(ARCHES) >= 20


def test_every_arch_has_a_probe_or_a_reason() -> None:
    assert set(ARCHES) | set(probes.NO_PROBE) == set(CATALOG)
    assert not set(ARCHES) & set(probes.NO_PROBE)
    assert all(reason.strip() for reason in probes.NO_PROBE.values())


def test_expected_output_uses_the_catalog_name() -> None:
    assert probes.expected_output("aarch64") == b"binfmtctl-probe aarch64\n"
    assert probes.expected_output("arm64") == b"binfmtctl-probe aarch64\n"


def test_build_accepts_a_row_or_an_alias() -> None:
    assert probes.build(CATALOG["ppc64le"]) == probes.build("ppc64el") == probes.build("ppc64le")


def test_build_rejects_an_unknown_word() -> None:
    with pytest.raises(UnknownArchError):
        probes.build("vax")


def test_build_explains_a_missing_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(probes.PROBES, "or1k")
    monkeypatch.setitem(probes.NO_PROBE, "or1k", "QEMU's or1k needs X")
    assert "or1k" not in probes.available()
    with pytest.raises(BinfmtError, match="no probe program for or1k: QEMU's or1k needs X"):
        probes.build("or1k")


def test_write_is_executable_and_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "probe"
    target.write_bytes(b"old")
    assert probes.write("riscv64", target) == target
    assert target.read_bytes() == probes.build("riscv64")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert os.listdir(tmp_path) == ["probe"]  # no temporary file left behind


def test_write_cleans_up_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "probe"
    target.write_bytes(b"old")

    def fail(src: object, dst: object) -> None:
        raise OSError("simulated")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="simulated"):
        probes.write("s390x", target)
    assert os.listdir(tmp_path) == ["probe"]
    assert target.read_bytes() == b"old"
