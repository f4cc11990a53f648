"""Packing a built root: a tarball for a board, or an image archive for Docker/Podman.

Both run inside the build's namespace (the root's files belong to its ids there).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

from binfmtctl import rootless

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any


def tar_dir(root: str, out: str) -> None:
    subprocess.run(
        ["tar", "--numeric-owner", "--xattrs", "--sort=name", "-C", root, "-cf", out, "."],
        check=True,
        capture_output=True,
    )


def _sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def docker_archive(root: str, out: str, platform: str, tag: str, created: str) -> None:
    """A ``docker save``-format archive: one layer (the root), labelled with ``platform``.

    ``docker load`` and ``podman load`` read it; the config's architecture and
    variant let ``run --platform`` pick it offline.
    """
    os_name, architecture, variant = platform.split("/") + [""] * (3 - len(platform.split("/")))
    work = tempfile.mkdtemp(prefix=".layer-", dir=os.path.dirname(os.path.abspath(out)))
    try:
        layer = os.path.join(work, "layer.tar")
        tar_dir(root, layer)
        layer_id = _sha256_file(layer)
        config: dict[str, Any] = {
            "architecture": architecture,
            "os": os_name,
            "config": {
                "Cmd": ["/bin/sh"],
                "Env": [f"PATH={rootless.ROOTFS_PATH}"],
                "Labels": {"org.opencontainers.image.created": created},
            },
            "created": created,
            "history": [{"created": created, "created_by": "binfmtctl rootfs create"}],
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
        }
        if variant:
            config["variant"] = variant
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
        manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{layer_id}/layer.tar"]}]
        with tarfile.open(out, "x", format=tarfile.PAX_FORMAT) as tar:

            def add_bytes(name: str, data: bytes) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, _BytesReader(data))

            tar.add(layer, f"{layer_id}/layer.tar")
            add_bytes(config_name, config_bytes)
            add_bytes("manifest.json", json.dumps(manifest).encode())
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        chunk, self.pos = self.data[self.pos : end], min(end, len(self.data))
        return chunk
