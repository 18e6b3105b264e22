"""The flags of a run's settings, shared by `train`, `sweep` and friends, derived from the config tree.

Every setting whose `knob(...)` declares a `flag` (mtrlib.config.SETTINGS: core fields and every
plugin's options) becomes one flag, with its type, choices and help; `build_config` reads them
back onto a TrainConfig by dotted path. Only flags that are not settings are written here by
hand: the data files (`--data`, `--items`, `--users`: a table with --data, else the world's
size; `--train-file` / `--val-file` / `--test-file`), the column mapping (`--mapping`, `--user-col`,
`--feature COL=KIND`, ...: mtrlib.cli.data), tasks and task weights, repeats, and the output flags. Importing this module imports
the registries (torch): verbs import it only when they are asked for.
"""
from __future__ import annotations

import sys
import typing
from pathlib import Path

from mtrlib.config import (CORE_SETTINGS, PLUGIN_OWNERS, PLUGIN_SETTINGS, PLUGINS, TrainConfig,
                           chosen_plugin, plugin_place, section, set_value)
from mtrlib.cli.data import add_mapping_arguments, add_max_file_mb, add_part_files, mapping_from_args, mapping_given, \
    part_files
from mtrlib.data.tasks import parse_task_values
from mtrlib.errors import ConfigError, DataError
from mtrlib.track.flags import add_mlflow_argument

GROUPS = {"data": "data", "world": "data", "model": "model",
          "history": "user history (the user's last L interactions as a feature)",
          "weighting": "training", "training": "training"}
# the fields that choose a plugin are set before any plugin knob (a knob belongs to the chosen one)
_CHOOSERS = tuple(choice for _, choice in PLUGINS.values())


def dest(path: str) -> str:
    """argparse's attribute for a setting's flag (the dotted path, kept apart from hand-written flags)."""
    return "setting:" + path


def add_repeat_arguments(p) -> None:
    """--seeds / --repeat: the same setup with several model and split seeds, as one experiment."""
    r = p.add_argument_group("repeats")
    r.add_argument("--seeds", metavar="S1,S2,...|N", help="seeds to repeat the setup with, e.g. 1,2,3; or a "
                                                         "number N of seeds from --seed: one experiment, its "
                                                         "runs grouped, mean and 95%% CI in the last line")
    r.add_argument("--repeat", type=int, metavar="N", help="the same as --seeds N")


