"""Pure functions: results DataFrame -> chart data -> plotly Figure. No per-row Python loops.

The main chart is speedup (y, times faster than the run's baseline) against accuracy loss (x: the user's
choice of relative perplexity increase in %, KL divergence, or an lm-eval task's accuracy loss in points;
LANGUAGE_AXES / accuracy_axes). Marker shape says where a number came from: measured, estimated or
published. Measured points carry error bars: the speedup's run-to-run spread, and a task loss's
standard error. Published points (MMLU loss of other, larger models) go on the task-accuracy axis only,
labelled as such.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from engine import registry
from engine.store.entities import TASK_ACC, TASK_LOSS_PTS, TASK_LOSS_PTS_STDERR, task_names_in

ACCURACY_LOSS = "ppl_increase_pct"
SPEEDUP = "speedup"
PROVENANCE_SYMBOLS = {"measured": "circle", "estimated": "diamond-open", "published": "square"}
_BS_COLUMN = re.compile(r"^speedup_bs(\d+)$")
# Colours per precision, stable across charts (plotly's default qualitative palette order).
PRECISION_COLORS = dict(zip(registry.PRECISIONS, ["#636EFA", "#AB63FA", "#EF553B", "#00CC96", "#FFA15A",
                                                  "#19D3F3", "#FF6692"]))
HOVER_FIELDS = [  # (column, label, number format) shown in the hover box when present
    ("recipe", "Recipe", None), ("model", "Model", None), ("experiment", "Experiment", None),
    ("batch_size", "Batch size", None), (ACCURACY_LOSS, "Perplexity increase (%)", ":.3f"),
    ("perplexity", "Perplexity", ":.3f"), ("baseline_perplexity", "Baseline perplexity", ":.3f"),
    ("kl_div", "KL divergence", ":.4f"), ("top1_agreement", "Top-1 agreement", ":.3f"),
    ("x_err", "± standard error (points)", ":.2f"),
    ("y_speedup", "Speedup (x)", ":.3f"), ("y_err", "± half run-to-run spread (x)", ":.3f"),
    ("y_low", "Speedup band low (x)", ":.3f"),
    ("y_high", "Speedup band high (x)", ":.3f"), ("speed_note", "Speed", None),
    ("y_decode_tok_s", "Decode tokens/s", ":.1f"),
    ("y_ttft_ms", "Time to first token (ms)", ":.1f"), ("device", "Device", None), ("backend", "Engine", None),
    ("task_accuracy", "Task accuracy", ":.3f"), ("task_accuracy_loss_pts", "Task-metric loss (points)", ":.2f"),
    ("psnr_db", "PSNR vs baseline images (dB)", ":.2f"), ("ssim", "SSIM vs baseline images", ":.4f"),
    ("y_step_latency_ms", "Denoiser step (ms)", ":.2f"),
    ("accuracy_kind", "Accuracy numbers", None), ("speed_kind", "Speed numbers", None), ("id", "Result id", None),
]


# --- data preparation ---------------------------------------------------------------------------

def recipe_labels(df: pd.DataFrame) -> pd.Series:
    """'INT8 SmoothQuant + 2:4 SparseGPT + KV FP8' per row (vectorized). A baseline is named as it ran:
    'BF16 weights, FP32 compute' where its speed was measured in float32 (a CPU)."""
    prec = df["precision"].map({k: p.label for k, p in registry.PRECISIONS.items()}).fillna(df["precision"])
    if "speed_compute_bits" in df:
        fp32 = df["precision"].isin(registry.BASELINES) & (df["speed_compute_bits"] == 32)
        prec = prec.where(~fp32, prec + " weights, FP32 compute")
    sparse = df["sparsity"].map({k: s.label for k, s in registry.SPARSITIES.items()}).fillna(df["sparsity"])
    label = prec.astype(str)
    label = label.where(df["sparsity"].isin(["none"]) | df["sparsity"].isna(), label + " + " + sparse.astype(str))
    kv = df["kv_cache"].fillna("auto")
    return label.where(kv == "auto", label + " + KV " + kv.astype(str).str.upper())


def batch_sizes(df: pd.DataFrame) -> list[int]:
    """Batch sizes that have a speedup column (speedup_bs{N}) in the frame, ascending."""
    return sorted(int(m.group(1)) for c in df.columns if (m := _BS_COLUMN.match(str(c))))


def has_speed(df: pd.DataFrame) -> bool:
    cols = [c for c in df.columns if c == SPEEDUP or _BS_COLUMN.match(str(c))]
    return bool(cols) and bool(df[cols].notna().to_numpy().any())


def _metric_at(df: pd.DataFrame, name: str, batch_size: int | None) -> pd.Series:
    col = f"{name}_bs{batch_size}" if batch_size is not None else name
    if col in df.columns:
        return df[col].astype(float)
    if batch_size is None and name in df.columns:
        return df[name].astype(float)
    return pd.Series(np.nan, index=df.index, dtype=float)


@dataclass(frozen=True)
class AccuracyAxis:
    """A language model's accuracy metric as the chart's x axis."""

    metric: str  # the metric column
    label: str  # the choice's name
    axis: str  # the x axis title
    column: str  # the table column's title
    stderr_metric: str | None = None  # its standard error, drawn as an x error bar
    task: str | None = None  # the lm-eval task (task-accuracy axes)

    lower_is_better = True  # every language-model axis is a loss

    @property
    def title(self) -> str:
        what = f"{self.task} accuracy loss" if self.task else self.label.split(" (")[0]
        return f"Speedup vs {what} (up and left is better)"

    @property
    def published(self) -> bool:
        """Published MMLU-loss points belong on a task-accuracy axis only: never beside perplexity or KL."""
        return self.task is not None


PERPLEXITY_AXIS = "Accuracy loss: perplexity increase vs baseline (%)"
LANGUAGE_AXES = {
    "ppl": AccuracyAxis(ACCURACY_LOSS, "perplexity increase (%)", PERPLEXITY_AXIS, "Perplexity increase (%)"),
    "kl": AccuracyAxis("kl_div", "KL divergence", "Accuracy loss: KL divergence from the baseline (nats per token)",
                       "KL divergence"),
}


def task_axis(task: str) -> AccuracyAxis:
    return AccuracyAxis(TASK_LOSS_PTS + task, f"task-accuracy loss (points): {task}",
                        f"Accuracy loss: {task} accuracy vs baseline (percentage points)",
                        f"{task} loss (points)", TASK_LOSS_PTS_STDERR + task, task)


def accuracy_axes(df: pd.DataFrame) -> dict[str, AccuracyAxis]:
    """The accuracy axes these results can be drawn on: perplexity increase always, KL divergence where
    measured, and one task-accuracy-loss axis per lm-eval task some result has ("task:<name>")."""
    axes = {"ppl": LANGUAGE_AXES["ppl"]}
    if "kl_div" in df.columns and df["kl_div"].notna().any():
        axes["kl"] = LANGUAGE_AXES["kl"]
    for task in task_names_in(df.columns):
        if df[TASK_LOSS_PTS + task].notna().any():
            axes[f"task:{task}"] = task_axis(task)
    return axes


def _axis(accuracy: str | AccuracyAxis) -> AccuracyAxis:
    if isinstance(accuracy, AccuracyAxis):
        return accuracy
    if accuracy.startswith("task:"):
        return task_axis(accuracy[len("task:"):])
    return LANGUAGE_AXES[accuracy]


def chart_frame(df: pd.DataFrame, batch_size: int | None = None, accuracy: str | AccuracyAxis = "ppl") -> pd.DataFrame:
    """Rows ready to plot: recipe label, x = accuracy loss on the `accuracy` axis (a LANGUAGE_AXES key,
    "task:<name>" or an AccuracyAxis) with its standard error as x_err where it has one, y = speedup at
    `batch_size` (None: the unsuffixed `speedup`, i.e. the first batch size of each run) with y_err,
    and the hover fields.

    y_err is half the speedup's relative run-to-run spread (the pipeline's speedup_spread: baseline and
    recipe spreads in quadrature) times the speedup, so the bar spans the interquartile range of the
    runs around the median."""
    axis = _axis(accuracy)
    out = df.copy()
    out["recipe"] = recipe_labels(out) if len(out) else pd.Series(dtype=str)
    out["batch_size"] = batch_size if batch_size is not None else np.nan
    out["x_loss"] = _metric_at(out, axis.metric, None)
    out["x_err"] = _metric_at(out, axis.stderr_metric, None) if axis.stderr_metric else np.nan
    if axis.task is not None:
        out["task_accuracy"] = _metric_at(out, TASK_ACC + axis.task, None)
    out["y_speedup"] = _metric_at(out, "speedup", batch_size)
    out["y_err"] = out["y_speedup"] * _metric_at(out, "speedup_spread", batch_size) / 2
    out["y_ttft_ms"] = _metric_at(out, "ttft_ms", batch_size)
    decode = _metric_at(out, "decode_tokens_per_sec", batch_size)
    out["y_decode_tok_s"] = decode.where(decode.notna(), _metric_at(out, "decode_tok_s", batch_size))
    return out


@dataclass(frozen=True)
class QualityAxis:
    """A diffusion result's quality metric as the chart's x axis."""

    metric: str  # the metric column
    label: str  # the choice's name
    axis: str  # the x axis title (says which way is better)
    lower_is_better: bool
    baseline_value: float | None  # the baseline against itself (None: not a number, e.g. PSNR of identical images)

    @property
    def title(self) -> str:
        side = "left" if self.lower_is_better else "right"
        return f"Denoiser-step speedup vs {self.label.split(' (')[0]} (up and {side} is better)"


DIFFUSION_QUALITY = {
    "loss": QualityAxis("task_accuracy_loss_pts", "task-metric loss (points)",
                        "Task-metric loss vs baseline (accuracy points, lower is better)", True, 0.0),
    "psnr": QualityAxis("psnr_db", "PSNR (dB)", "PSNR vs the baseline's images (dB, higher is better)", False, None),
    "ssim": QualityAxis("ssim", "SSIM", "SSIM vs the baseline's images (1 = identical, higher is better)", False, 1.0),
}


def rows_of_kind(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    """The rows whose `kind` column (a registry.MODEL_KINDS name) is `kind`, without the metric columns only
    the other kinds have: a language model's view never gets a diffusion metric (or batch size), nor back."""
    from engine.store.records import FRAME_COLUMNS

    out = df[df["kind"] == kind]
    empty = [c for c in out.columns if c not in FRAME_COLUMNS and c != "kind" and out[c].isna().all()]
    return out.drop(columns=empty)


