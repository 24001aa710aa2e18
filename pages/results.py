"""Results: speedup against accuracy loss for every stored recipe, with the Pareto frontier, a sortable
table, CSV export, run-by-run comparison and each result's full spec and provenance. Language-model and
diffusion results never share a chart: a diffusion result's quality axis is the user's choice (task-metric
loss, PSNR or SSIM) and its details show the images it drew."""

from pathlib import Path

import pandas as pd
import streamlit as st

from app import nav, state, sweeps
from engine import plots, registry
from engine.paths import tlab_home
from engine.perf import catalog, on_gpu
from engine.store.export import to_csv
from engine.training import recovery

TABLE_COLUMNS = ["recipe", "model", "experiment", "x_loss", "x_err", "task_accuracy", "y_speedup", "perplexity",
                 "kl_div", "top1_agreement", "y_decode_tok_s", "device", "backend", "provenance", "created_at", "id"]
COLUMN_CONFIG = {
    "recipe": "Recipe", "model": "Model", "experiment": "Run",
    "x_loss": st.column_config.NumberColumn("Accuracy loss (%)", format="%.3f",
                                            help="Perplexity increase vs the baseline, in percent"),
    "x_err": st.column_config.NumberColumn("± (points)", format="%.2f",
                                           help="Standard error of the task-accuracy loss (lm-eval's, both sides)"),
    "task_accuracy": st.column_config.NumberColumn("Task accuracy", format="%.3f"),
    "y_speedup": st.column_config.NumberColumn("Speedup (x)", format="%.3f", help="Times faster than the baseline"),
    "perplexity": st.column_config.NumberColumn("Perplexity", format="%.3f"),
    "kl_div": st.column_config.NumberColumn("KL div.", format="%.4f"),
    "top1_agreement": st.column_config.NumberColumn("Top-1 agreement", format="%.3f"),
    "y_decode_tok_s": st.column_config.NumberColumn("Decode tok/s", format="%.1f"),
    "device": "Device", "backend": "Engine", "provenance": "Provenance",
    "created_at": st.column_config.DatetimeColumn("When", format="YYYY-MM-DD HH:mm"), "id": "Result id",
}
PLOTLY_CONFIG = {"displaylogo": False,
                 "toImageButtonOptions": {"format": "png", "filename": "tradeoff-lab-chart", "scale": 2}}


FILTERS = [("model", "Model"), ("experiment", "Run"), ("device", "Device"), ("precision", "Precision")]


