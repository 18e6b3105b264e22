"""Page tests with streamlit.testing.v1.AppTest: every page, uploads, training, stop,
the run table, projections, recommendations and the query-parameter round trip."""
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mtrlib.runs import default_store, list_runs, train_and_save
from mtrlib.train.loop import prepare

from _mtr import PAGES, app, shown, tiny_cfg, wait_job

ROOT = Path(__file__).resolve().parents[1]
ML = ROOT.parent / "shared" / "data" / "ml-latest-small"


def saved_run(store, arch="mmoe", epochs=2):
    cfg = tiny_cfg(arch, world=PAGES, epochs=epochs)
    result, writer = train_and_save(cfg, prepare(cfg), store=store)
    assert writer.saved, writer.error
    return result, writer


# -- Data page ---------------------------------------------------------------------------------------
def test_data_page_shows_the_world_by_default(store):
    at = app()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Interactions"] == "60,000" and metrics["Users"] == "1,500" and metrics["Layout"] == "World"
    assert not at.error
    assert len(at.get("plotly_chart")) >= 1  # long-tail plot
    assert "What am I looking at?" in [e.label for e in at.expander]


def test_world_knob_changes_the_data(store):
    at = app()
    at.slider(key="d_rho").set_value(-0.5).run()
    assert not at.exception
    assert at.session_state["cfg"].data.world.correlation == -0.5
    # the data report now describes the conflicting world
    assert any("rho = -0.5" in shown(c.value) for c in at.caption)


def test_setup_is_written_to_the_url(store):
    cfg = tiny_cfg("ple", world={**PAGES, "correlation": -0.5}, epochs=2)
    at = app(cfg)
    assert at.query_params["rho"] in ("-0.5", ["-0.5"])
    assert at.query_params["arch"] in ("ple", ["ple"])


def _upload_files(at: AppTest, **files) -> AppTest:
    at.segmented_control(key="d_source").set_value("Upload files").run()
    for role, (name, data) in files.items():
        up = at.get("file_uploader")
        target = [u for u in up if u.key == f"up_{role}"][0]
        target.set_value((name, data, "text/csv") if role != "items" else [(name, data, "text/csv")])
    return at.run()


@pytest.mark.skipif(not ML.exists(), reason="../shared/data/ml-latest-small is not beside the repo")
def test_upload_movielens_is_recognised(store):
    at = app()
    ratings = b"".join((ML / "ratings.csv").read_bytes().splitlines(keepends=True)[:4001])
    at = _upload_files(at, interactions=("ratings.csv", ratings), items=("movies.csv", (ML / "movies.csv").read_bytes()))
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Layout"] == "MovieLens"
    assert metrics["Interactions"] == "4,000"
    assert any("watched=implicit" in c.value and "liked=rating>=4" in c.value for c in at.code)


@pytest.mark.parametrize("name,data,expect", [
    ("ratings.csv", b"<!DOCTYPE html><html><body><h1>Not Found</h1></body></html>", "HTML"),
    ("ratings.csv", b"", "empty"),
])
def test_broken_upload_gives_a_readable_error(store, name, data, expect):
    saved_run(store, epochs=1)
    at = app()
    at = _upload_files(at, interactions=(name, data))
    assert not at.exception
    errors = shown(" ".join(e.value for e in at.error))
    assert expect.lower() in errors.lower(), errors
    # the app keeps working and earlier runs are still listed
    at.switch_page("pages/runs.py").run()
    assert not at.exception
    assert len(at.dataframe) >= 1


def test_generic_upload_uses_the_column_mapping(store):
    csv = "customer,sku,bought,when\n" + "\n".join(
        f"c{u},p{(u * 7 + k) % 23},{(u + k) % 2},2024-01-{1 + k % 28:02d}" for u in range(30) for k in range(8))
    at = app()
    at = _upload_files(at, interactions=("log.csv", csv.encode()))
    assert not at.exception
    assert at.selectbox(key="map_user").value == "customer"
    assert at.selectbox(key="map_item").value == "sku"
    at.button(key="map_apply").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Users"] == "30" and metrics["Interactions"] == "240"


def test_headerless_upload_is_mapped_by_position(store):
    """The mapping form gets the header flag with the table: no header row means user, item, ... and
    a column of epoch seconds is the time."""
    csv = "\n".join(f"u{u},i{(u * 7 + k) % 23},{(u + k) % 2},{1_700_000_000 + 3600 * k}"
                    for u in range(30) for k in range(8))
    at = app()
    at = _upload_files(at, interactions=("log.csv", csv.encode()))
    assert not at.exception
    assert [at.selectbox(key=k).value for k in ("map_user", "map_item", "map_ts")] == ["col1", "col2", "col4"]


def test_invalid_task_shows_the_fix(store):
    cfg = tiny_cfg(world=PAGES, data={"tasks": ["click=click", "like=like|nosuchtask"]}, epochs=2)
    at = app(cfg)
    assert not at.exception
    assert any("nosuchtask" in shown(e.value) for e in at.error)


# -- Train page --------------------------------------------------------------------------------------
def test_train_page_trains_and_saves_a_run(store):
    at = app(tiny_cfg(world=PAGES, epochs=2), "pages/train.py")
    assert len(at.get("plotly_chart")) >= 1  # the network diagram
    at.button(key="t_train").click().run()
    job = wait_job(at)
    assert job.state == "finished", job.message
    at.run()
    assert not at.exception
    assert any("auc" in df.value.columns for df in at.dataframe)
    runs = list_runs(store)
    assert len(runs) == 1 and runs[0].status == "finished"
    assert len(at.get("plotly_chart")) >= 3  # diagram + loss + weights (+ validation)
    conflict = [c for c in at.get("plotly_chart") if "Gradient conflict" in c.proto.spec]
    assert conflict and "grad_cos" not in conflict[0].proto.spec and "embeddings" in conflict[0].proto.spec
    assert any("Last epoch:" in c.value and "click vs like" in shown(c.value) for c in at.caption)


