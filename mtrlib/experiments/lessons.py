"""Lessons: teaching presets, each a small sweep on the built-in world with a stated expectation.

A lesson is data: a plain-words question, the overrides it applies to a fresh setup (`base`,
nested as in config.json: {"world": {...}, "model": {...}, "data": {...}, "epochs": 6}), the
settings it sweeps (`axes`), its seeds, and a reduced size (`quick`) for a quick check and the
tests. Every override and swept key is checked against the real config classes when the lesson
is built, so a setting this version does not have is refused by name, never ignored. What a
lesson measures is computed from its sweep by its `kind`:

- "gain": the multi-task gain over single-task models (paired per seed) against a swept value;
- "front": the task-weight Pareto front against the best single-task pair;
- "bars": one bar per compared setting.

Its `holds(headline)` says, in one boolean, whether its expectation held this time; `run_lesson`
returns the JSON the CLI prints: {"lesson", "headline": {SETTING: {METRIC: {"mean", "ci95", "n"}}},
"holds", ...}. Each lesson finishes in under two minutes on the project's 2-core CPU box (sizes
and timings: docs/RESULTS-experiments.md).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from collections.abc import Callable

from ..config import ARCH_LABELS, TrainConfig
from ..errors import ConfigError
from ..eval.stats import Estimate
from .settings import Axis, flatten, with_overrides
from .runner import run_sweep
from .sweep import Sweep, SweepResult
from .pareto import front
from .headlines import MEAN_OF_MTL, figure, headline  # noqa: F401  (figure, headline: re-exported)


@dataclass(frozen=True)
class LessonAxis:
    """Swept keys (one, or several that change together), their values and display labels."""
    keys: tuple[str, ...]
    values: tuple  # one value per point (a tuple per point for linked keys)
    labels: tuple[str, ...] = ()
    labels_title: str = ""  # the axis title in figures

    def axis(self) -> Axis:
        if len(self.keys) == 1:
            return Axis.of(self.keys[0], self.values)
        return Axis.linked(self.keys, self.values)

    def label_of(self, settings: dict) -> str:
        vals = tuple(settings.get(k) for k in self.keys)
        for v, lab in zip(self.axis().values, self.labels or ()):
            if tuple(v) == vals:
                return lab
        return " · ".join(f"{k}={settings.get(k)}" for k in self.keys)


@dataclass(frozen=True)
class Lesson:
    name: str  # the CLI and URL name
    title: str
    question: str
    expectation: str  # what `holds` checks, in plain words
    explanation: str  # markdown: what the figure shows and why, citing the paper
    kind: str  # "gain" | "front" | "bars"
    base: dict
    axes: tuple[LessonAxis, ...]
    seeds: int
    holds: Callable[[dict], bool]  # the expectation's direction, on the means
    clear: Callable[[dict], bool]  # the same, beyond the seed noise (the 95% intervals)
    quick: dict = field(default_factory=dict)  # {"seeds": n, "base": {...}}: the reduced size
    corners: tuple[dict, ...] = ()
    metrics: tuple[str, ...] = ()  # "task/metric" the headline reports
    front_name: str = ""  # "front" lessons: the legend name of the front
    reference: str = ""  # "bars" lessons: the setting the others are compared with, paired per seed
    plot: tuple[str, ...] = ()  # "bars" lessons: the metrics drawn (default: `metrics`)
    truth: str | None = None  # a task whose ranking is also judged against the world's truth (Sweep.truth)

    def setup(self, quick: bool = False) -> TrainConfig:
        """The base TrainConfig of the lesson (or of its quick size)."""
        cfg = with_overrides(TrainConfig(), self.base, f"Lesson '{self.name}'")
        if quick and self.quick.get("base"):
            cfg = with_overrides(cfg, self.quick["base"], f"Lesson '{self.name}' (quick)")
        return cfg

    def sweep(self, quick: bool = False, seeds: int | None = None) -> Sweep:
        n = seeds or (self.quick.get("seeds", self.seeds) if quick else self.seeds)
        if not 1 <= int(n) <= 20:
            raise ConfigError(f"A lesson runs with 1..20 seeds (got {n}).", fix="e.g. --seeds 3")
        return Sweep(self.setup(quick), [a.axis() for a in self.axes], list(range(int(n))),
                     corners=[dict(c) for c in self.corners], name=f"lesson {self.name}", truth=self.truth)

    def check(self) -> None:
        """Every override and swept key exists in this version's config (ConfigError otherwise)."""
        flatten(self.base, f"Lesson '{self.name}'")
        flatten(self.quick.get("base", {}), f"Lesson '{self.name}' (quick)")
        for a in self.axes:
            a.axis()
        self.sweep().check()

    def setting_label(self, settings: dict) -> str:
        return " · ".join(a.label_of(settings) for a in self.axes) or "base"