def diffusion_chart_frame(df: pd.DataFrame, batch_size: int | None = None, quality: str = "loss") -> pd.DataFrame:
    """chart_frame for diffusion results: x_loss = the chosen quality metric (DIFFUSION_QUALITY: task-metric
    loss in points, PSNR in dB or SSIM, plotted as they are), y_speedup = the denoiser-step speedup at
    `batch_size`. The baseline, compared with itself, gets speedup 1 where its speed was measured and its
    own quality where that is a number (loss 0, SSIM 1; PSNR of identical images is infinite: left out)."""
    axis = DIFFUSION_QUALITY[quality]
    out = chart_frame(df, batch_size)
    out["x_loss"] = _metric_at(out, axis.metric, None)
    out["y_step_latency_ms"] = _metric_at(out, "step_latency_ms", batch_size)
    if len(out):
        baseline = (out["precision"].isin(registry.BASELINES) & out["sparsity"].fillna("none").eq("none")).to_numpy()
        if axis.baseline_value is not None:
            out.loc[baseline & out["x_loss"].isna().to_numpy(), "x_loss"] = axis.baseline_value
        timed = baseline & out["y_speedup"].isna().to_numpy() & out["y_step_latency_ms"].notna().to_numpy()
        out.loc[timed, "y_speedup"] = 1.0
    return out


