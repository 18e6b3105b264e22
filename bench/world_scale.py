"""How big a built-in world the CLI builds: time and peak memory of `make_world` (and of the
whole `python -m mtrlib world` verb, CSV files included) at MovieLens-25M's shape.

ml-25m: 162,541 users, 59,047 items, 25,000,095 ratings (154 per user). Each size runs in a
fresh child process, so its peak RSS (VmHWM) is its own. The app keeps its 20-million limit
(`APP_MAX_IMPRESSIONS`); the CLI passes none.

    python bench/world_scale.py [--sizes default,ml-1m,ml-25m] [--no-csv]

The last line is one JSON object: {SIZE: {"impressions", "seconds", "peak_rss_mb",
"csv_seconds", "csv_peak_rss_mb"}}.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, json_line, loadavg, machine  # noqa: E402

SIZES = {
    "default": dict(n_users=1500, n_items=400, impressions_per_user=40),
    "ml-1m": dict(n_users=6040, n_items=3706, impressions_per_user=166),
    "ml-25m": dict(n_users=162541, n_items=59047, impressions_per_user=154),
}

CHILD = """
import json, sys, time
t0 = time.perf_counter()
from mtrlib.data.world import make_world
ds = make_world(**json.loads(sys.argv[1]), max_impressions=None)
secs = time.perf_counter() - t0
status = open("/proc/self/status").read()
hwm = int(next(l for l in status.splitlines() if l.startswith("VmHWM")).split()[1]) / 1024
print(json.dumps({"impressions": len(ds.interactions), "seconds": secs, "peak_rss_mb": hwm,
                  "click_rate": float(ds.interactions["click"].mean())}))
"""


def run_child(size: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(size)], cwd=REPO, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_cli(size: dict) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "mtrlib", "world", "--out", tmp, "--users", str(size["n_users"]),
                        "--items", str(size["n_items"]), "--impressions", str(size["impressions_per_user"])],
                       cwd=REPO, capture_output=True, text=True, check=True)
        secs = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # max over children so far (kB)
        mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
    return {"csv_seconds": secs, "csv_peak_rss_mb": max(peak, before) / 1024, "csv_mb": mb}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--no-csv", action="store_true", help="time make_world only")
    args = ap.parse_args(argv)
    print(json.dumps(machine()), file=sys.stderr)
    res = {}
    for name in args.sizes.split(","):
        size = SIZES[name]
        r = run_child(size)
        if not args.no_csv:
            r.update(run_cli(size))
        r["loadavg"] = round(loadavg()[0], 2)
        res[name] = r
        print(f"{name}: {r['impressions']:,} impressions in {r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:,.0f} MB"
              + ("" if args.no_csv else f"; the `world` verb with CSV files: {r['csv_seconds']:.1f} s, "
                 f"{r['csv_mb']:,.0f} MB written") + f" (load {r['loadavg']})", file=sys.stderr, flush=True)
    print(json_line(res))
    return res


if __name__ == "__main__":
    main()