def _beats(a: Estimate, b: Estimate) -> bool:
    """a above b by more than noise: their 95% intervals do not overlap (n >= 2 each)."""
    return a.n >= 2 and b.n >= 2 and math.isfinite(a.ci95) and math.isfinite(b.ci95) and a.low > b.high


def _above(e: Estimate, value: float = 0.0) -> bool:
    return e.n >= 2 and math.isfinite(e.ci95) and e.low > value


# -- the lessons ----------------------------------------------------------------------------------------------
# Sizes: each runs in under two minutes of one CPU core with its seeds (docs/RESULTS-experiments.md);
# `quick` is the reduced size of `--quick` and of tests/test_lessons.py.

TWO_TASKS = ["click=click", "like=like|click"]  # the click -> like funnel of the built-in world
QUICK_WORLD = {"n_users": 600, "n_items": 150, "impressions_per_user": 30}
RHOS = (0.9, 0.0, -0.9)
RATIOS = ((1, 8), (1, 4), (1, 2), (1, 1), (2, 1), (4, 1), (8, 1))
LESSONS: dict[str, Lesson] = {}


def _register(lesson: Lesson) -> Lesson:
    LESSONS[lesson.name] = lesson
    return lesson


def _arch_labels(archs) -> tuple[str, ...]:
    return tuple(ARCH_LABELS[a] for a in archs)


def _mean_gains(h: dict) -> dict[str, Estimate]:
    return {k.rsplit(" · ", 1)[1]: v["gain"] for k, v in h.items() if k.startswith(MEAN_OF_MTL)}


def _conflict_holds(h: dict) -> bool:
    """The gain averaged over the multi-task architectures is lowest at ρ = 0."""
    g = _mean_gains(h)
    mid = g.pop("ρ = 0")
    return bool(g) and all(mid.mean < v.mean for v in g.values())


def _conflict_clear(h: dict) -> bool:
    g = _mean_gains(h)
    mid = g.pop("ρ = 0")
    return bool(g) and all(_beats(v, mid) for v in g.values())


