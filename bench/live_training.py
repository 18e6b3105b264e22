"""Live training in the app vs the CLI, whole runs: does the app keep the CLI's speed, and does
a run's last epoch keep its first epoch's speed?

    python bench/live_training.py [--repeats 2] [--before]

Setup: ml-latest-small (ratings.csv + movies.csv) with the app's defaults for it (tasks
watched=implicit and liked=rating>=4, MMoE, 8 epochs, batch 1024). In the app: `streamlit run
app.py` (headless), Debian's Chromium through Playwright uploads the two files on the Data page,
opens Train, clicks **Train** and keeps the Train page open (its live charts redraw every
second) until the run is finished. The CLI then trains the very same config (the app run's
config.json, with the same two files) with `python -m mtrlib train --config ... --quiet`.
App and CLI runs alternate `--repeats` times on this one machine; medians are reported.

Throughput is the trainer's own samples/s over the training loop (events included, validation
excluded), read from each run's metrics.json; per-epoch throughput is each epoch's
`epoch_samples_per_s` in history.jsonl. `--before` also trains the CLI run with the denormal-float
fix switched off (MTR_DENORMAL_FIX=0), to show what the fix buys.

Targets (issue 12): vs_cli = app / CLI samples/s >= 0.8; last_vs_first = the app run's last
epoch / first epoch samples/s >= 0.8. The last line printed is one JSON object:
{"vs_cli": ., "last_vs_first": ., "app_samples_per_s": ., "cli_samples_per_s": ., ...}
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def run_record(folder: Path) -> dict:
    """samples/s of a finished run, and its per-epoch samples/s (first, last, all)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    epochs = [json.loads(line) for line in (folder / "history.jsonl").read_text().splitlines()
              if line.strip() and json.loads(line).get("kind") == "epoch"]
    per = [e["epoch_samples_per_s"] for e in epochs]
    return {"samples_per_s": metrics["samples_per_s"], "status": metrics["status"], "epochs": per,
            "first": per[0], "last": per[-1], "last_vs_first": per[-1] / per[0],
            "test": {t: round(m.get("auc", float("nan")), 4) for t, m in metrics["test"].items()}}


def app_run(br, server, timeout_s: float) -> tuple[dict, Path]:
    before = set(server.store.iterdir())
    p = br.page()
    try:
        C.open_app(p, server.url, "/")
        C.upload_movielens(p)
        C.go(p, "Train")
        C.train_button(p).click()
        t0 = time.perf_counter()
        p.wait_for_function(C.FINISHED_JS, timeout=timeout_s * 1000, polling=500)
        wall = time.perf_counter() - t0
        points = p.evaluate(C.POINTS_JS, "Training loss per task")
    finally:
        p.context.close()
    new = [f for f in server.store.iterdir() if f not in before and not f.name.startswith(".")]
    assert len(new) == 1, new
    rec = run_record(new[0])
    rec.update(wall_s=wall, loss_chart_points=points)
    return rec, new[0]


def cli_run(config: Path, store: Path, env_extra: dict | None = None) -> dict:
    cmd = [sys.executable, "-m", "mtrlib", "train", "--config", str(config), "--data", str(C.ML_DIR / "ratings.csv"),
           "--items", str(C.ML_DIR / "movies.csv"), "--store", str(store), "--quiet"]
    env = dict(os.environ, **(env_extra or {}))
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=C.REPO, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    last = json.loads(out.stdout.strip().splitlines()[-1])
    rec = run_record(Path(last["run_dir"]))
    rec["wall_s"] = wall
    return rec


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--before", action="store_true", help="also a CLI run without the denormal fix")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one app run may take")
    args = ap.parse_args(argv)
    if not C.ml_available():
        sys.exit(f"ml-latest-small not found at {C.ML_DIR}")
    info = C.machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}; load {info['loadavg_start']}", flush=True)
    apps, clis, before = [], [], None
    with tempfile.TemporaryDirectory(prefix="mtr-live-") as tmp, C.AppServer() as server, C.Browser() as br:
        cli_store = Path(tmp) / "runs"
        config = None
        for r in range(args.repeats):
            rec, folder = app_run(br, server, args.timeout)
            apps.append(rec)
            if config is None:
                config = Path(tmp) / "config.json"
                config.write_text((folder / "config.json").read_text())
            print(f"round {r + 1}: app {rec['samples_per_s']:,.0f} samples/s (epochs {rec['first']:,.0f} -> "
                  f"{rec['last']:,.0f}), {rec['loss_chart_points']} points on the live loss chart", flush=True)
            rec = cli_run(config, cli_store)
            clis.append(rec)
            print(f"round {r + 1}: CLI {rec['samples_per_s']:,.0f} samples/s (epochs {rec['first']:,.0f} -> "
                  f"{rec['last']:,.0f})  (load {C.loadavg()[0]:.2f})", flush=True)
        if args.before:
            before = cli_run(config, cli_store, {"MTR_DENORMAL_FIX": "0"})
            print(f"CLI without the denormal fix: {before['samples_per_s']:,.0f} samples/s (epochs "
                  f"{before['first']:,.0f} -> {before['last']:,.0f})", flush=True)

    app_sps, cli_sps = C.median([a["samples_per_s"] for a in apps]), C.median([c["samples_per_s"] for c in clis])
    out = {"vs_cli": app_sps / cli_sps, "last_vs_first": C.median([a["last_vs_first"] for a in apps]),
           "app_samples_per_s": app_sps, "cli_samples_per_s": cli_sps,
           "cli_last_vs_first": C.median([c["last_vs_first"] for c in clis]),
           "app": apps, "cli": clis, "repeats": args.repeats,
           "loadavg_start": info["loadavg_start"], "loadavg_end": [round(x, 2) for x in C.loadavg()],
           "machine": f"{info['cpu']}, {info['cores']} cores", "torch": info["torch"], "date": info["date"]}
    if before is not None:
        out["before_fix"] = {"cli_samples_per_s": before["samples_per_s"], "last_vs_first": before["last_vs_first"],
                             "epochs": before["epochs"], "test": before["test"]}
        out["fix_speedup"] = cli_sps / before["samples_per_s"]
    print(f"\napp / CLI samples/s: {out['vs_cli']:.2f} (target >= 0.8); app last / first epoch: "
          f"{out['last_vs_first']:.2f} (target >= 0.8); CLI last / first: {out['cli_last_vs_first']:.2f}")
    C.save_json(C.OUT / "live_training.json", out)
    print(C.json_line(out))
    return out


if __name__ == "__main__":
    main()
