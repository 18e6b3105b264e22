"""Run verbs: `runs` (list the store), `recommend`, `eval` (full-ranking metrics vs popularity;
`--truth`: against the built-in world's truth), `project` (coordinates to CSV; `--purity`: kNN
purity) and `export` (TensorBoard projector TSVs).

RUN is a run id, a unique id prefix, a run name, or a run folder path. Every verb takes
`--store DIR` (default $MTR_RUN_STORE or data/runs). Bad input exits 2 with a message.
"""
from __future__ import annotations

import json
import math
import sys

from mtrlib.errors import DataError


def _store_arg(p) -> None:
    p.add_argument("--store", metavar="DIR", help="run store folder (default $MTR_RUN_STORE or data/runs)")


def register(subparsers, verb: str | None = None) -> None:
    p = subparsers.add_parser("runs", help="list saved runs", description="List the runs in the run store, newest first.")
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    p.set_defaults(func=cmd_runs)

    p = subparsers.add_parser("recommend", help="top-K items for a user from a saved run",
                              description="Top-K items for one user, scored by a fusion of the run's task predictions.")
    p.add_argument("run", metavar="RUN", help="run id, name or folder")
    p.add_argument("--user", required=True, help="user id")
    p.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    p.add_argument("--fusion", metavar="T=W,...",
                   help="fusion weights, e.g. watched=1,liked=2 (default: 1 per binary task = product of probabilities)")
    p.add_argument("--include-seen", action="store_true", help="do not exclude items the user already interacted with")
    _stage_args(p)
    _context_arg(p)
    p.add_argument("--explain", action="store_true",
                   help="why each item: the history items closest to it, and each task's part of the fused score")
    p.add_argument("--json", action="store_true", help="print JSON records instead of a table")
    _store_arg(p)
    p.set_defaults(func=cmd_recommend)

    p = subparsers.add_parser("eval", help="full-ranking Recall/NDCG/HitRate@K of a run vs popularity",
                              description="Rank every unseen item for every test user; compare with popularity. "
                                          "The last line is one JSON object.")
    p.add_argument("run", metavar="RUN", help="run id, name or folder")
    p.add_argument("--task", help="binary or retrieval task whose held-out positives are relevant "
                                  "(default: the first binary task)")
    p.add_argument("--k", default="5,10,20", help="cut-offs, e.g. 5,10,20")
    p.add_argument("--fusion", metavar="T=W,...", help="rank by this fusion instead of the task's own score")
    _stage_args(p)
    _context_arg(p)
    p.add_argument("--compare-full", action="store_true",
                   help="with --stage cascade/retrieval: also rank fully and report recall_of_full@K")
    p.add_argument("--topk-accuracy", type=int, metavar="K",
                   help="also report topk_accuracy@K: per test pair, is the item in the user's top K over all items "
                        "(seen items included; TFRS's FactorizedTopK), e.g. 100")
    p.add_argument("--lm-baseline", action="store_true", default=None,
                   help="add the language-model zero-shot baseline (on by default for runs with text features)")
    p.add_argument("--truth", action="store_true",
                   help="world runs: compare the top-K with the world's truth (favourite-genre share, overlap with "
                        "the true top-K; K is --k if one value is given, else 10)")
    p.add_argument("--users", type=int, default=300, help="with --truth: users sampled (default 300)")
    p.add_argument("--seed", type=int, default=0, help="with --truth: seed of the user sample (default 0)")
    _store_arg(p)
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("project", help="2-D/3-D coordinates of a representation, to CSV",
                              description="Project item/user embeddings or an internal representation with PCA, "
                                          "t-SNE or UMAP and write the coordinates with metadata as CSV.")
    p.add_argument("run", metavar="RUN", help="run id, name or folder")
    p.add_argument("--what", default="items",
                   help="items, item-input, users, text, input, shared, task:NAME or gate:NAME")
    p.add_argument("--method", default="pca", choices=("pca", "tsne", "umap"))
    p.add_argument("--dims", type=int, default=2, choices=(2, 3))
    p.add_argument("--cap", type=int, help="sample cap (default: PCA 50000, t-SNE 10000, UMAP 5000)")
    p.add_argument("--pairs", type=int, default=2000, help="(user, item) pairs for pair representations")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE.csv", help="CSV file to write (required unless --purity)")
    p.add_argument("--purity", metavar="ATTR",
                   help="print kNN purity (k=10) by this attribute, e.g. true_genre or genre, next to chance and "
                        "the untrained model, as one JSON line (with --out, after writing the CSV)")
    _store_arg(p)
    p.set_defaults(func=cmd_project)

    p = subparsers.add_parser("export", help="export a run: ONNX for serving, or TSVs for the Embedding Projector",
                              description="--onnx DIR: the model as ONNX files + signature.json (mtrlib.serve."
                                          "onnx_export); --projector DIR: vectors.tsv, metadata.tsv and "
                                          "projector_config.pbtxt.")
    p.add_argument("run", metavar="RUN", help="run id, name or folder")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--projector", metavar="DIR", help="folder to write the TSV files into")
    where.add_argument("--onnx", metavar="DIR", help="folder to write ranking.onnx (+ the retrieval towers) and "
                                                     "signature.json into")
    p.add_argument("--fusion", metavar="T=W,...", help="with --onnx: fusion weights written to signature.json "
                                                       "(default: 1 per binary task)")
    p.add_argument("--what", default="items", help="items, users, text, input, shared, task:NAME or gate:NAME")
    p.add_argument("--pairs", type=int, default=2000, help="(user, item) pairs for pair representations")
    _store_arg(p)
    p.set_defaults(func=cmd_export)


