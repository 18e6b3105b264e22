"""Small safety helpers shared by the CLI and the dashboard's downloads.

Spreadsheet programs run a cell that starts with `=`, `+`, `-` or `@` (and tab / carriage
return) as a formula ("CSV injection", OWASP). Every CSV or TSV we write for a user goes
through `escape_formula`, which prefixes such text cells with a single quote; numbers are
left alone, so a coordinate column stays numeric.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def escape_formula(value):
    """Return `value` with a leading quote if it is text that a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def escape_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of `df` whose text cells (and index / column names) are formula-escaped."""
    out = df.copy()
    for c in out.columns:
        s = out[c]
        if s.dtype == object or pd.api.types.is_string_dtype(s):
            out[c] = s.map(escape_formula)
    if out.index.dtype == object or pd.api.types.is_string_dtype(out.index):
        out.index = out.index.map(escape_formula)
    out.columns = [escape_formula(str(c)) for c in out.columns]
    return out


def safe_csv(df: pd.DataFrame, path=None, index: bool = False, **kw) -> str | None:
    """`df.to_csv` with formula-looking cells escaped; returns the text when `path` is None."""
    return escape_frame(df).to_csv(path, index=index, **kw)


def tsv_cell(value) -> str:
    """One TSV cell: tabs and newlines become spaces (the TSV has no quoting), formulas escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    text = str(value).replace("\t", " ").replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    return escape_formula(text)


def json_clean(obj):
    """Make an object strict-JSON safe: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return json_clean(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


__all__ = ["escape_formula", "escape_frame", "safe_csv", "tsv_cell", "json_clean", "FORMULA_PREFIXES"]
