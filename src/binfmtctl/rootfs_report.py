"""What ``rootfs create`` built: the provenance record kept with the root, and the report.

Typed, frozen records; ``to_dict`` gives the JSON (the file beside or inside
the root, and ``rootfs create --json``), keys in the order scripts know.
"""

from __future__ import annotations

from dataclasses import dataclass

from binfmtctl import rootfs_plan as rp

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any


@dataclass(frozen=True)
class EngineTool:
    """The builder that made the root (mmdebstrap), as found on this machine."""

    path: str
    version: str | None  # its --version line; None when it printed none
    name: str = rp.ENGINE

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "version": self.version}


@dataclass(frozen=True)
class QemuTool:
    """The emulator the build ran the root's programs with (None for a native root)."""

    path: str
    version: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "version": self.version}


@dataclass(frozen=True)
class Provenance:
    """What was built, from what, with which tools: kept with the root."""

    arch: str
    debian_arch: str
    oci_platform: str
    distro: rp.Distro
    suite: str
    mirror: str
    variant: str
    components: tuple[str, ...]
    include: tuple[str, ...]
    format: rp.Format
    engine: EngineTool
    qemu: QemuTool | None
    created: str  # UTC, seconds: 2026-01-01T00:00:00Z
    binfmtctl: str
    version: int = rp.PROVENANCE_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "arch": self.arch,
            "debian_arch": self.debian_arch,
            "oci_platform": self.oci_platform,
            "distro": self.distro.value,
            "suite": self.suite,
            "mirror": self.mirror,
            "variant": self.variant,
            "components": list(self.components),
            "include": list(self.include),
            "format": self.format.value,
            "engine": self.engine.to_dict(),
            "qemu": self.qemu.to_dict() if self.qemu is not None else None,
            "created": self.created,
            "binfmtctl": self.binfmtctl,
        }


@dataclass(frozen=True)
class Smoke:
    """The smoke test that ran inside the new root (only a passing one is reported)."""

    command: str
    output: tuple[str, ...]
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "output": list(self.output), "ok": self.ok}


@dataclass(frozen=True)
class CreateReport:
    """``rootfs create``'s result: where the root is, its record, the smoke test, timings."""

    path: str
    provenance_path: str
    provenance: Provenance
    smoke: Smoke
    image: str | None  # the tag a docker-archive loads as
    seconds: float
    engine_seconds: float  # of those, mmdebstrap's

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "provenance_path": self.provenance_path,
            "provenance": self.provenance.to_dict(),
            "smoke": self.smoke.to_dict(),
            "image": self.image,
            "seconds": self.seconds,
            "engine_seconds": self.engine_seconds,
        }
