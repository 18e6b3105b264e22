"""Data verbs: `world` writes the built-in synthetic world as CSV files; `inspect` reads any
file the app would accept and prints what it found, so a problem shows up before training."""
from __future__ import annotations

import json
from pathlib import Path

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
    p.set_defaults(func=cmd_world)

    p = subparsers.add_parser("inspect", help="read a data file and report what was found",
                              description="Read interactions (+ item and user tables) and print a short report. "
                                          "Exit status 2 when the data cannot be used, with the reason.")
    p.add_argument("file", help="interactions file, or a folder (MovieLens, or one written by `world`)")
    p.add_argument("--items", action="append", default=None, help="items table (may be given more than once)")
    p.add_argument("--users", default=None, help="users table")
    p.add_argument("--user", default=None, help="column holding the user id (default: guessed)")
    p.add_argument("--item", default=None, help="column holding the item id (default: guessed)")
    p.add_argument("--timestamp", default=None, help="column holding the time (default: guessed)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_max_file_mb(p)
    p.set_defaults(func=cmd_inspect)


def add_max_file_mb(group) -> None:
    """--max-file-mb: the command line reads files of any size unless capped (the app's uploads keep 200 MB)."""
    group.add_argument("--max-file-mb", type=float, metavar="MB",
                       help="refuse a data file bigger than MB megabytes (default: no limit on the command line; "
                            "MTR_MAX_FILE_MB also sets it)")


def cmd_world(args) -> int:
    """No size limit here (the app keeps one): a world of MovieLens-25M's shape, 162k users x
    154 impressions over 59k items, builds in about a minute and a few GB (README)."""
    from mtrlib.data.world import make_world  # deferred: heavy, this verb only

    impressions = args.impressions if args.impressions is not None else min(40, args.items)
    ds = make_world(n_users=args.users, n_items=args.items, n_genres=args.genres, correlation=args.correlation,
                    seed=args.seed, impressions_per_user=impressions, like_observed=args.like_observed,
                    moods=args.moods, zipf=args.zipf, max_impressions=None)
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

    mapping = {k: v for k, v in (("user", args.user), ("item", args.item), ("timestamp", args.timestamp)) if v}
    ds = load(args.file, items=args.items, users=args.users, mapping=mapping or None)
    rep = ds.report()
    if args.json:
        print(json.dumps(rep, indent=2, default=str))
        return 0
    print(format_report(rep))
    return 0


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

