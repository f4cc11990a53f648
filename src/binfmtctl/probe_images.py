"""Probe images for container engines: OCI platforms and a ``docker save`` archive.

Images are built as a ``docker save`` archive and given to the engine's own
``load``, not ``import``: Debian 12's Docker (20.10) ignores
``import --platform`` and labels every imported image with the host's
platform, so ``run --platform linux/arm64`` then refuses it.  ``load`` keeps
the platform written in the image config on every engine version.  The
archive is deterministic (root-owned, mtime 0), so one probe gives one image.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from binfmtctl import arch as _arch

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any

_EPOCH = "1970-01-01T00:00:00Z"


# --- platforms ---------------------------------------------------------------


def oci_platform(row: _arch.Arch) -> str:
    """The OCI platform an image for ``row`` is labelled with.

    The catalog's first OCI platform where there is one; otherwise
    ``linux/<Debian arch or QEMU name>`` (OCI allows any architecture string,
    and engines match it exactly).
    """
    if row.oci:
        return row.oci[0]
    return f"linux/{row.debian[0] if row.debian else row.name}"


def split_platform(platform: str) -> tuple[str, str, str]:
    """``linux/arm/v7`` -> (os, architecture, variant); the variant may be empty."""
    parts = platform.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"not an OCI platform (os/arch[/variant]): {platform!r}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


# --- images ------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeImage:
    """One image to load: its tag, platform and the probe it runs."""

    tag: str
    platform: str
    probe: bytes


def _tar(members: Iterable[tuple[str, bytes, int]]) -> bytes:
    """A deterministic tar: root-owned, mtime 0, in the order given."""
    # here, not at the top: `status` imports engines, and so this module (start-up time)
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha256(data: bytes) -> str:
    import hashlib  # here, not at the top: `status` imports engines, so this (start-up time)

    return hashlib.sha256(data).hexdigest()


def image_archive(images: Sequence[ProbeImage]) -> bytes:
    """A ``docker save``-format archive holding one single-file image per entry.

    Each image's only layer holds ``/probe`` (mode 0755); its config sets the
    platform (os, architecture, variant) and ``Entrypoint ["/probe"]``.  Both
    ``docker load`` and ``podman load`` read this format.
    """
    members: list[tuple[str, bytes, int]] = []
    manifest: list[dict[str, Any]] = []
    for image in images:
        os_name, architecture, variant = split_platform(image.platform)
        layer = _tar([("probe", image.probe, 0o755)])
        layer_id = _sha256(layer)
        config: dict[str, Any] = {
            "architecture": architecture,
            "os": os_name,
            "config": {"Entrypoint": ["/probe"], "Env": []},
            "created": _EPOCH,
            "history": [{"created": _EPOCH, "created_by": "binfmtctl probe image"}],
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        }
        if variant:
            config["variant"] = variant
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_name = f"{_sha256(config_bytes)}.json"
        members.append((f"{layer_id}/layer.tar", layer, 0o644))
        members.append((config_name, config_bytes, 0o644))
        manifest.append(
            {"Config": config_name, "RepoTags": [image.tag], "Layers": [f"{layer_id}/layer.tar"]}
        )
    members.append(("manifest.json", json.dumps(manifest).encode(), 0o644))
    return _tar(members)