CONFLICT_ARCHS = ("single", "shared-bottom", "mmoe", "stem")
_register(Lesson(
    name="conflict", title="When tasks conflict",
    question="Does sharing one network between click and like pay off, and does it still pay when the two "
             "tasks want different things?",
    expectation="sharing pays least where the tasks are unrelated: averaged over the multi-task models, the "
                "AUC gain over single-task models is lower at ρ = 0 than at ρ = 0.9 (agreeing tasks) and at "
                "ρ = −0.9 (mirror-image tasks).",
    explanation=(
        "The world builds the like preference as `ρ·u1 + √(1−ρ²)·u2` against the click preference `u1`, the "
        "synthetic construction of Ma et al., *Modeling Task Relationships in Multi-task Learning with "
        "Multi-gate Mixture-of-Experts* (KDD 2018, section 4). Each point is a multi-task model's test AUC "
        "(the mean of click and like) minus the single-task models', paired over seeds that share their "
        "split, with its 95% interval. Like is observed only on clicked impressions, so a like model alone "
        "learns from few examples; a shared network lends it what click learned from every impression. That "
        "transfer works when the tasks are *related*: at ρ = 0.9 they agree, and at ρ = −0.9 they are "
        "mirror images (the same direction with the opposite sign, which a task's own tower flips), so "
        "sharing pays. At ρ = 0 the two preferences are unrelated directions: the shared layers must serve "
        "both and the gain shrinks or turns into a loss, the *negative transfer* Caruana (*Multitask "
        "Learning*, Machine Learning 1997) warned of. The MMoE paper found Shared-Bottom suffering most as "
        "the correlation drops, because its gates let MMoE give unrelated tasks different experts. STEM (Su et "
        "al., *STEM: Unleashing the Power of Embeddings for Multi-task Recommendation*, AAAI 2024) goes one "
        "step further down: each task also gets embeddings of its own, and a task's gate reads other tasks' "
        "experts without sending them its gradient, so what one task needs is not erased by the other; on this "
        "world it is the model that loses least where the tasks are unrelated. On this small world the "
        "differences between architectures are small next to the seed noise: read the intervals before the "
        "means."),
    kind="gain",
    # like only on clicked impressions (the funnel this lesson's transfer argument is about)
    base={"world": {"like_observed": "clicks"}, "data": {"tasks": TWO_TASKS}},
    axes=(LessonAxis(("rho",), RHOS, tuple(f"ρ = {r:g}" for r in RHOS), labels_title="task correlation ρ"),
          LessonAxis(("arch",), CONFLICT_ARCHS, _arch_labels(CONFLICT_ARCHS))),
    seeds=3, holds=_conflict_holds, clear=_conflict_clear, metrics=("click/auc", "like/auc"),
    quick={"seeds": 3, "base": {"world": QUICK_WORLD, "epochs": 6}},
))


def _ratio_labels() -> tuple[str, ...]:
    return tuple(f"{a}:{b}" for a, b in RATIOS)


def _dominated(h: dict) -> bool:
    """Some ratio is beaten on both tasks by another."""
    ratios = [k for k in h if k != "single-task"]
    pts = [(h[r]["click/auc"].mean, h[r]["like/auc"].mean) for r in ratios]
    return len(front(pts)) < len(ratios)


def _seesaw_holds(h: dict) -> bool:
    """Click AUC higher at 8:1 than at 1:8, and some ratio is dominated."""
    return h["8:1"]["click/auc"].mean > h["1:8"]["click/auc"].mean and _dominated(h)


def _seesaw_clear(h: dict) -> bool:
    return _beats(h["8:1"]["click/auc"], h["1:8"]["click/auc"]) and _dominated(h)


_register(Lesson(
    name="seesaw", title="The seesaw",
    question="If you give one task more weight, what does it buy that task, and what does it cost the other?",
    expectation="moving the weight from like to click (1:8 → 8:1) raises click AUC, and not every ratio is "
                "worth having: some are dominated (another ratio is better on both tasks).",
    explanation=(
        "Each point is one click:like weight ratio of a Shared-Bottom model, from 1:8 to 8:1 on a log grid, "
        "with its test AUCs and their 95% intervals over seeds. Trading one task for another when they share a "
        "network is the *seesaw phenomenon* of Tang et al., *Progressive Layered Extraction (PLE)* (RecSys "
        "2020). The ratios no other ratio beats on both tasks form the Pareto front (joined); the dominated "
        "ones are greyed: nobody should choose them. The star is the best single-task pair (each task trained "
        "alone), and the front's *hypervolume* (Zitzler & Thiele, IEEE TEC 1999), the area it dominates above "
        "chance, is shown relative to the star's: above 1, sharing offers trade-offs that separate models "
        "cannot reach. On this world the seesaw tips one way: click's weight moves click's AUC a lot, while "
        "like, learned from the few clicked impressions, gains little from its own weight and leans on what "
        "click teaches the shared layers, so the heavily like-weighted ratios cost click and buy nothing. The "
        "Pareto page draws the same front for any two tasks, architectures and weighting methods."),
    kind="front",
    base={"data": {"tasks": TWO_TASKS}, "model": {"arch": "shared-bottom"}},
    axes=(LessonAxis(("weights.click", "weights.like"), RATIOS, _ratio_labels()),),
    corners=({"arch": "single"},),
    seeds=3, holds=_seesaw_holds, clear=_seesaw_clear, metrics=("click/auc", "like/auc"), front_name="Shared-Bottom",
    quick={"seeds": 2, "base": {"world": QUICK_WORLD, "epochs": 6}},
))


