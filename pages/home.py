"""Start here: what the app does, and one-click demo sweeps on the bundled language model and the bundled
digits diffusion model."""

import streamlit as st

from app import nav, state, sweeps

st.title("Tradeoff Lab")
st.markdown(
    "Make a language model faster by storing it in fewer bits (**quantization**) or pruning it "
    "(**2:4 sparsity**), and see what it costs in accuracy. Each *recipe* is calibrated with NVIDIA "
    "Model Optimizer, its accuracy loss is measured against the unquantized baseline and, where this "
    "machine has fast kernels for it, its speed is measured too. The **Results** page plots speedup "
    "against accuracy loss: points up and to the left are better; the dashed line links the best trade-offs. "
    "Image **diffusion models** work the same way, with quality measured on the images they draw."
)


def _run_demo(queue) -> None:
    queue()
    st.switch_page(nav.page("jobs"))


frame = state.results_frame()
jobs = state.store().list_jobs(limit=50)
active = [j for j in jobs if j["status"] in ("queued", "running")]

if frame.empty and not jobs:
    st.subheader("First time here? Run the demo")
    c1, c2 = st.columns(2)
    c1.markdown("**Language model**")
    c1.markdown(sweeps.DEMO_DESCRIPTION)
    if c1.button("Run the demo sweep", type="primary", key="run_demo"):
        _run_demo(sweeps.queue_demo)
    c2.markdown("**Diffusion model**")
    c2.markdown(sweeps.DIFFUSION_DEMO_DESCRIPTION)
    if c2.button("Run the diffusion demo", type="primary", key="run_diffusion_demo"):
        _run_demo(sweeps.queue_diffusion_demo)
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
            _run_demo(sweeps.queue_demo)
    with st.expander("Run the diffusion demo"):
        st.markdown(sweeps.DIFFUSION_DEMO_DESCRIPTION)
        if st.button("Run the diffusion demo", key="run_diffusion_demo_again"):
            _run_demo(sweeps.queue_diffusion_demo)
