"""Finding emulators, judging them, and naming the package that ships one."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import conftest
from binfmtctl import interpreters
from binfmtctl.arch import CATALOG
from conftest import qemu

OS_RELEASES = {
    "debian": 'ID=debian\nVERSION_ID="12"\n',
    "ubuntu": "ID=ubuntu\nID_LIKE=debian\n",
    "fedora": "ID=fedora\n",
    "rocky": 'ID="rocky"\nID_LIKE="rhel centos fedora"\n',
    "arch": "ID=arch\n",
    "alpine": "ID=alpine\n",
    "tumbleweed": 'ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\n',
    "gentoo": "ID=gentoo\n",
}


@pytest.mark.parametrize(
    ("distro", "arch", "hint"),
    [
        ("debian", "aarch64", "install it with `sudo apt-get install qemu-user-static`"),
        ("ubuntu", "riscv64", "install it with `sudo apt-get install qemu-user-static`"),
        ("fedora", "aarch64", "install it with `sudo dnf install qemu-user-static-arm`"),
        ("rocky", "ppc64le", "install it with `sudo dnf install qemu-user-static-ppc`"),
        ("fedora", "i486", "install it with `sudo dnf install qemu-user-static-x86`"),
        ("arch", "s390x", "install it with `sudo pacman -S qemu-user-static`"),
        ("alpine", "aarch64", "install it with `sudo apk add qemu-aarch64`"),
        ("alpine", "i486", "install it with `sudo apk add qemu-i386`"),
        ("tumbleweed", "arm", "install it with `sudo zypper install qemu-linux-user`"),
        (
            "gentoo",
            "arm",
            "install QEMU's user-mode emulator qemu-arm-static (Debian/Ubuntu: "
            "qemu-user-static) or pass --interpreter PATH",
        ),
    ],
)
def test_install_hint_names_the_package(tmp_path: Path, distro: str, arch: str, hint: str) -> None:
    release = tmp_path / "os-release"
    release.write_text(OS_RELEASES[distro])
    assert interpreters.install_hint(CATALOG[arch], str(release)) == hint


def test_find_prefers_static_and_reports_dynamic(tmp_path: Path) -> None:
    static = qemu("qemu-arm")
    dynamic_dir = tmp_path / "dyn"
    dynamic_dir.mkdir()
    # A dynamically linked program under the emulator's plain name (a real ELF, not a stub).
    shutil.copy("/bin/true", dynamic_dir / "qemu-arm")
    static_dir = tmp_path / "static"
    static_dir.mkdir()
    shutil.copy(static, static_dir / "qemu-arm-static")
    found = interpreters.find(CATALOG["arm"], [str(dynamic_dir), str(static_dir)])
    assert found is not None
    assert (found.path, found.static) == (str(static_dir / "qemu-arm-static"), True)
    only_dynamic = interpreters.find(CATALOG["arm"], [str(dynamic_dir)])
    assert only_dynamic is not None
    assert only_dynamic.static is False
    assert interpreters.find(CATALOG["arm"], [str(tmp_path / "none")]) is None


@conftest.x86_64_host
def test_foreign_build_of_an_emulator_is_a_problem(tmp_path: Path) -> None:
    # An aarch64 binary cannot be this x86_64 machine's emulator.
    from binfmtctl import probes

    path = tmp_path / "qemu-arm-static"
    probes.write("aarch64", path)
    assert interpreters.inspect(str(path)).problems == (
        "built for aarch64, not for this machine's CPU",
    )
