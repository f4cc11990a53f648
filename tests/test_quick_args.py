"""The hot verbs' plain forms, read without argparse, read exactly as argparse reads them.

`install`, `uninstall`, `enable`, `disable` and `status` read their plain forms
from a table (:mod:`binfmtctl.cli.quick`); every other form goes to argparse.
Checked here: per verb, a table of forms read quickly (each equal to argparse's
Namespace, every attribute), a table of forms left to argparse, a property over
word lists drawn from each verb's words (the quick reading is None or
argparse's), that each table names every option its parser has with the same
kind, choices, const and default, and the real command in a private instance:
each plain form, run with argparse made unimportable, acts as the same words
spelled so that argparse reads them.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from binfmtctl import cli, persist, sandbox
from binfmtctl.cli import entries, install, quick, status
from binfmtctl.errors import UsageError
from conftest import qemu

QUICK_TABLES: dict[str, quick.Verb] = {**install.QUICK, **entries.QUICK, **status.QUICK}


def argparse_reading(argv: list[str]) -> dict[str, Any] | None:
    """What cli._dispatch gets from argparse for ``argv``; None for a usage error or help."""
    parser = cli.build_parser(argv)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            args = parser.parse_args(argv)
            if getattr(args, "verb", None) is None:
                args = parser.parse_args([*argv, "status"])
        except (UsageError, SystemExit):
            return None
    args.json = getattr(args, "json", False)
    args.mountpoint = getattr(args, "mountpoint", cli.DEFAULT_MOUNTPOINT)
    return vars(args)


def quick_reading(argv: list[str]) -> dict[str, Any] | None:
    """What cli._dispatch reads without argparse for ``argv`` (None: left to argparse)."""
    ours = argv[: argv.index("--")] if "--" in argv else argv
    verb = cli._verb_in(ours)
    if verb in cli.QUICK_VERBS:
        read = quick.read(QUICK_TABLES[verb], argv)
        return None if read is None else vars(read)
    return None


# -- forms read quickly ---------------------------------------------------------------

READ_QUICKLY = [
    # install
    ["install"], ["install", "arm64"], ["install", "arm64", "armhf", "riscv64"],
    ["install", "--dry-run", "arm64", "armhf"], ["install", "arm64", "armhf", "--dry-run"],
    ["install", "--flags", "F", "arm64"], ["install", "--flags=FP", "arm64"],
    ["install", "--flags=", "arm64"], ["install", "arm64", "--flags", "install"],
    ["install", "--interpreter-dir", "/a", "--interpreter-dir=/b", "arm64"],
    ["install", "--interpreter", "/usr/bin/qemu-aarch64-static", "--force-interpreter", "arm64"],
    ["install", "--profile", "seed", "arm64"], ["install", "--profile=qemu"],
    ["install", "--replace", "--force", "--test", "i386"],
    ["install", "arm64", "--persist"], ["install", "--persist", "--dry-run", "arm64"],
    ["install", "--persist=binfmt-support", "arm64"], ["install", "--persist=systemd"],
    ["install", "arm64", "--persist", "--root", "/srv/r", "--binfmt-d", "/etc/x"],
    ["install", "--root=/srv/r", "--persist", "--overwrite-foreign", "arm64"],
    ["install", "--persist", "--persist=binfmt-support", "arm64"],
    ["install", "--flags", "F", "--flags", "FP"], ["install", "install", "status"],
    ["install", "", "arm64"], ["install", "--root", "", "--persist"],
    ["--json", "install", "arm64"], ["install", "arm64", "--json"],
    ["--mountpoint", "/m", "install"], ["--mountpoint=/m", "install", "--mountpoint", "/n"],
    ["--mountpoint", "install", "install", "arm64"],
    # uninstall
    ["uninstall"], ["uninstall", "riscv64"], ["uninstall", "qemu-aarch64", "armhf"],
    ["uninstall", "--all"], ["uninstall", "--all", "--dry-run", "--json"],
    ["uninstall", "riscv64", "--persist"], ["uninstall", "--persist=binfmt-support", "arm64"],
    ["uninstall", "--all", "--persist", "--root", "/srv/r", "--overwrite-foreign"],
    ["--json", "uninstall", "--mountpoint=/m", "arm64"],
    # enable, disable
    ["enable"], ["enable", "qemu-riscv64"], ["enable", "qemu-riscv64", "arm64"],
    ["enable", "--instance"], ["disable", "--instance", "--json"], ["disable", "riscv64"],
    ["disable", "--json", "a", "b"], ["--mountpoint", "/m", "disable", "x", "--json"],
    ["enable", "--instance", "qemu-arm"],  # the handler refuses it: argparse reads it
    # status
    [], ["status"], ["--json"], ["status", "--boot", "--root", "/srv/r"],
    ["--mountpoint=/m", "status", "--json"],
]  # fmt: skip


@pytest.mark.parametrize("argv", READ_QUICKLY)
def test_plain_forms_are_read_as_argparse_reads_them(argv: list[str]) -> None:
    expected = argparse_reading(argv)
    assert expected is not None, "a plain form must be one argparse accepts"
    assert quick_reading(argv) == expected


def test_a_quick_reading_holds_each_attribute() -> None:
    """One reading spelled out, so that the tables' defaults are seen, not only compared."""
    read = quick_reading(["install", "arm64", "--persist", "--interpreter-dir", "/d"])
    assert read == {
        "verb": "install", "arches": ["arm64"], "flags": "auto", "interpreter_dir": ["/d"],
        "interpreter": None, "force_interpreter": False, "profile": "qemu", "replace": False,
        "force": False, "dry_run": False, "test": False, "persist": "systemd", "binfmt_d": None,
        "root": None, "overwrite_foreign": False, "json": False,
        "mountpoint": "/proc/sys/fs/binfmt_misc", "handler": install.handle_install,
    }  # fmt: skip


