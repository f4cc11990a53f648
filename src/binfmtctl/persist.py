"""Where configuration lives, and how an entry is kept across reboots.

Two stores keep an entry: :class:`SystemdStore` writes a marked
``NAME.conf`` in a binfmt.d directory (systemd-binfmt registers it at boot),
:class:`BinfmtsStore` records it in binfmt-support's database through
update-binfmts. Both follow the one ownership rule of :mod:`binfmtctl.files`:
only what binfmtctl wrote is replaced or removed, unless ``overwrite_foreign``.
Callers hold a :class:`Store` and never ask which kind it is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from binfmtctl import binfmts, files, rootpath
from binfmtctl.binfmt_d import (
    BINFMT_D_DIRS,
    SUFFIX,
    conf_name,
    format_binfmt_d,
    marked_binfmt_d,
    override_warnings,
)
from binfmtctl.binfmts import BINFMTS_ADMINDIR
from binfmtctl.entry import Entry
from binfmtctl.errors import ConfigError, config_error
from binfmtctl.files import ABSENT, FOREIGN, Saved, SavedAction
from binfmtctl.records import NamedTuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    from typing import Protocol


class Layout(NamedTuple):
    """Where configuration lives; tests and ``--root`` pass their own."""

    binfmt_d: tuple[str, ...] = BINFMT_D_DIRS  # highest precedence first, as named on this system
    binfmts_admindir: str = BINFMTS_ADMINDIR
    root: str = "/"  # every path above is resolved inside it

    @classmethod
    def under(cls, root: str | None) -> Layout:
        """The default layout below ``root`` (like systemd's --root)."""
        if rootpath.is_host(root):
            return cls()
        assert root is not None
        return cls(
            tuple(rootpath.shown(root, d) for d in BINFMT_D_DIRS),
            rootpath.shown(root, BINFMTS_ADMINDIR),
            root,
        )

    @property
    def admin_binfmt_d(self) -> str:
        return self.binfmt_d[0]


# For type checkers only (no typing at run time: start-up); nothing checks a store's kind.
if TYPE_CHECKING:

    class Store(Protocol):
        """Somewhere an entry is kept so that boot registers it again."""

        @property
        def kind(self) -> str:
            """What --persist calls it."""
            ...

        def save(self, entry: Entry, dry_run: bool = False) -> Saved:
            """Keep ``entry``; refuse (raise) to replace what binfmtctl did not write."""
            ...

        def forget(self, name: str, dry_run: bool = False) -> Saved:
            """Stop keeping ``name``; refuse (raise) to remove what binfmtctl did not write."""
            ...

        def ours(self) -> list[str]:
            """The names binfmtctl keeps here."""
            ...


class SystemdStore(NamedTuple):
    """A marked ``NAME.conf`` in a binfmt.d directory (by default /etc/binfmt.d)."""

    layout: Layout = Layout()
    binfmt_d: str | None = None  # default: the layout's admin directory (/etc/binfmt.d)
    overwrite_foreign: bool = False  # replace/remove a same-named file binfmtctl did not write
    kind: str = "systemd"

    @property
    def directory(self) -> str:
        """The binfmt.d directory written, as named on this system (inside the layout's root)."""
        if self.binfmt_d is None:
            return self.layout.admin_binfmt_d
        return rootpath.shown(self.layout.root, self.binfmt_d)

    def save(self, entry: Entry, dry_run: bool = False) -> Saved:
        return save_systemd(
            entry,
            self.directory,
            self.layout.binfmt_d,
            root=self.layout.root,
            overwrite_foreign=self.overwrite_foreign,
            dry_run=dry_run,
        )

    def forget(self, name: str, dry_run: bool = False) -> Saved:
        return forget_systemd(
            name,
            self.directory,
            root=self.layout.root,
            overwrite_foreign=self.overwrite_foreign,
            dry_run=dry_run,
        )

    def ours(self) -> list[str]:
        return our_conf_files(self.directory, self.layout.root)


class BinfmtsStore(NamedTuple):
    """binfmt-support's database (package binfmtctl), changed through update-binfmts."""

    layout: Layout = Layout()
    overwrite_foreign: bool = False
    kind: str = "binfmt-support"

    def save(self, entry: Entry, dry_run: bool = False) -> Saved:
        return binfmts.save_binfmts(
            entry,
            self.layout.binfmts_admindir,
            root=self.layout.root,
            overwrite_foreign=self.overwrite_foreign,
            dry_run=dry_run,
        )

    def forget(self, name: str, dry_run: bool = False) -> Saved:
        return binfmts.forget_binfmts(
            name,
            self.layout.binfmts_admindir,
            root=self.layout.root,
            overwrite_foreign=self.overwrite_foreign,
            dry_run=dry_run,
        )

    def ours(self) -> list[str]:
        formats = binfmts.read_binfmts_admin(self.layout.binfmts_admindir, self.layout.root)
        return [f.name for f in formats if f.package == binfmts.PACKAGE]


STORES = ("systemd", "binfmt-support")  # the kinds --persist accepts


def store(
    kind: str,
    layout: Layout | None = None,
    binfmt_d: str | None = None,
    *,
    overwrite_foreign: bool = False,
) -> Store:
    """The store ``kind`` names (one of :data:`STORES`)."""
    layout = Layout() if layout is None else layout
    if kind == "binfmt-support":
        return BinfmtsStore(layout, overwrite_foreign)
    if kind != "systemd":
        raise ValueError(f"unknown store {kind!r}; expected one of {', '.join(STORES)}")
    return SystemdStore(layout, binfmt_d, overwrite_foreign)


# -- systemd: binfmt.d files -----------------------------------------------------


def save_systemd(
    entry: Entry,
    directory: str,
    dirs: Sequence[str],
    *,
    root: str = "/",
    overwrite_foreign: bool = False,
    dry_run: bool = False,
) -> Saved:
    """Write ``directory/NAME.conf`` registering ``entry`` at boot (inside ``root``).

    The directory is made if missing; a same-named file binfmtctl did not write
    is refused unless ``overwrite_foreign``.
    """
    saved = files.put(
        directory,
        conf_name(entry.name),
        format_binfmt_d([entry]),
        root=root,
        overwrite_foreign=overwrite_foreign,
        dry_run=dry_run,
        entry_name=entry.name,
        ours=marked_binfmt_d,
    )
    warnings = override_warnings(entry.name, saved.target, dirs, root)
    return Saved(entry.name, saved.target, saved.action, warnings=tuple(warnings))


def forget_systemd(
    name: str,
    directory: str,
    *,
    root: str = "/",
    overwrite_foreign: bool = False,
    dry_run: bool = False,
) -> Saved:
    """Remove ``directory/NAME.conf`` if binfmtctl wrote it; refuse anything else."""
    conf = conf_name(name)
    path = os.path.join(directory, conf)
    try:
        with files.open_dir(root, directory) as fd:
            have = files.examine(fd, conf, path, root=root, ours=marked_binfmt_d)
            if have.state == ABSENT:
                return Saved(name, path, SavedAction.ABSENT)
            if have.state == FOREIGN and not overwrite_foreign:
                raise files.refuse(path, have, "remove")
            if dry_run:
                return Saved(name, path, SavedAction.WOULD_REMOVE)
            files.remove_at(fd, conf, path)
    except ConfigError as err:
        if err.context.get("errno") != "ENOENT":
            raise
        return Saved(name, path, SavedAction.ABSENT)  # no directory, no file
    return Saved(name, path, SavedAction.REMOVED)


def our_conf_files(directory: str, root: str = "/") -> list[str]:
    """Entry names of every binfmt.d file binfmtctl wrote in ``directory``."""
    try:
        with rootpath.open_dir(root, rootpath.inside(root, directory)) as fd:
            names = sorted(n for n in os.listdir(fd) if n.endswith(SUFFIX))
            ours = []
            for n in names:
                try:
                    data = rootpath.read_at(fd, n, os.path.join(directory, n))
                except OSError:
                    continue  # not ours to remove: not a regular file we can read
                if marked_binfmt_d(data):
                    ours.append(n.removesuffix(SUFFIX))
            return ours
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as err:
        raise config_error(err, "list", directory) from err
