"""Data verbs: `world` writes the built-in synthetic world as CSV files; `inspect` reads any
file the app would accept and prints what it found, so a problem shows up before training."""
from __future__ import annotations

import json
from pathlib import Path

from mtrlib.data.dataset import CONTEXT_KINDS, FEATURE_KINDS
from mtrlib.errors import DataError
from mtrlib.data.world import LIKE_OBSERVED


def register(subparsers, verb: str | None = None) -> None:
    p = subparsers.add_parser("world", help="write the synthetic world as interactions.csv, items.csv, users.csv",
                              description="Write the built-in synthetic world (known ground truth) as three CSV files.")
    p.add_argument("--out", required=True, help="folder to write into (created if missing)")
    p.add_argument("--users", type=int, default=1500, help="number of users (default 1500)")
    p.add_argument("--items", type=int, default=400, help="number of items (default 400)")
    p.add_argument("--genres", type=int, default=8, help="number of genres (default 8)")
    p.add_argument("--correlation", type=float, default=0.5,
                   help="how much the like-preference agrees with the click-preference, -1..1 (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--impressions", type=int, default=None,
                   help="impressions per user (default 40, or the number of items if fewer)")
    p.add_argument("--like-observed", choices=LIKE_OBSERVED, default="all",
                   help="all: a like is asked on every impression (the correlation lesson, default); "
                        "clicks: only after a click (the click -> like funnel, the ESMM lesson)")
    p.add_argument("--moods", type=int, default=6,
                   help="moods (sub-topics) named in the item text and shaping the items' latent vectors, "
                        "0-8 (default 6; 0: the text repeats the genre only)")
    p.add_argument("--zipf", type=float, default=1.0, help="popularity skew of the exposure (default 1.0)")
    p.add_argument("--context", action="store_true",
                   help="log each impression's slot (1-10, examined with probability 1/slot) and device")
    p.set_defaults(func=cmd_world)

    p = subparsers.add_parser("inspect", help="read a data file and report what was found",
                              description="Read interactions (+ item and user tables) and print a short report. "
                                          "Exit status 2 when the data cannot be used, with the reason.")
    p.add_argument("file", nargs="?", help="interactions file, or a folder (MovieLens, one written by `world`, or "
                                          "train / val / test files); or give --train-file ...")
    p.add_argument("--items", action="append", default=None, help="items table (may be given more than once)")
    p.add_argument("--users", default=None, help="users table")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--mapping-out", metavar="FILE",
                   help="write the column mapping loading used (JSON) to FILE: edit it, then give it to "
                        "inspect / train --mapping")
    add_max_file_mb(p)
    add_mapping_arguments(p.add_argument_group("columns (default: guessed; flags override --mapping)"),
                          old_names=True)
    add_part_files(p)
    p.set_defaults(func=cmd_inspect)


def add_max_file_mb(group) -> None:
    """--max-file-mb: the command line reads files of any size unless capped (the app's uploads keep 200 MB)."""
    group.add_argument("--max-file-mb", type=float, metavar="MB",
                       help="refuse a data file bigger than MB megabytes (default: no limit on the command line; "
                            "MTR_MAX_FILE_MB also sets it)")


def add_mapping_arguments(g, old_names: bool = False) -> None:
    """The column mapping: a JSON file (--mapping) and per-column flags that override it. `old_names`:
    inspect's --user / --item / --timestamp stay accepted (exactly) as --user-col / --item-col / --time-col."""
    g.add_argument("--mapping", metavar="FILE", help="the column mapping as JSON (what inspect --mapping-out writes)")
    for flag, old, what in (("--user-col", "--user", "the user id"), ("--item-col", "--item", "the item id"),
                            ("--time-col", "--timestamp", "the time")):
        g.add_argument(flag, *((old,) if old_names else ()), dest=flag[2:].replace("-", "_"), metavar="COL",
                       help=f"column holding {what}")
    kinds = ", ".join(CONTEXT_KINDS)
    g.add_argument("--feature", action="append", metavar="COL=KIND",
                   help=f"a context feature: a column describing the impression (device, hour); KIND: {kinds}; "
                        "repeatable")
    for what in ("item", "user"):
        g.add_argument(f"--{what}-feature", action="append", metavar="COL=KIND",
                       help=f"{'an' if what == 'item' else 'a'} {what} attribute (one value per {what}); "
                            f"KIND: {', '.join(FEATURE_KINDS)}; repeatable")
    g.add_argument("--position-col", metavar="COL",
                   help="the context column holding the slot an item was shown in (a categorical context feature "
                        "unless --feature gives it another kind)")
    g.add_argument("--label", action="append", metavar="COL", help="a label column (tasks read it); repeatable")
    g.add_argument("--ignore", action="append", metavar="COL", help="a column not to use at all; repeatable")
    g.add_argument("--split-col", metavar="COL",
                   help="the column naming each row's part (train / val / test, or 0 / 1 / 2): a given split")


