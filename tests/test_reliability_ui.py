"""Issue 9, the UI half of "bad input": hostile uploads through the Data page, as a user does it.

Every file goes through the interactions (or items) uploader of a real AppTest session. Each one
either ends in a readable `st.error` (a specific substring, no traceback, no exception) or loads
with the right counts; afterwards the same session still opens the Train and Runs pages, and a run
saved in the store beforehand is untouched, byte for byte. The library-level corpus (94 inputs)
is in test_bad_inputs.py; its builders are reused here.

Also: a run store that cannot be written. Training still runs, the result table shows, and the
page says the run was NOT saved.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mtrlib.config import TrainConfig
from mtrlib.runs import list_runs, train_and_save
from mtrlib.train.loop import prepare
from test_bad_inputs import FORMULA, QUOTED_NL, gzip_bomb, rows, xlsx_bytes

from _mtr import PAGES, shown, tiny_cfg, wait_job

ROOT = Path(__file__).resolve().parents[1]
EVIL = "../../evil.csv"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def saved_store(tmp_path_factory):
    """A store holding one finished run (trained once for the module)."""
    store = tmp_path_factory.mktemp("reliability") / "runs"
    cfg = tiny_cfg(world=PAGES, epochs=1)
    _, writer = train_and_save(cfg, prepare(cfg), store=store)
    assert writer.saved, writer.error
    return store


@pytest.fixture
def store(saved_store, monkeypatch):
    """This module's run store (overrides conftest's empty one): the saved run, in MTR_RUN_STORE."""
    monkeypatch.setenv("MTR_RUN_STORE", str(saved_store))
    monkeypatch.delenv("MTR_MAX_FILE_MB", raising=False)
    return saved_store


def fingerprint(store: Path) -> tuple:
    """What must not change: the listed runs and every byte of every file in the store."""
    runs = tuple((r.id, r.name, r.status) for r in list_runs(store))
    files = tuple(sorted((str(p.relative_to(store)), hashlib.sha256(p.read_bytes()).hexdigest())
                         for p in store.rglob("*") if p.is_file()))
    return runs, files


def files_session() -> AppTest:
    """A fresh session already on 'Upload files' (so the big default world is never built)."""
    cfg = TrainConfig()
    cfg.data.source = "files"
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["cfg"] = cfg
    at.run()
    assert not at.exception, at.exception
    return at


def upload(at: AppTest, role: str, name: str, data: bytes) -> AppTest:
    target = [u for u in at.get("file_uploader") if u.key == f"up_{role}"][0]
    value = (name, data, "text/csv")
    target.set_value([value] if role == "items" else value)
    return at.run()


def page_text(at: AppTest) -> str:
    """Every piece of text the page shows (markdown escapes removed)."""
    parts = []
    for kind in ("error", "warning", "info", "success", "markdown", "caption", "exception", "code", "title",
                 "subheader"):
        parts += [str(getattr(e, "value", e)) for e in getattr(at, kind)]
    return shown("\n".join(parts))


def assert_readable(at: AppTest) -> str:
    assert not at.exception, at.exception
    text = page_text(at)
    assert "Traceback" not in text and "Exception" not in text and "Error:" not in text, text
    return text


def assert_session_survives(at: AppTest, store: Path, before: tuple) -> None:
    """The same session opens Train and Runs; the saved run is still listed; no byte changed."""
    at.switch_page("pages/train.py").run()
    assert_readable(at)
    at.switch_page("pages/runs.py").run()
    assert_readable(at)
    assert len(at.dataframe) >= 1 and len(at.dataframe[0].value) == 1  # the run table: our one run
    at.switch_page("pages/data.py").run()
    assert_readable(at)
    assert fingerprint(store) == before


# ---------------------------------------------------------------- the corpus, as uploads


@dataclass(frozen=True)
class UI:
    id: str
    name: str
    data: object  # bytes, or a callable building them
    error: tuple[str, ...] = ()
    loads: tuple[int, int, int] | None = None  # (interactions, users, items)
    cap_mb: float | None = None


SPARSE = rows(40, users=8, items=10)  # 40 of 80 pairs: loads cleanly, negatives can be sampled
SPARSE_COUNTS = (40, 8, 10)

UPLOADS = [
    UI("HTML renamed .csv", "ratings.csv", b"<!DOCTYPE html>\n<html><head><title>r</title></head><body><table>"
       b"<tr><td>user</td><td>item</td></tr></table></body></html>", error=("web page (HTML)",)),
    UI("JSON renamed .csv", "ratings.csv", b'[{"user": 1, "item": 2},\n {"user": 2, "item": 3}]',
       error=("This is JSON",)),
    UI("PNG renamed .csv", "ratings.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200),
       error=("This is a PNG image",)),
    UI("xlsx renamed .csv", "ratings.csv", xlsx_bytes, error=("Excel workbook",)),
    UI("binary garbage", "ratings.csv", lambda: random.Random(9).randbytes(4096), error=("NUL bytes",)),
    UI("empty", "ratings.csv", b"", error=("The file is empty",)),
    UI("header only", "ratings.csv", b"user,item,rating\n", error=("header row but no data rows",)),
    UI("one column", "ratings.csv", b"user\n" + b"".join(b"u%d\n" % k for k in range(10)),
       error=("only one column ('user')",)),
    UI("mixed delimiters", "ratings.csv", b"user,item,rating\n" + rows(20, sep=";", header=None).encode(),
       error=("Line 2 has 1 field(s)", "semicolons instead")),
    UI("gzip bomb (256 MiB of zeros, cap 4 MB)", "ratings.csv.gz", lambda: gzip_bomb(256),
       error=("unpacks to more than 4 MB", "MTR_MAX_FILE_MB"), cap_mb=4),
    UI("file over the size cap", "ratings.csv", lambda: rows(100_000).encode(),
       error=("over the 0.5 MB limit", "MTR_MAX_FILE_MB"), cap_mb=0.5),
    UI("NaN user id", "ratings.csv", b"user,item\nu1,i1\nNaN,i2\n" + b"".join(b"u%d,i%d\n" % (k, k) for k in range(5)),
       error=("'user' (the user id) has no value on data row 2",)),
    UI("UTF-16 with BOM (loads)", "ratings.csv", b"\xff\xfe" + SPARSE.encode("utf-16-le"), loads=SPARSE_COUNTS),
    UI("quoted newlines (load)", "reviews.csv", QUOTED_NL, loads=(8, 3, 4)),
    UI("name like a path (loads from bytes)", EVIL, SPARSE.encode(), loads=SPARSE_COUNTS),
    UI("formula cells (load as text)", "ratings.csv",
       ("user,item,note\n" + "".join(f"u{k % 3},i{k % 4},{FORMULA}\n" for k in range(8))).encode(), loads=(8, 3, 4)),
]
assert len(UPLOADS) >= 12


@pytest.mark.parametrize("case", UPLOADS, ids=[c.id for c in UPLOADS])
def test_hostile_upload_is_readable_and_harmless(case: UI, store, monkeypatch, tmp_path):
    if case.cap_mb is not None:
        monkeypatch.setenv("MTR_MAX_FILE_MB", str(case.cap_mb))
    work = tmp_path / "a" / "b" / "c"  # a relative '../../evil.csv' written from here would land in tmp_path
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    before = fingerprint(store)
    data = case.data() if callable(case.data) else case.data

    at = files_session()
    at = upload(at, "interactions", case.name, data)
    text = assert_readable(at)
    errors = shown("\n".join(e.value for e in at.error))
    # the file is remembered under its display name only
    assert at.session_state["uploads"]["interactions"]["names"] == [case.name]
    if case.error:
        for part in case.error:
            assert part in errors, (part, errors)
        assert not at.metric, "nothing was loaded, so no counts are shown"
    else:
        assert not errors, errors
        metrics = {m.label: m.value for m in at.metric}
        assert (metrics["Interactions"], metrics["Users"], metrics["Items"]) == tuple(f"{n:,}" for n in case.loads)
        assert "Using: " + case.name in text
        preview = at.dataframe[0].value
        if "note" in preview.columns:
            assert (preview["note"] == FORMULA).all(), "formula cells load as plain text"
        if "review" in preview.columns:
            assert preview["review"].iloc[0] == 'first line\nsecond, "quoted" line'
    if case.name == EVIL:
        # loaded from the bytes; the name never became a path anywhere
        assert not any(p.name == "evil.csv" for p in tmp_path.rglob("*"))
        for base in (ROOT, work, store, Path.cwd()):
            assert not (base / EVIL).exists() and not (base / "evil.csv").exists()
    assert_session_survives(at, store, before)


def test_side_table_with_duplicate_ids_is_refused(store):
    before = fingerprint(store)
    at = files_session()
    at = upload(at, "interactions", "ratings.csv", SPARSE.encode())
    assert not at.error, [e.value for e in at.error]
    at = upload(at, "items", "items.csv", b"item,genre\ni0,a\ni1,b\ni1,c\ni2,d\n")
    assert_readable(at)
    errors = shown("\n".join(e.value for e in at.error))
    assert "items.csv" in errors and "item id 'i1' appears on more than one row" in errors, errors
    assert_session_survives(at, store, before)


def test_a_second_upload_replaces_a_broken_one(store):
    """After an error the session is not stuck: a good file loads in the same session."""
    at = files_session()
    at = upload(at, "interactions", "ratings.csv", b"")
    assert at.error
    at = upload(at, "interactions", "ratings.csv", SPARSE.encode())
    assert_readable(at)
    assert not at.error, [e.value for e in at.error]
    assert {m.label: m.value for m in at.metric}["Interactions"] == "40"


# ---------------------------------------------------------------- a store that cannot be written


def test_unwritable_store_trains_in_memory_and_says_so(tmp_path, monkeypatch):
    """MTR_RUN_STORE points at a regular file (root ignores chmod, a file never becomes a folder)."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("I am a file")
    monkeypatch.setenv("MTR_RUN_STORE", str(blocker))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["cfg"] = tiny_cfg(world=PAGES, epochs=1)
    at.run()
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    at.button(key="t_train").click().run()
    job = wait_job(at)
    assert job.state == "finished", job.message
    assert job.result is not None and job.result.metrics
    assert job.run_path is None, "an unsaved run has no folder"
    at.run()
    assert_readable(at)
    warnings = shown("\n".join(w.value for w in at.warning))
    assert "not writable" in warnings and "NOT saved" in warnings and str(blocker) in warnings, warnings
    assert any("auc" in df.value.columns for df in at.dataframe), "the result table still shows"
    assert blocker.read_text() == "I am a file"
    # the other pages say so too instead of breaking
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
