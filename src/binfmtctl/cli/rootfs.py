"""``binfmtctl rootfs create`` and ``rootfs info``: foreign Debian and Ubuntu roots."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from binfmtctl import rootfs_plan
from binfmtctl.cli.output import Result

CREATE_EPILOG = """\
mmdebstrap (package mmdebstrap) builds the root in its unshare mode, inside a
private binfmt_misc instance of binfmtctl's own with a QEMU handler for ARCH:
the host's handlers are never touched and root is not needed. An ordinary user
needs a subordinate id range (/etc/subuid, /etc/subgid) and newuidmap (package
uidmap); root without one gets ids 0..65535 mapped to themselves.

defaults: --suite is the host's release when the host runs that distro, else
trixie (Debian) or noble (Ubuntu); --mirror is the host's apt mirror for that
distro, else deb.debian.org, or for Ubuntu archive.ubuntu.com (amd64, i386) and
ports.ubuntu.com (the other arches).

After the build, `/bin/sh -c 'echo "shell ok"; dpkg --print-architecture'`
runs inside the root through the handler, and a provenance record is written
to DIR/etc/binfmtctl-rootfs.json (and beside a tarball: FILE.binfmtctl-rootfs.json).
On failure or Ctrl-C/SIGTERM/SIGHUP everything written is removed (--keep-partial
keeps it) and the engine's last lines are shown.

exit codes: 0 built, 1 failed (engine, mirror, smoke test), 2 usage (unknown
arch, a suite without ARCH, DIR not empty), 4 no subordinate id range,
128+N stopped by signal N (130 Ctrl-C, 143 SIGTERM).

examples:
  binfmtctl rootfs create ./debian-arm64 --arch arm64
  binfmtctl rootfs create ./jetson --arch arm64 --distro ubuntu --suite jammy
  binfmtctl rootfs create ./board.tar --arch armhf --format tar --include openssh-server
  binfmtctl rootfs create ./arm64.image.tar --arch arm64 --format docker-archive
  binfmtctl rootfs info ./debian-arm64
