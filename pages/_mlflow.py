"""The sidebar's "Log runs to MLflow" toggle (issue 30): the app's switch for mtrlib.track.

Training jobs run on threads of their own, so the toggle sets the process-wide tracker
(`mtrlib.track.hook.set_default`): while it is on, every run this server trains is logged,
whoever started it, to $MLFLOW_TRACKING_URI or ./mlruns. It is shown only where MLflow is
installed (the optional extra); off, nothing changes.
"""
from __future__ import annotations

import importlib.util
import os

import streamlit as st

from mtrlib.track import hook as tracking


def mlflow_toggle() -> None:
    if importlib.util.find_spec("mlflow") is None:
        return
    uri = os.environ.get("MLFLOW_TRACKING_URI") or "mlruns"
    on = st.sidebar.toggle("Log runs to MLflow", value=tracking.get_default() is not None, key="mlflow_on",
                           help=f"Every run this server trains is also logged to MLflow at {uri}: params, "
                                "per-epoch metrics named TASK/METRIC, the run folder as artifacts.")
    if on and tracking.get_default() is None:
        from mtrlib.errors import UserError
        from mtrlib.track.mlflow_tracker import MlflowTracker
        try:
            tracking.set_default(MlflowTracker(uri))
        except UserError as e:
            st.sidebar.error(str(e))
    elif not on and tracking.get_default() is not None:
        tracking.set_default(None)
