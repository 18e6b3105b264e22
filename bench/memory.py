"""Peak memory of the app process: one browser session training on ml-latest-small, and four
sessions training at once.

    python bench/memory.py [--sessions 1,4] [--max-jobs 4] [--epochs 1]

For each scenario a fresh `streamlit run app.py` (temporary run store; MTR_MAX_JOBS=--max-jobs,
so that four jobs really train at the same time: the app's default cap is 2, the other two
would wait in its queue) and N fresh Chromium contexts (N users). Each user opens
"/?epochs=1", picks "Upload files" on the Data page and uploads ratings.csv and movies.csv
(ml-latest-small, 100,836 ratings) through the file inputs, then goes to Train (MMoE, defaults,
tasks watched=implicit / liked=rating>=4 as the app suggests them). Then all N click Train one
after the other and the benchmark waits until every page shows its finished run.

Memory is read from /proc/<pid>/status of the server process: VmHWM (peak resident set over the
process's life: the number reported) and VmRSS, also sampled every 0.2 s. Reported: after start,
after the first page view, after the uploads, the peak while training, and RSS at the end.
The wall time of the training phase and each page's "Test metrics · samples/s · s" caption are
printed too: with four sessions they show Streamlit's per-rerun gc.collect(2) starving the
training threads (see BENCHMARKS.md). The app's `.streamlit/config.toml` turns that collection off
(`runner.postScriptGC = false`); `--post-script-gc` starts the server with it back on
(Streamlit's default) to measure the difference.
The last line printed is one JSON object (MiB).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

MiB = 1024 * 1024


class Sampler:
    def __init__(self, pid: int, every: float = 0.2):
        self.pid, self.every = pid, every
        self.max_rss = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.max_rss = max(self.max_rss, C.proc_mem(self.pid)["rss"])
            except (OSError, KeyError):
                return
            self._stop.wait(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def scenario(n: int, max_jobs: int, epochs: int, extra_args=()) -> dict:
    out: dict = {"sessions": n, "max_jobs": max_jobs, "epochs": epochs, "server_args": list(extra_args)}
    with C.AppServer({"MTR_MAX_JOBS": str(max_jobs)}, extra_args=list(extra_args)) as srv, C.Browser() as br:
        out["after_start"] = C.proc_mem(srv.pid)
        pages = []
        with Sampler(srv.pid) as s:
            p0 = br.page()
            C.open_app(p0, srv.url, "/")
            p0.context.close()
            out["after_first_view"] = C.proc_mem(srv.pid)
            t = time.perf_counter()
            for _ in range(n):
                p = br.page()
                C.open_app(p, srv.url, f"/?epochs={epochs}")
                C.upload_movielens(p)
                C.go(p, "Train")
                C.main_area(p).get_by_text("Press Train to start").wait_for(timeout=60_000)
                pages.append(p)
            out["upload_s"] = time.perf_counter() - t
            out["after_uploads"] = C.proc_mem(srv.pid)
            out["max_rss_before_training"] = s.max_rss
            t = time.perf_counter()
            for p in pages:
                C.train_button(p).click()
            for p in pages:
                p.wait_for_function(C.FINISHED_JS, polling=200, timeout=900_000)
            out["train_s"] = time.perf_counter() - t
            time.sleep(1.0)
            out["end"] = C.proc_mem(srv.pid)
            out["max_rss_sampled"] = s.max_rss
        captions = []
        for p in pages:
            captions.append(C.main_area(p).get_by_text("Test metrics · ").first.inner_text().strip())
            p.context.close()
        out["captions"] = captions
        out["peak_hwm"] = C.proc_mem(srv.pid)["hwm"]
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", default="1,4")
    ap.add_argument("--max-jobs", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--post-script-gc", action="store_true",
                    help="start the server with --runner.postScriptGC true, Streamlit's default (see BENCHMARKS.md)")
    args = ap.parse_args(argv)
    if not C.ml_available():
        sys.exit(f"ml-latest-small not found at {C.ML_DIR}")
    info = C.machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; load average at start {info['loadavg_start']}")
    res = {}
    for n in [int(x) for x in args.sessions.split(",")]:
        r = scenario(n, args.max_jobs, args.epochs,
                     C.WITH_GC if args.post_script_gc else [])
        res[n] = r
        print(f"  {n} session(s): peak RSS {r['peak_hwm'] / MiB:,.0f} MiB (start {r['after_start']['rss'] / MiB:,.0f}, "
              f"after uploads {r['after_uploads']['rss'] / MiB:,.0f}, end {r['end']['rss'] / MiB:,.0f}); "
              f"uploads {r['upload_s']:.0f}s, training {r['train_s']:.0f}s; load {C.loadavg()[0]:.2f}", flush=True)
        for c in r["captions"]:
            print(f"      {c}")
    print("\n## Peak memory of the app process (VmHWM), MiB\n")
    print("| sessions training at once | after start | after first page view | after uploads | peak (VmHWM) | RSS at end | wall: uploads / training |")
    print("|---|---|---|---|---|---|---|")
    for n, r in res.items():
        print(f"| {n} | {r['after_start']['rss'] / MiB:,.0f} | {r['after_first_view']['rss'] / MiB:,.0f} | "
              f"{r['after_uploads']['rss'] / MiB:,.0f} | {r['peak_hwm'] / MiB:,.0f} | {r['end']['rss'] / MiB:,.0f} | "
              f"{r['upload_s']:.0f} s / {r['train_s']:.0f} s |")
    out = {f"peak_mib_{n}": round(r["peak_hwm"] / MiB, 1) for n, r in res.items()}
    out.update({f"start_mib_{n}": round(r["after_start"]["rss"] / MiB, 1) for n, r in res.items()})
    out.update({f"after_uploads_mib_{n}": round(r["after_uploads"]["rss"] / MiB, 1) for n, r in res.items()})
    out.update({f"train_wall_s_{n}": round(r["train_s"], 1) for n, r in res.items()})
    out.update({"post_script_gc": bool(args.post_script_gc), "max_jobs": args.max_jobs, "epochs": args.epochs, "data": "ml-latest-small (uploaded)",
                "loadavg_start": info["loadavg_start"], "loadavg_end": [round(x, 2) for x in C.loadavg()],
                "date": info["date"], "machine": f"{info['cpu']}, {info['cores']} cores"})
    print(C.json_line(out))
    return out


if __name__ == "__main__":
    main()