def default_quality(df: pd.DataFrame) -> str:
    """The task-metric axis when some recipe has a task metric (the bundled model), else SSIM: a local
    pipeline has no task metric, and an axis with nothing on it reads as a broken chart."""
    frame = diffusion_chart_frame(df, None, "loss")
    if not len(frame):
        return "loss"
    recipes = ~frame["precision"].isin(registry.BASELINES).to_numpy()
    return "loss" if frame.loc[recipes, "x_loss"].notna().any() else "ssim"


def refused_speedups(results: list) -> dict[str, list[str]]:
    """Why a result has no speedup: reason -> result ids, from each Result's provenance as the pipeline
    writes it: "speed_not_measured" (no fast kernels here) and speed.speedup_refused ({batch: reason})."""
    out: dict[str, list[str]] = {}
    for r in results:
        if r.speed_not_measured:
            out.setdefault(r.speed_not_measured, []).append(r.id)
        for bs, why in r.speedup_refusals.items():
            out.setdefault(f"batch {bs}: {why}", []).append(r.id)
    return out


def speedup_scopes(results: list) -> dict[str, list[str]]:
    """What a measured speedup covers where it is not the whole recipe: scope -> result ids (e.g. FP8 on a
    GPU in PyTorch, whose convolutions and attention stay 16-bit: "the speedup is of the FP8 linear
    layers only ...")."""
    out: dict[str, list[str]] = {}
    for r in results:
        scope = (r.part("speed") or {}).get("scope")
        if scope:
            out.setdefault(scope, []).append(r.id)
    return out