def _filters(frame: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """Filter widgets (only for columns with more than one value) and the rows they keep. `prefix` keeps
    one model kind's widgets apart from another's."""
    options = {c: sorted(frame[c].dropna().astype(str).unique()) for c, _ in FILTERS}
    shown = [(c, label) for c, label in FILTERS if len(options[c]) > 1]
    sizes = plots.batch_sizes(frame)
    cols = st.columns(len(shown) + 1)
    view = frame
    for col, (column, label) in zip(cols, shown):
        picked = col.multiselect(label, options[column], default=[], key=f"{prefix}filter_{column}",
                                 placeholder="all")
        if picked:
            view = view[view[column].astype(str).isin(picked)]
    batch = cols[-1].selectbox("Batch size", sizes, key=f"{prefix}filter_batch",
                               help="Speedup measured at this batch size") if sizes else None
    return view, batch


def _empty_state() -> None:
    jobs = state.store().list_jobs(status=["queued", "running"], limit=5)
    if jobs:
        st.info("No results yet. A sweep is in progress: its points appear here as soon as it finishes.")
        st.page_link(nav.page("jobs"), label="Watch it on the Jobs page", icon=":material/hourglass_top:")
        return
    st.info("No results yet. Run the demo sweep on the bundled model (a few minutes on a CPU), or build "
            "your own on the Experiment page.")
    if st.button("Run the demo sweep", type="primary", key="results_run_demo"):
        sweeps.queue_demo()
        st.switch_page(nav.page("jobs"))
    st.page_link(nav.page("experiment"), label="Build a sweep", icon=":material/science:")


def _why_no_speedup(view: pd.DataFrame) -> None:
    """Results without a speedup in this view: say why (no fast kernels here, runs too noisy, ...)."""
    missing = view[view["y_speedup"].isna()]
    if missing.empty:
        return
    reasons = plots.refused_speedups(state.store().list_results(ids=missing["id"].head(50).tolist()))
    if reasons:
        st.warning(f"{len(missing)} result(s) have no speedup here, so they are not on the trade-off chart:\n\n"
                   + "\n".join(f"- {plots.name_results(ids, missing)}: {why}" for why, ids in list(reasons.items())[:6]))
    elif view["y_speedup"].notna().any():
        st.caption(f"{len(missing)} result(s) have no speed measurement at this batch size and are not plotted "
                   "(see the table).")


def _partial_speedups(view: pd.DataFrame) -> None:
    """Speedups that cover part of a recipe (FP8's linear layers on a GPU): say so beside the chart."""
    shown = view[view["y_speedup"].notna()]
    if shown.empty:
        return
    for scope, ids in plots.speedup_scopes(state.store().list_results(ids=shown["id"].head(50).tolist())).items():
        st.caption(f"{plots.name_results(ids, shown)}: {scope}.")


SPEED_ON = {"here": "this machine (measured)", "gpu": "a catalog GPU (estimated)"}


def _speed_on(chart: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """The user's choice of speed axis: measured here, or estimated on a catalog GPU for a workload."""
    where = st.radio("Speed on", list(SPEED_ON), format_func=SPEED_ON.get, horizontal=True, key="speed_on",
                     help="Accuracy is always what was measured here. Speed is either measured on this machine "
                          "or estimated for a GPU you may deploy on (calibrated roofline, with its band).")
    if where == "here":
        return chart, None
    gpus = list(catalog.gpus())
    c1, c2, c3, c4, c5 = st.columns([2, 1, 1, 1, 1])
    gpu = c1.selectbox("GPU", gpus, index=gpus.index("h100-sxm") if "h100-sxm" in gpus else 0, key="est_gpu")
    batch = c2.number_input("Batch", 1, 4096, 8, key="est_batch")
    isl = c3.number_input("Input tokens", 1, 1_000_000, 1024, key="est_isl")
    osl = c4.number_input("Output tokens", 1, 1_000_000, 128, key="est_osl")
    tp = c5.selectbox("TP", [1, 2, 4, 8], key="est_tp")
    workload = on_gpu.GpuWorkload(gpu, int(batch), int(isl), int(osl), int(tp))
    estimated = on_gpu.estimated_speedups(chart, workload)
    # a baseline is named by where its speed was measured; here the speed is the GPU's estimate
    estimated["recipe"] = plots.recipe_labels(estimated.drop(columns=["speed_compute_bits"], errors="ignore"))
    missing = on_gpu.notes(estimated)
    if missing:
        st.warning("No estimate for some recipes:\n\n" + "\n".join(
            f"- {', '.join(sorted(set(recipes)))}: {why.removeprefix('no estimate: ')}"
            for why, recipes in list(missing.items())[:6]))
    return estimated, f"Speedup on {gpu} (estimated: {workload.text}) vs accuracy loss measured here"


def _chart(view: pd.DataFrame, published: pd.DataFrame, key: str, title: str | None = None,
           axis: plots.QualityAxis | plots.AccuracyAxis | None = None, arrows: pd.DataFrame | None = None) -> None:
    """The trade-off chart; `axis` is a diffusion quality axis or a language model's accuracy axis
    (None: perplexity increase); `arrows` (recovery.recovery_arrows) adds trained models."""
    scatter = {} if axis is None else {"x_title": axis.axis, "lower_x_is_better": axis.lower_is_better}
    if (view["speed_kind"] == "estimated").all() and view["y_speedup"].notna().any():
        st.plotly_chart(plots.speedup_accuracy_figure(view, published, title=title, **scatter), key=key,
                        config=PLOTLY_CONFIG)
        return
    if plots.has_speed(view) and view["y_speedup"].notna().any():
        fig = plots.speedup_accuracy_figure(view, published, title=title or (axis.title if axis else None), **scatter)
        if arrows is not None and len(arrows):
            plots.add_training_arrows(fig, arrows)
        st.plotly_chart(fig, key=key, config=PLOTLY_CONFIG)
    else:
        if (view["speed_kind"] == "measured").any():
            st.info("No speedup could be computed for these results (the reasons are below), so the chart shows "
                    "accuracy alone: never an estimated or invented speedup.")
        else:
            st.info("No speed measurements for these results yet, so there is no speedup to plot: the chart "
                    "shows accuracy alone. Run a sweep with **Measure speed** ticked to add speed.")
        bars = {} if axis is None else {"y_title": axis.axis, "lower_is_better": axis.lower_is_better}
        if axis is not None and title is None:
            title = f"{axis.label[0].upper()}{axis.label[1:]} per recipe (no speedup to show)"
        st.plotly_chart(plots.accuracy_figure(view, title=title, **bars), key=key, config=PLOTLY_CONFIG)


DIFFUSION_TABLE_COLUMNS = ["recipe", "model", "experiment", "task_accuracy", "task_accuracy_loss_pts", "psnr_db",
                           "ssim", "y_speedup", "y_step_latency_ms", "device", "backend", "provenance", "created_at",
                           "id"]
DIFFUSION_COLUMN_CONFIG = {
    **{k: v for k, v in COLUMN_CONFIG.items() if k in DIFFUSION_TABLE_COLUMNS},
    "task_accuracy": st.column_config.NumberColumn("Task accuracy", format="%.3f",
                                                   help="Share of the images the task metric scores as right "
                                                        "(the bundled model: read as the digit asked for)"),
    "task_accuracy_loss_pts": st.column_config.NumberColumn("Task-metric loss (pts)", format="%.2f",
                                                            help="Task accuracy drop vs the baseline, in points"),
    "psnr_db": st.column_config.NumberColumn("PSNR (dB)", format="%.2f",
                                             help="Against the baseline's images from the same seeds; higher is "
                                                  "closer"),
    "ssim": st.column_config.NumberColumn("SSIM", format="%.4f", help="Against the baseline's images; 1 = identical"),
    "y_speedup": st.column_config.NumberColumn("Speedup (x)", format="%.3f",
                                               help="Denoiser step, times faster than the baseline"),
    "y_step_latency_ms": st.column_config.NumberColumn("Denoiser step (ms)", format="%.2f"),
}


def _image_grid(result) -> None:
    """The images a diffusion result drew (baseline row over the recipe's, same seeds), and a download."""
    images = (result.provenance or {}).get("images") or {}
    grid = images.get("grid")
    if not grid:
        st.caption("This result has no saved images.")
        return
    path, home = Path(grid), (tlab_home() / "images").resolve()
    readable = path.suffix.lower() == ".png" and path.resolve().is_relative_to(home) and path.is_file()
    if not readable:
        st.caption(f"The image grid was saved at {grid}, which this app cannot read (images are read from {home}).")
        return
    rows = images.get("rows") or []
    st.image(str(path), caption=("Rows, top to bottom: " + ", ".join(rows) + ". " if rows else "")
             + (images.get("note") or "").capitalize())
    st.download_button("Download the image grid (PNG)", data=path.read_bytes(), file_name=f"{result.id}-images.png",
                       mime="image/png", key="download_grid")


RECOVERY_COLUMNS = {
    "recipe": "Recipe", "parent": "Trained from", "model": "Model", "baseline": "Baseline",
    "baseline_loss": st.column_config.NumberColumn("Fine-tuned baseline loss", format="%.4f",
                                                   help="Held-out validation loss, nats/token"),
    "parent_loss": st.column_config.NumberColumn("PTQ / sparsified loss", format="%.4f"),
    "trained_loss": st.column_config.NumberColumn("After training loss", format="%.4f"),
    "gap_closed_pct": st.column_config.NumberColumn("Gap closed (%)", format="%.1f",
                                                    help="(PTQ - after) / (PTQ - fine-tuned baseline)"),
    "ppl_increase_pct_before": st.column_config.NumberColumn("PPL increase before (%)", format="%.2f",
                                                             help="Perplexity over the fine-tuned baseline's"),
    "ppl_increase_pct": st.column_config.NumberColumn("PPL increase after (%)", format="%.2f"),
    "steps": "Steps", "source": "Source", "id": "Result id", "dataset": "Data",
}


@st.cache_data(show_spinner=False)
def _published_recovery() -> pd.DataFrame:
    return recovery.published_recovery()


def _recovery(trained: list, arrows: pd.DataFrame | None) -> None:
    """Recovery by training: the reference's table and bars, measured here beside the published rows."""
    st.subheader("Recovery by training")
    table = recovery.recovery_table(trained)
    st.dataframe(table, hide_index=True, column_config=RECOVERY_COLUMNS, key="recovery_table", width="stretch")
    published = _published_recovery()
    st.plotly_chart(recovery.recovery_figure(table, published), key="recovery_chart", config=PLOTLY_CONFIG)
    st.caption("Held-out validation loss of the fine-tuned BF16 baseline, the PTQ or 2:4-sparsified model and the "
               "same model after QAT or sparse fine-tuning. The right panel is **published** (NVIDIA Model "
               "Optimizer's QAT and sparsity tables): other models and data, for scale only.")
    with st.expander("Published reference rows"):
        st.dataframe(published, hide_index=True, column_config=RECOVERY_COLUMNS, key="recovery_published")
    if arrows is not None:
        missing = arrows[arrows["why_no_point"].notna()]
        if len(missing):
            st.caption("Not on the trade-off chart:\n\n" + "\n".join(
                f"- {r.recipe}: {r.why_no_point}" for r in missing.itertuples()))


def _details(result) -> None:
    """A result's full spec, provenance, metrics, timings and versions."""
    c1, c2 = st.columns(2)
    c1.markdown("**Spec**")
    c1.json(result.spec)
    c2.markdown("**Provenance** (where each number came from)")
    c2.json(result.provenance)
    with st.expander("All metrics, timings and versions"):
        st.json({k: getattr(result, k) for k in ("metrics", "units", "timings", "versions", "device", "created_at")})


def _timed_batches(frame: pd.DataFrame) -> list[int]:
    """Batch sizes with a measured denoiser step: the batch filter lists only those with a speedup, so when
    every speedup was refused (a noisy machine) the step times measured would otherwise stay hidden."""
    prefix = "step_latency_ms_bs"
    return sorted(int(c[len(prefix):]) for c in frame.columns
                  if str(c).startswith(prefix) and str(c)[len(prefix):].isdigit() and frame[c].notna().any())


def _diffusion_results(frame: pd.DataFrame) -> None:
    """Diffusion results: speedup of the denoiser step against the quality axis the user picks."""
    view, batch = _filters(frame, prefix="diffusion_")
    if batch is None and (timed := _timed_batches(view)):
        batch = st.columns(2)[0].selectbox(
            "Batch size", timed, key="diffusion_filter_timed_batch",
            help="Denoiser step measured at this batch size (no speedup at any: see why below)")
    quality = st.radio("Quality axis", list(plots.DIFFUSION_QUALITY), horizontal=True, key="quality_axis",
                       index=list(plots.DIFFUSION_QUALITY).index(plots.default_quality(view)),
                       format_func=lambda q: plots.DIFFUSION_QUALITY[q].label[0].upper()
                       + plots.DIFFUSION_QUALITY[q].label[1:],
                       help="Task-metric loss: how many accuracy points the task metric (the bundled model: a "
                            "digit classifier) drops. PSNR and SSIM compare each image with the baseline's from "
                            "the same seed: higher is closer.")
    axis = plots.DIFFUSION_QUALITY[quality]
    chart = plots.diffusion_chart_frame(view, batch, quality)
    _chart(chart, None, key="diffusion_chart", axis=axis)
    losses = chart["x_loss"].dropna()
    if quality == "loss" and len(losses) and (losses == 0).all():  # zero-height bars read as an empty chart
        st.caption("Every recipe scored the same task accuracy as the baseline: a loss of 0 points.")
    _why_no_speedup(chart)
    _partial_speedups(chart)
    st.caption("Speed is the denoiser step (where the quantized layers are), measured on this machine against the "
               "unquantized baseline. "
               + ("The baseline has no PSNR against its own images (they are identical), so it is not on this axis."
                  if quality == "psnr" else ""))

    st.subheader("Table")
    shown = [c for c in DIFFUSION_TABLE_COLUMNS if c in chart.columns]
    selection = st.dataframe(chart[shown], hide_index=True, column_config=DIFFUSION_COLUMN_CONFIG,
                             key="diffusion_table", on_select="rerun", selection_mode="single-row", width="stretch",
                             height=320)
    ids = chart["id"].tolist()
    st.download_button("Download CSV", data=lambda: to_csv(state.store().list_results(ids=ids)),
                       file_name="tradeoff-lab-diffusion-results.csv", mime="text/csv", key="download_diffusion_csv",
                       help="Every metric and provenance field of the results shown above.")
    rows = selection.selection.rows if selection is not None else []
    if not rows:
        st.caption("Select a row to see the images it drew, its full spec and provenance.")
        return
    result = state.store().get_result(chart.iloc[rows[0]]["id"])
    if result:
        st.subheader(f"{chart.iloc[rows[0]]['recipe']}: details")
        _image_grid(result)
        _details(result)


st.title("Results")
frame = state.results_frame()
partial = frame[frame["status"] == "partial"] if len(frame) else frame
frame = frame[frame["status"] != "partial"] if len(frame) else frame
if len(partial):
    st.caption(f"{len(partial)} result(s) from sweeps still running, or stopped before they finished, are left "
               "out until their sweep completes (a stopped sweep run again reuses nothing it left partial).")
if frame.empty:
    _empty_state()
    st.stop()

frame = frame.assign(kind=frame["id"].map(state.result_kinds()).fillna("causal_lm"))
ORDER = list(registry.MODEL_KINDS)
kinds = sorted(frame["kind"].unique(), key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k))
kind = kinds[0]
if len(kinds) > 1:  # one chart per kind: their quality numbers are not comparable
    kind = st.radio("Model kind", kinds, horizontal=True, key="results_kind",
                    format_func=lambda k: registry.MODEL_KINDS[k].label if k in registry.MODEL_KINDS else k,
                    help="Language models and diffusion models are measured differently, so their results "
                         "never share a chart.")
    frame = plots.rows_of_kind(frame, kind)
if kind == "diffusion":
    _diffusion_results(frame)
    st.stop()

view, batch = _filters(frame)
axes = plots.accuracy_axes(frame)
accuracy = st.radio("Accuracy axis", list(axes), horizontal=True, key="accuracy_axis",
                    format_func=lambda a: axes[a].label[0].upper() + axes[a].label[1:],
                    help="Task-accuracy loss: accuracy points lost on an lm-eval task (offered when the results "
                         "were scored on one), with its standard error as a bar.") if len(axes) > 1 else "ppl"
chart, est_title = _speed_on(plots.chart_frame(view, batch, accuracy))

trained, arrows = [], None
if (frame["experiment"] == recovery.EXPERIMENT).any():  # training results: named as trained, drawn as arrows
    training_runs = state.store().list_results(experiment=recovery.EXPERIMENT)
    chart["recipe"] = chart["id"].map(recovery.training_labels(training_runs)).fillna(chart["recipe"])
    trained = recovery.trained_results(training_runs)
    arrows = recovery.recovery_arrows(trained, chart, accuracy) if trained and est_title is None else None
overlay = plots.published_on_axis(state.published_points(), chart, accuracy, batch)
_chart(chart, overlay if len(overlay) else None, key="main_chart", title=est_title,
       axis=None if accuracy == "ppl" else axes[accuracy], arrows=arrows)
if est_title is None:
    _why_no_speedup(chart[chart["experiment"] != recovery.EXPERIMENT])
if arrows is not None and arrows["y_speedup"].notna().any():
    st.caption("★ trained models, with an arrow from the model they were trained from (hollow ○): their accuracy "
               "loss is against the fine-tuned baseline, their speed the sweep's of the same deployed format.")
if len(overlay):
    st.caption("Hollow squares are **published** NVIDIA measurements, for scale only: MMLU loss (in % of their "
               "baseline's score) of the models they name, not this task or model, and speed on their own GPU "
               "and engine.")
st.caption("Marker shape: ● measured on a device (bars: run-to-run spread of the speedup; a task loss's standard "
           "error) · ◇ estimated · □ published. Download the chart as PNG with the camera icon at its top right.")

st.subheader("Table")
hidden = set() if axes[accuracy].task else {"x_err", "task_accuracy"}  # task columns on a task axis only
shown = [c for c in TABLE_COLUMNS if c in chart.columns and c not in hidden]
columns = {**COLUMN_CONFIG, "x_loss": st.column_config.NumberColumn(axes[accuracy].column, format="%.3f")}
selection = st.dataframe(chart[shown], hide_index=True, column_config=columns, key="results_table",
                         on_select="rerun", selection_mode="single-row", width="stretch", height=320)
ids = chart["id"].tolist()
st.download_button("Download CSV", data=lambda: to_csv(state.store().list_results(ids=ids)),
                   file_name="tradeoff-lab-results.csv", mime="text/csv", key="download_csv",
                   help="Every metric and provenance field of the results shown above.")

rows = selection.selection.rows if selection is not None else []
if rows:
    result_id = chart.iloc[rows[0]]["id"]
    result = state.store().get_result(result_id)
    if result:
        st.subheader(f"{chart.iloc[rows[0]]['recipe']}: details")
        _details(result)
else:
    st.caption("Select a row to see its full spec and provenance.")

if trained:
    _recovery(trained, arrows)

runs = sorted(frame["experiment"].dropna().unique())
if len(runs) >= 2:
    st.subheader("Compare runs")
    picked = st.multiselect("Runs to compare side by side", runs, default=runs[-2:], key="compare_runs")
    if len(picked) >= 2:
        cols = st.columns(min(len(picked), 3))
        for i, run in enumerate(picked):
            with cols[i % len(cols)]:
                part = plots.chart_frame(frame[frame["experiment"] == run], batch, accuracy)
                _chart(part, None, key=f"compare_{i}", title=run, axis=None if accuracy == "ppl" else axes[accuracy])
        both = plots.chart_frame(frame[frame["experiment"].isin(picked)], batch, accuracy)
        table = both.pivot_table(index="recipe", columns="experiment", values=["x_loss", "y_speedup"],
                                 aggfunc="first")
        table.columns = [f"{'loss %' if m == 'x_loss' else 'speedup'} · {run}" for m, run in table.columns]
        st.dataframe(table, width="stretch", key="compare_table")
