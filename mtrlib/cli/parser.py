"""The CLI's argument parser: exact flags only, and a mistyped flag named with the nearest real one.

argparse reads a prefix of a flag as the flag (`--user` as `--users`) unless `allow_abbrev` is
off: a typo then silently sets another setting. `Parser` turns it off for the top parser and
every verb's (subparsers are made of the parent's class), and its errors name the nearest flags
("unknown flag --user; did you mean --user-col?") or the nearest choice. Python 3.11 has no
`suggest_on_error`, so the suggestion is difflib's plus a word-prefix match.
"""
from __future__ import annotations

import argparse
import difflib
import re


class Parser(argparse.ArgumentParser):
    """An ArgumentParser without prefix matching whose errors suggest the nearest flag or choice."""

    def __init__(self, *args, **kwargs):
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            (verb_parser(self, ns) or self).error(unknown_message(extras, verb_parser(self, ns) or self))
        return ns

    def error(self, message):
        """The problem and where help is, without the long usage block (`--help` prints it)."""
        message = suggest_choice(message)
        if "--help)" not in message:
            message += f" (see: {self.prog} --help)"
        self.exit(2, f"{self.prog}: error: {message}\n")


def verb_parser(parser: argparse.ArgumentParser, ns) -> argparse.ArgumentParser | None:
    """The chosen verb's parser (the subparser `ns.command` names), if any."""
    for action in parser._actions:  # argparse has no public way to reach its subparsers
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(getattr(ns, action.dest, None) or "")
    return None


def flags_of(parser: argparse.ArgumentParser) -> list[str]:
    return [s for a in parser._actions for s in a.option_strings if s.startswith("--")]


def nearest_flags(typed: str, flags: list[str], n: int = 3) -> list[str]:
    """The flags a person most likely meant: ones extending the typed word (--user -> --user-col),
    then ones it is a prefix of (--users), then difflib's closest."""
    words = sorted((f for f in flags if f.startswith(typed + "-")), key=len)
    longer = sorted((f for f in flags if f.startswith(typed) and f != typed), key=len)
    close = difflib.get_close_matches(typed, flags, n=n, cutoff=0.6)
    return list(dict.fromkeys(words + longer + close))[:n]


def _is_flag(token: str) -> bool:
    return token.startswith("-") and not re.fullmatch(r"-\d+(\.\d*)?([eE][-+]?\d+)?", token)


def unknown_message(extras: list[str], parser: argparse.ArgumentParser) -> str:
    """'unknown flag --user; did you mean --user-col? (or --user-feature, --users)' for each unknown flag."""
    flags = flags_of(parser)
    parts = []
    for token in (t for t in extras if _is_flag(t)):
        typed = token.split("=", 1)[0]
        near = nearest_flags(typed, flags)
        text = f"unknown flag {typed}"
        if near:
            text += f"; did you mean {near[0]}?" + (f" (or {', '.join(near[1:])})" if len(near) > 1 else "")
        parts.append(text)
    if not parts:
        parts.append("unexpected argument(s): " + " ".join(extras))
    return "; ".join(parts) + f" (see: {parser.prog} --help)"


def suggest_choice(message: str) -> str:
    """argparse's 'invalid choice' message, with the nearest choice named."""
    m = re.search(r"invalid choice: '(.*?)' \(choose from (.*)\)", message)
    if not m:
        return message
    choices = re.findall(r"'([^']*)'", m.group(2))
    near = difflib.get_close_matches(m.group(1), choices, n=1, cutoff=0.6)
    return message + (f"; did you mean '{near[0]}'?" if near else "")


__all__ = ["Parser", "verb_parser", "flags_of", "nearest_flags", "unknown_message", "suggest_choice"]
