"""Issue 9, safety: no user string becomes HTML or markdown, uploaded file names are never
paths, nothing is unpickled, CSV downloads defuse formulas, and uploads are capped.

Static checks read the source with `ast` (a docstring that *mentions* a forbidden call is fine;
a call is not). The markdown checks render `plain()`'s output with a CommonMark parser and look
for any element at all; Streamlit's own extensions ($ for LaTeX, :colour[...] and :material/...:
directives) are checked by character. Checked by hand in Chromium (Streamlit 1.67): the escaped text
shows literally; the one thing escaping cannot stop is GFM's autolinking of a bare URL (remark-gfm
links it after parsing), whose visible text is then the URL itself, so it cannot disguise a link.
"""
from __future__ import annotations

import ast
import csv
import io
import json
import re
import tomllib
from html import unescape
from pathlib import Path

import pandas as pd
import pytest
from markdown_it import MarkdownIt
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from mtrlib.data import DataError, load
from mtrlib.data.read import max_file_bytes
from mtrlib.runs import list_runs, rename_run, train_and_save
from mtrlib.safe import FORMULA_PREFIXES, safe_csv
from mtrlib.train.loop import prepare
from pages._shared import plain

from _mtr import PAGES, shown, tiny_cfg

ROOT = Path(__file__).resolve().parents[1]
UI_SOURCES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py"))]
LIB_SOURCES = sorted((ROOT / "mtrlib").rglob("*.py"))
FORMULA = "=cmd|' /C calc'!A0"


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _dotted(node) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    return "?"


# ---------------------------------------------------------------- static checks


def test_no_raw_html_anywhere_in_the_ui_or_library():
    found = []
    for path in UI_SOURCES + LIB_SOURCES:
        for call in _calls(path):
            name = _dotted(call.func)
            kws = {k.arg for k in call.keywords}
            if "unsafe_allow_html" in kws or name.endswith((".html", "components.v1.html", "components.html")) \
                    or name in ("html", "declare_component") or name.endswith(".declare_component"):
                found.append(f"{path.relative_to(ROOT)}:{call.lineno}: {name}")
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"unsafe_allow_html\s*=|\"unsafe_allow_html\"|'unsafe_allow_html'", text):
            found.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not found, found


def test_nothing_is_unpickled_in_the_library():
    bad = []
    for path in LIB_SOURCES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(m and m.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve",
                                                   "marshal") for m in mods):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: import {mods}")
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                kw = {k.arg: k.value for k in node.keywords}
                if name.endswith("torch.load") or name == "load" and "weights_only" in kw:
                    v = kw.get("weights_only")
                    if not (isinstance(v, ast.Constant) and v.value is True):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name} without weights_only=True")
                if name.endswith(("np.load", "numpy.load")):
                    v = kw.get("allow_pickle")
                    if not (isinstance(v, ast.Constant) and v.value is False):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name} without allow_pickle=False")
                if name.endswith(("read_pickle", "to_pickle", "pickle.load", "pickle.loads")):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not bad, bad


def test_upload_names_are_never_opened_as_paths_by_the_pages():
    """In the pages an upload's .name only labels it: it is never passed to open()/Path()/os.*."""
    bad = []
    for path in UI_SOURCES:
        for call in _calls(path):
            name = _dotted(call.func)
            if name in ("open", "Path", "pathlib.Path") or name.startswith(("os.", "shutil.")):
                for arg in call.args:
                    src = ast.unparse(arg)
                    if ".name" in src or "names" in src or "up_" in src:
                        bad.append(f"{path.relative_to(ROOT)}:{call.lineno}: {name}({src})")
    assert not bad, bad


def test_the_name_of_an_upload_is_a_label_not_a_path(tmp_path):
    """Bytes decide, never the name: a name pointing at a real, good file does not make it load."""
    real = tmp_path / "good.csv"
    real.write_text("user,item\n" + "".join(f"u{k % 4},i{k % 5}\n" for k in range(20)))

    class Upload(io.BytesIO):
        def __init__(self, data, name):
            super().__init__(data)
            self.name = name

    with pytest.raises(DataError, match="The file is empty"):
        load(Upload(b"", str(real)))
    with pytest.raises(DataError, match="web page"):
        load(Upload(b"<!DOCTYPE html><html></html>", "../" * 12 + str(real)))
    ds = load(Upload(real.read_bytes(), str(tmp_path / "missing" / "nowhere.csv")))
    assert ds.n_interactions == 20


# ---------------------------------------------------------------- plain(): text, never markup

HOSTILE_TEXT = [
    "[click me](https://evil.example/phish)",
    "![tracker](https://evil.example/pixel.png)",
    "<https://evil.example>",
    "[ref][1]\n\n[1]: https://evil.example",
    "**bold** __bold__ *em* _em_ ~~gone~~",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "`rm -rf /`",
    "```\ncode block\n```",
    "# Heading",
    "Title\n=====",
    "Title\n-----",
    "> quoted",
    "- item\n+ item\n* item",
    "1. first\n2) second",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "***",
    "R&amp;D &lt;b&gt; &#91;x&#93;",
    "$E = mc^2$",
    ":red[alarm] :material/warning: :rainbow-background[x]",
    "file_name__with__underscores.csv",
    "../../evil.csv",
]
MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
TAG = re.compile(r"<(?!/?p>)[^>]+>")


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_plain_renders_as_the_literal_text(text):
    html = MD.render(plain(text))
    tags = TAG.findall(html.replace("<br />", ""))
    assert not tags, (text, html)
    visible = unescape(re.sub(r"</?p>", " ", html))
    assert " ".join(visible.split()) == " ".join(text.split()), (text, html)
    # Streamlit's own markdown extensions: $..$ (LaTeX) and :name[...] / :material/..: (directives)
    assert not re.search(r"(?<!\\)[$:\[\]]", plain(text)), plain(text)


