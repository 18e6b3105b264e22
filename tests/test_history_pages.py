"""The history block on the pages (AppTest): the Train page's controls train a run that reads
a history, and the Recommend page shows the user's recent history with each past item's
weight in the chosen recommendation's score (DIN target attention)."""
from _mtr import PAGES, app, tiny_cfg, wait_job
from mtrlib.runs import list_runs, load_run, train_and_save
from mtrlib.train.loop import prepare


def _diagram_text(at) -> str:
    import json
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    return " ".join(a.get("text", "") for a in fig["layout"].get("annotations", []))


def test_train_page_history_controls_train_a_run_that_reads_a_history(store):
    at = app(tiny_cfg(world=PAGES, epochs=1, data=dict(split="temporal")), "pages/train.py")
    assert "history" not in _diagram_text(at)
    at.toggle(key="t_hist_on").set_value(True).run()
    at.select_slider(key="t_hist").set_value(10).run()
    at.selectbox(key="t_henc").set_value("din").run()
    at.selectbox(key="t_htask").set_value("click").run()
    assert not at.exception, at.exception
    assert "history L=10 · DIN · click=1" in _diagram_text(at)
    at.button(key="t_train").click().run()
    job = wait_job(at)
    assert job.state == "finished", job.message
    run = load_run(list_runs(store)[0].path)
    m = run.config.model
    assert (m.history, m.history_encoder, m.history_task) == (10, "din", "click")
    assert run.space.history.length == 10


def test_recommend_page_shows_history_attention_for_a_chosen_item(store):
    cfg = tiny_cfg(world=PAGES, epochs=2, data=dict(split="temporal"), model=dict(history=10, history_encoder="din"))
    _, writer = train_and_save(cfg, prepare(cfg), store=store)
    at = app(page="pages/recommend.py")
    assert any("Recent history" in h.value for h in at.subheader)
    table = next(df.value for df in at.dataframe if "weight" in df.value.columns)
    assert 1 <= len(table) <= 10 and table["weight"].notna().all()
    picks = at.selectbox(key="rc_hist_pick").options
    at.selectbox(key="rc_hist_pick").set_value(picks[-1]).run()
    assert not at.exception
    other = next(df.value for df in at.dataframe if "weight" in df.value.columns)
    assert list(other["item_id"]) == list(table["item_id"])  # the same past items ...
    assert not (other["weight"].to_numpy() == table["weight"].to_numpy()).all()  # ... weighted for another item


def test_recommend_page_says_when_a_run_reads_no_history(store):
    cfg = tiny_cfg(world=PAGES, epochs=1)
    train_and_save(cfg, prepare(cfg), store=store)
    at = app(page="pages/recommend.py")
    assert any("reads no user history" in c.value for c in at.caption)