def _stage_args(p) -> None:
    p.add_argument("--stage", choices=("retrieval", "cascade", "full"),
                   help="retrieval (two towers only), cascade (retrieve N, then rank them) or full (rank every item); "
                        "default: cascade when the run has a retrieval task, else full")
    p.add_argument("--candidates", type=int, metavar="N",
                   help="items the cascade retrieves per user before ranking (default 200, at most the catalogue)")


def _context_arg(p) -> None:
    p.add_argument("--context", metavar="COL=VALUE", action="append", default=[],
                   help="for a run with context features: score in this context, e.g. --context device=mobile "
                        "--context hour=22 (repeatable; other columns: their most frequent value, the position "
                        "its first slot)")


def context_values(pairs: list[str]) -> dict[str, str]:
    """['device=mobile', 'hour=22'] -> {'device': 'mobile', 'hour': '22'}."""
    out = {}
    for p in pairs or []:
        col, eq, value = str(p).partition("=")
        if not eq or not col.strip():
            raise DataError(f"--context takes COLUMN=VALUE (got '{p}').", fix="e.g. --context device=mobile")
        out[col.strip()] = value.strip()
    return out


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def _table(rows: list[list], header: list[str]) -> str:
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)


def cmd_runs(args) -> int:
    from mtrlib.eval.pointwise import headline_key  # deferred: heavy, this verb only
    from mtrlib.runs import list_runs, store_dir  # deferred: heavy, this verb only
    from mtrlib.safe import json_clean  # deferred: heavy, this verb only

    problems: list = []
    runs = list_runs(args.store, problems=problems)
    for p in problems:
        print(f"skipped {p.path}: {p.message}", file=sys.stderr)
    if args.json:
        print(json.dumps(json_clean([{**r.to_row(), "path": str(r.path), "reason": r.reason, "group": r.group}
                                     for r in runs])))
        return 0
    if not runs:
        print(f"No runs in {store_dir(args.store)}.")
        return 0
    rows = []
    for r in runs:
        key = " ".join(f"{t}:{(h := headline_key(ms))}={_fmt(ms.get(h))}" for t, ms in r.metrics.items())
        rows.append([r.id, r.name, r.status, r.model, ",".join(r.tasks), r.epochs_done, key or "-"])
    print(_table(rows, ["id", "name", "status", "model", "tasks", "epochs", "test metrics"]))
    return 0


