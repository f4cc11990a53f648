"""Export: the entries install would register, as files in a persistent format.

Formats: ``register`` (the raw lines), ``systemd`` (binfmt.d files),
``binfmt-support`` (update-binfmts format files for ``--import``), ``json``.
Written into a directory one file per entry, atomically and under the
ownership rule (:func:`binfmtctl.files.put`); or printed (for ``systemd`` the
printout is itself one valid binfmt.d file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from binfmtctl import arch as _arch
from binfmtctl import binfmt_d, binfmts, files, hostfacts, plan
from binfmtctl.entry import Entry
from binfmtctl.errors import EXIT_FAILED, BinfmtError, UsageError
from binfmtctl.failures import Failure

FORMATS = ("register", "systemd", "binfmt-support", "json")


@dataclass(frozen=True)
class ExportReport:
    format: str
    steps: tuple[plan.Step, ...]
    rendered: dict[str, bytes]  # file name -> content, one per entry
    written: tuple[str, ...]  # paths written (with an output directory)
    errors: tuple[Failure, ...]
    refused: int  # files not written (another owner's, or an I/O error)

    @property
    def entries(self) -> list[Entry]:
        return [s.entry for s in self.steps if s.entry is not None]

    def to_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "entries": [
                {"arch": s.arch.name, "register": str(s.entry), **s.entry.to_dict()}
                for s in self.steps
                if s.entry is not None
            ],
            "files": list(self.written),
        }


def export(
    words: Sequence[str],
    options: plan.Options,
    fmt: str = "register",
    output_dir: str | None = None,
    overwrite_foreign: bool = False,
) -> ExportReport:
    """Plan ``words`` (every foreign arch found when empty) as install would, render
    each entry in ``fmt`` and, with ``output_dir``, write one file per entry there."""
    searched: plan.Searched = {}  # each arch's emulator is looked for once
    arches = (
        _arch.resolve_all(list(words)) if words else hostfacts.default_arches(options, searched)
    )
    steps = tuple(
        plan.plan_install(arches, {}, options, hostfacts.gather(arches, options, searched))
    )
    errors = [
        Failure(s.action.value, s.reason, EXIT_FAILED, (("arch", s.arch.name),))
        for s in steps
        if s.entry is None
    ]
    built = [s.entry for s in steps if s.entry is not None]
    if not built and errors:
        raise UsageError(errors[0].message)
    rendered = render_files(built, fmt)
    written: list[str] = []
    refused = 0
    if output_dir:
        ours = OWNER_MARKS.get(fmt, _nothing_ours)
        for name, content in rendered.items():
            try:
                saved = files.put(
                    output_dir.rstrip("/") or "/",
                    name,
                    content,
                    ours=ours,
                    overwrite_foreign=overwrite_foreign,
                )
            except BinfmtError as err:
                errors.append(Failure.of(err))
                refused += 1
                continue
            written.append(saved.target)
    return ExportReport(fmt, steps, rendered, tuple(written), tuple(errors), refused)


# Files that carry binfmtctl's mark, per format; register lines and JSON cannot carry one,
# so an existing file of those is replaced only when it already holds the same bytes.
OWNER_MARKS = {"systemd": binfmt_d.marked_binfmt_d, "binfmt-support": binfmts.marked_binfmts}


def _nothing_ours(data: bytes) -> bool:
    return False


def render_files(entries: list[Entry], fmt: str) -> dict[str, bytes]:
    """File name -> content, one file per entry, in ``fmt``."""
    out: dict[str, bytes] = {}
    for entry in entries:
        if fmt == "systemd":
            out[binfmt_d.conf_name(entry.name)] = binfmt_d.format_binfmt_d([entry])
        elif fmt == "binfmt-support":
            out[entry.name] = binfmts.format_binfmts(entry)
        elif fmt == "json":
            out[f"{entry.name}.json"] = (json.dumps(entry.to_dict(), indent=2) + "\n").encode()
        else:
            out[entry.name] = entry.register_bytes() + b"\n"
    return out


def printout(files: dict[str, bytes], fmt: str) -> str:
    """Everything on stdout: one binfmt.d file, or the format files one after another."""
    if fmt == "systemd":
        lines = [line for c in files.values() for line in c.splitlines(keepends=True)]
        body = b"".join(line for line in lines if not line.startswith(b"#"))
        return os.fsdecode(binfmt_d.HEADER + body)
    if fmt == "json":
        return json.dumps([json.loads(c) for c in files.values()], indent=2)
    return "\n".join(f"# {name}\n{os.fsdecode(c)}" for name, c in files.items())
