"""Builders for test input files (made in the tests, never committed as binaries)."""
from __future__ import annotations

import io
import zipfile

import pandas as pd


def zipped(files: dict[str, bytes]) -> bytes:
    """A zip archive holding the given name -> bytes members."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in files.items():
            z.writestr(k, v)
    return b.getvalue()


def parquet(df: pd.DataFrame) -> bytes:
    """The Parquet bytes of a DataFrame."""
    b = io.BytesIO()
    df.to_parquet(b)
    return b.getvalue()
