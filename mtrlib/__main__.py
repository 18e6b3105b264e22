"""`mtr VERB ...` / `python -m mtrlib VERB ...`: a small dispatcher over the modules in `mtrlib.cli`.

Each module registers its verbs with `register(subparsers)` and points each at a function
with `set_defaults(func=...)`; a module that does not exist yet is skipped, so verbs can be
added one file at a time. Files of any size are read (`--max-file-mb` caps them; the app's
uploads keep their 200 MB cap). Bad data is the user's problem to fix, not a crash: a DataError
is printed as its message (no traceback) and the exit status is 2. Flags are exact (no prefix
matching: `--user` is not `--users`); an unknown one is named with the nearest real flag
(mtrlib.cli.parser).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from mtrlib.cli.parser import Parser
from mtrlib.data.read.sources import file_cap
from mtrlib.errors import DataError, UserError

CLI_MODULES = ["data", "train", "runs", "experiments", "report", "tune", "industry"]


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `verb`, verbs other than it may register only their name and help (a
    verb whose flags come from the registries then costs nothing for `inspect` and friends)."""
    prog = "mtr" if Path(sys.argv[0]).name == "mtr" else "python -m mtrlib"  # the installed command, or the module
    parser = Parser(prog=prog, description="Multi-task recommender studio: data, training and runs.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in CLI_MODULES:
        modname = f"mtrlib.cli.{name}"
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name == modname:
                continue  # not written yet
            raise
        mod.register(sub, verb)
    return parser


def main(argv: list[str] | None = None) -> int:

    args_list = sys.argv[1:] if argv is None else list(argv)
    verb = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(verb)
    args = parser.parse_args(args_list)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2

    cap = getattr(args, "max_file_mb", None)
    try:
        if cap is not None and not cap > 0:
            raise DataError(f"--max-file-mb must be above 0 (got {cap:g}).", fix="e.g. --max-file-mb 500, or leave it out")
        with file_cap(cap if cap is not None else "none"):  # the command line reads any size unless capped
            rc = func(args)
    except UserError as e:
        rank = os.environ.get("RANK", "0") if os.environ.get("WORLD_SIZE", "1") not in ("", "1") else "0"
        if rank != "0" and getattr(e, "everywhere", False):
            return 2  # every process found it: rank 0 says it once (mtrlib.train.distributed)
        print(f"error: {'' if rank == '0' else f'[process {rank}] '}{e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
