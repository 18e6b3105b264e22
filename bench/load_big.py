"""Loading a big industry-layout log: time and peak memory of `mtrlib.data.load`, with the
context fields and without them ("today").

    python bench/load_big.py [--rows 5000000] [--format csv|parquet] [--seed 0] [--keep]

Generates the log of `mtrlib.data.industry` (`--rows` impressions: user_id, item_id, click,
purchase and 30 integer-coded fields, Ali-CCP's layout) and writes it twice:

- full:  every column, loaded with the log's own column mapping (`industry.mapping_of`: the 9
  user and 6 item fields as features, the 11 context fields and the 4 crosses as
  `context_features`, 302 as the position);
- today: the same file without the 15 columns that vary per impression (context 301-311 and
  crosses 508, 509, 702, 853), loaded with that mapping less its context keys. Those are the
  columns that would go unused before issue 26: the loader kept them as plain columns of the
  interactions (offered as regression tasks, never as features), so loading the file without
  them is what a user who wanted a working setup did.

Each load runs in a fresh Python process (`--child`), so that one's peak does not hide the
other's: wall time of `load(...)`, and peak resident memory (VmHWM, reset once the imports are
done) above the process's resident memory at that point; `--tracemalloc` adds the peak of Python
allocations (numpy and pandas report theirs; slower). The table prints both side by side with
their ratios (full / today); the last line is one JSON object, also written to
bench/out/load_big.json. Run the 5M-row version once (minutes of CPU, ~1.1 GB of CSV on disk:
the files are deleted unless `--keep`); develop with `--rows 200000`.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MiB = 1024 * 1024


def _status(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:
        return None
    return None


def _reset_peak() -> int:
    """This process's resident memory now, with its high-water mark reset to it (Linux:
    /proc/self/clear_refs). getrusage's ru_maxrss is no use here: it keeps the parent's peak
    across fork and exec, and the parent has just held the whole log."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _peak() -> int:
    return _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(path: str, mapping_json: str, trace: bool) -> None:
    """In a fresh process: load `path` once and print {seconds, peak_mib, ...} as JSON."""
    import tracemalloc

    from mtrlib.data import load
    from mtrlib.data.read.sources import file_cap
    from mtrlib.errors import DataError
    mapping = json.loads(mapping_json) or None
    base = _reset_peak()
    if trace:
        tracemalloc.start()
    t = time.perf_counter()
    note = ""
    with file_cap("none"):  # as the command line reads: any size (the app caps uploads at 200 MB)
        try:
            ds = load(path, mapping=mapping)
        except DataError as e:  # a mapping key this version does not read yet: load as the loader guesses
            note = f"mapping refused ({e}); loaded without it"
            ds = load(path)
    seconds = time.perf_counter() - t
    traced = tracemalloc.get_traced_memory()[1] if trace else None
    peak = _peak()
    print(json.dumps({
        "seconds": round(seconds, 2), "peak_mib": round((peak - base) / MiB, 1), "base_mib": round(base / MiB, 1),
        "traced_peak_mib": None if traced is None else round(traced / MiB, 1),
        "rows": int(ds.n_interactions), "columns": len(ds.interactions.columns),
        "context_features": len(ds.context_features), "item_features": len(ds.item_features),
        "user_features": len(ds.user_features), "note": note,
    }))


def measure(path: Path, mapping: dict, trace: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), "--mapping", json.dumps(mapping)]
    if trace:
        cmd.append("--tracemalloc")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=C.REPO)
    if out.returncode:
        raise SystemExit(f"loading {path.name} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=("csv", "parquet"), default="csv")
    ap.add_argument("--tracemalloc", action="store_true", help="also the peak of traced Python allocations")
    ap.add_argument("--keep", action="store_true", help="keep the written files in bench/out/load_big/")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--mapping", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.mapping, args.tracemalloc)

    from mtrlib.data.industry import columns_by_role, make_industry, mapping_of, write_log
    folder = C.OUT / "load_big"
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    df = make_industry(args.rows, seed=args.seed)
    gen_s = time.perf_counter() - t
    roles = columns_by_role(df)
    dropped = roles["context"] + roles["cross"]
    full_map = mapping_of(df)
    today_map = {k: v for k, v in full_map.items() if k not in ("context_features", "position")}
    paths = {"today": folder / f"today.{args.format}", "full": folder / f"full.{args.format}"}
    t = time.perf_counter()
    write_log(df.drop(columns=dropped), paths["today"])
    write_log(df, paths["full"])
    write_s = time.perf_counter() - t
    del df
    print(f"{args.rows:,} rows generated in {gen_s:.1f} s, written twice in {write_s:.1f} s; "
          f"today drops {len(dropped)} columns: {', '.join(dropped)}", flush=True)
    res = {}
    try:
        for name, mapping in (("today", today_map), ("full", full_map)):
            res[name] = measure(paths[name], mapping, args.tracemalloc)
            res[name]["file_mib"] = round(paths[name].stat().st_size / MiB, 1)
            print(f"  {name}: {res[name]}", flush=True)
    finally:
        if not args.keep:
            for p in paths.values():
                p.unlink(missing_ok=True)
    keys = [("seconds", "load s"), ("peak_mib", "peak MiB"), ("file_mib", "file MiB"), ("columns", "columns")]
    if args.tracemalloc:
        keys.append(("traced_peak_mib", "traced MiB"))
    print(f"\n{'':<12}{'today':>12}{'full':>12}{'full/today':>12}")
    for k, label in keys:
        a, b = res["today"][k], res["full"][k]
        print(f"{label:<12}{a:>12}{b:>12}{(b / a if a else float('nan')):>12.2f}")
    summary = {"rows": args.rows, "format": args.format, "generate_s": round(gen_s, 2), "dropped_today": dropped,
               "today": res["today"], "full": res["full"],
               "ratio": {k: round(res["full"][k] / res["today"][k], 2) for k, _ in keys if res["today"][k]},
               "machine": C.machine()}
    (C.OUT / "load_big.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