def _paired(h: dict) -> list[dict]:
    return [v for k, v in h.items() if k.endswith("(paired)")]


def _funnel_holds(h: dict) -> bool:
    """ESMM's CVR log-loss lower than the naive model's (paired mean), and its AUC not worse beyond
    noise (the paired interval reaches 0 or above)."""
    d = _paired(h)[0]
    return d["like/logloss"].mean < 0 and d["like/auc"].high >= 0


def _funnel_clear(h: dict) -> bool:
    d = _paired(h)[0]
    return d["like/logloss"].high < 0


NAIVE, ESMM = "naive CVR (single-task)", "ESMM"
_register(Lesson(
    name="funnel", title="Funnels",
    question="A like can only follow a click. Should the like model learn from the clicked impressions "
             "alone, or from every impression?",
    expectation="where like labels are sparse, ESMM predicts like-given-click (the CVR) better than a naive "
                "model trained on clicked impressions only: a lower log-loss (better calibrated), with an AUC "
                "no worse beyond noise, paired over seeds.",
    explanation=(
        "The world is a funnel: an impression is clicked or not, and only a clicked one can be liked, so like "
        "is observed on clicked impressions alone. A *naive CVR* model learns p(like | click) from those few "
        "impressions: little data (*data sparsity*), and drawn from the clicked ones only, unlike the whole "
        "impression space it will score (*sample selection bias*). ESMM (Ma et al., *Entire Space Multi-Task "
        "Model*, SIGIR 2018) learns from every impression instead: it models pCTCVR = pCTR × pCVR and trains "
        "click and click-and-like over the entire space, so its CVR tower is trained through a product whose "
        "label is known everywhere, and shares the embeddings with click. The bars are test AUCs with their 95% "
        "intervals; the table adds the log-loss and the paired difference per seed (both models see the same "
        "split). The lesson's world is sparse (12 impressions per user, so a user has about three clicked "
        "impressions to learn like from): there the naive model overfits its few labels and ESMM's CVR is far "
        "better calibrated (lower log-loss), while the two rank about equally (the AUC difference changes sign "
        "from seed to seed; on the denser default world the log-loss gap closes too). The ESMM paper reports "
        "AUC gains as well, on industrial logs where clicks are far rarer than this world can make them."),
    kind="bars",
    # the funnel (like only where clicked), sparse: 12 impressions per user (world v2, measured: full size,
    # 5 seeds, log-loss -0.432 +- 0.235, AUC -0.010 +- 0.024; at the default 40, +0.003 +- 0.014 / -0.018 +- 0.020)
    base={"world": {"like_observed": "clicks", "impressions_per_user": 12}, "data": {"tasks": TWO_TASKS}},
    axes=(LessonAxis(("arch",), ("single", "esmm"), (NAIVE, ESMM)),),
    seeds=5, holds=_funnel_holds, clear=_funnel_clear, metrics=("click/auc", "like/auc", "like/logloss"), reference=NAIVE,
    plot=("click/auc", "like/auc"),
    quick={"seeds": 3, "base": {"world": {**QUICK_WORLD, "n_users": 1500, "impressions_per_user": 12}, "epochs": 6}},
))


def _cold_holds(h: dict) -> bool:
    """Every setting with something besides the id beats ids only on cold-item click AUC (paired means)."""
    diffs = _paired(h)
    return bool(diffs) and all(d["click/auc"].mean > 0 for d in diffs)


def _cold_clear(h: dict) -> bool:
    diffs = _paired(h)
    return bool(diffs) and all(_above(d["click/auc"]) for d in diffs)


