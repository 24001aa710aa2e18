"""Reference: published TensorRT-LLM / Model Optimizer measurements shipped with the app (assets/),
browsable, filterable and plottable. Every number here is "published": its source is in each row; the
SDXL tab sets held-out estimates beside the published SDXL table and labels them so."""

import pandas as pd
import streamlit as st

from app import state
from engine import plots
from engine.errors import TlabError


def sdxl_section():
    """SDXL latency: the roofline estimate (engine/perf/diffusion_fit.py) against the published table."""
    from engine.perf import diffusion_fit as sdxl

    try:
        cmp, fits = sdxl.comparison()
    except TlabError as e:
        st.error(str(e))
        return
    work, stats = sdxl.work_summary(), sdxl.summary(cmp)
    st.markdown("**Stable Diffusion XL 1.0 base, 1024x1024, 30 steps, batch 1: end-to-end latency**")
    st.dataframe(sdxl.comparison_table(), hide_index=True, width="stretch", key="sdxl_table")
    st.caption(f"Published: {sdxl.SOURCE}. FP16 latency is not in the table: it is latency x the published "
               "speedup (mean of the INT8 and FP8 rows).")
    st.caption(
        f"Estimated: a roofline over the work counted from the SDXL configs: {work['steps']} UNet steps "
        f"({work['unet_params_b']:.2f}B weights, {work['unet_step_tflops']:.1f} TFLOPs per step at batch "
        f"{work['unet_batch']}: classifier-free guidance runs two latents) plus one FP16 VAE decode "
        f"({work['vae_tflops']:.1f} TFLOPs); text encoders left out. INT8/FP8 apply to the convolutions and "
        "linear layers Model Optimizer quantizes; attention stays FP16. Two efficiencies (tensor-core compute, "
        "memory) are fitted on the published latencies. **Every estimate and error in this table is held out**: "
        "it comes from the fit on the other two GPUs (leave-one-GPU-out). "
        f"Median |error| {stats['median_abs_error_pct']:.0f}%, max {stats['max_abs_error_pct']:.0f}% over "
        f"{stats['cells']} cells; speedup median |error| {stats['median_abs_speedup_error_pct']:.0f}%. "
        "Assumption: the RTX 4090's FP16 kernels run at its FP16-accumulate rate (330 TFLOPS, twice the "
        "catalog's FP32-accumulate figure).")
    with st.expander("Fitted efficiencies (per held-out GPU)"):
        st.dataframe(pd.DataFrame([{"held-out GPU": g, "compute": f.c16, "memory": f.mem}
                                   for g, f in fits.items()]).round(3), hide_index=True, key="sdxl_fits")
    st.markdown("**Other catalog GPUs: estimated only**")
    st.dataframe(sdxl.other_gpus_table(), hide_index=True, width="stretch", key="sdxl_other")
    st.caption("No published figure for these GPUs: estimates from the fit on all three published GPUs. All three "
               "are Ada GPUs, so other generations are extrapolated and no held-out error speaks for them. "
               "INT8/FP8 rows appear only where the GPU has those tensor cores.")


st.title("Published reference measurements")
st.caption("Numbers NVIDIA published for TensorRT-LLM and Model Optimizer, shipped with the app (no download). "
           "They come from other GPUs and engine versions than yours: use them for orientation. Each row "
           "names its source document and commit.")

frame = state.published_frame()
if frame is None or frame.empty:
    st.error("The published measurements could not be read (assets/published_measurements.csv). "
             "Reinstall the app or restore that file from the repository.")
    st.stop()

c1, c2, c3, c4 = st.columns(4)
view = frame
for col, column, label in ((c1, "model", "Model"), (c2, "gpu", "GPU"), (c3, "precision", "Precision")):
    values = sorted(view[column].dropna().astype(str).unique())
    picked = col.multiselect(label, values, key=f"ref_{column}", placeholder="all")
    if picked:
        view = view[view[column].astype(str).isin(picked)]
metrics = view["metric"].value_counts().index.tolist()
metric = c4.selectbox("Metric to plot", metrics, key="ref_metric") if metrics else None

tab_chart, tab_tradeoff, tab_table, tab_sdxl = st.tabs(
    ["Chart", "Speedup vs accuracy (published)", "Table", "SDXL: estimate vs published"])
with tab_sdxl:  # its own published table (Model Optimizer's SDXL rows): the filters above do not apply
    sdxl_section()
if view.empty:
    st.info("No published rows match these filters. Clear a filter to see more.")
    st.stop()

with tab_chart:
    if metric and view[(view["metric"] == metric) & view["batch"].notna()].empty:
        st.info(f"The rows for '{metric}' give no batch size, so there is nothing to plot against batch; "
                "see the table.")
    elif metric:
        st.plotly_chart(plots.reference_figure(view, metric), key="ref_chart",
                        config={"displaylogo": False, "toImageButtonOptions": {"format": "png"}})
with tab_tradeoff:
    points = plots.published_points(view)
    if points.empty:
        ids = plots.published_points(frame)["model"].dropna().unique()
        having = sorted(frame[frame["model_id"].isin(ids)]["model"].dropna().astype(str).unique())
        st.info("None of these rows has both a published speedup and a published accuracy loss"
                + (f"; the models that have both are: {', '.join(having)}. Pick one of them in the Model filter."
                   if having else "."))
    else:
        st.caption("Accuracy loss here is the source's MMLU loss (not perplexity); speedup is vs the source's "
                   "own BF16/FP16 baseline on its own GPU.")
        st.plotly_chart(plots.speedup_accuracy_figure(points.iloc[0:0].assign(speed_kind=None), points,
                                                      title="Published: speedup vs MMLU loss",
                                                      x_title=plots.MMLU_AXIS),
                        key="ref_tradeoff", config={"displaylogo": False})
with tab_table:
    st.dataframe(view.drop(columns=["provenance"]), hide_index=True, width="stretch", key="ref_table",
                 column_config={"source": st.column_config.LinkColumn("Source")})
    st.download_button("Download CSV", view.to_csv(index=False), file_name="published-measurements.csv",
                       mime="text/csv", key="ref_csv")
st.caption(f"{len(view)} of {len(frame)} published rows shown.")