# -- forms left to argparse -----------------------------------------------------------

LEFT_TO_ARGPARSE = [
    # help, prefixes, unknown words, explicit values on flags
    ["install", "-h"], ["install", "--help"], ["-h", "install"], ["install", "--dry"],
    ["install", "--dry-ru"], ["install", "--fla", "F"], ["install", "--mount", "/m"],
    ["install", "--persis"], ["install", "--interpreter-d", "/d"], ["install", "-x"],
    ["install", "-"], ["install", "-1"], ["install", "--dry-run=yes"], ["install", "--all"],
    ["install", "--version"], ["enable", "--inst"], ["uninstall", "--al"],
    ["--dry-run", "install"], ["--persist", "install"], ["--boot", "status"],
    ["--root", "/srv/r"], ["--json=1", "install"],
    # missing values, values that look like options, choices
    ["install", "--flags"], ["install", "--flags", "--dry-run"], ["install", "--flags", "-F"],
    ["install", "--profile", "loose"], ["install", "--profile="],
    ["install", "--persist=bogus"], ["install", "--persist="], ["install", "--interpreter-dir"],
    ["--mountpoint"], ["install", "--mountpoint"], ["install", "--root", "--persist"],
    # --persist WORD: its value or an ARCH; argparse decides (and says which)
    ["install", "--persist", "arm64"], ["install", "--persist", "systemd", "arm64"],
    ["uninstall", "--persist", "riscv64"],
    # positional words on both sides of an option; words after --
    ["install", "arm64", "--dry-run", "armhf"], ["uninstall", "a", "--all", "b"],
    ["install", "--", "arm64"], ["install", "arm64", "--"], ["disable", "--", "--instance"],
    # other verbs, strays
    ["frobnicate"], ["status", "extra"], ["install2"], ["test", "arm64"], ["run", "true"],
]  # fmt: skip


