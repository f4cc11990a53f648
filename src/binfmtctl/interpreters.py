"""Finding an emulator for an arch, and judging whether it is fit for a handler.

A handler with the F flag keeps working inside chroots and containers only if
its interpreter is statically linked; the C flag runs the interpreter with the
binary's credentials, so it must not be replaceable by anyone but root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from binfmtctl import arch as _arch
from binfmtctl import elf, host

DEFAULT_DIRS: tuple[str, ...] = ("/usr/bin", "/usr/local/bin", "/usr/libexec/qemu-binfmt")

# Fedora splits qemu-user-static by family; other distros ship one package.
_FEDORA_FAMILY = {
    "i386": "x86", "arm": "arm", "armeb": "arm", "ppc": "ppc", "ppcle": "ppc",
    "riscv32": "riscv", "riscv64": "riscv", "loongarch": "loongarch64",
    "xtensaeb": "xtensa", "microblazeel": "microblaze",
}  # fmt: skip


@dataclass(frozen=True)
class Interpreter:
    """An emulator binary on this machine and what we know about it."""

    path: str
    static: bool
    host_native: bool  # built for this machine's CPU
    problems: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "static": self.static,
            "problems": list(self.problems),
        }


def candidates(arch: _arch.Arch) -> list[str]:
    """File names that may hold arch's emulator, best first."""
    stem = arch.emulator_name
    return [f"{stem}-static", stem]


def inspect(path: str) -> Interpreter:
    """Look at an emulator binary: static? built for this CPU? readable?"""
    problems: list[str] = []
    try:
        header = elf.read_header(path)
    except OSError as err:
        return Interpreter(path, False, False, (f"cannot read it: {err.strerror}",))
    ident = elf.identity(header)
    if ident is None:
        return Interpreter(path, False, False, ("not an ELF executable",))
    me = host.host_arch()
    native = ident.arch is not None and me is not None and ident.arch.family == me.family
    if not native:
        problems.append("built for another CPU than this machine's")
    static = elf.program_interpreter(path) is None
    if not os.access(path, os.X_OK):
        problems.append("not executable")
    return Interpreter(path, static, native, tuple(problems))


def find(
    arch: _arch.Arch,
    search_dirs: Sequence[str] = DEFAULT_DIRS,
) -> Interpreter | None:
    """The best emulator for ``arch`` in ``search_dirs``: static ones first."""
    found: list[Interpreter] = []
    for name in candidates(arch):
        for directory in search_dirs:
            path = os.path.join(directory, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                found.append(inspect(path))
    usable = [i for i in found if not i.problems]
    ranked = sorted(usable or found, key=lambda i: not i.static)
    return ranked[0] if ranked else None


def unsafe_for_credentials(path: str) -> str | None:
    """Why ``path`` must not get the C flag (writable by non-root), or None."""
    current = Path(path).resolve()
    for node in [current, *current.parents]:
        try:
            info = node.stat()
        except OSError as err:
            return f"cannot check {node}: {err.strerror}"
        if info.st_uid != 0:
            return f"{node} is owned by uid {info.st_uid}, not root"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (
            node.is_dir() and info.st_mode & stat.S_ISVTX and node != current
        ):
            return f"{node} is writable by group or others"
    return None


def os_release(path: str = "/etc/os-release") -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return values
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values


def distro_family(release: dict[str, str]) -> str | None:
    ids = [release.get("ID", ""), *release.get("ID_LIKE", "").split()]
    for word in ids:
        for family, names in {
            "debian": ("debian", "ubuntu"),
            "fedora": ("fedora", "rhel", "centos"),
            "arch": ("arch",),
            "alpine": ("alpine",),
            "opensuse": ("opensuse", "suse", "sles", "opensuse-tumbleweed", "opensuse-leap"),
        }.items():
            if word in names:
                return family
    return None


def package_for(arch: _arch.Arch, family: str | None) -> str | None:
    """The distro package that ships arch's static emulator, by distro family."""
    stem = arch.emulator or arch.name
    packages = {
        "debian": "qemu-user-static",
        "fedora": f"qemu-user-static-{_FEDORA_FAMILY.get(arch.family, arch.family)}",
        "arch": "qemu-user-static",
        "alpine": f"qemu-{stem}",
        "opensuse": "qemu-linux-user",
    }
    return packages.get(family or "")


def install_hint(arch: _arch.Arch, release_path: str = "/etc/os-release") -> str:
    """A sentence that says how to get arch's emulator on this distro."""
    family = distro_family(os_release(release_path))
    package = package_for(arch, family)
    command = {
        "debian": "apt-get install",
        "fedora": "dnf install",
        "arch": "pacman -S",
        "alpine": "apk add",
        "opensuse": "zypper install",
    }.get(family or "")
    if package and command:
        return f"install it with `sudo {command} {package}`"
    return (
        f"install QEMU's user-mode emulator {arch.emulator_name}-static "
        "(Debian/Ubuntu: qemu-user-static) or pass --interpreter PATH"
    )