IDS = "ids only"
_register(Lesson(
    name="cold-text", title="The language model and cold items",
    question="How can a model recommend an item that nobody has interacted with yet?",
    expectation="cold items need more than their id: with side features, with the language model's reading "
                "of their text, and with both, the cold-item click AUC is above ids only (paired over seeds).",
    explanation=(
        "The split holds out 10% of the items with all their interactions (*cold items*): the test set is "
        "theirs alone, and training never saw them. With **ids only** a cold item is the untrained "
        "out-of-vocabulary embedding, the same for every cold item, so the model can only tell users apart, "
        "not items: AUC near chance (the dotted line). **Side features** (genre, price band) give a cold item "
        "what the warm items of its genre taught (Schein et al., *Methods and Metrics for Cold-Start "
        "Recommendations*, SIGIR 2002). **Text**: a pretrained language model (all-MiniLM-L6-v2, the "
        "sentence encoder of Reimers & Gurevych, *Sentence-BERT*, EMNLP 2019) reads each item's title and "
        "description, and a projection learned on warm items places a cold item next to the warm items its "
        "text resembles. On this world (v2) an item's text names its genre's words and its *mood*, a part of "
        "its latent vector and of its click appeal that the genre feature does not carry, so text alone "
        "places a cold item well above chance and adds to the side features. The projection is learned on "
        "warm items only and learns slowly, so the lesson trains 8 epochs. On MovieLens, whose titles and "
        "tags say more than the genre list, text adds a lot too (README: cold-item AUC 0.78 → 0.82). Bars: "
        "test AUCs on cold items with 95% intervals; the table adds the paired gain over ids only."),
    kind="bars",
    base={"data": {"tasks": TWO_TASKS, "split": "cold-items"}},
    axes=(LessonAxis(("use_features", "text_features"), ((False, False), (True, False), (False, True), (True, True)),
                     (IDS, "+ side features", "+ text", "+ side features + text")),),
    seeds=3, holds=_cold_holds, clear=_cold_clear, metrics=("click/auc", "like/auc"), reference=IDS,
    # quick: the full lesson's 3 seeds and 8 epochs (the text projection learns slowly) on a smaller
    # world with 200 items, so that the 10% held out are 20 cold items, enough to rank (120 gave 12)
    quick={"seeds": 3, "base": {"world": {"n_users": 600, "n_items": 200, "impressions_per_user": 30}}},
))


def _position_parts(h: dict) -> tuple:
    feature, none, tower = (h[k] for k in (AS_FEATURE, NO_POSITION, TOWER))
    return feature, none, tower, h[f"{AS_FEATURE} − {TOWER} (paired)"][TRUTH_METRIC]


def _position_holds(h: dict) -> bool:
    """Position as a feature: the best test click AUC, yet a worse ranking against the truth than the tower's."""
    feature, none, tower, diff = _position_parts(h)
    return diff.mean < 0 and feature["click/auc"].mean > max(none["click/auc"].mean, tower["click/auc"].mean)


def _position_clear(h: dict) -> bool:
    feature, none, tower, diff = _position_parts(h)
    return diff.n >= 2 and diff.high < 0 and _beats(feature["click/auc"], none["click/auc"]) \
        and _beats(feature["click/auc"], tower["click/auc"])


