"""binfmt_d.py and boot_report.py without a kernel: what boot registers, and each
name's problems as typed codes (status filters by code, never by words)."""

from __future__ import annotations

from pathlib import Path

import pytest

from binfmtctl import binfmt_d, boot_report, persist
from binfmtctl.boot_report import ProblemCode, Role
from binfmtctl.entry import Entry, Handler

ARM = Entry(name="qemu-arm", kind="E", interpreter="/bin/true", flags="", extension="arm")


def layout_of(tmp_path: Path, confs: dict[str, str]) -> persist.Layout:
    for rel, text in confs.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return persist.Layout.under(str(tmp_path))


ETC, USR = "etc/binfmt.d", "usr/lib/binfmt.d"


@pytest.mark.parametrize(
    ("confs", "running", "roles", "codes"),
    [
        ({f"{ETC}/a.conf": ":qemu-arm:E::arm::/bin/true:\n"}, [ARM], [Role.WINS], []),
        (
            {f"{ETC}/a.conf": ":qemu-arm:E::arm::/bin/true:\n"},
            [],
            [Role.WINS],
            [ProblemCode.NOT_REGISTERED],
        ),
        ({}, [ARM], [], [ProblemCode.NOT_PERSISTED]),
        (
            {f"{USR}/a.conf": ":qemu-arm:E::arm::/bin/x:\n", f"{USR}/b.conf": str(ARM) + "\n"},
            [ARM],
            [Role.REPLACED, Role.WINS],
            [ProblemCode.MANY_FILES],
        ),
        (
            {f"{ETC}/a.conf": ":qemu-arm:E::arm::/bin/true:\n", f"{USR}/a.conf": ":qemu-arm:Q:"},
            [ARM],
            [Role.WINS, Role.IGNORED],
            [],
        ),
        (
            {f"{USR}/z.conf": ":qemu-arm:Q::arm::/bin/true:\n"},
            [],
            [Role.INVALID],  # a line that does not parse says why, not just "registers nothing"
            [ProblemCode.REGISTERS_NOTHING],
        ),
        (
            {f"{USR}/z.conf": ":qemu-arm:Q::arm::/bin/true:\n"},
            [ARM],
            [Role.INVALID],
            [ProblemCode.LOST_AT_BOOT],
        ),
        (
            {f"{USR}/a.conf": ":qemu-arm:E::arm::/bin/false:\n"},
            [ARM],
            [Role.WINS],
            [ProblemCode.DIFFERENT_INTERPRETER],
        ),
    ],
)
def test_each_name_gets_roles_and_problem_codes(
    tmp_path: Path,
    confs: dict[str, str],
    running: list[Entry],
    roles: list[Role],
    codes: list[ProblemCode],
) -> None:
    layout = layout_of(tmp_path, confs)
    handlers = [Handler(e, True) for e in running]
    report = boot_report.describe(layout, handlers, check_interpreter=False)
    (name,) = report.names
    assert [d.role for d in name.files] == roles
    assert [p.code for p in name.problems] == codes
    assert report.problems(*codes) == list(name.problems)
    # The JSON keeps the words: one message per problem, in the same order.
    assert name.to_dict()["problems"] == [p.message for p in name.problems]


def test_codes_follow_the_facts_status_reads_from_the_data(tmp_path: Path) -> None:
    """status filters its text by these facts (running/boot null or not): they must
    agree with the codes for every kind of name."""
    layout = layout_of(
        tmp_path,
        {
            f"{USR}/a.conf": ":gone:Q::x::/bin/true:\n:later:E::l::/bin/true:\n",
            f"{USR}/b.conf": ":later:E::l2::/bin/true:\n",
        },
    )
    report = boot_report.describe(layout, (), check_interpreter=False)
    for name in report.names:
        shown = name.to_dict()
        if shown["running"] is None and shown["boot"] is not None:
            assert name.problems[-1].code is ProblemCode.NOT_REGISTERED
        if shown["running"] is None and shown["boot"] is None:
            assert {p.code for p in name.problems} == {ProblemCode.REGISTERS_NOTHING}
    assert [p.code for p in report.problems()] == [
        ProblemCode.REGISTERS_NOTHING,
        ProblemCode.MANY_FILES,
        ProblemCode.NOT_REGISTERED,
    ]


def test_rule_error_names_the_file_and_line() -> None:
    conf = binfmt_d.parse_binfmt_d(b"# c\n:x:Q::a::/bin/true:\n", "/etc/binfmt.d/x.conf")
    err = binfmt_d.rule_error(conf.errors[0])
    assert err.message == (
        "/etc/binfmt.d/x.conf:2: invalid type: must be M (magic) or E (extension), not 'Q'\n"
        "    :x:Q::a::/bin/true:?\n"
        "       ^"
    )
    assert (err.context["path"], err.context["line"]) == ("/etc/binfmt.d/x.conf", 2)
