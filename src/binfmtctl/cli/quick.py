"""A hot verb's plain forms, read from a table of its options without argparse.

Importing argparse and building a verb's parser costs about as much as
``binfmtctl install`` itself, and `install`, `uninstall`, `enable`,
`disable` and `status` run in scripts, provisioning loops and prompts. Their
plainest forms are read here: the verb, its positional words in one run, and
its options spelled exactly (``--opt VALUE``, ``--opt=VALUE``, a flag, a
repeatable option, an option with an optional value). Anything else -- help,
a prefix of an option, an unknown word, a value that is not one of the
choices, ``--``, a value that starts with ``-``, positional words on both
sides of an option, ``--persist WORD`` (its value or an ARCH?) -- returns
None, and argparse reads the words again with its own messages.

tests/test_quick_args.py checks that each verb's table names every option its
parser has, with the same kind, choices, const and default, and that what is
read here equals argparse's reading.
"""

from __future__ import annotations

from binfmtctl.namespaces import DEFAULT_MOUNTPOINT

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence

# How an option reads its words (argparse's action and nargs).
FLAG = "flag"  # action="store_true": no value
VALUE = "value"  # one value: --opt VALUE or --opt=VALUE
APPEND = "append"  # action="append": one value per use, kept in order
OPTIONAL = "optional"  # nargs="?": --opt=VALUE, or alone its const

#: The verb argparse runs when the words name none.
DEFAULT_VERB = "status"


class Option:
    """One option of a verb: how it reads its words and what it may hold."""

    __slots__ = ("choices", "const", "default", "kind")

    def __init__(
        self,
        kind: str,
        *,
        choices: Sequence[str] | None = None,
        const: str | None = None,
        default: object = None,
    ) -> None:
        self.kind = kind
        self.choices = None if choices is None else tuple(choices)
        self.const = const
        self.default = False if kind == FLAG else default


class Verb:
    """A verb's table: its name, where its positional words go, its options, its defaults."""

    __slots__ = ("defaults", "name", "options", "positional")

    def __init__(
        self,
        name: str,
        positional: str | None,
        options: Mapping[str, Option],
        defaults: Mapping[str, object],
    ) -> None:
        self.name = name
        self.positional = positional
        self.options = {**COMMON, **options}
        self.defaults = dict(defaults)  # the parser's set_defaults (handler, ...)


#: The options every verb accepts, before the verb and after it; what they hold
#: without them is what cli._dispatch fills in after argparse.
COMMON = {
    "--json": Option(FLAG),
    "--mountpoint": Option(VALUE, default=DEFAULT_MOUNTPOINT),
}


def dest(option: str) -> str:
    """The attribute an option sets, as argparse names it: --dry-run -> dry_run."""
    return option[2:].replace("-", "_")


def read(verb: Verb, words: Sequence[str]) -> argparse.Namespace | None:
    """``words`` (the whole command line) as argparse reads them, when plain; else None."""
    from types import SimpleNamespace  # start-up speed: tiny, and only here

    found: dict[str, object] = {"verb": verb.name}
    found.update((dest(name), option.default) for name, option in verb.options.items())
    found.update(verb.defaults)
    positionals: list[str] = []
    options: Mapping[str, Option] = COMMON  # before the verb: the main parser's own
    verb_seen = False
    run_over = False  # the positional words came, then an option: no more of them
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if not word.startswith("-"):
            if not verb_seen:
                if word != verb.name:
                    return None
                verb_seen, options = True, verb.options
            elif verb.positional is None or run_over:
                return None  # argparse: unrecognized arguments
            else:
                positionals.append(word)
            continue
        run_over = bool(positionals)
        name, eq, given = word.partition("=")
        value: str | None = given
        option = options.get(name)
        if option is None:
            return None
        if option.kind == FLAG:
            if eq:
                return None  # argparse: ignored explicit argument
            found[dest(name)] = True
            continue
        if not eq:
            following = words[i] if i < len(words) else None
            if option.kind == OPTIONAL:
                if following is not None and not following.startswith("-"):
                    return None  # its value or a positional word: argparse decides
                value = option.const
            elif following is None or following.startswith("-"):
                return None  # argparse: expected one argument
            else:
                value, i = following, i + 1
        if option.choices is not None and value not in option.choices:
            return None  # argparse: invalid choice
        if option.kind == APPEND:
            earlier = found[dest(name)]
            found[dest(name)] = [*(earlier if isinstance(earlier, list) else ()), value]
        else:
            found[dest(name)] = value
    if not verb_seen and verb.name != DEFAULT_VERB:
        return None
    if verb.positional is not None:
        found[verb.positional] = positionals
    return SimpleNamespace(**found)  # type: ignore[return-value]
