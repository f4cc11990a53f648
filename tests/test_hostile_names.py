"""Hostile entry names: only names the kernel could have created reach binfmt_misc.

Each attack runs the real command in a private binfmt_misc instance and checks
both the exact refusal and that nothing changed (the victim file, the entries,
the instance's status).
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from binfmtctl import sandbox
from binfmtctl.errors import InvalidNameError
from binfmtctl.instance import Instance, check_name, name_problem
from conftest import cli, qemu

USER = "binfmtctl-test"
MP = "/proc/sys/fs/binfmt_misc"

STATUS_MESSAGE = (
    "'status' is a control file of binfmt_misc (the switch of the whole instance), not "
    "an entry; use `binfmtctl disable --instance` or `binfmtctl enable --instance` to "
    "switch the instance"
)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "an entry name cannot be empty"),
        (".", "'.' is not an entry name: it names a directory"),
        ("..", "'..' is not an entry name: it names a directory"),
        ("a/b", "'a/b' is not an entry name: entry names never contain '/'"),
        ("../../etc/passwd",
         "'../../etc/passwd' is not an entry name: entry names never contain '/'"),
        ("/", "'/' is not an entry name: entry names never contain '/'"),
        ("a\0b", "'a\\x00b' is not an entry name: entry names never contain a NUL byte"),
        ("x" * 256, "entry name too long: 256 bytes, the kernel allows at most 255"),
        ("é" * 128, "entry name too long: 256 bytes, the kernel allows at most 255"),
        ("status", STATUS_MESSAGE),
        ("register",
         "'register' is a control file of binfmt_misc (it adds entries), not an entry"),
        # Names the kernel accepts: spaces, newlines, dots inside, 255 bytes, odd bytes.
        ("qemu-aarch64", None),
        ("a b", None),
        ("line\nbreak", None),
        ("...", None),
        (".hidden", None),
        ("x" * 255, None),
        (os.fsdecode(b"\xff\xfe"), None),
        ("Status", None),
    ],
)  # fmt: skip
def test_the_name_rule(name: str, problem: str | None) -> None:
    assert name_problem(name) == problem
    if problem is None:
        assert check_name(name) == name
    else:
        with pytest.raises(InvalidNameError) as info:
            check_name(name)
        assert info.value.message == problem
        assert info.value.exit_code == 2


def test_the_rule_is_the_kernels(sb: sandbox.Sandbox) -> None:
    """Every name the rule accepts registers; every one it refuses the kernel refuses too."""
    accepted = ["a b", "line\nbreak", "...", ".hidden", "x" * 255, os.fsdecode(b"\xff\xfe")]
    refused = ["", ".", "..", "a/b", "x" * 256, "status", "register"]

    def raw(name: str) -> int:
        # Straight to the kernel, with a delimiter no name here contains.
        data = b"\x01" + os.fsencode(name) + b"\x01M\x01\x01abc\x01\x01/bin/true\x01"
        fd = os.open(f"{MP}/register", os.O_WRONLY)
        try:
            os.write(fd, data)
        except OSError as err:
            return err.errno or -1
        finally:
            os.close(fd)
        return 0

    def scenario() -> tuple[list[int], list[int], list[str]]:
        ok = [raw(n) for n in accepted]
        bad = [raw(n) for n in refused]
        return ok, bad, os.listdir(MP)

    ok, bad, listed = sb.run(scenario)
    assert ok == [0] * len(accepted)
    assert 0 not in bad
    assert sorted(listed) == sorted([*accepted, "register", "status"])


def _victim(tmp_path: Path) -> Path:
    """A file of another user's that a path-escaping name would overwrite."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    entry = pwd.getpwnam(USER)
    os.chown(victim, entry.pw_uid, entry.pw_gid)
    return victim


def _escape(path: Path) -> str:
    """A name that walks from the mount point to ``path``."""
    return "../" * MP.count("/") + str(path).lstrip("/")


def _statuses(sb: sandbox.Sandbox) -> tuple[list[str], str]:
    def read() -> tuple[list[str], str]:
        return sorted(os.listdir(MP)), Path(f"{MP}/status").read_text().strip()

    return sb.run(read)


@pytest.mark.parametrize("verb", ["enable", "disable", "uninstall"])
def test_a_name_that_walks_out_of_the_mount_is_refused(
    sb: sandbox.Sandbox, tmp_path: Path, verb: str
) -> None:
    victim = _victim(tmp_path)
    name = _escape(victim)
    assert os.path.realpath(f"{MP}/{name}") == str(victim)  # the attack is real
    assert cli(sb, "install", "arm64").returncode == 0
    before = _statuses(sb)
    proc = cli(sb, verb, name)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == (
        f"binfmtctl: error: {name!r} is not an entry name: entry names never contain '/'\n"
    )
    assert victim.read_text() == "precious\n"
    assert _statuses(sb) == before


def _contents() -> list[tuple[str, str]]:
    """Every readable file of the instance (``register`` cannot be read) and its text."""
    names = sorted(n for n in os.listdir(MP) if n != "register")
    return [(n, Path(f"{MP}/{n}").read_text()) for n in names]


