"""The `industry` verb: write an industry-layout impression log with known effects
(`mtrlib.data.industry`: Ali-CCP's shape, 30 integer-coded fields, click and purchase)."""
from __future__ import annotations

import json
from pathlib import Path

from mtrlib.errors import DataError


def register(subparsers, verb: str | None = None) -> None:
    p = subparsers.add_parser("industry", help="write an industry-layout log (30 integer-coded fields, click, purchase)",
                              description="Write a synthetic impression log in the layout of Ali-CCP / Tenrec / "
                                          "KuaiRand, with known effects of its context fields "
                                          "(mtrlib/data/industry.py), as interactions.csv or .parquet, and the "
                                          "column mapping that reads it as mapping.json.")
    p.add_argument("--out", required=True, help="folder to write into (created if missing)")
    p.add_argument("--rows", type=int, default=200_000, help="impressions (default 200000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--users", type=int, default=None, help="number of users (default rows / 40)")
    p.add_argument("--items", type=int, default=None, help="number of items (default rows / 200)")
    p.add_argument("--split-col", action="store_true",
                   help="add a given split column `split` (train / valid / test: the first 80%%, 10%%, 10%% of rows)")
    p.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format (default csv)")
    p.set_defaults(func=cmd_industry)


def cmd_industry(args) -> int:
    from mtrlib.data.industry import FIELDS, make_industry, mapping_of, write_log  # deferred: this verb only

    df = make_industry(args.rows, seed=args.seed, users=args.users, items=args.items, split=args.split_col)
    out = Path(args.out)
    path = out / f"interactions.{args.format}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_log(df, path)
        (out / "mapping.json").write_text(json.dumps(mapping_of(df), indent=1))
    except OSError as e:
        raise DataError(f"Could not write into {out}: {e.strerror or e}.",
                        fix="choose a folder you can write to, with free space") from None
    print(f"Wrote {path} ({len(df):,} rows, {len(FIELDS)} fields; click rate {df['click'].mean():.3f}, "
          f"purchase rate {df['purchase'].mean():.4f}) and {out / 'mapping.json'}.")
    print(json.dumps({"path": str(path), "mapping": str(out / "mapping.json"), "rows": int(len(df)),
                      "users": int(df["user_id"].nunique()), "items": int(df["item_id"].nunique()),
                      "fields": len(FIELDS), "split": bool(args.split_col)}))
    return 0