def add_part_files(g) -> None:
    """--train-file / --val-file / --test-file: a given split as three files of one layout."""
    for part, what in (("train", "training"), ("val", "validation"), ("test", "test")):
        g.add_argument(f"--{part}-file", metavar="FILE",
                       help=f"the {what} rows (with the other two: a given split by files, of one layout)")


def part_files(args) -> dict | None:
    """{"train", "val", "test" -> path} from --train-file / --val-file / --test-file, or None."""
    parts = {p: getattr(args, f"{p}_file", None) for p in ("train", "val", "test")}
    parts = {p: f for p, f in parts.items() if f}
    if not parts:
        return None
    missing = [f"--{p}-file" for p in ("train", "val", "test") if p not in parts]
    if missing:
        raise DataError(f"A split given by files needs all three files; {' and '.join(missing)} "
                        f"{'is' if len(missing) == 1 else 'are'} missing.",
                        fix="give --train-file, --val-file and --test-file, or one file with --split-col, "
                            "or a single --data file with a random split")
    return parts


def read_mapping(path: str) -> dict:
    """A column mapping JSON file (an object), or a DataError saying what is wrong with it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"Cannot read the mapping file {path}: {getattr(e, 'strerror', None) or e}.",
                        fix="give the JSON file that `inspect --mapping-out` wrote") from None
    try:
        m = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"The mapping file {path} is not valid JSON ({e.msg} at line {e.lineno}).",
                        fix="check the file, or write it again with `inspect FILE --mapping-out FILE`") from None
    if not isinstance(m, dict):
        raise DataError(f"The mapping file {path} must hold one JSON object.",
                        fix='e.g. {"user": "customer", "item": "sku"}')
    return m


def _col_kind(text: str, flag: str, kinds) -> tuple[str, str]:
    col, eq, kind = str(text).rpartition("=")
    if not eq or not col or kind not in kinds:
        raise DataError(f"{flag} {text}: give COL=KIND with KIND one of {', '.join(kinds)}.",
                        fix=f"e.g. {flag} {col or text}={kinds[0]}")
    return col, kind


def _give_role(m: dict, col: str) -> None:
    """Take `col` out of every role it has, so that a flag gives it its new one (flags override the file)."""
    for key in ("user", "item", "timestamp", "split", "position"):
        if m.get(key) == col:
            m[key] = None
    if isinstance(m.get("labels"), list):
        m["labels"] = [c for c in m["labels"] if c != col]
    for key in ("item_features", "user_features", "context_features", "ignore", "reasons"):
        v = m.get(key)
        if isinstance(v, dict):
            v.pop(col, None)
        elif isinstance(v, list):
            m[key] = [c for c in v if c != col]


def mapping_from_args(args, base: dict | None = None) -> dict:
    """The column mapping: `base` (a config's), replaced by --mapping FILE, then each flag (which
    moves its column to the role it names)."""
    m = dict(base or {})
    if getattr(args, "mapping", None):
        m = read_mapping(args.mapping)
    m = {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in m.items()}
    for key, col in (("user", args.user_col), ("item", args.item_col), ("timestamp", args.time_col),
                     ("split", args.split_col)):
        if col:
            _give_role(m, col)
            m[key] = col
    for flag, key, kinds in (("--feature", "context_features", CONTEXT_KINDS),
                             ("--item-feature", "item_features", FEATURE_KINDS),
                             ("--user-feature", "user_features", FEATURE_KINDS)):
        for text in getattr(args, flag[2:].replace("-", "_")) or []:
            col, kind = _col_kind(text, flag, kinds)
            slot = m.get("position")
            _give_role(m, col)
            m.setdefault(key, {})[col] = kind
            if key == "context_features" and slot == col:
                m["position"] = slot  # a new kind for the position column keeps it the position
    if args.position_col:
        if args.position_col not in (m.get("context_features") or {}):
            _give_role(m, args.position_col)
            m.setdefault("context_features", {})[args.position_col] = "categorical"
        m["position"] = args.position_col
    for col in args.label or []:
        _give_role(m, col)
        m.setdefault("labels", []).append(col)
    for col in args.ignore or []:
        _give_role(m, col)
        ign = m.setdefault("ignore", {})
        if isinstance(ign, dict):
            ign[col] = "ignored by you (--ignore)"
        else:
            ign.append(col)
    return {k: v for k, v in m.items() if not (k == "reasons" or (v is None and k != "timestamp"))}


def mapping_given(args) -> bool:
    """Whether any column flag or --mapping was given."""
    return any(getattr(args, a, None) for a in ("mapping", "user_col", "item_col", "time_col", "split_col", "feature",
                                                   "item_feature", "user_feature", "label", "ignore", "position"))


def cmd_world(args) -> int:
    """No size limit here (the app keeps one): a world of MovieLens-25M's shape, 162k users x
    154 impressions over 59k items, builds in about a minute and a few GB (README)."""
    from mtrlib.data.world import make_world  # deferred: heavy, this verb only

    impressions = args.impressions if args.impressions is not None else min(40, args.items)
    ds = make_world(n_users=args.users, n_items=args.items, n_genres=args.genres, correlation=args.correlation,
                    seed=args.seed, impressions_per_user=impressions, like_observed=args.like_observed,
                    moods=args.moods, zipf=args.zipf, max_impressions=None, context=args.context)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_csv(ds.interactions, out / "interactions.csv")
        ds.items.to_csv(out / "items.csv", index=True, index_label="item_id")
        ds.users.to_csv(out / "users.csv", index=True, index_label="user_id")
    except OSError as e:
        raise DataError(f"Could not write into {out}: {e.strerror or e}.",
                        fix="choose a folder you can write to, with free space") from None
    print(f"Wrote {out / 'interactions.csv'} ({ds.n_interactions:,} rows), {out / 'items.csv'} "
          f"({ds.n_items:,} items), {out / 'users.csv'} ({ds.n_users:,} users).")
    print(f"Task correlation rho = {args.correlation:g}, seed {args.seed}, likes observed on "
          f"{'every impression' if args.like_observed == 'all' else 'clicks only'}. "
          f"Suggested tasks: {' '.join('--task ' + t for t in ds.suggested_tasks)}")
    return 0


def write_csv(df, path: Path) -> None:
    """A big frame as CSV through pyarrow's multi-threaded writer (several times pandas' speed);
    missing values are written as empty fields, as pandas writes them."""
    import pyarrow as pa  # deferred: optional, heavy
    import pyarrow.csv as pacsv  # deferred: optional, heavy

    pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), str(path))


def cmd_inspect(args) -> int:
    from mtrlib.data.read import load  # deferred: heavy, this verb only

    parts = part_files(args)
    if parts is not None and args.file:
        raise DataError(f"Give either the data ({args.file}) or --train-file / --val-file / --test-file, not both.",
                        fix="drop one of them")
    if parts is None and not args.file:
        raise DataError("No data was given.", fix="give a FILE or folder, or --train-file / --val-file / --test-file")
    mapping = mapping_from_args(args) if mapping_given(args) else None
    ds = load(parts or args.file, items=args.items, users=args.users, mapping=mapping)
    if args.mapping_out:
        write_mapping(ds.mapping, args.mapping_out)
    rep = ds.report()
    rep["mapping"] = ds.mapping
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
        return 0
    print(format_report(rep))
    for line in roles_report(ds):
        print(line)
    if args.mapping_out:
        print(f"Mapping written to {args.mapping_out} (edit it, then: --mapping {args.mapping_out})")
    return 0


def write_mapping(mapping: dict, path: str) -> None:
    try:
        Path(path).write_text(json.dumps(mapping, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as e:
        raise DataError(f"Cannot write the mapping to {path}: {e.strerror or e}.",
                        fix="choose a file in a folder you can write to") from None


def roles_report(ds) -> list[str]:
    """The column beyond the report's (context features, the slot and ignored columns are in it): the split."""
    col = ds.mapping.get("split")
    return [f"Split column: {col}: {ds.reasons.get(col, 'a given split')}"] if col else []


