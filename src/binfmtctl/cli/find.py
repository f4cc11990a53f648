"""``binfmtctl find FILE...``: what the kernel would do with each file right now."""

from __future__ import annotations

import argparse
import os
from typing import Any

from binfmtctl import elf, find, remedies, rootpath
from binfmtctl.advice import advise
from binfmtctl.callerfacts import caller
from binfmtctl.cli.advising import fix_lines
from binfmtctl.cli.output import Result
from binfmtctl.errors import EXIT_FAILED, EXIT_OK
from binfmtctl.instance import Instance
from binfmtctl.native import native_arches


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "find",
        parents=[common],
        help="which entry (or the native loader) would run each FILE right now",
        description="For each FILE, what execve would do with it now: the first "
        "enabled binfmt_misc entry that matches (newest first, exactly the kernel's "
        "rule for M and E entries), the native ELF loader, the #! script loader, or "
        "nothing. Shows the file's ELF identity: class, endianness, machine, ABI "
        "(armhf/armel, MIPS o32/n32/n64), static or dynamic and its loader (PT_INTERP). "
        "A disabled instance (status 0) runs no entry at all, and says so. Exit status "
        "1 when a FILE does not exist, cannot be read or is not a regular file (a FIFO, "
        "socket or device is never opened for reading, so find never blocks).",
        epilog="examples:\n  binfmtctl find ./hello-arm64 /usr/bin/ls\n"
        "  binfmtctl find --rootfs ./arm64-rootfs /bin/busybox   (path inside the rootfs)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--rootfs",
        metavar="DIR",
        help="look FILE up inside DIR (a chroot or unpacked image), symlinks resolved there",
    )
    p.set_defaults(handler=handle)


def human(data: dict[str, Any]) -> str:
    lines = []
    for f in data["files"]:
        lines.append(f"{f['path']}: {f['summary']}")
        lines.append(f"  -> {f['detail']}")
        lines.extend(fix_lines(f.get("advice", []), indent="  "))
    return "\n".join(lines)


def handle(args: argparse.Namespace) -> Result:
    state = Instance(args.mountpoint).snapshot()
    native = native_arches()
    root = args.rootfs or "/"
    files: list[dict[str, Any]] = []
    missing = 0
    who = caller()
    for name in args.files:
        path = name if root == "/" else "/" + name.lstrip("/")
        host_path = rootpath.resolve_in(root, os.path.abspath(path) if root == "/" else path)
        facts = None
        verdict, summary = find.Verdict.MISSING.value, "missing"
        if host_path is not None:
            try:
                facts = find.inspect(host_path, path)
            except elf.NotRegularFileError as err:
                verdict, summary = find.Verdict.NOT_REGULAR.value, "not a regular file"
                detail = f"a {err.kind}: the kernel execs only regular files"
            except OSError as err:
                detail = f"cannot read it: {err.strerror}"
        else:
            detail = f"does not exist in {rootpath.where(root)}"
            if root == "/" and os.path.islink(path):  # a dangling or looping symlink
                detail = f"a symlink that leads nowhere: {_stat_error(path)}"
        if facts is None:
            missing += 1
            files.append(
                {
                    "path": path,
                    "elf": None,
                    "match": None,
                    "verdict": verdict,
                    "detail": detail,
                    "summary": summary,
                    "advice": [],
                }
            )
            continue
        found = find.find(state, facts, native)
        out = found.to_dict()
        out["summary"] = facts.summary()
        shown = name if root == "/" else path  # as `binfmtctl run` takes it
        fixes = advise(who, remedies.for_finding(state, found), [shown], args.rootfs)
        out["advice"] = [a.to_dict() for a in fixes]
        files.append(out)
    data = {"instance": state.to_dict(), "root": root, "files": files}
    return Result("find", data, human=human, exit_code=EXIT_FAILED if missing else EXIT_OK)


def _stat_error(path: str) -> str:
    try:
        os.stat(path)
    except OSError as err:
        return str(err.strerror)
    return "it resolves now"
