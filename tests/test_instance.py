"""Instance against the real kernel, in a private binfmt_misc instance."""

from __future__ import annotations

from pathlib import Path

import pytest

from binfmtctl import sandbox
from binfmtctl.entry import Entry
from binfmtctl.errors import (
    BinfmtError,
    EntryExistsError,
    InterpreterError,
    NoSuchEntryError,
    NotMountedError,
    RefusedError,
)
from binfmtctl.instance import Instance
from binfmtctl.namespaces import changes_reach_host, in_initial_user_namespace


def entry(
    name: str, magic: bytes = b"abc", interpreter: str = "/bin/true", flags: str = ""
) -> Entry:
    return Entry(name=name, kind="M", interpreter=interpreter, flags=flags, magic=magic)


def test_names_are_listed_newest_first_like_the_match_order(sb: sandbox.Sandbox) -> None:
    def scenario() -> tuple[list[str], str]:
        inst = Instance()
        for name in ("aa", "zz", "mm", "bb"):
            inst.register(entry(name, magic=b"same", interpreter=f"/bin/{name}"))
        # The kernel tries the newest first: exec of a "same"-magic file goes to bb.
        return inst.names(), inst.entries()[0].entry.interpreter

    names, first = sb.run(scenario)
    assert names == ["bb", "mm", "zz", "aa"]
    assert first == "/bin/bb"


def test_round_trip_through_the_kernel(sb: sandbox.Sandbox) -> None:
    wanted = [
        entry("plain"),
        Entry(
            "masked", "M", "/bin/true", "POCF", offset=3, magic=b"\x00\xff:", mask=b"\xff\x0f\xff"
        ),
        Entry("ext", "E", "/bin/true", "P", extension="xyz"),
    ]

    def scenario() -> list[tuple[Entry, bool]]:
        inst = Instance()
        for e in wanted:
            inst.register(e)
        inst.disable("ext")
        return [(inst.get(e.name).entry, inst.get(e.name).enabled) for e in wanted]

    assert sb.run(scenario) == [(wanted[0], True), (wanted[1], True), (wanted[2], False)]


@pytest.mark.parametrize(
    ("first", "second", "error", "message"),
    [
        (entry("dup"), entry("dup", b"x"), EntryExistsError,
         "dup is already registered with another definition; use --replace to replace it"),
        (None, entry("f", interpreter="/nonexistent", flags="F"), InterpreterError,
         "cannot register f: the interpreter /nonexistent does not exist; with the F flag "
         "the kernel opens it at registration"),
        (None, entry("d", interpreter="/tmp", flags="F"), InterpreterError,
         "cannot register d: the interpreter /tmp is not an executable file"),
        (None, entry("status"), RefusedError, "'status' is a control file of binfmt_misc"),
    ],
)  # fmt: skip
def test_register_errors_say_what_to_do(
    sb: sandbox.Sandbox,
    first: Entry | None,
    second: Entry,
    error: type[BinfmtError],
    message: str,
) -> None:
    def scenario() -> BinfmtError | None:
        inst = Instance()
        if first is not None:
            inst.register(first)
        try:
            inst.register(second)
        except BinfmtError as err:
            return err
        return None

    err = sb.run(scenario)
    assert isinstance(err, error)
    assert err.message.startswith(message)


def test_controls_and_missing_entries(sb: sandbox.Sandbox) -> None:
    def scenario() -> tuple[bool, bool, list[str], str]:
        inst = Instance()
        inst.register(entry("x"))
        inst.set_enabled(False)
        off = inst.enabled()
        inst.set_enabled(True)
        inst.remove("x")
        try:
            inst.enable("x")
        except NoSuchEntryError as err:
            message = err.message
        return off, inst.enabled(), inst.names(), message

    off, on, names, message = sb.run(scenario)
    assert (off, on, names) == (False, True, [])
    assert message == "cannot enable x: no entry named 'x' in /proc/sys/fs/binfmt_misc"


def test_private_instance_is_not_the_hosts(sb: sandbox.Sandbox) -> None:
    assert sb.run(changes_reach_host) is False
    assert sb.run(in_initial_user_namespace) is False


def test_not_mounted(tmp_path: Path) -> None:
    inst = Instance(str(tmp_path))
    assert not inst.mounted
    with pytest.raises(NotMountedError) as info:
        inst.names()
    assert info.value.message.startswith(f"binfmt_misc is not mounted at {tmp_path}; mount it")


def test_a_refused_replace_puts_the_old_entry_back(sb: sandbox.Sandbox) -> None:
    old = entry("x", magic=b"old", interpreter="/bin/true")

    def scenario() -> tuple[str, bool, bool]:
        inst = Instance()
        inst.register(old)
        inst.disable("x")
        try:
            inst.replace(entry("x", magic=b"new", interpreter="/nonexistent", flags="F"))
        except InterpreterError as err:
            state = inst.get("x")
            return err.message, state.entry == old, state.enabled
        return "", False, False

    message, same, enabled = sb.run(scenario)
    assert message.startswith("cannot register x: the interpreter /nonexistent does not exist")
    assert (same, enabled) == (True, False)