def name_results(ids: list[str], view: pd.DataFrame, most: int = 4) -> str:
    """'INT8 SmoothQuant, FP8' for result ids of a results view (its "id" and "recipe" columns)."""
    by_id = dict(zip(view["id"], view["recipe"]))
    names = list(dict.fromkeys(str(by_id.get(i, i)) for i in ids))
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def pareto_mask(x: pd.Series | np.ndarray, y: pd.Series | np.ndarray) -> np.ndarray:
    """True for points on the Pareto frontier: no other point has less-or-equal x (accuracy loss) and
    more-or-equal y (speedup) with one strictly better. Rows with NaN are never on it. O(n log n)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    mask = np.zeros(len(x), dtype=bool)
    ok = np.flatnonzero(~(np.isnan(x) | np.isnan(y)))
    if ok.size == 0:
        return mask
    order = ok[np.lexsort((-y[ok], x[ok]))]  # by x ascending, then y descending
    ys = y[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(ys)[:-1]))
    mask[order[ys > best_before]] = True
    return mask


def pareto_frontier(df: pd.DataFrame, x: str = "x_loss", y: str = "y_speedup",
                    lower_x_is_better: bool = True) -> pd.DataFrame:
    """The frontier rows of `df`, sorted by x (the line to draw). `lower_x_is_better=False` for a quality
    axis such as PSNR, where more is better."""
    xs = df[x].astype(float) if lower_x_is_better else -df[x].astype(float)
    return df[pareto_mask(xs, df[y])].sort_values(x)


def published_points(published: pd.DataFrame) -> pd.DataFrame:
    """Published recipes with both a speedup and an accuracy loss from the same source document
    (engine.reference.published_frame rows): one row per (model, precision, GPU, batch, source)."""
    speed = published[published["metric"].isin(["speedup_vs_bf16_per_gpu", "speedup_vs_fp16"])]
    acc = published[published["metric"] == "mmlu_loss_pct"]
    keys = ["model_id", "precision", "source"]
    acc = acc.dropna(subset=["model_id", "precision"]).drop_duplicates(keys)[keys + ["value"]]
    acc = acc.rename(columns={"value": "x_loss"})
    merged = speed.dropna(subset=["model_id", "precision"]).merge(acc, on=keys)
    out = pd.DataFrame({
        "model": merged["model_id"], "precision": merged["precision"],
        "sparsity": merged["sparsity"].fillna("none").replace({"2:4": "magnitude"}), "kv_cache": "auto",
        "x_loss": merged["x_loss"], "y_speedup": merged["value"], "batch_size": merged["batch"].astype(float),
        "gpu": merged["gpu"], "source_label": merged["source_label"], "source": merged["source"],
        "baseline": np.where(merged["metric"] == "speedup_vs_fp16", "FP16", "BF16"),
        "engine_version": merged["engine_version"], "provenance": "published",
    })
    out["recipe"] = recipe_labels(out) if len(out) else pd.Series(dtype=str)
    return out.reset_index(drop=True)


def published_on_axis(points: pd.DataFrame, results: pd.DataFrame, accuracy: str | AccuracyAxis,
                      batch_size: int | None = None) -> pd.DataFrame:
    """The published MMLU-loss points to draw on this accuracy axis: none unless it is a task-accuracy
    axis; there, those of the precisions the results have (any model: the label names theirs), at
    `batch_size` where the source measured that batch."""
    if not _axis(accuracy).published or points.empty or results.empty:
        return points.iloc[0:0]
    out = points[points["precision"].isin(results["precision"].unique())]
    if batch_size is not None and (out["batch_size"] == batch_size).any():
        out = out[out["batch_size"] == batch_size]
    return out.reset_index(drop=True)


def matching_published(points: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Published points whose model and precision also appear in `results`."""
    if points.empty or results.empty:
        return points.iloc[0:0]
    pairs = results[["model", "precision"]].drop_duplicates()
    return points.merge(pairs, on=["model", "precision"])


