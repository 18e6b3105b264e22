"""Experiments: repeats over seeds, sweeps over settings, Pareto fronts, and lessons.

- `settings`: the keys a sweep varies (any config field, found in the real config classes),
  grids (`KEY=V1,V2`, linked `K1,K2=a:b`) and nested overrides (a lesson's settings).
- `groups`: runs of one setup with different seeds as one experiment (the group id in each
  run's meta.json), mean ± 95% CI per task and metric, and paired comparison of two.
- `sweep`: `Sweep` (base, axes, seeds, corners), `run_sweep` (through the job limiter,
  resumable, stoppable), `SweepResult` (summaries, Pareto front, hypervolume, the JSON line)
  and `SweepJob` (a sweep on a background thread for the app).
- `lessons`: the teaching presets, each a sweep defined as data plus its headline and figure.
- `charts`: the figures (error bars, fronts), Plotly, testable without Streamlit.
"""
from .groups import Experiment, compare, experiments, summarise, summary_json
from .settings import Axis, apply, parse_grid, parse_seeds, resolve, with_overrides
from .runner import SweepJob, run_sweep
from .sweep import Cell, Progress, Sweep, SweepResult

__all__ = ["Experiment", "compare", "experiments", "summarise", "summary_json", "Axis", "apply", "parse_grid",
           "parse_seeds", "resolve", "with_overrides", "Cell", "Progress", "Sweep", "SweepJob", "SweepResult",
           "run_sweep"]
