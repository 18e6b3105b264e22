"""Training throughput: mtrlib's trainer vs torch-rechub 0.9.0's MTLTrainer vs a plain PyTorch
loop (the floor), same model shape, same data, same process, same thread setting.

    python bench/throughput.py [--repeats 3] [--threads 1,2] [--no-ranking] [--profile]

Data: ml-latest-small's ratings (../shared/data/ml-latest-small), tasks watched=implicit and
liked=rating>=4 (4 sampled negatives per rating), per-user temporal split 70/10/20: about
353k training examples. Model: MMoE, 4 experts [64, 32], one gate per task, towers [32],
user/item id embeddings of dimension 16 (ids only, so all three have the same shapes), batch
1024, Adam (lr 0.01, weight decay 1e-4 for all three).

- ours:   `mtrlib.train.train` with epochs=1 (its own reported samples/s: the training loop
          only, events included, validation excluded), a fresh model per repeat.
- rechub: torch_rechub.models.multi_task.MMOE on two SparseFeatures, its DataGenerator /
          per-sample TorchDataset + DataLoader(shuffle=True), `MTLTrainer.train_one_epoch`
          (its MLP blocks carry BatchNorm: that is its model). Progress bars off, prints
          swallowed (both favour it slightly).
- plain:  the same MMoE written minimally (nn.Embedding, nn.Linear, softmax gates), a loop
          over index slices of pre-built tensors shuffled once per epoch, BCE-with-logits per
          task, torch.optim.Adam with its defaults; nothing else. `plain_fused` is the same with
          Adam(fused=True), which ours uses.

Whole runs (`--run-epochs`, default 8): each contender also trains one model for that many
consecutive epochs; the first and last epoch's samples/s and their ratio are reported, for
ours and the peers alike (long runs meet a slowdown that one epoch never shows).

Each contender gets one warm-up epoch, then `--repeats` timed epochs, interleaved round by round
(ours, rechub, plain in rotating order) so that load changes on this shared machine hit all
three alike; medians are reported. The headline is the first `--threads` value (default 1;
OMP_WAIT_POLICY=PASSIVE, set by importing mtrlib, applies to all three).

Also: evaluation throughput (test split, inference only) for all three, and full-ranking time
(every user x every item) through `mtrlib.serve.recommend.run_scores` / `rank_eval` on a saved run,
beside naive all-pairs scoring of the same model and of torch-rechub's model.

The last line printed is one JSON object:
{"ours": samples_per_s, "rechub": ..., "plain": ..., "vs_rechub": ours/rechub, "vs_plain": ours/plain, ...}
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from mtrlib.train.loop import prepare, train  # noqa: E402
from mtrlib.train.predict import predict  # noqa: E402

LR, WD, BATCH = 0.01, 1e-4, 1024


def config(threads: int, epochs: int = 1):
    cfg = C.ml_config("mmoe", use_features=False, epochs=epochs, seed=0, lr=LR, weight_decay=WD, batch_size=BATCH)
    cfg.model.experts, cfg.model.n_experts, cfg.model.towers, cfg.model.emb_dim = [64, 32], 4, [32], 16
    cfg.cpu_threads = threads
    return cfg


# -- the floor -----------------------------------------------------------------------------------------------

class PlainMMoE(nn.Module):
    def __init__(self, n_users, n_items, dim=16, experts=(64, 32), n_experts=4, towers=(32,), n_tasks=2):
        super().__init__()
        self.u, self.i = nn.Embedding(n_users, dim), nn.Embedding(n_items, dim)

        def mlp(d, sizes):
            layers = []
            for s in sizes:
                layers += [nn.Linear(d, s), nn.ReLU()]
                d = s
            return layers, d

        self.experts = nn.ModuleList()
        for _ in range(n_experts):
            layers, d_e = mlp(2 * dim, experts)
            self.experts.append(nn.Sequential(*layers))
        self.gates = nn.ModuleList(nn.Linear(2 * dim, n_experts) for _ in range(n_tasks))
        self.towers = nn.ModuleList()
        for _ in range(n_tasks):
            layers, d_t = mlp(d_e, towers)
            self.towers.append(nn.Sequential(*layers, nn.Linear(d_t, 1)))

    def forward(self, u, i):
        x = torch.cat([self.u(u), self.i(i)], -1)
        e = torch.stack([ex(x) for ex in self.experts], 1)  # [B, E, d]
        outs = []
        for g, tw in zip(self.gates, self.towers):
            w = torch.softmax(g(x), -1).unsqueeze(-1)  # [B, E, 1]
            outs.append(tw((w * e).sum(1)))
        return torch.cat(outs, -1)  # logits [B, T]


class Plain:
    def __init__(self, prep, fused: bool):
        torch.manual_seed(0)
        d = prep.space.describe()
        self.model = PlainMMoE(d["users"]["n"], d["items"]["n"], n_tasks=len(prep.tasks))
        kw = {"fused": True} if fused else {}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=LR, weight_decay=WD, **kw)
        self.U, self.I, self.Y = prep.train.user, prep.train.item, prep.train.labels
        self.gen = torch.Generator().manual_seed(0)

    def epoch(self) -> float:
        n = len(self.U)
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=self.gen)
        U, I, Y = self.U[perm], self.I[perm], self.Y[perm]
        self.model.train()
        for b in range(0, n, BATCH):
            logits = self.model(U[b:b + BATCH], I[b:b + BATCH])
            loss = F.binary_cross_entropy_with_logits(logits, Y[b:b + BATCH], reduction="none").mean(0).sum()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        return n / (time.perf_counter() - t0)

    @torch.inference_mode()
    def eval_rate(self, data) -> float:
        self.model.eval()
        t0 = time.perf_counter()
        out = [torch.sigmoid(self.model(data.user[s:s + 65536], data.item[s:s + 65536]))
               for s in range(0, len(data), 65536)]
        torch.cat(out).numpy()
        return len(data) / (time.perf_counter() - t0)


# -- torch-rechub ----------------------------------------------------------------------------------------------

class Rechub:
    def __init__(self, prep, tmp: str):
        torch.manual_seed(0)
        d = prep.space.describe()
        self.model = C.rechub_model("mmoe", d["users"]["n"], d["items"]["n"], 16, len(prep.tasks),
                                    experts=(64, 32), n_experts=4, towers=(32,))
        self.train_dl, _, self.test_dl = C.rechub_loaders(prep, BATCH)
        with C.quiet():
            self.trainer = C.rechub_trainer(self.model, len(prep.tasks), LR, WD, 1, tmp)
        self.n, self.n_test = len(prep.train), len(prep.test)

    def epoch(self) -> float:
        t0 = time.perf_counter()
        with C.quiet():
            self.trainer.train_one_epoch(self.train_dl)
        return self.n / (time.perf_counter() - t0)

    def eval_rate(self) -> float:
        t0 = time.perf_counter()
        with C.quiet():
            self.trainer.evaluate(self.model, self.test_dl)  # what its users call: predictions + AUC
        return self.n_test / (time.perf_counter() - t0)


# -- ours -----------------------------------------------------------------------------------------------------

class Ours:
    def __init__(self, prep, threads: int):
        self.prep, self.threads = prep, threads
        self.last = None
        self.overheads = []

    def epoch(self) -> float:
        res = train(config(self.threads), self.prep)
        assert res.status == "finished", res.reason
        self.last = res
        self.overheads.append(res.event_overhead)
        return res.samples_per_s

    def eval_rate(self) -> float:
        t0 = time.perf_counter()
        predict(self.last.model, self.prep.test)
        return len(self.prep.test) / (time.perf_counter() - t0)


# -- whole runs ---------------------------------------------------------------------------------------------

def whole_runs(prep, threads: int, epochs: int, have_rechub: bool, tmp: str) -> dict:
    """Each contender trains ONE model for `epochs` consecutive epochs: the first and last epoch's
    samples/s and their ratio. A single-epoch measurement never reaches the slowdown that long
    runs meet (denormal floats in decayed weights, BENCHMARKS.md), so this is what a user feels."""
    out = {}
    res = train(config(threads, epochs=epochs), prep)
    assert res.status == "finished", res.reason
    per = [e["epoch_samples_per_s"] for e in res.history.epochs]
    out["ours"] = per
    torch.set_num_threads(threads)
    contenders = {"plain": Plain(prep, False), "plain_fused": Plain(prep, True)}
    if have_rechub:
        contenders["rechub"] = Rechub(prep, tmp)
    for name, c in contenders.items():
        out[name] = [c.epoch() for _ in range(epochs)]
        torch.set_num_threads(threads)
    return {n: {"first": v[0], "last": v[-1], "last_vs_first": v[-1] / v[0], "epochs": v} for n, v in out.items()}


# -- full ranking -------------------------------------------------------------------------------------------

def ranking(prep, threads: int, repeats: int, rechub_model=None) -> dict:
    from mtrlib.serve.recommend import rank_eval, run_scores
    from mtrlib.runs import load_run, train_and_save
    out = {}
    with tempfile.TemporaryDirectory() as store:
        cfg = config(threads)
        res, writer = train_and_save(cfg, prep, store=store)
        run = load_run(writer.path, store)
        n_u, n_i = run.n_users, run.n_items
        out["users"], out["items"], out["pairs"] = n_u, n_i, n_u * n_i
        sm, re, naive, rh = [], [], [], []
        users = torch.arange(n_u)
        items = torch.arange(n_i)

        @torch.inference_mode()
        def all_pairs(fwd, chunk=65536):
            t0 = time.perf_counter()
            S = torch.empty(n_u, n_i)
            per = max(1, chunk // n_i)
            for lo in range(0, n_u, per):
                u = users[lo:lo + per]
                S[lo:lo + per] = fwd(u.repeat_interleave(n_i), items.repeat(len(u))).reshape(len(u), n_i, -1)[..., 0]
            return time.perf_counter() - t0

        model = run.model.eval()
        for _ in range(repeats):
            t0 = time.perf_counter()
            M = run_scores(run)
            sm.append(time.perf_counter() - t0)
            r = rank_eval(run)
            re.append(r["seconds"])
            naive.append(all_pairs(lambda u, i: model(u, i)))
            if rechub_model is not None:
                rechub_model.eval()
                rh.append(all_pairs(lambda u, i: rechub_model({"user_id": u, "item_id": i})))
        assert M.shape == (n_u, n_i)
        out.update({"score_matrix_s": C.median(sm), "rank_eval_s": C.median(re), "naive_all_pairs_s": C.median(naive),
                    "rechub_all_pairs_s": C.median(rh) if rh else None,
                    "score_matrix_runs": sm, "rank_eval_runs": re, "naive_runs": naive, "rechub_runs": rh,
                    "recall@10": r["model"]["recall@10"], "ndcg@10": r["model"]["ndcg@10"], "rank_eval_task": r["task"]})
    return out


def profile_ours(prep, threads: int) -> None:
    """torch.profiler over one epoch of ours and of the floor: the top operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile
    for name, fn in (("ours", lambda: train(config(threads), prep)), ("plain", Plain(prep, False).epoch)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
        print(f"\n### torch.profiler: {name} (one epoch, threads={threads})\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,2", help="thread settings; the first is the headline")
    ap.add_argument("--no-ranking", action="store_true")
    ap.add_argument("--no-rechub", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--run-epochs", type=int, default=8,
                    help="epochs of the whole-run measurement (first vs last epoch); 0 = skip it")
    args = ap.parse_args(argv)
    if not C.ml_available():
        sys.exit(f"ml-latest-small not found at {C.ML_DIR}")
    have_rechub = C.rechub_version() is not None and not args.no_rechub
    if not have_rechub and not args.no_rechub:
        print("torch-rechub is not installed: pip install --no-deps torch-rechub==0.9.0", file=sys.stderr)
    info = C.machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']}, torch-rechub {info['torch_rechub']}; "
          f"load average at start {info['loadavg_start']}")
    t = time.perf_counter()
    prep = prepare(config(1), C.load_ml())
    print(f"data: ml-latest-small, {len(prep.train):,} train / {len(prep.val):,} val / {len(prep.test):,} test examples, "
          f"{prep.space.describe()['users']['n']} users x {prep.space.describe()['items']['n']} items "
          f"(prepared in {time.perf_counter() - t:.1f}s)")
    threads_list = [int(x) for x in args.threads.split(",") if x]
    if args.profile:
        torch.set_num_threads(threads_list[0])
        profile_ours(prep, threads_list[0])
    results: dict = {}
    tmp = tempfile.TemporaryDirectory()
    for th in threads_list:
        torch.set_num_threads(th)
        contenders = {"ours": Ours(prep, th), "plain": Plain(prep, False), "plain_fused": Plain(prep, True)}
        if have_rechub:
            contenders["rechub"] = Rechub(prep, tmp.name)
        names = list(contenders)
        rates = {n: [] for n in names}
        warm = {}
        for n in names:  # warm-up epoch each
            warm[n] = contenders[n].epoch()
        for r in range(args.repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for n in order:
                rates[n].append(contenders[n].epoch())
                torch.set_num_threads(th)
            print(f"  threads={th} round {r + 1}/{args.repeats}: "
                  + ", ".join(f"{n} {rates[n][-1]:,.0f}" for n in names) + f"  (load {C.loadavg()[0]:.2f})", flush=True)
        ev = {n: [] for n in names}
        for _ in range(args.repeats):
            ev["ours"].append(contenders["ours"].eval_rate())
            ev["plain"].append(contenders["plain"].eval_rate(prep.test))
            ev["plain_fused"].append(contenders["plain_fused"].eval_rate(prep.test))
            if have_rechub:
                ev["rechub"].append(contenders["rechub"].eval_rate())
        med = {n: C.median(v) for n, v in rates.items()}
        results[th] = {"train": med, "train_runs": rates, "warmup": warm,
                       "eval": {n: C.median(v) for n, v in ev.items() if v}, "eval_runs": ev,
                       "event_overhead": C.median(contenders["ours"].overheads),
                       "loadavg": [round(x, 2) for x in C.loadavg()]}
        if th == threads_list[0] and args.run_epochs > 0:
            results[th]["whole_run"] = whole_runs(prep, th, args.run_epochs, have_rechub, tmp.name)
        if th == threads_list[0] and not args.no_ranking:
            results[th]["ranking"] = ranking(prep, th, args.repeats,
                                             contenders["rechub"].model if have_rechub else None)
            torch.set_num_threads(th)
    tmp.cleanup()

    head = threads_list[0]
    H = results[head]
    print(f"\n## Training throughput, samples/s (median of {args.repeats} epochs after a warm-up epoch; "
          f"min-max in brackets)\n")
    print("| threads | ours (mtrlib) | torch-rechub MTLTrainer | plain PyTorch | plain + fused Adam | ours/rechub | ours/plain | ours/plain_fused |")
    print("|---|---|---|---|---|---|---|---|")
    for th, R in results.items():
        m = R["train"]
        rh = m.get("rechub", float("nan"))
        print(f"| {th} | {C.spread(R['train_runs']['ours'])} | {C.spread(R['train_runs'].get('rechub', []))} | "
              f"{C.spread(R['train_runs']['plain'])} | {C.spread(R['train_runs']['plain_fused'])} | "
              f"{m['ours'] / rh:.2f} | {m['ours'] / m['plain']:.2f} | {m['ours'] / m['plain_fused']:.2f} |")
    print("\n## Evaluation throughput (test split, inference), samples/s\n")
    print("| threads | ours (predict) | torch-rechub (MTLTrainer.evaluate) | plain | ours/rechub | ours/plain |")
    print("|---|---|---|---|---|---|")
    for th, R in results.items():
        e = R["eval"]
        print(f"| {th} | {e['ours']:,.0f} | {e.get('rechub', float('nan')):,.0f} | {e['plain']:,.0f} | "
              f"{e['ours'] / e.get('rechub', float('nan')):.2f} | {e['ours'] / e['plain']:.2f} |")
    if "whole_run" in H:
        print(f"\n## Whole runs: one model trained {args.run_epochs} epochs, samples/s of the first and last epoch\n")
        print("| contender | first epoch | last epoch | last / first |")
        print("|---|---|---|---|")
        for n, w in H["whole_run"].items():
            print(f"| {n} | {w['first']:,.0f} | {w['last']:,.0f} | {w['last_vs_first']:.2f} |")
    if "ranking" in H:
        k = H["ranking"]
        print(f"\n## Full ranking, every user x every item ({k['users']} x {k['items']} = {k['pairs']:,} pairs), "
              f"threads={head}, seconds (median)\n")
        print(f"- mtrlib.serve.recommend.run_scores (fused score matrix): {k['score_matrix_s']:.2f} s")
        print(f"- mtrlib.serve.recommend.rank_eval (Recall/NDCG/HitRate@5,10,20 for model + popularity, seen items masked): "
              f"{k['rank_eval_s']:.2f} s (task {k['rank_eval_task']}, recall@10 {k['recall@10']:.4f})")
        print(f"- naive all-pairs forward of the same model (65,536-pair batches): {k['naive_all_pairs_s']:.2f} s")
        if k["rechub_all_pairs_s"] is not None:
            print(f"- torch-rechub MMOE, all-pairs forward on tensors (no DataLoader): {k['rechub_all_pairs_s']:.2f} s")
    print(f"\nevent overhead of ours (share of the training loop spent on progress events): "
          f"{H['event_overhead'] * 100:.2f}%; load average at end {C.loadavg()}")
    m = H["train"]
    out = {"ours": round(m["ours"]), "rechub": round(m["rechub"]) if "rechub" in m else None,
           "plain": round(m["plain"]),
           "vs_rechub": round(m["ours"] / m["rechub"], 3) if "rechub" in m else None,
           "vs_plain": round(m["ours"] / m["plain"], 3),
           "plain_fused": round(m["plain_fused"]), "vs_plain_fused": round(m["ours"] / m["plain_fused"], 3),
           "threads": head, "repeats": args.repeats,
           "eval": {k: round(v) for k, v in H["eval"].items()},
           "whole_run": {n: {k: round(v, 3) if k == "last_vs_first" else round(v) for k, v in w.items() if k != "epochs"}
                         for n, w in H.get("whole_run", {}).items()},
           "ranking": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in H.get("ranking", {}).items()
                       if not k.endswith("_runs")},
           "by_threads": {str(th): {"train": {k: round(v) for k, v in R["train"].items()},
                                    "eval": {k: round(v) for k, v in R["eval"].items()}} for th, R in results.items()},
           "loadavg_start": info["loadavg_start"], "loadavg_end": [round(x, 2) for x in C.loadavg()],
           "machine": f"{info['cpu']}, {info['cores']} cores", "torch": info["torch"], "date": info["date"]}
    print(C.json_line(out))
    return out


if __name__ == "__main__":
    main()
