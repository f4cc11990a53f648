"""persist without a kernel: saving and forgetting binfmt.d files, warnings when
another file wins at boot, refusals of files binfmtctl did not write."""

from __future__ import annotations

from pathlib import Path

import pytest

from binfmtctl import persist
from binfmtctl.errors import RefusedError
from config_samples import AARCH64, ARM, tree


def test_save_warns_when_another_file_wins_and_refuses_foreign_files(tmp_path: Path) -> None:
    usr_arm = ARM.replace(interpreter="/usr/libexec/qemu-binfmt/arm-binfmt-P", flags="OPF")
    layout = tree(tmp_path, {"usr/lib/binfmt.d/zz-qemu.conf": str(usr_arm) + "\n"})
    etc = layout.admin_binfmt_d
    saved = persist.save_systemd(ARM, etc, layout.binfmt_d)
    assert (saved.action, saved.target) == ("written", f"{etc}/qemu-arm.conf")
    assert saved.warnings == (
        f"at boot {tmp_path}/usr/lib/binfmt.d/zz-qemu.conf also registers qemu-arm and wins: "
        "it is applied after qemu-arm.conf (files are applied in order of file name)",
    )
    assert persist.save_systemd(ARM, etc, layout.binfmt_d).action == "unchanged"
    Path(etc, "qemu-aarch64.conf").write_text(str(AARCH64) + "\n")
    foreign = f"{etc}/qemu-aarch64.conf was not written by binfmtctl and seems to belong to"
    with pytest.raises(RefusedError) as refused:
        persist.save_systemd(AARCH64, etc, layout.binfmt_d)
    assert refused.value.message == (
        f"{foreign} an administrator; binfmtctl does not replace it "
        "(pass --overwrite-foreign to replace it anyway)"
    )
    with pytest.raises(RefusedError) as refused:
        persist.forget_systemd("qemu-aarch64", etc)
    assert refused.value.message == (
        f"{foreign} an administrator; binfmtctl does not remove it "
        "(pass --overwrite-foreign to remove it anyway)"
    )
    assert Path(etc, "qemu-aarch64.conf").read_text() == str(AARCH64) + "\n"
    assert persist.our_conf_files(etc) == ["qemu-arm"]
    assert persist.forget_systemd("qemu-arm", etc).action == "removed"
    assert not Path(etc, "qemu-arm.conf").exists()
    elsewhere = persist.save_systemd(ARM, str(tmp_path / "other"), layout.binfmt_d)
    assert elsewhere.warnings[0].startswith(f"{tmp_path}/other is not read by systemd-binfmt")