def test_a_file_name_with_markdown_is_shown_literally_on_the_data_page(store):
    name = "[click](javascript:alert(1))![x](data:,AA==)**b** _i_ $x$ :red[y].csv"
    cfg = tiny_cfg(world=PAGES, data={"source": "files"}, epochs=2)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["cfg"] = cfg
    at.run()
    target = [u for u in at.get("file_uploader") if u.key == "up_interactions"][0]
    target.set_value((name, b"<!DOCTYPE html><html><body></body></html>", "text/csv"))
    at.run()
    assert not at.exception, at.exception
    rendered = [e.value for e in at.error] + [c.value for c in at.caption if "Using" in c.value]
    assert len(rendered) == 2, rendered
    for md in rendered:
        html = MD.render(md)
        assert "<a " not in html and "<img" not in html and "<strong>" not in html, html
        assert name in shown(md)


def test_a_run_name_with_markdown_is_shown_literally_on_the_runs_page(store):
    cfg = tiny_cfg(world=PAGES, epochs=1)
    _, w = train_and_save(cfg, prepare(cfg), store=store)
    evil = "[win a prize](https://evil.example) **now**"
    rename_run(w.path, evil)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["cfg"] = cfg
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    heads = [s.value for s in at.subheader if "Manage" in s.value]
    assert len(heads) == 1 and "<a " not in MD.render(heads[0]) and evil in shown(heads[0]), heads


# ---------------------------------------------------------------- CSV downloads defuse formulas


def _formula_cells(text: str) -> list[str]:
    """Cells a spreadsheet would run: text starting with = + - @ tab CR that is not a number."""
    out = []
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            if cell.startswith(FORMULA_PREFIXES):
                try:
                    float(cell)
                except ValueError:
                    out.append(cell)
    return out


def test_safe_csv_escapes_formula_cells_and_keeps_numbers():
    df = pd.DataFrame({"note": [FORMULA, "+1+1", "@SUM(A1)", "-x", "\tTAB", "fine"], "value": [-1.5, 2, -3, 4, 5, 6],
                       "=HYPERLINK(\"http://x\")": ["a", "b", "c", "d", "e", "f"]})
    text = safe_csv(df)
    assert _formula_cells(text) == []
    back = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert back["note"].tolist()[:3] == ["'" + FORMULA, "'+1+1", "'@SUM(A1)"]
    assert back["value"].tolist() == [-1.5, 2, -3, 4, 5, 6], "numbers stay numbers"
    assert "'=HYPERLINK(\"http://x\")" in back.columns


@pytest.fixture
def media(monkeypatch):
    """Every file Streamlit hands to the browser (download buttons), by download file name."""
    files: dict[str, bytes] = {}
    real = MemoryMediaFileStorage.load_and_get_id

    def spy(self, path_or_data, mimetype, kind, filename=None):
        if filename:
            files[filename] = path_or_data if isinstance(path_or_data, bytes) else Path(path_or_data).read_bytes()
        return real(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return files


def test_history_download_escapes_formula_cells(store, media):
    """A history holding formula-looking text (a foreign or tampered run) downloads defused."""
    cfg = tiny_cfg(world=PAGES, epochs=1)
    _, w = train_and_save(cfg, prepare(cfg), store=store)
    with open(w.path / "history.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"kind": "step", "step": 10**6, "epoch": 1.0, "note": FORMULA,
                            "@cmd": "+HYPERLINK(\"http://evil.example\")", "loss/click": -0.5}) + "\n")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["cfg"] = cfg
    at.run()
    at.switch_page("pages/runs.py").run()
    assert not at.exception, at.exception
    assert at.download_button(key="r_dl_hist").label == "History (CSV)"
    rid = list_runs(store)[0].id
    text = media[f"{rid}-history.csv"].decode("utf-8")
    assert _formula_cells(text) == [], _formula_cells(text)
    back = pd.read_csv(io.StringIO(text))
    assert "'" + FORMULA in back["note"].tolist()
    assert "'@cmd" in back.columns
    assert pd.api.types.is_numeric_dtype(back["loss/click"]) and (back["loss/click"] == -0.5).any()
    assert len(back) > 1 and set(back["kind"]) == {"step", "epoch"}


# ---------------------------------------------------------------- upload size caps


def test_upload_cap_is_configured():
    conf = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    cap = conf["server"]["maxUploadSize"]
    assert isinstance(cap, int) and 1 <= cap <= 1024, cap
    assert "maxUploadSize" in (ROOT / ".streamlit" / "config.toml").read_text()


def test_loader_cap_refuses_with_a_message_naming_the_limit(monkeypatch):
    monkeypatch.delenv("MTR_MAX_FILE_MB", raising=False)
    default_mb = max_file_bytes() / 1e6
    assert 10 <= default_mb <= 10_000, default_mb
    monkeypatch.setenv("MTR_MAX_FILE_MB", "0.25")
    data = ("user,item\n" + "".join(f"u{k % 50},i{k % 70}\n" for k in range(40_000))).encode()
    assert len(data) > 250_000

    class Upload(io.BytesIO):
        name = "big.csv"

    with pytest.raises(DataError) as e:
        load(Upload(data))
    msg = str(e.value)
    assert "over the 0.25 MB limit" in msg and "MTR_MAX_FILE_MB" in msg and "big.csv" in msg, msg
