"""GPU Selector: which GPU, format and TP to buy or rent for a model and workload, before owning any.

Thin page: widgets -> engine.perf.selector -> tables and engine.perf.plots figures. Every number here is
"estimated" (calibrated roofline); published and your measured points are drawn over the curves.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone runs (AppTest, `streamlit run pages/gpu_selector.py`)
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402

from engine import registry  # noqa: E402
from engine.errors import TlabError  # noqa: E402
from engine.perf import arch, bands, calibrate, catalog, plots, selector  # noqa: E402

PRECISIONS = [p.name for p in registry.precisions_for("causal_lm")]


st.title("GPU Selector")
st.caption("Estimated throughput, latency, memory and cost of every GPU / precision / TP option for your "
           "model and workload. Estimates come from a per-layer roofline calibrated on published "
           "TensorRT-LLM measurements and on your own benchmark results; each says what it was calibrated "
           "from and how sure it is.")

models = sorted(arch.catalog())
c1, c2 = st.columns([2, 1])
model = c1.selectbox("Model", models, index=models.index("meta-llama/Llama-3.1-8B"), key="sel_model")
config_path = c2.text_input("…or a config.json path", key="sel_config", placeholder="/path/to/config.json")
model = config_path.strip() or model

c1, c2, c3, c4 = st.columns(4)
preset = c1.selectbox("Workload", list(selector.WORKLOADS) + ["custom"], key="sel_workload")
isl0, osl0 = selector.WORKLOADS.get(preset, (2048, 128))
isl = c2.number_input("Input tokens (ISL)", 1, 1_000_000, isl0, key=f"sel_isl_{preset}")
osl = c3.number_input("Output tokens (OSL)", 1, 1_000_000, osl0, key=f"sel_osl_{preset}")
c4.caption(f"Preset **{preset}**: ISL {isl0}, OSL {osl0}. Edit the lengths for a custom workload.")

c1, c2, c3 = st.columns(3)
ttft = c1.number_input("TTFT limit, ms (0 = none)", 0, 600_000, 2000, step=100, key="sel_ttft")
tpot = c2.number_input("TPOT limit, ms (0 = none)", 0, 10_000, 50, step=5, key="sel_tpot")
tps = c3.multiselect("Tensor parallel", list(selector.TP_OPTIONS), default=[1, 2], key="sel_tp")

all_gpus = list(catalog.gpus())
c1, c2 = st.columns([1, 2])
precisions = c1.multiselect("Precisions", PRECISIONS, default=["bf16", "fp8", "int4_awq", "nvfp4"],
                            key="sel_prec")
gpus = c2.multiselect("Candidate GPUs", all_gpus, default=all_gpus, key="sel_gpus")

with st.expander("Prices (USD per GPU-hour, editable)"):
    price_frame = pd.DataFrame([{"gpu": g, "price_per_hour": catalog.gpu(g).price_per_hour,
                                 "source": catalog.gpu(g).price_source} for g in gpus])
    edited = st.data_editor(price_frame, hide_index=True, disabled=["gpu", "source"], key="sel_prices")
prices = dict(zip(edited["gpu"], edited["price_per_hour"])) if len(edited) else {}

if not (gpus and precisions and tps):
    st.info("Pick at least one GPU, one precision and one TP size.")
    st.stop()

try:
    model_id = arch.resolve(model).name
    store_pts = calibrate.store_points()  # your measured TensorRT-LLM results (cheap to read)
    with st.spinner("Calibrating the estimator on published and your measured points…"):
        cal = calibrate.default_calibration(store_pts)  # refit only when the points change
    table, curves = selector.rank(model, gpus, precisions, int(isl), int(osl), cal, tps=tps,
                                  ttft_limit_ms=ttft or None, tpot_limit_ms=tpot or None, prices=prices)
except TlabError as e:
    st.error(str(e))
    st.stop()

best = selector.explain_best(table, ttft or None, tpot or None)
BAND = selector.band_label(table)  # "± band (80%)": the band's stated nominal level
(st.success if table["feasible"].any() else st.warning)(best, icon="🏆")

per_precision = selector.best_per_precision(table)
if len(per_precision) > 1:
    st.subheader("Best option per precision")
    side = per_precision.rename(columns={"output_tokens_per_sec_per_gpu": "tok/s per GPU",
                                         "cost_per_million_output_tokens": "$ per M output tokens",
                                         "uncertainty_rel": BAND})
    st.dataframe(side[["precision", "gpu", "tp", "batch", "tok/s per GPU", "$ per M output tokens", BAND]],
                 hide_index=True, key="sel_per_precision",
                 column_config={"tok/s per GPU": st.column_config.NumberColumn(format="%.0f"),
                                "$ per M output tokens": st.column_config.NumberColumn(format="$%.3f"),
                                BAND: st.column_config.NumberColumn(format="percent")})

st.subheader("Ranked options")
shown = table.rename(columns={"output_tokens_per_sec_per_gpu": "tok/s per GPU", "ttft_ms": "TTFT ms",
                              "tpot_ms": "TPOT ms", "cost_per_million_output_tokens": "$ per M output tokens",
                              "uncertainty_rel": BAND})
cols = ["rank", "gpu", "precision", "tp", "fits", "batch", "tok/s per GPU", "TTFT ms", "TPOT ms",
        "$ per M output tokens", BAND, "calibrated_from", "why", "provenance"]
st.dataframe(shown[[c for c in cols if c in shown]], hide_index=True, key="sel_table",
             column_config={"tok/s per GPU": st.column_config.NumberColumn(format="%.0f"),
                            "TTFT ms": st.column_config.NumberColumn(format="%.0f"),
                            "TPOT ms": st.column_config.NumberColumn(format="%.1f"),
                            "$ per M output tokens": st.column_config.NumberColumn(format="$%.3f"),
                            BAND: st.column_config.NumberColumn(format="percent")})
st.caption("Batch = the best batch under the limits. TTFT counts the prefill of the whole batch (static "
           "batching), an upper bound for in-flight batching. Cost = price × TP / throughput. All numbers "
           f"are estimated; {selector.band_note(table)}")

feasible = table[table["feasible"]]
# the best option of every selected precision, so a comparison of formats shows each of them
default_plot = list(per_precision["option"]) or list(feasible["option"].head(4)) or list(curves)[:4]
# keyed by the candidates, so the default (the best options) follows when the inputs change
plot_options = st.multiselect("Options to plot", list(curves), default=[o for o in default_plot if o in curves],
                              key=f"sel_plot_{abs(hash(tuple(curves))) % 10**8}")
if plot_options:
    chosen = table[table["option"].isin(plot_options)]
    points = selector.overlay_points(model_id, chosen, int(isl), int(osl), store_pts)
    st.plotly_chart(plots.throughput_curves_figure({k: curves[k] for k in plot_options}, points),
                    key="sel_curves", config={"displaylogo": False})
    st.caption("Lines: estimated throughput per GPU up to the largest batch that fits (shaded: uncertainty "
               "band). Where a line flattens or drops below another format, that format stops paying off. "
               "◆ published, ★ your measured points at the same model, GPU, precision, TP and lengths.")
    mem = selector.memory_rows(model, chosen, int(isl), int(osl))
    if len(mem):
        st.plotly_chart(plots.memory_figure(mem), key="sel_memory", config={"displaylogo": False})

st.subheader("How good is this estimate?")
heldout = bands.heldout()
if heldout.empty:
    st.info("No held-out errors ship with this install: run `python benchmarks/estimator_accuracy.py --write`.")
else:
    focus = selector.focus_option(table, gpus)
    metric = st.radio("Metric", ["throughput", "ttft"], horizontal=True, key="sel_parity_metric",
                      format_func={"throughput": "Output throughput", "ttft": "Time to first token"}.get)
    st.plotly_chart(plots.parity_figure(heldout, focus["gpu"], bands.model_family(model_id),
                                        selector.measured_parity(store_pts, cal), metric,
                                        focus["band_nominal"], focus["band_rel"]),
                    key="sel_parity", config={"displaylogo": False})
    st.caption(f"Each point is a published TensorRT-LLM measurement estimated by a fit that never saw its GPU, "
               f"model family, TensorRT-LLM version or source document (colour = which was held out). "
               f"Outlined: points on {focus['gpu']} or of the {bands.model_family(model_id)} family; the title "
               "gives their median error when that group was held out. ★ your measured points (in the fit). "
               "Dotted: the band of the best option above.")
