"""binfmts.py without a kernel: one field encoder for format files and update-binfmts."""

from __future__ import annotations

import pytest

from binfmtctl import binfmts
from binfmtctl.entry import Entry
from binfmtctl.errors import ConfigError

MAGIC = Entry(
    name="qemu-x",
    kind="M",
    interpreter="/usr/bin/qemu-x",
    flags="F",
    offset=2,
    magic=b"\x7fE",
    mask=b"\xff\xfe",
)
EXT = Entry(name="ext", kind="E", interpreter="/bin/run", flags="POC", extension="foo")


@pytest.mark.parametrize(
    ("entry", "fields"),
    [
        (
            MAGIC,
            [
                ("magic", "\\x7f\\x45"),
                ("offset", "2"),
                ("mask", "\\xff\\xfe"),
                ("credentials", "no"),
                ("preserve", "no"),
                ("fix_binary", "yes"),
            ],
        ),
        (
            EXT,
            [
                ("extension", "foo"),
                ("credentials", "yes"),
                ("preserve", "yes"),
                ("fix_binary", "no"),
            ],
        ),
    ],
)
def test_fields_feed_both_the_format_file_and_the_install_arguments(
    entry: Entry, fields: list[tuple[str, str]]
) -> None:
    assert binfmts.fields(entry) == fields
    body = [f"{key} {value}" for key, value in fields]
    assert binfmts.format_binfmts(entry).decode().splitlines() == [
        "package binfmtctl",
        f"interpreter {entry.interpreter}",
        *body,
    ]
    flags = [word for key, value in fields for word in (f"--{key.replace('_', '-')}", value)]
    assert binfmts.install_args(entry) == [
        "--package",
        "binfmtctl",
        "--install",
        entry.name,
        entry.interpreter,
        *flags,
    ]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            EXT.replace(flags="O"),
            "ext: binfmt-support cannot express the O flag without C (its 'credentials yes' "
            "sets both); drop O or add C",
        ),
        (EXT.replace(extension="a\nb"), "ext: binfmt-support files cannot hold a newline"),
    ],
)
def test_what_binfmt_support_cannot_express_is_refused_by_both(entry: Entry, message: str) -> None:
    for encode in (binfmts.format_binfmts, binfmts.install_args):
        with pytest.raises(ConfigError) as err:
            encode(entry)
        assert err.value.message == message


def test_a_format_file_reads_back_as_the_entry_it_was_written_from() -> None:
    for entry in (MAGIC, EXT):
        parsed = binfmts.parse_binfmts(binfmts.format_binfmts(entry), entry.name)
        assert (parsed.package, parsed.entry) == ("binfmtctl", entry)
        assert binfmts.marked_binfmts(binfmts.format_binfmts(entry))
    assert not binfmts.marked_binfmts(binfmts.format_binfmts(MAGIC, package="qemu-user"))


def test_the_database_entry_reads_in_update_binfmts_line_order() -> None:
    data = b"qemu-user\nmagic\n2\n\\x7f\\x45\n\\xff\\xfe\n/usr/bin/qemu-x\n\nno\nno\nyes\n"
    fmt = binfmts.parse_binfmts_admin(data, "qemu-x", "/var/lib/binfmts/qemu-x")
    assert (fmt.package, fmt.entry, fmt.path) == ("qemu-user", MAGIC, "/var/lib/binfmts/qemu-x")
    with pytest.raises(ConfigError, match="truncated binfmt-support database entry"):
        binfmts.parse_binfmts_admin(b"p\nmagic\n0\n", "x", "f")