def format_report(rep: dict) -> str:
    """The report as a few readable lines (also used by tests and, later, the data page)."""
    lines = [
        f"Dataset:   {rep['name']}",
        f"Layout:    {rep['layout']}",
        f"Rows:      {rep['rows']:,}",
        f"Users:     {rep['users']:,} ({rep['users_with_interactions']:,} with interactions)",
        f"Items:     {rep['items']:,} ({rep['items_with_interactions']:,} with interactions)",
        f"Density:   {rep['density']:.4%}",
        f"Timestamp: {'yes' if rep['has_timestamp'] else 'no'}",
    ]
    if rep["label_balance"]:
        lines.append("Labels:")
        for col, b in rep["label_balance"].items():
            if "positive_rate" in b:
                lines.append(f"  {col}: {b['positive_rate']:.1%} positive ({b['observed']:,} observed)")
            else:
                lines.append(f"  {col}: mean {b['mean']:.3g}, range {b['min']:.3g}..{b['max']:.3g} "
                             f"({b['observed']:,} observed)")
    else:
        lines.append("Labels:    none (use an implicit task: every logged row is a positive)")
    for side in ("item_features", "user_features"):
        feats = rep[side]
        label = "Item features:" if side == "item_features" else "User features:"
        lines.append(f"{label} " + (", ".join(f"{c} ({k})" for c, k in feats.items()) if feats else "none"))
    ctx = rep.get("context_features") or {}
    lines.append("Context features: " + (", ".join(
        f"{c} ({k}{', the slot' if c == rep.get('position') else ''})" for c, k in ctx.items()) if ctx else "none"))
    for c, why in (rep.get("ignored") or {}).items():
        lines.append(f"Ignored: {c}: {why}")
    if rep.get("reasons"):
        lines.append("Why each column has its role:")
        lines += [f"  {c}: {why}" for c, why in rep["reasons"].items()]
    if rep["suggested_tasks"]:
        lines.append("Suggested tasks: " + " ".join(f"--task '{t}'" for t in rep["suggested_tasks"]))
    for note in rep["notes"]:
        lines.append(f"Note: {note}")
    return "\n".join(lines)