"""


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "rootfs",
        parents=[common],
        help="build a foreign Debian/Ubuntu root file system (no root needed)",
        description="Build foreign-architecture root file systems, and say what one is.",
    )
    actions = p.add_subparsers(dest="rootfs_verb", metavar="ACTION", parser_class=type(p))
    actions.required = True
    c = actions.add_parser(
        "create",
        parents=[common],
        help="build a Debian or Ubuntu root for ARCH with mmdebstrap",
        description="Build a Debian or Ubuntu root file system for ARCH at DIR (a\n"
        "directory, or with --format tar/docker-archive a file), as root or as an\n"
        "ordinary user, and prove it runs here.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=CREATE_EPILOG,
    )
    c.add_argument(
        "dir",
        metavar="DIR",
        help="where the root goes (new or empty directory; a new file for tar formats)",
    )
    c.add_argument(
        "--arch", required=True, help="the root's architecture (Debian, QEMU, OCI or uname -m name)"
    )
    c.add_argument("--distro", default="debian", help="debian (default) or ubuntu")
    c.add_argument("--suite", help="release codename (default: see below)")
    c.add_argument("--mirror", metavar="URL", help="archive mirror (default: see below)")
    c.add_argument(
        "--variant",
        default="minbase",
        help="mmdebstrap variant (default minbase, which has apt); one of "
        + ", ".join(rootfs_plan.VARIANTS),
    )
    c.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PKG,...",
        help="extra packages (repeatable)",
    )
    c.add_argument(
        "--components",
        action="append",
        default=[],
        metavar="C,...",
        help="archive components (default main)",
    )
    c.add_argument(
        "--format",
        default="dir",
        help="dir (default), tar, or docker-archive (an image for docker/podman load)",
    )
    c.add_argument("--verbose", action="store_true", help="show the engine's whole log as it runs")
    c.add_argument(
        "--keep-partial", action="store_true", help="on failure or interrupt, keep what was built"
    )
    c.set_defaults(handler=handle_create)  # fmt: skip
    i = actions.add_parser(
        "info",
        parents=[common],
        help="what a root is (its provenance record) and whether it runs here now",
        description="Print the provenance record of a root built by `rootfs create` "
        "(DIR/etc/binfmtctl-rootfs.json, or FILE.binfmtctl-rootfs.json beside a "
        "tarball) and whether its programs run here now, and how.",
    )
    i.add_argument("dir", metavar="DIR")
    i.set_defaults(handler=handle_info)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f} s"


def human_create(data: dict[str, Any]) -> str:
    rec = data["provenance"]
    path = data["path"]
    lines = [
        f"built {rec['distro']} {rec['suite']} {rec['debian_arch']} ({rec['variant']}) "
        f"at {path} in {_duration(data['seconds'])}",
        f"smoke test: {' / '.join(data['smoke']['output'])}",
        f"provenance: {data['provenance_path']}",
    ]
    if rec["format"] == "dir":
        lines += [
            "next:",
            f"  binfmtctl run --rootfs {path} --uid-map auto -- apt-get install -y hello",
            f"  binfmtctl shell --uid-map auto {path}",
        ]
    elif rec["format"] == "docker-archive":
        lines += [
            "next:",
            f"  podman load -i {path}     (or docker load -i)",
            f"  podman run --rm --platform {rec['oci_platform']} {data['image']} uname -m",
        ]
    return "\n".join(lines)


def handle_create(args: argparse.Namespace) -> Result:
    request = rootfs_plan.Request(
        arch=args.arch,
        distro=args.distro,
        suite=args.suite,
        mirror=args.mirror,
        variant=args.variant,
        components=tuple(args.components),
        include=tuple(args.include),
        format=args.format,
    )
    # Imported here, not at the top: `binfmtctl --help` loads every verb module, and
    # the builder needs subprocess, tarfile, pickle and the sandbox (start-up time).
    from binfmtctl import rootfs, rootfs_checks

    spec = rootfs_plan.decide(request, rootfs_checks.host_facts())
    live = not args.json and sys.stderr.isatty()
    out = rootfs.Output(None if args.json else sys.stderr, live=live, verbose=args.verbose)
    report = rootfs.create(spec, args.dir, output=out, keep_partial=args.keep_partial)
    return Result("rootfs", report.to_dict(), human=human_create)


def human_info(data: dict[str, Any]) -> str:
    rec = data["provenance"]
    engine = rec.get("engine") or {}
    qemu = rec.get("qemu") or {}
    lines = [
        f"{data['path']}: {rec.get('distro')} {rec.get('suite')} {rec.get('debian_arch')} "
        f"({rec.get('variant')}), built {rec.get('created')}",
        f"  mirror      {rec.get('mirror')}",
        f"  platform    {rec.get('oci_platform')}",
        f"  engine      {engine.get('version') or engine.get('name')}",
        f"  qemu        {qemu.get('version') or 'none (native)'}",
        f"  binfmtctl   {rec.get('binfmtctl')}",
        f"  record      {data['record']}",
    ]
    runs = data["runs_here"]
    if runs["how"] == "native":
        lines.append("runs here: yes, natively")
    elif runs["runs"]:
        lines.append(
            f"runs here: yes, through {runs['handler']} ({runs['interpreter']}, "
            f"flags {runs['flags'] or '-'})"
        )
    else:
        lines.append(f"runs here: no ({runs['how']}); use {runs.get('fix', '')}")
    return "\n".join(lines)


def handle_info(args: argparse.Namespace) -> Result:
    from binfmtctl import rootfs_info  # start-up time, as in handle_create

    record_path, record = rootfs_info.read_provenance(args.dir)
    data = {
        "path": os.path.abspath(args.dir),
        "record": record_path,
        "provenance": record,
        "runs_here": rootfs_info.runs_here(args.dir, record, args.mountpoint),
    }
    return Result("rootfs", data, human=human_info)