def cmd_recommend(args) -> int:
    from mtrlib.serve.recommend import recommend  # deferred: heavy, this verb only
    from mtrlib.runs import load_run  # deferred: heavy, this verb only
    from mtrlib.safe import json_clean  # deferred: heavy, this verb only

    run = load_run(args.run, args.store)
    df = recommend(run, args.user, k=args.k, fusion=args.fusion, exclude_seen=not args.include_seen,
                   stage=args.stage, candidates=args.candidates, context=context_values(args.context))
    why = None
    if args.explain and not df.attrs.get("fallback"):
        from mtrlib.serve.recommend import explain  # deferred: heavy, this verb only
        why = explain(run, args.user, df["item_id"], fusion=args.fusion)
        df["because"] = why["because_text"].to_numpy()
    contrib = [c for c in (why.columns if why is not None else []) if c.startswith("contrib:")]
    if args.json:
        items = df.to_dict(orient="records")
        if why is not None:
            for rec, (_, w) in zip(items, why.iterrows()):
                rec["because"] = w["because"]
                rec["contributions"] = {c.split(":", 1)[1]: w[c] for c in contrib}
        out = {"user": args.user, "notes": df.attrs.get("notes", []), "fusion": df.attrs.get("fusion"),
               "stage": df.attrs.get("stage"), "context": df.attrs.get("context", {}), "items": items}
        if why is not None:
            out["explained_in"] = why.attrs["space"]
            out["history"] = why.attrs["history"]
        print(json.dumps(json_clean(out)))
        return 0
    for note in df.attrs.get("notes", []):
        print(f"note: {note}")
    w = df.attrs.get("fusion", {})
    stage = df.attrs.get("stage")
    where = f" · stage {stage}" + (f" ({df.attrs['candidates']} candidates)" if df.attrs.get("candidates") else "")
    ctx = df.attrs.get("context") or {}
    where += (" · context " + ", ".join(f"{c}={v}" for c, v in ctx.items())) if ctx else ""
    print(f"Run {run.name} · user {args.user} · fusion " + ", ".join(f"{t}={v:g}" for t, v in w.items()) + where)
    cols = ["rank", "item_id"] + [c for c in ("title", "genre") if c in df.columns] + ["score"] + run.task_names + ["cold"]
    cols += [c for c in ("retrieval rank",) if c in df.columns]
    if why is not None:
        for c in contrib:
            df[f"{c.split(':', 1)[1]} part"] = why[c].to_numpy()
        cols += [f"{c.split(':', 1)[1]} part" for c in contrib] + ["because"]
        print(f"because: the {why.attrs['history']} items of the user closest to each item in the "
              f"{why.attrs['space']} space; '<task> part' = weight x score, summing to the fused score")
    print(_table(df[cols].values.tolist(), cols))
    return 0


def cmd_eval(args) -> int:
    from mtrlib.serve.recommend import rank_eval  # deferred: heavy, this verb only
    from mtrlib.safe import json_clean  # deferred: heavy, this verb only

    try:
        ks = [int(k) for k in str(args.k).split(",") if k.strip()]
    except ValueError:
        raise DataError(f"--k takes whole numbers separated by commas (got '{args.k}').", fix="e.g. --k 5,10,20") from None
    if args.truth:
        return _eval_truth(args, ks)
    res = rank_eval(args.run, task=args.task, ks=ks, fusion=args.fusion, store=args.store, stage=args.stage,
                    candidates=args.candidates, compare_full=args.compare_full, topk_accuracy=args.topk_accuracy,
                    lm_baseline=args.lm_baseline, context=context_values(args.context))
    cols = [c for c in ("model", "popularity", "lm_zero_shot") if c in res]
    rows = [[m] + [res[c].get(m) for c in cols] for m in res["model"]]
    how = {"full": "every item ranked", "retrieval": "retrieval stage only",
           "cascade": f"cascade: {res.get('candidates', 0):,} retrieved, then ranked"}[res["stage"]]
    print(f"Task {res['task']}: {res['users']:,} users, {res['positives']:,} held-out positives, "
          f"{res['items']:,} items, {how} ({res['seconds']:.3f} s of scoring)")
    print(_table(rows, ["metric"] + cols))
    overlap = {k: v for k, v in res.items() if k.startswith("recall_of_full@")}
    if overlap:
        print("of full ranking's top K kept: " + ", ".join(f"{k[len('recall_of_full'):]} {v:.3f}"
                                                          for k, v in overlap.items())
              + f" (full ranking: {res['full_seconds']:.3f} s)")
    print(json.dumps(json_clean(res)))
    return 0


