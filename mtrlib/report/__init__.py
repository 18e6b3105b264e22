"""Self-contained HTML reports of a run, an experiment, a comparison, a sweep or a lesson.

After a walkthrough people ask for "the thing you showed us": a single .html file that opens in
any browser with no network (Plotly inlined, no request anywhere, a strict Content-Security-Policy),
every user string escaped, and every number the one the app shows. `build` has the five reports,
`sections` the parts about runs, `summary` the opening paragraph, `page` the HTML, `targets` what
`python -m mtrlib report TARGET` names. No Streamlit here: the pages call these for their buttons.
"""
from .build import compare_report, group_report, lesson_report, run_report, sweep_report

__all__ = ["run_report", "group_report", "compare_report", "sweep_report", "lesson_report"]
