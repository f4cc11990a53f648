"""Scan: every ELF file of a tree, grouped by what would run it.

Only regular files are read (a FIFO never blocks the walk), each only as far
as its ELF identity; files are grouped by arch, ABI and the kernel's verdict
(:mod:`binfmtctl.find`), so a tree of thousands of programs reads as a few lines.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from binfmtctl import arch as _arch
from binfmtctl import elf
from binfmtctl.entry import Handler
from binfmtctl.find import Verdict
from binfmtctl.instance import Snapshot

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Any, Literal

# -- scan: every ELF file of a tree ---------------------------------------------

SCAN_READ = 64  # enough for the ELF identity, e_entry and e_flags of both classes


class ElfKind(str, Enum):
    """What an ELF file is, for scan: only programs are ever exec'd, so only they
    need a handler; the others are reported apart and never fail a scan."""

    PROGRAM = "program"  # ET_EXEC, or ET_DYN with an entry point
    OBJECT = "object"  # ET_REL
    CORE = "core"  # ET_CORE
    LIBRARY = "library"  # ET_DYN without an entry point
    OTHER = "other"  # ET_NONE and processor/OS-specific types


PROGRAM = ElfKind.PROGRAM
ET_REL, ET_EXEC, ET_DYN, ET_CORE = 1, 2, 3, 4  # e_type (elf.ET_NAMES names them)


def elf_kind(head: bytes) -> ElfKind:
    """PROGRAM for ET_EXEC and ET_DYN with an entry point, else what the file is.

    ``head`` is at least SCAN_READ bytes of a file that starts with the ELF magic.
    A PIE program and a shared library are both ET_DYN; a library without an
    entry point (e_entry 0) cannot be run, one with it (libc.so.6, ld.so) can.
    """
    order: Literal["big", "little"] = "big" if head[5] == _arch.ELFDATA2MSB else "little"
    e_type = int.from_bytes(head[16:18], order)
    if e_type == ET_EXEC:
        return PROGRAM
    if e_type == ET_DYN:
        width = 8 if head[4] == _arch.ELFCLASS64 else 4
        return PROGRAM if any(head[24 : 24 + width]) else ElfKind.LIBRARY
    return {ET_REL: ElfKind.OBJECT, ET_CORE: ElfKind.CORE}.get(e_type, ElfKind.OTHER)


@dataclass
class Group:
    arch: str | None
    abi: str | None
    bits: int
    endian: str
    machine: int
    verdict: Verdict
    handler: Handler | None
    files: list[str] = field(default_factory=list)
    kind: ElfKind = PROGRAM

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "abi": self.abi,
            "class": self.bits,
            "endian": self.endian,
            "machine": self.machine,
            "kind": self.kind.value,
            "count": len(self.files),
            "verdict": self.verdict.value,
            "match": self.handler.to_dict() if self.handler else None,
            "files": self.files if limit is None else self.files[:limit],
        }


@dataclass(frozen=True)
class ScanProblem:
    """A file or directory of the tree that could not be read, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class ScanReport:
    top: str
    files: int = 0
    unreadable: int = 0
    groups: list[Group] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)

    def cannot_read(self, path: str, err: OSError) -> None:
        """One unreadable file or directory: counted and reported; the walk goes on."""
        self.unreadable += 1
        self.problems.append(ScanProblem(path, str(err.strerror or err)))

    @property
    def elf_files(self) -> int:
        return sum(len(g.files) for g in self.groups)

    def uncovered(self) -> list[Group]:
        """Programs nothing runs (objects, cores and libraries never count)."""
        return [
            g
            for g in self.groups
            if g.kind == PROGRAM and g.verdict not in (Verdict.HANDLED, Verdict.NATIVE)
        ]

    def not_executable(self) -> list[Group]:
        """Groups of files the kernel never executes (objects, cores, plain libraries)."""
        return [g for g in self.groups if g.kind != PROGRAM]


def scan(top: str, snapshot: Snapshot, native: Sequence[_arch.Arch]) -> ScanReport:
    """Every ELF file under ``top`` (symlinks not followed), grouped by arch/ABI and handler.

    Only the first bytes of each file are read. Which entry matches depends only
    on the bytes some entry's mask looks at (and the extension, for E entries),
    so the decision is made once per distinct set of those bytes.
    """
    positions: set[int] = set(range(20)) | {0x24, 0x25, 0x26, 0x27, 0x30, 0x31, 0x32, 0x33}
    by_extension = False
    for h in snapshot.handlers:
        e = h.entry
        if e.kind == "E":
            by_extension = True
            continue
        for i in range(len(e.magic)):
            if e.mask is None or e.mask[i]:
                positions.add(e.offset + i)
    need = max(SCAN_READ, max(positions) + 1)
    pick = operator.itemgetter(*sorted(positions))
    native_names = {a.name for a in native}
    decided: dict[tuple[Any, ...], Group] = {}
    report = ScanReport(top)
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            it = os.scandir(directory)
        except OSError as err:
            report.cannot_read(directory, err)
            continue
        with it:
            for item in it:
                try:
                    if item.is_dir(follow_symlinks=False):
                        stack.append(item.path)
                        continue
                    if not item.is_file(follow_symlinks=False):
                        continue  # symlinks, FIFOs, sockets, devices: never opened
                except OSError as err:
                    report.cannot_read(item.path, err)
                    continue
                report.files += 1
                try:
                    # Non-blocking and fstat-checked: a file replaced by a FIFO since
                    # the directory was read is refused, not waited on.
                    fd = elf.open_regular_fd(item.path, follow=False, seen_regular=True)
                    try:
                        head = os.read(fd, need)
                    finally:
                        os.close(fd)
                except OSError as err:
                    report.cannot_read(item.path, err)
                    continue
                if head[:4] != _arch.ELF_MAGIC:
                    continue
                if len(head) < need:
                    head = head.ljust(need, b"\0")
                key: tuple[Any, ...] = (pick(head), elf_kind(head))
                if by_extension:
                    key = (key, os.path.splitext(item.name)[1])
                group = decided.get(key)
                if group is None:
                    group = _decide(head, item.path, snapshot, native_names, report)
                    if group is None:
                        continue
                    decided[key] = group
                group.files.append(item.path)
    for g in report.groups:
        g.files.sort()
    report.problems.sort(key=lambda p: p.path)
    report.groups.sort(key=lambda g: (-len(g.files), g.arch or "", g.abi or ""))
    return report


def _decide(
    head: bytes, path: str, snapshot: Snapshot, native: set[str], report: ScanReport
) -> Group | None:
    ident = elf.identity(head)
    if ident is None:
        return None
    found = ident.arch
    kind = elf_kind(head)
    winner = snapshot.winner(head, path) if kind == PROGRAM else None
    if kind != PROGRAM:
        verdict = Verdict.NOT_EXECUTABLE
    elif winner is not None:
        verdict = Verdict.HANDLED
    elif found is not None and found.name in native:
        verdict = Verdict.NATIVE
    else:
        verdict = Verdict.NO_HANDLER
    for g in report.groups:
        if (
            g.machine == ident.machine
            and g.bits == ident.bits
            and g.endian == ident.endian
            and g.abi == ident.abi
            and g.verdict == verdict
            and g.handler == winner
            and g.kind == kind
        ):
            return g
    group = Group(
        found.name if found else None,
        ident.abi,
        ident.bits,
        ident.endian,
        ident.machine,
        verdict,
        winner,
        kind=kind,
    )
    report.groups.append(group)
    return group
