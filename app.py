"""MTR Studio: multi-task representation learning for recommender systems, live in the browser.

Entry point: page config, navigation over pages/, the sidebar. Run with `make run`.
"""
import streamlit as st

st.set_page_config(page_title="MTR Studio", page_icon=":material/hub:", layout="wide")

from pages._mlflow import mlflow_toggle  # noqa: E402
from pages._shared import init_state, run_page, sidebar, sync_url, warm_up  # noqa: E402

warm_up()
init_state()
nav = st.navigation([
    st.Page("pages/data.py", title="Data", icon=":material/table_chart:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/runs.py", title="Runs & curves", icon=":material/monitoring:"),
    st.Page("pages/embeddings.py", title="Embeddings", icon=":material/scatter_plot:"),
    st.Page("pages/recommend.py", title="Recommend", icon=":material/recommend:"),
    st.Page("pages/sweep.py", title="Sweep", icon=":material/grid_view:"),
    st.Page("pages/pareto.py", title="Pareto front", icon=":material/stacked_line_chart:"),
    st.Page("pages/lessons.py", title="Lessons", icon=":material/school:"),
])
run_page(nav)  # a page that ends early (halt) still gets the sidebar and the URL below
sidebar()
mlflow_toggle()
sync_url()