# --- figures ------------------------------------------------------------------------------------

def _hover(df: pd.DataFrame) -> tuple[np.ndarray, str]:
    fields = [(c, label, fmt) for c, label, fmt in HOVER_FIELDS if c in df.columns
              and not (c in ("x_err", "y_err") and df[c].isna().all())]  # no empty error-bar lines
    custom = df[[c for c, _, _ in fields]].astype(object).where(df[[c for c, _, _ in fields]].notna(), "-")
    lines = [f"{label}: %{{customdata[{i}]{fmt or ''}}}" for i, (_, label, fmt) in enumerate(fields)]
    return custom.to_numpy(), "<br>".join(lines) + "<extra></extra>"


def _trace_label(prec: str, group: pd.DataFrame) -> str:
    """The legend name of a precision's points: a baseline measured in FP32 says so."""
    label = registry.PRECISIONS[prec].label if prec in registry.PRECISIONS else str(prec)
    if prec in registry.BASELINES and "speed_compute_bits" in group and (group["speed_compute_bits"] == 32).all() \
            and (group.get("speed_kind") == "measured").all():
        return f"{label} weights, FP32 compute"
    return label


MMLU_AXIS = "Accuracy loss: MMLU loss vs the source's own baseline (%)"


def speedup_accuracy_figure(df: pd.DataFrame, published: pd.DataFrame | None = None, title: str | None = None,
                            x_title: str = PERPLEXITY_AXIS, lower_x_is_better: bool = True):
    """Speedup vs accuracy loss: one marker per result (colour = precision, shape = provenance of its
    speed number), the Pareto frontier as a line, and published points (squares) if given.
    `df` comes from chart_frame (or diffusion_chart_frame, with its axis title and direction); rows
    without a speedup are left out (the caller says how many)."""
    import plotly.graph_objects as go

    plot = df[df["x_loss"].notna() & df["y_speedup"].notna()]
    kind = plot["speed_kind"].fillna(plot.get("provenance", "measured")) if "speed_kind" in plot else "measured"
    plot = plot.assign(point_kind=kind)
    scatter = go.Scattergl if len(plot) > 1000 else go.Scatter  # WebGL keeps thousands of points responsive
    fig = go.Figure()
    for (prec, point_kind), group in plot.groupby(["precision", "point_kind"], sort=True):
        custom, template = _hover(group)
        band = None
        if "y_low" in group and group["y_low"].notna().any():  # an estimate's band as an error bar
            band = {"type": "data", "symmetric": False, "array": (group["y_high"] - group["y_speedup"]).to_numpy(),
                    "arrayminus": (group["y_speedup"] - group["y_low"]).to_numpy(), "thickness": 1}
        elif point_kind == "measured" and "y_err" in group and group["y_err"].notna().any():  # run-to-run spread
            band = {"type": "data", "array": group["y_err"].fillna(0).to_numpy(), "thickness": 1}
        x_bar = None
        if "x_err" in group and group["x_err"].notna().any():  # a task loss's standard error
            x_bar = {"type": "data", "array": group["x_err"].fillna(0).to_numpy(), "thickness": 1}
        fig.add_trace(scatter(
            x=group["x_loss"], y=group["y_speedup"], mode="markers", customdata=custom, hovertemplate=template,
            error_y=band, error_x=x_bar,
            name=f"{_trace_label(prec, group)} ({point_kind})",
            legendgroup=str(prec),
            marker={"symbol": PROVENANCE_SYMBOLS.get(point_kind, "circle"), "size": 10,
                    "color": PRECISION_COLORS.get(prec, "#7F7F7F"), "line": {"width": 1, "color": "#333"}}))
    front = pareto_frontier(plot, lower_x_is_better=lower_x_is_better)
    if len(front) >= 1:
        kinds = "/".join(sorted(set(front["point_kind"])))
        fig.add_trace(go.Scatter(x=front["x_loss"], y=front["y_speedup"], mode="lines",
                                 name=f"Pareto frontier ({kinds} speed)",
                                 line={"color": "#444", "dash": "dash"}, hoverinfo="skip"))
    if published is not None and len(published):
        for prec, group in published.groupby("precision", sort=True):  # one legend entry per precision
            label = registry.PRECISIONS[prec].label if prec in registry.PRECISIONS else str(prec)
            custom = group[["recipe", "model", "gpu", "batch_size", "baseline", "source_label",
                            "engine_version"]].astype(object).fillna("-").to_numpy()
            models = ", ".join(sorted({str(m).split("/")[-1] for m in group["model"]}))
            fig.add_trace(go.Scatter(
                x=group["x_loss"], y=group["y_speedup"], mode="markers",
                name=f"{label} (published: MMLU loss of {models}, not this task or model)",
                customdata=custom, legendgroup=f"published-{prec}",
                marker={"symbol": PROVENANCE_SYMBOLS["published"], "size": 11, "color": "rgba(0,0,0,0)",
                        "line": {"width": 2, "color": PRECISION_COLORS.get(prec, "#7F7F7F")}},
                hovertemplate=("<b>published</b>: %{customdata[0]}<br>Model: %{customdata[1]}<br>GPU: %{customdata[2]}"
                               "<br>Batch size: %{customdata[3]}<br>Speedup vs %{customdata[4]}: %{y:.2f}x"
                               "<br>MMLU loss (% of the source's baseline score), measured on MMLU with "
                               "%{customdata[1]}, not on this task or model: %{x:.2f}%<br>Source: %{customdata[5]}"
                               "<br>Engine: %{customdata[6]}<extra></extra>")))
    fig.add_hline(y=1.0, line={"color": "#999", "width": 1}, annotation_text="baseline speed",
                  annotation_position="bottom right")
    fig.update_layout(
        title=title or "Speedup vs accuracy loss (up and left is better)",
        xaxis_title=x_title,
        yaxis_title="Speedup vs baseline (x)", legend_title="Precision (provenance)",
        template="plotly_white", height=520, margin={"l": 60, "r": 20, "t": 60, "b": 60})
    return fig