TRUTH_METRIC = "click/truth_overlap@10"
TOWER, AS_FEATURE, NO_POSITION = "bias tower (PAL)", "position as a feature", "no position"
_register(Lesson(
    name="position", title="Position bias",
    question="People click what is shown first. Should a model learn where an item was shown, and how?",
    expectation="the model that reads the position as a feature has the best test click AUC, yet its top 10 "
                "holds less of the true top 10 (by the world's true click relevance) than the model trained with "
                "a bias tower that is dropped at serving, paired over seeds: an AUC on biased clicks can reward "
                "the bias.",
    explanation=(
        "In this world a feed shows each user's impressions in pages of 10 slots, ordered by a noisy logging "
        "ranker that puts likelier clicks higher, and a user examines slot k with probability 1/k before "
        "deciding (the *examination hypothesis*: Craswell et al., WSDM 2008; the 1/k curve of Joachims et al., "
        "WSDM 2017): P(click) = P(examined | slot) × P(relevant). A click therefore mixes two things, the item's "
        "appeal and the luck of its slot. **No position**: the model credits an item for the good slots it "
        "happened to get. **Position as a feature**: the model can read the slot, but it is free to mix it "
        "with everything else, and at serving every item is scored in the same slot (slot 1). **Bias tower**: "
        "a separate tower learns one bias per slot, added to the click logit in training only, so the main "
        "towers are left to explain the rest; at serving it is dropped (PAL, Guo et al., *A Position-bias Aware "
        "Learning Framework for CTR Prediction in Live Recommender Systems*, RecSys 2019; the shallow tower of "
        "Zhao et al., *Recommending What Video to Watch Next*, RecSys 2019). The measure is not the test AUC, "
        "whose labels carry the same bias, but the world's truth: the share of each user's true top 10 (by "
        "true click relevance, without examination) that the model's top 10 holds, over 300 users. Bars: that "
        "share and the test click AUC, with 95% intervals over seeds; the table adds the paired differences "
        "to the bias tower. Measured (default world, 5 seeds): position as a feature has the best AUC (0.89) "
        "and the worst ranking (true top-10 overlap 0.09), the bias tower 0.29, and no position 0.39. Leaving "
        "the slot out does best here because this world's logger orders a page by a noisy copy of the true "
        "relevance: a better slot then only amplifies what is already relevant, and the ranking survives. "
        "Debiasing pays where slots were given for other reasons (a popularity-driven or stale logging "
        "model), the feedback loop PAL was built for."),
    kind="bars",
    base={"world": {"context": True}, "data": {"tasks": TWO_TASKS}},
    axes=(LessonAxis(("position",), ("none", "feature", "tower"), (NO_POSITION, AS_FEATURE, TOWER)),),
    seeds=5, holds=_position_holds, clear=_position_clear, metrics=(TRUTH_METRIC, "click/auc"), reference=TOWER,
    plot=(TRUTH_METRIC,), truth="click",
    quick={"seeds": 3, "base": {"world": QUICK_WORLD, "epochs": 6}},
))


def get_lesson(name: str) -> Lesson:
    key = str(name).strip().lower()
    if key not in LESSONS:
        raise ConfigError(f"There is no lesson '{name}'.", fix="lessons: " + ", ".join(LESSONS))
    return LESSONS[key]


def run_lesson(lesson: Lesson, *, quick: bool = False, seeds: int | None = None, store=None, stop=None,
               resume: bool = True, on_progress=None, limiter=None) -> dict:
    """Run (or resume) the lesson's sweep and return its JSON: headline numbers and "holds"."""
    t0 = time.time()
    sweep = lesson.sweep(quick, seeds)
    res = run_sweep(sweep, store=store, stop=stop, resume=resume, on_progress=on_progress, limiter=limiter)
    return lesson_json(lesson, res, quick=quick, seconds=time.time() - t0)


def lesson_json(lesson: Lesson, res: SweepResult, quick: bool = False, seconds: float | None = None) -> dict:
    h = headline(lesson, res)
    complete = res.complete
    holds = bool(complete and lesson.holds(h))
    clear = bool(holds and lesson.clear(h))
    out = {"lesson": lesson.name, "title": lesson.title, "question": lesson.question,
           "expectation": lesson.expectation,
           "headline": {s: {m: e.to_dict() for m, e in ms.items()} for s, ms in h.items()},
           "holds": holds, "beyond_noise": clear, "verdict": verdict_text(lesson, holds, clear, complete),
           "quick": quick,
           "seeds": len(res.sweep.seeds), "runs": len(res.cells),
           "reused": sum(c.reused for c in res.cells), "stopped": res.stopped,
           "seconds": res.seconds if seconds is None else seconds}
    if lesson.kind == "front":
        x, y = lesson.metrics
        out["relative_hypervolume"] = res.relative_hypervolume(x, y)
        out["pareto"] = [lesson.setting_label(res.configs[i].settings) for i in res.front(x, y)]
    return out


def verdict_text(lesson: Lesson, holds: bool, clear: bool, complete: bool) -> str:
    if not complete:
        return "The lesson did not finish every run, so nothing is claimed."
    if not holds:
        return "It did not hold this time. Expected: " + lesson.expectation
    return ("It holds, beyond the seed noise: " if clear else
            "It holds on average, but within the seed noise (more seeds would tell): ") + lesson.expectation


__all__ = ["Lesson", "LessonAxis", "LESSONS", "get_lesson", "run_lesson", "lesson_json", "headline", "figure"]
