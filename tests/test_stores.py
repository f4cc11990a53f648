"""persist.py's stores and errors.Failure, without a kernel: save, forget and ours
through the Store protocol on a real configuration root."""

from __future__ import annotations

from pathlib import Path

import pytest

from binfmtctl import persist
from binfmtctl.entry import Entry
from binfmtctl.errors import ConfigError, ForeignFileError, PermissionDeniedError
from binfmtctl.failures import Failure
from binfmtctl.files import SavedAction

ARM = Entry(name="qemu-arm", kind="E", interpreter="/bin/true", flags="", extension="arm")


def test_the_store_is_chosen_by_its_persist_name(tmp_path: Path) -> None:
    layout = persist.Layout.under(str(tmp_path))
    assert isinstance(persist.store("systemd", layout), persist.SystemdStore)
    assert isinstance(persist.store("binfmt-support", layout), persist.BinfmtsStore)
    assert [persist.store(k, layout).kind for k in persist.STORES] == list(persist.STORES)
    with pytest.raises(ValueError, match="unknown store 'upstart'"):
        persist.store("upstart", layout)


def test_systemd_store_saves_lists_and_forgets_only_its_own(tmp_path: Path) -> None:
    layout = persist.Layout.under(str(tmp_path))
    store: persist.Store = persist.SystemdStore(layout)
    conf = tmp_path / "etc/binfmt.d/qemu-arm.conf"
    assert store.save(ARM, dry_run=True).action is SavedAction.WOULD_WRITE
    assert not conf.exists()
    saved = store.save(ARM)
    assert (saved.action, saved.target) == (
        SavedAction.WRITTEN,
        f"{tmp_path}/etc/binfmt.d/qemu-arm.conf",
    )
    assert store.save(ARM).action is SavedAction.UNCHANGED
    (tmp_path / "etc/binfmt.d/admin.conf").write_text(":admin:E::adm::/bin/true:\n")
    assert store.ours() == ["qemu-arm"]
    with pytest.raises(ForeignFileError):
        store.forget("admin")
    assert (tmp_path / "etc/binfmt.d/admin.conf").exists()
    assert store.forget("qemu-arm").action is SavedAction.REMOVED
    assert store.forget("qemu-arm").action is SavedAction.ABSENT
    assert store.ours() == []


def test_a_store_with_another_directory_writes_there_inside_the_root(tmp_path: Path) -> None:
    store = persist.SystemdStore(persist.Layout.under(str(tmp_path)), binfmt_d="/run/binfmt.d")
    assert store.directory == f"{tmp_path}/run/binfmt.d"
    assert store.save(ARM).target == f"{tmp_path}/run/binfmt.d/qemu-arm.conf"


def test_failure_keeps_the_error_dict_and_adds_where_it_happened() -> None:
    err = ConfigError("x.conf:2: bad", path="x.conf", line=2)
    assert Failure.of(err).to_dict() == err.to_dict()
    moved = Failure.of(err, "restated", line=3, arch="arm")
    assert moved.to_dict() == {
        "code": "config",
        "message": "restated",
        "path": "x.conf",
        "line": 3,
        "arch": "arm",
    }
    assert Failure.of(PermissionDeniedError("no")).exit_code == 4