def _show(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def _help(kf) -> str:
    """A core setting's help; a plugin knob's help names the classes that declare it."""
    owners = PLUGIN_OWNERS.get(kf.name)
    if not owners:
        return (kf.knob.help or kf.knob.label).replace("%", "%%")
    by_help: dict[str, list[str]] = {}
    name = kf.name.rsplit(".", 1)[1]
    for cls in owners:
        own = cls.Options.__dataclass_fields__[name].metadata.get("knob")
        by_help.setdefault((own.help or own.label) if own else name, []).append(cls.label)
    text = "; ".join(f"{h} ({', '.join(who)})" for h, who in by_help.items()) + f"; default {_show(kf.default())}"
    return text.replace("%", "%%")


def add_setting_flag(group, kf) -> None:
    """One flag for a setting, typed by its field: a value, layer sizes, or an on/off switch."""
    k = kf.knob
    kw = dict(dest=dest(kf.name), help=_help(kf))
    if k.flag_sets is not None:
        kw["help"] = ("turn on: " if k.flag_sets else "turn off: ") + kw["help"]
        group.add_argument(k.flag, action="store_const", const=k.flag_sets, default=None, **kw)
        return
    if k.choices is not None:
        kw["choices"] = list(k.choices)
    t = kf.base_type
    if type(None) in typing.get_args(kf.type):
        t = str
    if t is list:
        if kf.name in PLUGIN_OWNERS:
            kw["help"] += ", e.g. 64,32"
        group.add_argument(k.flag, metavar=k.metavar or "SIZES", **kw)
    else:
        t = t if t in (int, float, str) else str
        metavar = None if k.choices is not None else (k.metavar or {int: "N", float: "X"}.get(t, "NAME"))
        group.add_argument(k.flag, type=t, metavar=metavar, **kw)


def add_train_arguments(p) -> None:
    """Every flag of `train` (also used by verbs that take train's settings)."""
    groups = {title: p.add_argument_group(title) for title in dict.fromkeys(GROUPS.values())}
    g = groups["data"]
    g.add_argument("--data", help="interactions file or folder (MovieLens, or one written by `world`); "
                                  "omit for the built-in synthetic world")
    g.add_argument("--items", help="items table (with --data); else the world's number of items")
    g.add_argument("--users", help="users table (with --data); else the world's number of users")
    add_part_files(g)
    add_max_file_mb(g)
    add_mapping_arguments(p.add_argument_group("columns (with --data; default: guessed; flags override --mapping)"))
    g.add_argument("--task", action="append", metavar="SPEC",
                   help="a task, repeatable: NAME=COL, NAME=COL>=X, NAME=COL:reg, NAME=implicit, ...|OTHER "
                        "(default: the data's suggested tasks)")
    for kf in CORE_SETTINGS + PLUGIN_SETTINGS:
        if kf.knob.flag:
            add_setting_flag(groups[GROUPS[section(kf.name)]], kf)
    groups["training"].add_argument("--weights", metavar="T=W,...",
                                    help="fixed task weights, e.g. watched=1,liked=2")
    add_repeat_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--config", metavar="FILE", help="TrainConfig JSON; flags override its settings")
    o.add_argument("--save-config", metavar="FILE", help="write the resolved config to FILE and exit without training")
    o.add_argument("--out", metavar="RUN_DIR", help="folder for this run (default: a new folder in the run store)")
    o.add_argument("--store", metavar="DIR", help="run store folder (default $MTR_RUN_STORE or data/runs)")
    o.add_argument("--name", help="a name for the run (default: model + settings + time)")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    add_mlflow_argument(o)


# -- parsing helpers ------------------------------------------------------------------------------------

def parse_sizes(text: str, flag: str) -> list[int]:
    text = str(text).strip().strip("[]")
    if not text:
        return []
    sizes = [_int_or_none(s) for s in text.split(",") if s.strip()]
    if any(s is None for s in sizes):
        raise ConfigError(f"{flag} takes whole numbers separated by commas (got '{text}').", fix=f"e.g. {flag} 64,32")
    return sizes


def _int_or_none(text):
    try:
        f = float(text)
    except (TypeError, ValueError):
        return None
    return int(f) if f.is_integer() else None


def _read_config(path: str) -> TrainConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"Cannot read the config file {path}: {e.strerror or e}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"The config file {path} is not UTF-8 text.", fix="give a JSON config file") from None
    try:
        return TrainConfig.from_json(text)
    except TypeError as e:
        raise ConfigError(f"The config file {path} has a setting of the wrong kind ({e}).") from None


def _data_files(args, cfg) -> None:
    """--data / --items / --users: files with --data, else the world's size (whole numbers);
    --train-file / --val-file / --test-file: a given split by files; the column flags: the mapping."""
    d, w = cfg.data, cfg.data.world
    parts = part_files(args)
    if parts is not None and args.data:
        raise DataError(f"Give either --data {args.data} or --train-file / --val-file / --test-file, not both.",
                        fix="drop one of them")
    if args.data or parts is not None:
        d.source = "files"
        d.files = dict(parts) if parts is not None else {"interactions": args.data}
        if args.items:
            d.files["items"] = args.items
        if args.users:
            d.files["users"] = args.users
    chosen = getattr(args, dest("data.split"), None)
    if (parts is not None or args.split_col) and chosen is None:
        d.split = "given"  # three files or a split column: their own split, unless another was asked for
    if mapping_given(args):
        if d.source != "files":
            raise ConfigError("The column flags (--mapping, --user-col, --feature, ...) describe a data file, and "
                              "none was given.", fix="add --data FILE (or --train-file / --val-file / --test-file)")
        d.mapping = mapping_from_args(args, base=d.mapping)
    if args.data or parts is not None:
        return
    for flag, val in (("--users", args.users), ("--items", args.items)):
        if val is not None and _int_or_none(val) is None:
            raise DataError(f"{flag} {val}: a table file needs --data (the interactions file) too; "
                            f"without --data, {flag} is the synthetic world's size (a whole number).",
                            fix="add --data FILE, or give a number")
    if args.users is not None:
        w.n_users = _int_or_none(args.users)
    if args.items is not None:
        w.n_items = _int_or_none(args.items)
        if getattr(args, dest("data.world.impressions_per_user"), None) is None and w.impressions_per_user > w.n_items:
            w.impressions_per_user = w.n_items


def build_config(args):
    """--config FILE (if any), then every flag that was given overrides it (by dotted path)."""
    cfg = _read_config(args.config) if args.config else TrainConfig()
    _data_files(args, cfg)
    given = [(kf, getattr(args, dest(kf.name), None)) for kf in CORE_SETTINGS + PLUGIN_SETTINGS if kf.knob.flag]
    given = sorted([(kf, v) for kf, v in given if v is not None], key=lambda kv: kv[0].name not in _CHOOSERS)
    for kf, val in given:
        if kf.name == "model.history" and val < 1:
            raise ConfigError(f"--history {val}: a history needs at least 1 past interaction.",
                              fix="e.g. --history 50, or leave --history out to train without a history")
        if kf.base_type is list:
            val = parse_sizes(val, kf.knob.flag)
        if not set_value(cfg, kf.name, val):
            place = plugin_place(kf.name)
            chosen = chosen_plugin(cfg, place)
            owners = ", ".join(c.label for c in PLUGIN_OWNERS[kf.name])
            print(f"warning: {kf.knob.flag} has no effect: {getattr(chosen, 'label', 'the chosen one')} does not "
                  f"have it ({owners} {'has' if len(PLUGIN_OWNERS[kf.name]) == 1 else 'have'} it).", file=sys.stderr)
    if args.task:
        cfg.data.tasks = list(args.task)
    if args.name is not None:
        cfg.name = args.name
    if args.weights is not None:
        cfg.weights = parse_task_values(args.weights, "task weight")
    return cfg


__all__ = ["add_train_arguments", "add_setting_flag", "add_max_file_mb", "add_repeat_arguments", "build_config",
           "parse_sizes", "dest", "GROUPS"]