@pytest.mark.parametrize("verb", ["enable", "disable", "uninstall"])
def test_a_bad_name_among_good_ones_changes_nothing(sb: sandbox.Sandbox, verb: str) -> None:
    assert cli(sb, "install", "arm64", "armhf").returncode == 0
    if verb == "enable":
        assert cli(sb, "disable", "arm64", "armhf").returncode == 0
    before = sb.run(_contents)
    proc = cli(sb, verb, "arm64", "..", "armhf", "--json")
    assert proc.returncode == 2
    errors = json.loads(proc.stdout)["errors"]
    assert [(e["code"], e["message"]) for e in errors] == [
        ("invalid_name", "'..' is not an entry name: it names a directory")
    ]
    assert sb.run(_contents) == before
    assert len(before) == 3


@pytest.mark.parametrize("verb", ["enable", "disable", "uninstall"])
@pytest.mark.parametrize("name", ["status", "register"])
def test_control_files_are_not_entries(sb: sandbox.Sandbox, verb: str, name: str) -> None:
    assert cli(sb, "install", "arm64").returncode == 0
    before = _statuses(sb)
    proc = cli(sb, verb, name)
    assert proc.returncode == 2
    expected = STATUS_MESSAGE if name == "status" else name_problem("register")
    assert proc.stderr == f"binfmtctl: error: {expected}\n"
    assert _statuses(sb) == before
    assert before[1] == "enabled"


def test_the_instance_switch_has_its_own_form(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    assert cli(sb, "install", "arm64").returncode == 0
    off = cli(sb, "disable", "--instance")
    assert (off.returncode, off.stdout, off.stderr) == (0, f"binfmt_misc at {MP}: disabled\n", "")
    assert _statuses(sb)[1] == "disabled"
    warning = (
        f"binfmtctl: warning: binfmt_misc at {MP} is disabled as a whole: no handler runs "
        "until `binfmtctl enable --instance`\n"
    )
    status = cli(sb, "status")
    assert status.returncode == 0
    assert warning in status.stderr
    again = cli(sb, "install", "arm64")
    assert again.returncode == 0
    assert warning in again.stderr
    on = cli(sb, "enable", "--instance", "--json")
    assert on.returncode == 0
    assert json.loads(on.stdout)["data"] == {"changed": [], "instance": "enabled"}
    assert _statuses(sb)[1] == "enabled"
    assert warning not in cli(sb, "status").stderr
    # The entry itself was never touched by the instance switch.
    assert sb.run(lambda: Path(f"{MP}/qemu-aarch64").read_text().splitlines()[0]) == "enabled"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["disable", "--instance", "arm64"],
         "`disable --instance` switches the whole instance: name no entries"),
        (["enable"], "name the entries or ARCHes to enable, or use --instance"),
    ],
)  # fmt: skip
def test_instance_switch_usage(sb: sandbox.Sandbox, argv: list[str], message: str) -> None:
    proc = cli(sb, *argv)
    assert (proc.returncode, proc.stderr) == (2, f"binfmtctl: error: {message}\n")
    assert _statuses(sb)[1] == "enabled"


def test_help_documents_the_instance_switch(sb: sandbox.Sandbox) -> None:
    text = " ".join(cli(sb, "disable", "--help").stdout.split())
    assert "`binfmtctl disable --instance` switches the whole binfmt_misc instance" in text
    assert "--instance disable the whole instance (binfmt_misc's status file), not entries" in text


def test_no_caller_can_bypass_the_rule(sb: sandbox.Sandbox, tmp_path: Path) -> None:
    """The library refuses by itself: Instance is the only writer to binfmt_misc."""
    victim = _victim(tmp_path)
    name = _escape(victim)

    def scenario() -> list[str]:
        inst = Instance()
        out = []
        for call in (inst.enable, inst.disable, inst.remove, inst.get):
            try:
                call(name)
            except InvalidNameError as err:
                out.append(err.message)
        try:
            inst.disable("status")
        except InvalidNameError as err:
            out.append(err.message)
        out.append("enabled" if inst.enabled() else "disabled")
        return out

    refused = f"{name!r} is not an entry name: entry names never contain '/'"
    assert sb.run(scenario) == [refused] * 4 + [STATUS_MESSAGE, "enabled"]
    assert victim.read_text() == "precious\n"


def test_apply_refuses_a_control_file_name_in_a_binfmt_d_line(
    sb: sandbox.Sandbox, tmp_path: Path
) -> None:
    conf = tmp_path / "x.conf"
    conf.write_text(
        ":status:M::abc::/bin/true:\n:register:M::abd::/bin/true:\n:ok:M::abe::/bin/true:\n"
    )
    proc = cli(sb, "apply", str(conf), "--json")
    assert proc.returncode == 3
    data = json.loads(proc.stdout)
    assert [(e["line"], e["message"]) for e in data["errors"]] == [
        (1, f"{conf}:1: {STATUS_MESSAGE}"),
        (2, f"{conf}:2: {name_problem('register')}"),
    ]
    assert [r["action"] for r in data["data"]["lines"]] == ["invalid", "invalid", "registered"]
    assert _statuses(sb) == (["ok", "register", "status"], "enabled")