def _eval_truth(args, ks: list[int]) -> int:
    from mtrlib.safe import json_clean  # deferred: heavy, this verb only
    from mtrlib.eval.truth import truth_eval  # deferred: heavy, this verb only

    k = ks[0] if len(ks) == 1 else 10
    res = truth_eval(args.run, users=args.users, k=k, task=args.task, fusion=args.fusion, seed=args.seed,
                     store=args.store)
    for note in res["notes"]:
        print(f"note: {note}", file=sys.stderr)
    share, overlap = res[f"favourite_genre_share@{k}"], res[f"truth_overlap@{k}"]
    print(f"Against the world's truth: {res['users']:,} users, top {k} of the unseen items by {res['ranked_by']}")
    print(_table([[f"favourite_genre_share@{k}", share["model"], share["truth"], share["popularity"]],
                  [f"truth_overlap@{k}", overlap["model"], 1.0, overlap["popularity"]]],
                 ["metric", "model", "truth", "popularity"]))
    print(json.dumps(json_clean({f"favourite_genre_share@{k}": share, f"truth_overlap@{k}": overlap,
                                 "users": res["users"]})))
    return 0


def cmd_project(args) -> int:
    from mtrlib.viz.project import project, purity  # deferred: heavy, this verb only
    from mtrlib.safe import json_clean, safe_csv  # deferred: heavy, this verb only

    if args.out is None and args.purity is None:
        raise DataError("project needs --out FILE.csv (the coordinates) or --purity ATTR (the kNN purity).",
                        fix="e.g. --out items.csv, or --purity true_genre")
    if args.out is None:
        print(json.dumps(json_clean(purity(args.run, what=args.what, attribute=args.purity, max_pairs=args.pairs,
                                           seed=args.seed, store=args.store))))
        return 0
    df = project(args.run, what=args.what, method=args.method, dims=args.dims, cap=args.cap, seed=args.seed,
                 max_pairs=args.pairs, store=args.store)
    try:
        safe_csv(df, args.out)
    except OSError as e:
        raise DataError(f"Cannot write {args.out}: {e.strerror or e}.", fix="choose a file you can write") from None
    for note in df.attrs.get("notes", []):
        print(f"note: {note}", file=sys.stderr)
    a = df.attrs
    summary = {"out": args.out, "rows": len(df), "what": a["what"], "method": a["method"],
               "dims": a["dims"], "cap": a["cap"], "n_total": a["n_total"], "notes": a["notes"]}
    if args.purity is None:
        print(json.dumps(json_clean(summary)))
    else:  # the purity JSON stays the last line
        print(json.dumps(json_clean(summary)), file=sys.stderr)
        print(json.dumps(json_clean(purity(args.run, what=args.what, attribute=args.purity, max_pairs=args.pairs,
                                           seed=args.seed, store=args.store))))
    return 0


def cmd_export(args) -> int:
    if args.onnx:
        from mtrlib.cli.export import cmd_export_onnx  # deferred: onnx and torch, this flag only
        return cmd_export_onnx(args)
    from mtrlib.viz.project import export_projector, vectors  # deferred: heavy, this verb only
    from mtrlib.safe import json_clean  # deferred: heavy, this verb only

    V, meta = vectors(args.run, args.what, max_pairs=args.pairs, store=args.store)
    keep = [c for c in ("item_id", "user_id", "title", "genre", "genres", "popularity", "true_genre", "cold")
            if c in meta.columns] + [c for c in meta.columns if c.startswith("label:")]
    paths = export_projector(V, meta[keep] if keep else meta, args.projector, tensor_name=args.what)
    print(json.dumps(json_clean({"what": args.what, "rows": int(len(V)), "dims": int(V.shape[1]) if V.ndim == 2 else 0,
                                 **{k: str(v) for k, v in paths.items()}})))
    return 0