@pytest.mark.parametrize("argv", LEFT_TO_ARGPARSE)
def test_other_forms_are_left_to_argparse(argv: list[str]) -> None:
    assert quick_reading(argv) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["install", "--persist", "arm64"], "argument --persist: invalid choice: 'arm64'"),
        (["install", "arm64", "--dry-run", "armhf"], "unrecognized arguments: armhf"),
        (["install", "--profile", "loose"], "argument --profile: invalid choice: 'loose'"),
        (["install", "--flags"], "argument --flags: expected one argument"),
        (["install", "--dry-run=yes"], "argument --dry-run: ignored explicit argument 'yes'"),
        (["--boot", "status"], "unrecognized arguments: --boot"),
    ],
)
def test_argparse_still_says_what_is_wrong(argv: list[str], message: str) -> None:
    """What the quick reader leaves alone gets argparse's own words, exit code 2."""
    done = subprocess.run(
        [sys.executable, "-m", "binfmtctl", *argv, "--mountpoint", "/nonexistent"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert message in done.stderr


# -- every word list: the quick reading is argparse's, or there is none ----------------


def _vocabulary(verb: str) -> list[str]:
    """The words a command line of ``verb`` is made of, right (most) and wrong."""
    table = QUICK_TABLES.get(verb)
    options = list(table.options) if table else ["--json", "--mountpoint", "--boot", "--root"]
    words = [verb, "status", "install", "enable", "--", "-", "-h", "--help", ""]
    for name in options:
        words += [name] * 3 + [name[:-2], f"{name}=", f"{name}=x"]
        option = table.options[name] if table else None
        for value in (option.choices or ()) if option else ():
            words += [value, f"{name}={value}", f"{name}={value}"]
    words += ["F", "FP", "/srv/r", "loose", "-1", "--x", "=", "a=b"]
    return words + ["arm64", "armhf", "qemu-riscv64", "s390x"] * 4


def _command_lines(verb: str) -> st.SearchStrategy[list[str]]:
    """Word lists of ``verb``: mostly the verb first, as people type it."""
    first = st.sampled_from([[verb], [verb], [verb], []])
    rest = st.lists(st.sampled_from(_vocabulary(verb)), max_size=7)
    return st.tuples(first, rest).map(lambda parts: parts[0] + parts[1])


@settings(deadline=None, max_examples=500)
@given(st.sampled_from([*QUICK_TABLES, "status"]).flatmap(_command_lines))
def test_quick_reading_is_argparse_reading_or_none(argv: list[str]) -> None:
    read = quick_reading(argv)
    if read is not None:
        assert read == argparse_reading(argv)


def test_the_property_sees_quick_readings() -> None:
    """The word lists above are not all left to argparse: the property compares readings."""
    table = QUICK_TABLES["install"]
    argv = ["install", *[name for name, o in table.options.items() if o.kind == quick.FLAG]]
    assert quick_reading(argv) == argparse_reading(argv) is not None


# -- each table names every option its parser has ---------------------------------------


def _subparser(verb: str) -> Any:
    parser = cli.build_parser([verb])
    sub = next(a for a in parser._actions if a.dest == "verb")
    return sub.choices[verb]  # type: ignore[index]


def _kind(action: Any) -> str:
    if type(action).__name__ == "_AppendAction":
        return quick.APPEND
    if action.nargs == 0:
        assert type(action).__name__ == "_StoreTrueAction", action
        return quick.FLAG
    if action.nargs == "?":
        return quick.OPTIONAL
    assert action.nargs is None, action
    return quick.VALUE


@pytest.mark.parametrize("verb", list(QUICK_TABLES))
def test_each_table_knows_every_option_of_its_parser(verb: str) -> None:
    """An option added to a hot verb's parser and not to its table fails here."""
    import argparse

    parser = _subparser(verb)
    table = QUICK_TABLES[verb]
    seen = set()
    for action in parser._actions:
        if not action.option_strings:
            assert (action.dest, action.nargs) == (table.positional, "*")
            continue
        if action.dest == "help":
            continue
        (name,) = action.option_strings
        seen.add(name)
        option = table.options[name]
        default = action.default
        if default is argparse.SUPPRESS:  # --json, --mountpoint: cli._dispatch's defaults
            default = {"json": False, "mountpoint": cli.DEFAULT_MOUNTPOINT}[action.dest]
        assert (quick.dest(name), option.kind, option.choices, option.const, option.default) == (
            action.dest,
            _kind(action),
            None if action.choices is None else tuple(action.choices),
            None if option.kind == quick.FLAG else action.const,
            default,
        ), name
    assert seen == set(table.options)
    assert parser._defaults == table.defaults
    if verb != "status":
        assert table.positional is not None


def test_the_tables_spell_what_the_core_defines() -> None:
    assert install.PERSIST_KINDS == persist.STORES
    assert quick.COMMON["--mountpoint"].default == cli.DEFAULT_MOUNTPOINT


# -- the real command: a plain form acts as the same words read by argparse -------------

# A child that makes argparse unimportable, then runs the real CLI: a plain form
# must need no argparse at all.
NO_ARGPARSE = """\
import sys
sys.modules["argparse"] = None  # import raises ImportError
from binfmtctl.cli import main
sys.exit(main(sys.argv[1:]))
"""

# Each step's words and exit code; the twin adds an abbreviated option (argparse
# reads it, the quick reader leaves it alone) that names the same instance.
STEPS = [
    (("install", "arm64", "riscv64", "--flags", "F"), 0),
    (("install", "arm64", "--dry-run"), 0),  # kept: already registered
    (("install", "--profile=seed", "--replace", "riscv64"), 0),
    (("install", "i386"), 1),  # refused: this host runs it natively
    (("install", "nonsense"), 2),  # no such arch
    (("disable", "qemu-riscv64"), 0),
    (("status",), 0),
    (("enable", "riscv64", "--json"), 0),
    (("enable",), 2),  # the handler's usage error
    (("disable", "--instance"), 0),
    (("enable", "--instance"), 0),
    (("uninstall", "riscv64", "nonsense"), 0),
    (("uninstall", "--all", "--dry-run"), 0),
    (("uninstall", "--all"), 0),
    (("uninstall", "riscv64"), 0),  # not registered
]


def _quick_run(box: sandbox.Sandbox, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", NO_ARGPARSE, *args]
    return box.run(subprocess.run, argv, capture_output=True, text=True, check=False)


def _argparse_run(box: sandbox.Sandbox, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    from conftest import cli as run_cli

    return run_cli(box, *args, "--mountp", cli.DEFAULT_MOUNTPOINT)


def test_plain_forms_act_as_argparse_read_ones(sb: sandbox.Sandbox) -> None:
    qemu("qemu-aarch64")
    qemu("qemu-riscv64")
    with sandbox.Sandbox() as twin:
        for args, code in STEPS:
            assert quick_reading(list(args)) is not None, args
            assert quick_reading([*args, "--mountp", cli.DEFAULT_MOUNTPOINT]) is None
            fast, slow = _quick_run(sb, args), _argparse_run(twin, args)
            assert "Traceback" not in fast.stderr + slow.stderr, args
            assert (args, fast.returncode) == (args, code), fast.stderr
            got = (args, fast.returncode, fast.stdout, fast.stderr)
            assert got == (args, slow.returncode, slow.stdout, slow.stderr)
        assert sorted(sb.run(os.listdir, cli.DEFAULT_MOUNTPOINT)) == ["register", "status"]


def test_the_twin_needs_argparse(sb: sandbox.Sandbox) -> None:
    """The comparison above is between two readings: the twin's words need argparse."""
    done = _quick_run(sb, ("status", "--mountp", cli.DEFAULT_MOUNTPOINT))
    assert done.returncode != 0
    assert "ModuleNotFoundError" in done.stderr or "ImportError" in done.stderr
