"""mtrlib.data: from a user's file (or the built-in world) to validated tables, tasks and tensors.

The names below need no torch, so reading and checking data (the `inspect` CLI, the data page)
does not pay its import time; the tensors are in `mtrlib.data.encode` and `mtrlib.data.history`.
"""
from ..errors import DataError
from .dataset import FEATURE_KINDS, Dataset
from .examples import Examples, build_examples
from .mapping import guess_mapping
from .read import Table, load, read_table, read_table_full
from .split import SPLITS, Split, split
from .tasks import TaskSpec, parse_task, parse_tasks, task_from_fields
from .world import WorldConfig, make_world

__all__ = [
    "DataError", "Dataset", "FEATURE_KINDS", "TaskSpec", "parse_task", "parse_tasks", "task_from_fields",
    "make_world", "WorldConfig", "Examples", "build_examples", "Split", "split", "SPLITS", "load", "read_table",
    "read_table_full", "Table", "guess_mapping",
]
