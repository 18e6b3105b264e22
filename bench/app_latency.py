"""App latency in a real browser: click Train (default world) -> first curve point -> finished run;
and the time to draw a t-SNE of 5,000 items (through the library, and through the Embeddings page).

    python bench/app_latency.py [--repeats 3] [--no-page-tsne]

Starts `streamlit run app.py` (headless, free port, file watcher off, temporary run store via
MTR_RUN_STORE) and drives Debian's Chromium (/usr/bin/chromium) through Playwright.

Train latency, per repeat (a fresh browser context = a new user/session each time): open "/"
(the built-in world), go to Train through the sidebar, click **Train** with the defaults (MMoE,
8 epochs, 1,500 users x 400 items, 60,000 impressions), then time, from the click:
- first curve point: the "Training loss per task" Plotly chart holds at least one point
  (polled in the page every 50 ms; the app's live fragment redraws once a second, so up to ~1 s
  of this is the redraw period);
- finished: the "Finished" success message and the test-metrics table are shown.
The trainer's own elapsed time (from the page's "Test metrics · ... · X s" caption) is reported
beside it, so the UI's share is visible.

t-SNE: a world of 1,500 users x 5,000 items trained 1 epoch and saved in the app's run store;
`mtrlib.viz.project.project(run, "items", "tsne")` (scikit-learn Barnes-Hut t-SNE, 2-D, all 5,000
items: under the 10,000 cap) timed `--repeats` times; then on the Embeddings page (the newest
run is selected by default), choose Method = t-SNE and time until the scatter titled "... TSNE"
holds 5,000 points, and until the script run is over (the page also computes kNN purity).

The first page open and the first training of a fresh server are reported separately (cold:
one-time imports such as torch._dynamo, pulled in by the first optimiser); the medians are over
`--repeats` later trainings on the same server. The app's `.streamlit/config.toml` turns off
Streamlit's gc.collect(2) after every script run (every live-chart refresh), which stalls the
training thread; `--compare-gc` runs the same on a second server started with
`--runner.postScriptGC true` (Streamlit's default), interleaved (see BENCHMARKS.md).
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import contextlib
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

LOSS = "Training loss per task"


def train_once(br, url: str, pid: int) -> dict:
    p = br.page()
    try:
        t = time.perf_counter()
        C.open_app(p, url, "/")
        open_s = time.perf_counter() - t
        t = time.perf_counter()
        C.go(p, "Train")
        nav_s = time.perf_counter() - t
        C.main_area(p).get_by_text("Press Train to start").wait_for(timeout=60_000)
        btn = C.train_button(p)
        cpu0, ch0 = C.proc_cpu(pid), C.chromium_cpu()
        t0 = time.perf_counter()
        btn.click()
        p.wait_for_function(f"(t) => ({C.POINTS_JS})(t) > 0", arg=LOSS, polling=50, timeout=180_000)
        first = time.perf_counter() - t0
        p.wait_for_function(C.FINISHED_JS, polling=50, timeout=300_000)
        done = time.perf_counter() - t0
        server_cpu, chromium_cpu = C.proc_cpu(pid) - cpu0, C.chromium_cpu() - ch0
        cap = C.main_area(p).get_by_text(re.compile(r"Test metrics · ")).first.inner_text()
        m = re.search(r"· ([\d.]+) s", cap)
        trainer_s = float(m.group(1)) if m else None
        return {"open_s": open_s, "nav_s": nav_s, "first_point_s": first, "finished_s": done,
                "trainer_elapsed_s": trainer_s, "server_cpu_s": server_cpu, "chromium_cpu_s": chromium_cpu,
                "caption": cap.strip()}
    finally:
        p.context.close()


def tsne_library(store: Path, repeats: int) -> dict:
    from mtrlib.config import TrainConfig
    from mtrlib.viz.project import project
    from mtrlib.runs import load_run, train_and_save
    from mtrlib.train.loop import prepare

    cfg = TrainConfig(epochs=1, device="cpu", name="bench 5000 items")
    cfg.data.world.n_items = 5000
    t = time.perf_counter()
    prep = prepare(cfg)
    res, writer = train_and_save(cfg, prep, store=store)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    run = load_run(writer.path)
    load_s = time.perf_counter() - t
    times, n = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        df = project(run, "items", "tsne", dims=2, seed=0)
        times.append(time.perf_counter() - t)
        n = len(df)
    return {"items": run.n_items, "points": n, "prepare_train_save_s": train_s, "load_run_s": load_s,
            "tsne_s": C.median(times), "tsne_runs": times}


def tsne_variants(store: Path) -> dict:
    """Where a t-SNE of 5,000 items could get faster: scikit-learn's TSNE on the same vectors with
    1 vs 2 OpenMP threads and 1,000 (its default) vs 500 iterations, same perplexity and init."""
    import numpy as np
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    from mtrlib.viz.project import vectors
    from mtrlib.runs import list_runs, load_run
    run = load_run(next(r for r in list_runs(store) if r.name == "bench 5000 items").path)
    V, _ = vectors(run, "items")
    X = np.asarray(V, np.float64)
    out = {}
    for threads, iters in ((1, 1000), (2, 1000), (1, 500), (2, 500)):
        kw = {"max_iter": iters} if "max_iter" in TSNE().get_params() else {"n_iter": iters}
        with threadpool_limits(limits=threads):
            t = time.perf_counter()
            TSNE(n_components=2, perplexity=30.0, init="pca", learning_rate="auto", random_state=0, **kw).fit_transform(X)
            out[f"threads={threads},iters={iters}"] = time.perf_counter() - t
        print(f"    sklearn TSNE, {len(X):,} x {X.shape[1]}: threads={threads} iterations={iters}: "
              f"{out[f'threads={threads},iters={iters}']:.1f}s  (load {C.loadavg()[0]:.2f})", flush=True)
    return out


def tsne_page(br, url: str) -> dict:
    p = br.page()
    try:
        C.open_app(p, url, "/")
        t = time.perf_counter()
        C.go(p, "Embeddings", timeout=300_000)
        open_s = time.perf_counter() - t  # PCA of the newest run, drawn by default
        m = C.main_area(p)
        m.get_by_role("combobox", name="Method").click()
        t0 = time.perf_counter()
        p.get_by_role("option", name="t-SNE").click()
        p.wait_for_function(f"(t) => ({C.POINTS_JS})(t) >= 5000", arg="TSNE", polling=50, timeout=300_000)
        chart = time.perf_counter() - t0
        C.wait_idle(p, timeout=300_000, settle=200)
        idle = time.perf_counter() - t0
        return {"open_pca_s": open_s, "tsne_chart_s": chart, "tsne_page_done_s": idle}
    finally:
        p.context.close()


KEYS = ("open_s", "nav_s", "first_point_s", "finished_s", "trainer_elapsed_s", "server_cpu_s", "chromium_cpu_s")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-page-tsne", action="store_true")
    ap.add_argument("--no-tsne", action="store_true")
    ap.add_argument("--tsne-variants", action="store_true", help="also time sklearn TSNE with 1/2 threads, 1000/500 iterations")
    ap.add_argument("--compare-gc", action="store_true",
                    help="also time Train on a second server started with --runner.postScriptGC true "
                         "(Streamlit's default), interleaved")
    args = ap.parse_args(argv)
    info = C.machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores; load average at start {info['loadavg_start']}")
    out: dict = {}
    with contextlib.ExitStack() as stack:
        br = stack.enter_context(C.Browser())
        servers = {"default": stack.enter_context(C.AppServer())}
        if args.compare_gc:
            servers["postScriptGC=true"] = stack.enter_context(C.AppServer(extra_args=C.WITH_GC))
        srv = servers["default"]
        out["server_start_s"] = srv.started_s
        for name, sv in servers.items():
            p = br.page()
            t = time.perf_counter()
            C.open_app(p, sv.url, "/")
            if name == "default":
                out["cold_first_open_s"] = time.perf_counter() - t
            p.context.close()
        runs = {name: [] for name in servers}
        cold = {}
        for r in range(args.repeats + 1):
            for name, sv in servers.items():
                x = train_once(br, sv.url, sv.pid)
                if r == 0:
                    cold[name] = x  # the first training of a server process pays one-time imports
                else:
                    runs[name].append(x)
                print(f"  [{name}] {'first training of the process' if r == 0 else f'repeat {r}'}: open {x['open_s']:.2f}s, click -> first curve point "
                      f"{x['first_point_s']:.2f}s, -> finished {x['finished_s']:.2f}s (trainer {x['trainer_elapsed_s']}s; "
                      f"server CPU {x['server_cpu_s']:.1f}s, chromium CPU {x['chromium_cpu_s']:.1f}s)  "
                      f"load {C.loadavg()[0]:.2f}", flush=True)
        out["train"] = {name: {k: C.median([x[k] for x in rs if x[k] is not None]) for k in KEYS}
                        for name, rs in runs.items()}
        out["train_runs"] = runs
        out["train_cold"] = cold
        if not args.no_tsne:
            lib = tsne_library(srv.store, args.repeats)
            out["tsne_library"] = lib
            print(f"  t-SNE of {lib['points']:,} items through mtrlib.viz.project: {C.median(lib['tsne_runs']):.1f}s "
                  f"(runs {', '.join(f'{x:.1f}' for x in lib['tsne_runs'])})", flush=True)
            if args.tsne_variants:
                out["tsne_variants"] = tsne_variants(srv.store)
            if not args.no_page_tsne:
                pg = tsne_page(br, srv.url)
                out["tsne_page"] = pg
                print(f"  t-SNE on the Embeddings page: chart {pg['tsne_chart_s']:.1f}s, page done "
                      f"{pg['tsne_page_done_s']:.1f}s", flush=True)
    T = out["train"]["default"]
    print(f"\n## App latency (median of {args.repeats}; Chromium headless, default world, defaults)\n")
    names = list(out["train"])
    print("| what | " + " | ".join(f"seconds ({n})" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    print(f"| server start (launch -> healthy) | {out['server_start_s']:.1f} |" + " |" * (len(names) - 1))
    print(f"| first page open of a fresh server (cold) | {out['cold_first_open_s']:.1f} |" + " |" * (len(names) - 1))
    for k, label in (("open_s", "open '/' (new session, warm server)"),
                     ("first_point_s", "click Train -> first curve point"),
                     ("finished_s", "click Train -> finished run (test metrics shown)"),
                     ("trainer_elapsed_s", "of which the trainer itself (its elapsed; prepare excluded)"),
                     ("server_cpu_s", "server process CPU seconds, click -> finished"),
                     ("chromium_cpu_s", "Chromium CPU seconds, click -> finished")):
        print(f"| {label} | " + " | ".join(f"{out['train'][n][k]:.2f}" for n in names) + " |")
    for k, label in (("first_point_s", "first training of a fresh server: click -> first curve point"),
                     ("finished_s", "first training of a fresh server: click -> finished")):
        print(f"| {label} | " + " | ".join(f"{out['train_cold'][n][k]:.2f}" for n in names) + " |")
    if "tsne_library" in out:
        print(f"| t-SNE of {out['tsne_library']['points']:,} items, mtrlib.viz.project | {out['tsne_library']['tsne_s']:.1f} |"
              + " |" * (len(names) - 1))
    if "tsne_page" in out:
        print(f"| t-SNE of 5,000 items on the Embeddings page, select -> chart drawn | {out['tsne_page']['tsne_chart_s']:.1f} |"
              + " |" * (len(names) - 1))
        print(f"| ... -> page run over (kNN purity, untrained purity, export) | {out['tsne_page']['tsne_page_done_s']:.1f} |"
              + " |" * (len(names) - 1))
    res = {"first_point_s": round(T["first_point_s"], 3), "finished_s": round(T["finished_s"], 3),
           "trainer_elapsed_s": T["trainer_elapsed_s"], "open_s": round(T["open_s"], 3),
           "cold_first_open_s": round(out["cold_first_open_s"], 3), "server_start_s": round(out["server_start_s"], 2),
           "tsne_5000_library_s": round(out["tsne_library"]["tsne_s"], 2) if "tsne_library" in out else None,
           "tsne_5000_page_chart_s": round(out["tsne_page"]["tsne_chart_s"], 2) if "tsne_page" in out else None,
           "tsne_5000_page_done_s": round(out["tsne_page"]["tsne_page_done_s"], 2) if "tsne_page" in out else None,
           "cold_server_first_point_s": round(out["train_cold"]["default"]["first_point_s"], 3),
           "cold_server_finished_s": round(out["train_cold"]["default"]["finished_s"], 3),
           "tsne_variants": {k: round(v, 2) for k, v in out.get("tsne_variants", {}).items()} or None,
           "repeats": args.repeats, "loadavg_start": info["loadavg_start"],
           "loadavg_end": [round(x, 2) for x in C.loadavg()], "date": info["date"],
           "machine": f"{info['cpu']}, {info['cores']} cores"}
    if args.compare_gc:
        G = out["train"]["postScriptGC=true"]
        res["with_post_script_gc"] = {k: round(G[k], 3) for k in ("first_point_s", "finished_s", "trainer_elapsed_s",
                                                                  "server_cpu_s")}
    print(C.json_line(res))
    return res


if __name__ == "__main__":
    main()
