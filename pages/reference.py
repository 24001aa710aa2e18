"""Reference: published TensorRT-LLM / Model Optimizer measurements shipped with the app (assets/),
browsable, filterable and plottable. Every number here is "published": its source is in each row."""

import streamlit as st

from app import state
from engine import plots

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

if view.empty:
    st.info("No published rows match these filters. Clear a filter to see more.")
    st.stop()

tab_chart, tab_tradeoff, tab_table = st.tabs(["Chart", "Speedup vs accuracy (published)", "Table"])
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
