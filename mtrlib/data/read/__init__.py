"""Reading a user's files: `load` (validated `Dataset`), `read_table` (one file, for previews).

Everything a person might hand over is accepted the same way: a path, raw bytes, an open
file (what `st.file_uploader` gives; its `.name` is used only to guess the format and in
messages, never as a path), a pandas DataFrame, or a folder / zip holding a known set of
files (MovieLens, or the trio that `python -m mtrlib world` writes).

The stages, each its own module: `sources` opens and caps and decodes, `parse` turns bytes
into a `Table` (the frame plus how it was read), `side` reads and joins the items / users
tables, and `loader` maps the interactions and assembles the `Dataset`.
"""
from .loader import MIN_INTERACTIONS, load, read_table, read_table_full
from .parse import MAX_COLUMNS, Table
from .sources import DEFAULT_MAX_FILE_MB, file_cap, max_file_bytes

__all__ = ["load", "read_table", "read_table_full", "Table", "max_file_bytes", "file_cap", "DEFAULT_MAX_FILE_MB",
           "MAX_COLUMNS", "MIN_INTERACTIONS"]
