"""``rootfs info``: what a root built by ``rootfs create`` is, and whether it runs here now."""

from __future__ import annotations

import contextlib
import json
import os

from binfmtctl import advice, elf, native, probes
from binfmtctl import arch as _arch
from binfmtctl import rootfs_plan as rp
from binfmtctl.errors import BinfmtError, RootfsError, UsageError
from binfmtctl.instance import Instance, Snapshot
from binfmtctl.rootpath import resolve_in

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any


def read_provenance(path: str) -> tuple[str, dict[str, Any]]:
    """The record of the root at ``path`` (a directory, or a tarball with its record beside)."""
    candidates = [os.path.join(path, rp.PROVENANCE_PATH)] if os.path.isdir(path) else []
    candidates += [f"{path}{rp.PROVENANCE_SUFFIX}"]
    for candidate in candidates:
        try:
            with open(candidate) as fh:
                record = json.load(fh)
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as err:
            raise RootfsError(f"{candidate}: cannot read it: {err}", path=candidate) from err
        if not isinstance(record, dict) or "arch" not in record:
            raise RootfsError(f"{candidate}: not a binfmtctl rootfs record", path=candidate)
        return candidate, record
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or directory")
    raise RootfsError(
        f"{path}: no binfmtctl rootfs record ({' or '.join(candidates)}); "
        "was it built with `binfmtctl rootfs create`?",
        path=path,
    )


def runs_here(path: str, record: dict[str, Any], mountpoint: str) -> dict[str, Any]:
    """Whether the root's programs run on this machine now, and how.

    The header judged is the root's own /bin/sh for a directory, the arch's
    probe program for a tarball; the handler is the one the kernel would pick
    in the binfmt_misc at ``mountpoint``.
    """

    row = _arch.CATALOG.get(str(record.get("arch")))
    if row is None:
        return {"runs": False, "how": "unknown arch", "handler": None, "flags": None}
    if row.name in {a.name for a in native.native_arches()}:
        return {"runs": True, "how": "native", "handler": None, "flags": None}
    header = b""
    shell = resolve_in(path, "/bin/sh") if os.path.isdir(path) else None
    if shell:
        with contextlib.suppress(OSError):
            header = elf.read_header(shell)
    if not header:
        with contextlib.suppress(BinfmtError):
            header = probes.build(row)[: elf.HEADER_SIZE]
    try:
        snapshot = Instance(mountpoint).snapshot()
    except BinfmtError:
        snapshot = Snapshot(mountpoint, mounted=False)
    found = snapshot.winner(header) if header else None
    if found is None:
        caller = advice.Caller(root=os.geteuid() == 0)  # sudo in the fix unless root
        install = advice.binfmtctl("install", row.name, mountpoint=mountpoint)
        return {
            "runs": False,
            "how": "no handler" if snapshot.mounted else "binfmt_misc not mounted",
            "handler": None,
            "flags": None,
            "fix": f"`{advice.run_command(rootfs=path)}` (a private instance, no root "
            f"needed), or `{advice.as_root(install, caller)}`",
        }
    return {
        "runs": True,
        "how": "handler",
        "handler": found.name,
        "interpreter": os.fsdecode(found.entry.interpreter),
        "flags": found.entry.flags,
    }