def accuracy_figure(df: pd.DataFrame, title: str | None = None, y_title: str = "Perplexity increase vs baseline (%)",
                    lower_is_better: bool = True):
    """Accuracy loss per recipe (bars), for runs without speed measurements: never an invented speedup.
    `y_title` names the metric in x_loss (e.g. a diffusion quality axis); bars run best first."""
    import plotly.graph_objects as go

    plot = df[df["x_loss"].notna()].sort_values("x_loss", ascending=lower_is_better)
    custom, template = _hover(plot)
    stderr = None  # a task loss's standard error
    if "x_err" in plot and plot["x_err"].notna().any():
        stderr = {"type": "data", "array": plot["x_err"].fillna(0).to_numpy(), "thickness": 1}
    fig = go.Figure(go.Bar(
        x=plot["recipe"] + " · " + plot["model"].astype(str).str.slice(0, 40) if plot["model"].nunique() > 1
        else plot["recipe"], y=plot["x_loss"], customdata=custom, hovertemplate=template, error_y=stderr,
        marker={"color": plot["precision"].map(PRECISION_COLORS).fillna("#7F7F7F")}))
    fig.update_layout(
        title=title or "Accuracy loss per recipe (no speedup to show)",
        yaxis_title=y_title, xaxis_title="Recipe",
        template="plotly_white", height=460, margin={"l": 60, "r": 20, "t": 60, "b": 80})
    return fig


