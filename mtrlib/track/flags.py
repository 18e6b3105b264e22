"""`--mlflow [URI]` and the context that switches MLflow tracking on for one command.

Optional: `pip install .[mlflow]`. Nothing here is imported unless tracking is switched on.
"""
from __future__ import annotations

import contextlib

from .hook import using

MLFLOW_HELP = ("log the run to MLflow too: to URI (a folder, or a tracking server's http://host:port), "
               "default ./mlruns; needs the mlflow extra (pip install '.[mlflow]')")


def add_mlflow_argument(group) -> None:
    """`--mlflow [URI]` (absent: off; given alone: ./mlruns)."""
    group.add_argument("--mlflow", nargs="?", const="", default=None, metavar="URI", help=MLFLOW_HELP)


@contextlib.contextmanager
def mlflow_from_args(args, parent: str | None = None, params: dict | None = None):
    """With `--mlflow`, runs recorded inside go to MLflow (children of one parent run named
    `parent`, for a sweep or a lesson); without it, nothing changes."""
    uri = getattr(args, "mlflow", None)
    if uri is None:
        yield None
        return
    from .mlflow_tracker import MlflowTracker  # deferred: mlflow is an optional extra, heavy to import

    tracker = MlflowTracker(uri)
    if parent is None:
        with using(tracker):
            yield tracker
        return
    with tracker.parent(parent, params) as child, using(child):
        yield child
