"""Start here: what the app does, and a one-click demo sweep on the bundled model."""

import streamlit as st

from app import nav, state, sweeps

st.title("Tradeoff Lab")
st.markdown(
    "Make a language model faster by storing it in fewer bits (**quantization**) or pruning it "
    "(**2:4 sparsity**), and see what it costs in accuracy. Each *recipe* is calibrated with NVIDIA "
    "Model Optimizer, its accuracy loss is measured against the unquantized baseline and, where this "
    "machine has fast kernels for it, its speed is measured too. The **Results** page plots speedup "
    "against accuracy loss: points up and to the left are better; the dashed line links the best trade-offs."
)

frame = state.results_frame()
jobs = state.store().list_jobs(limit=50)
active = [j for j in jobs if j["status"] in ("queued", "running")]

if frame.empty and not jobs:
    st.subheader("First time here? Run the demo")
    st.markdown(sweeps.DEMO_DESCRIPTION)
    if st.button("Run the demo sweep", type="primary", key="run_demo"):
        sweeps.queue_demo()
        st.switch_page(nav.page("jobs"))
    st.caption("Or build your own sweep on the Experiment page.")
    st.page_link(nav.page("experiment"), label="Build a sweep", icon=":material/science:")
else:
    c1, c2, c3 = st.columns(3)
    c1.metric("Results stored", len(frame))
    c2.metric("Models", frame["model"].nunique() if not frame.empty else 0)
    c3.metric("Jobs queued or running", len(active))
    if active:
        st.info(f"{len(active)} job(s) in progress: follow them on the Jobs page.")
        st.page_link(nav.page("jobs"), label="Go to Jobs", icon=":material/hourglass_top:")
    if not frame.empty:
        st.page_link(nav.page("results"), label="See the speedup vs accuracy chart", icon=":material/scatter_plot:")
    elif not active:
        st.info("No results yet: the jobs so far did not finish. The Jobs page says why.")
    st.page_link(nav.page("experiment"), label="Build a new sweep", icon=":material/science:")
    with st.expander("Run the demo sweep again"):
        st.markdown(sweeps.DEMO_DESCRIPTION)
        if st.button("Run the demo sweep", key="run_demo_again"):
            sweeps.queue_demo()
            st.switch_page(nav.page("jobs"))