def test_stop_ends_training_quickly_and_keeps_the_run(store):
    at = app(tiny_cfg(world=PAGES, epochs=500), "pages/train.py")
    at.button(key="t_train").click().run()
    job = at.session_state["job"]
    t0 = time.time()
    while not job.steps and time.time() - t0 < 60:
        time.sleep(0.1)
    assert job.steps, "no training progress"
    at.button(key="t_stop").click().run()
    wait_job(at, timeout=60)  # a guard against a hang; how fast a stop is: tests/test_train.py (within one batch)
    assert job.state == "stopped" and job.message.startswith("Stopped by the user at step")
    assert job.progress.epoch < 500 and len(job.epochs) < 500  # ended early, not by running out of epochs
    runs = list_runs(store)
    assert len(runs) == 1 and runs[0].status == "stopped"


def test_diverging_training_is_reported_not_raised(store):
    cfg = tiny_cfg(world=PAGES, lr=3.0, optimizer="sgd", epochs=3, weights={"dwell": 5.0})
    at = app(cfg, "pages/train.py")
    at.button(key="t_train").click().run()
    job = wait_job(at)
    at.run()
    assert not at.exception
    if job.state == "diverged":
        assert any("diverged" in shown(e.value) for e in at.error)
    else:  # some seeds survive lr 3 with SGD; then the run must still be a normal finish
        assert job.state == "finished"


def test_impossible_config_disables_train(store):
    cfg = tiny_cfg(world=PAGES, epochs=2, weights={"click": 0.0, "like": 0.0, "dwell": 0.0})
    at = app(cfg, "pages/train.py")
    assert any("weight 0" in shown(e.value) for e in at.error)
    assert at.button(key="t_train").disabled


# -- Runs, Embeddings, Recommend ---------------------------------------------------------------------
def test_runs_page_table_curves_tradeoff_rename_delete(store):
    saved_run(store, "mmoe")
    saved_run(store, "shared-bottom")
    at = app(page="pages/runs.py")
    assert len(at.dataframe[0].value) == 2
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # curves per task + trade-off
    at.radio(key="r_view").set_value("gradient conflict").run()  # overlays of the gradient cosines
    assert not at.exception
    assert sum("gradient cosine" in c.proto.spec for c in at.get("plotly_chart")) == 3  # one per task pair
    assert any("below 0" in df.value.columns for df in at.dataframe)
    at.text_input(key=[t.key for t in at.text_input if t.key.startswith("r_name_")][0]).set_value("my best run").run()
    at.button(key="r_rename").click().run()
    assert "my best run" in [r.name for r in list_runs(store)]
    assert len(at.get("download_button")) >= 3
    at.checkbox(key=[c.key for c in at.checkbox if c.key.startswith("r_confirm_")][0]).check().run()
    at.button(key="r_delete").click().run()
    assert len(list_runs(store)) == 1


def test_embeddings_page_projects_and_scores_purity(store):
    saved_run(store, "mmoe")
    at = app(page="pages/embeddings.py")
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) >= 2  # projection + gate heat-map
    labels = [m.label for m in at.metric]
    assert any(l.startswith("kNN purity") for l in labels)
    at.text_input(key="e_search").set_value("The").run()
    assert not at.exception
    assert any("similarity" in df.value.columns for df in at.dataframe)
    at.selectbox(key="e_method").set_value("tsne").run()
    assert not at.exception


def test_recommend_page_reranks_when_fusion_changes(store):
    saved_run(store, "mmoe", epochs=3)
    at = app(page="pages/recommend.py")
    top = at.dataframe[0].value
    assert len(top) == 10
    before = list(top["title"])
    at.slider(key="rc_f_click").set_value(0.0).run()
    at.slider(key="rc_f_like").set_value(5.0).run()
    after = list(at.dataframe[0].value["title"])
    assert before != after
    at.button(key="rc_eval").click().run()
    assert not at.exception
    assert any("popularity" in df.value.columns for df in at.dataframe)


# -- sharing --------------------------------------------------------------------------------------------
def test_query_params_restore_the_setup(store):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["arch"] = "ple"
    at.query_params["rho"] = "-0.5"
    at.query_params["w.like"] = "2"
    at.query_params["epochs"] = "7"
    at.query_params["lr"] = "0.005"  # not one of the slider's stops: added, not refused
    at.run()
    cfg = at.session_state["cfg"]
    assert cfg.model.arch == "ple" and cfg.data.world.correlation == -0.5
    assert cfg.weights == {"like": 2.0} and cfg.epochs == 7
    at.switch_page("pages/train.py").run()
    assert at.radio(key="t_arch").value == "ple"
    assert at.slider(key="t_w_like").value == 2.0
    assert at.number_input(key="t_epochs").value == 7
    assert at.select_slider(key="t_lr").value == 0.005
    assert not at.exception


def test_pages_use_the_library_run_store_read_at_call_time(monkeypatch, tmp_path):
    from pages._shared import store

    monkeypatch.setenv("MTR_RUN_STORE", str(tmp_path / "first"))
    assert store() == default_store() == tmp_path / "first"
    monkeypatch.setenv("MTR_RUN_STORE", "~/elsewhere")  # the same folder the writer expands it to
    assert store() == Path.home() / "elsewhere"
    monkeypatch.delenv("MTR_RUN_STORE")
    assert store() == ROOT / "data" / "runs"