def reference_figure(df: pd.DataFrame, metric: str):
    """Published measurements of one metric: value per batch size, one line per model/GPU/precision."""
    import plotly.express as px

    plot = df[df["metric"] == metric].dropna(subset=["batch"]).copy()
    plot["series"] = (plot["model"].astype(str) + " · " + plot["gpu"].astype(str) + " · "
                      + plot["precision"].fillna("?").astype(str))
    # One line per exact condition (input/output length, TP, source): a line never joins unlike runs.
    plot["condition"] = (plot["series"] + " · ISL " + plot["isl"].astype(str) + " / OSL " + plot["osl"].astype(str)
                         + " · TP " + plot["tp"].astype(str) + " · " + plot["source_label"].astype(str))
    plot = plot.sort_values(["condition", "batch"])
    fig = px.line(plot, x="batch", y="value", color="series", line_group="condition", markers=True, log_x=True,
                  hover_data=["isl", "osl", "tp", "engine_version", "source_label"])
    unit = plot["unit"].dropna().iloc[0] if plot["unit"].notna().any() else ""
    fig.update_layout(title=f"Published: {metric}", xaxis_title="Batch size / concurrency",
                      yaxis_title=f"{metric} ({unit})" if unit else metric, template="plotly_white",
                      height=520, legend_title="model · GPU · precision")
    return fig


def add_training_arrows(fig, arrows: pd.DataFrame):
    """Trained models on the speedup-vs-accuracy figure (engine.training.recovery.recovery_arrows rows):
    each parent (PTQ / sparsified, hollow) and trained point (star), labelled e.g. 'W4A8 AWQ (after QAT)',
    with an arrow from parent to trained. Their x is against the fine-tuned baseline (the hover says so);
    rows without a speedup are left off. Returns `fig`."""
    import plotly.graph_objects as go

    plot = arrows[arrows["y_speedup"].notna() & arrows["x_parent"].notna() & arrows["x_trained"].notna()]
    for prec, group in plot.groupby("precision", sort=True):
        color = PRECISION_COLORS.get(prec, "#7F7F7F")
        for kind, x, names, symbol in (("parent", "x_parent", group["parent"], "circle-open"),
                                       ("trained", "x_trained", group["recipe"], "star")):
            custom = np.stack([names.astype(str), group["speed_note"].astype(str), group["id"].astype(str)], axis=-1)
            fig.add_trace(go.Scatter(
                x=group[x], y=group["y_speedup"], mode="markers+text" if kind == "trained" else "markers",
                text=names if kind == "trained" else None, textposition="top center",
                name=f"{', '.join(sorted(set(names.astype(str))))} (measured; x vs the fine-tuned baseline)",
                legendgroup=f"training-{prec}", customdata=custom,
                marker={"symbol": symbol, "size": 13 if kind == "trained" else 11, "color": color,
                        "line": {"width": 2, "color": color if kind == "parent" else "#333"}},
                hovertemplate=("<b>%{customdata[0]}</b><br>Accuracy loss vs the fine-tuned baseline, on the training "
                               "run's held-out text: %{x:.3f}<br>Speedup: %{y:.3f}x (%{customdata[1]})"
                               "<br>Result id: %{customdata[2]}<extra></extra>")))
    for row in plot.itertuples():  # one arrow per trained recipe: a handful, not a data-sized loop
        fig.add_annotation(x=row.x_trained, y=row.y_speedup, ax=row.x_parent, ay=row.y_speedup, xref="x", yref="y",
                           axref="x", ayref="y", showarrow=True, arrowhead=3, arrowsize=1.2, arrowwidth=2,
                           arrowcolor=PRECISION_COLORS.get(row.precision, "#7F7F7F"), text="")
    return fig
