"""mtrlib.data: from a user's file (or the built-in world) to validated tables, tasks and tensors."""
from .dataset import FEATURE_KINDS, Dataset
from ..errors import DataError
from .examples import Examples, build_examples
from .mapping import guess_mapping
from .read import Table, load, read_table, read_table_full
from .split import SPLITS, Split, split
from .tasks import TaskSpec, parse_task, parse_tasks, task_from_fields
from .world import WorldConfig, make_world

_LAZY = {"EncodedExamples", "FeatureSpace", "encode_examples"}  # encode needs torch: imported on first use,
# so reading and checking data (the `inspect` CLI, the data page) does not pay torch's import time and memory


def __getattr__(name: str):
    if name in _LAZY:
        from . import encode
        return getattr(encode, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DataError", "Dataset", "FEATURE_KINDS", "TaskSpec", "parse_task", "parse_tasks", "task_from_fields",
    "make_world", "WorldConfig", "Examples", "build_examples", "Split", "split", "SPLITS", "FeatureSpace",
    "EncodedExamples", "encode_examples", "load", "read_table", "read_table_full", "Table", "guess_mapping",
]
