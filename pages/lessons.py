"""Lessons: one question each, one button that runs its small sweep on the built-in world, the
figure with 95% confidence intervals, and a paragraph on what it shows and why. Each lesson is
a shareable address (?lesson=seesaw); what the store already holds is shown at once."""
import pandas as pd
import streamlit as st

from mtrlib.errors import UserError

from mtrlib.experiments import run_sweep
from mtrlib.experiments.lessons import LESSONS, figure, get_lesson, headline, lesson_json
from pages._experiments import busy, fmt, progress_panel, start, sweep_job, table
from pages._shared import boot, chart, explain, keep_in_url, plain, store, world_dataset

boot()
st.title("Lessons")
explain(
    "Each lesson asks one question about multi-task learning and answers it with a small experiment on the "
    "built-in world: several settings, each trained with several seeds, so every number comes with its 95% "
    "confidence interval (one run against one run differs by about ±0.02 AUC from the seed alone). Press the "
    "button to run it; runs already in the store are reused, so a lesson someone ran before shows at once. "
    "Copy the address to share a lesson."
)

names = list(LESSONS)
asked = st.query_params.get("lesson")
if "l_lesson" not in st.session_state:
    st.session_state.l_lesson = asked if asked in names else names[0]
name = st.segmented_control("Lesson", names, key="l_lesson", format_func=lambda n: LESSONS[n].title) or names[0]
keep_in_url("lesson", name)
lesson = get_lesson(name)
quick = st.toggle("Quick version (smaller world, fewer seeds)", key="l_quick",
                  help="The reduced size its test runs: a quick check, with wider intervals.")
sweep = lesson.sweep(quick=quick)

st.header(lesson.title)
st.markdown(f"**{plain(lesson.question)}**")
st.caption(f"{len(sweep.configs())} settings × {len(sweep.seeds)} seeds = {sweep.total} runs on the built-in world. "
           f"Expectation: {plain(lesson.expectation)}")
purpose = f"lesson-{name}-{'quick' if quick else 'full'}"


def _world(cfg):
    """The lesson's world from the app's cache (every lesson runs on the built-in world)."""
    w = cfg.data.world
    return world_dataset(tuple({**w.to_dict(), "correlation": float(w.correlation), "zipf": float(w.zipf)}.items()))


if st.button("Run this lesson", type="primary", key="l_run", disabled=busy()):
    if start(sweep, None, title=f"lesson {lesson.title}", purpose=purpose):
        st.rerun()
progress_panel(purpose)

job = sweep_job()
if job is not None and getattr(job, "purpose", "") == purpose and job.result is not None:
    res = job.result
else:
    try:
        res = run_sweep(sweep, store=store(), train=False, load=_world)  # what the store holds already
    except UserError as e:
        st.error(plain(e))
        res = None

if res is not None and any(c.status == "finished" for c in res.cells):
    h = headline(lesson, res)
    out = lesson_json(lesson, res, quick=quick)
    chart(figure(lesson, res, h), key=f"l_fig_{name}")
    table(pd.DataFrame([{"setting": s, **{m: fmt(e) for m, e in ms.items()}} for s, ms in h.items()]),
          key=f"l_table_{name}")
    if lesson.kind == "front" and out.get("relative_hypervolume") is not None:
        st.caption(f"Hypervolume of the front relative to the best single-task pair: "
                   f"**{out['relative_hypervolume']:.2f}×** (above 1: the shared model offers more than "
                   "training the tasks apart).")
    if res.complete:
        say = st.success if out["beyond_noise"] else st.info if out["holds"] else st.warning
        say(plain(out["verdict"]))
    else:
        done = sum(c.status == "finished" for c in res.cells)
        st.info(f"{done} of {len(res.cells)} runs are in the store: press **Run this lesson** to train the rest.")
else:
    st.info("Press **Run this lesson**: the figure appears when its runs have finished.")

st.subheader("What the figure shows, and why")
st.markdown(lesson.explanation)
