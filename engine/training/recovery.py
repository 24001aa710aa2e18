"""Recovery by training, for the Results page and reports. Pure functions, no Streamlit.

- `recovery_table(results)`: one row per trained recipe in the reference's shape (fine-tuned baseline,
  PTQ or sparsified, after training: validation loss; the gap closed; task accuracy where scored);
- `published_recovery()`: the reference's own rows (NVIDIA Model Optimizer's QAT and sparsity tables,
  assets/modelopt_benchmark_reference.csv), labelled as published figures of other models;
- `recovery_figure(table, published)`: both as grouped bars, side by side, never on one axis;
- `recovery_arrows(results, chart)`: where each trained model and its parent sit on the speedup-vs-
  accuracy chart. Their speed is a sweep's measured speedup of the same deployed format (training does
  not change it); without one the point is left off and `why_no_point` says why.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from engine import registry
from engine.paths import asset
from engine.store.entities import TASK_ACC, TASK_ACC_STDERR, TASK_LOSS_PTS, Result

EXPERIMENT = "training"  # engine.training.run.EXPERIMENT: the experiment name of training results
REFERENCE_FILE = "modelopt_benchmark_reference.csv"
REFERENCE_SOURCE = ("NVIDIA TensorRT Model Optimizer, examples/benchmark.md: QAT (Llama 2 7B, modelopt 0.11.0) "
                    "and 2:4 sparsity (Llama 2 70B) tables")
STAGES = (("baseline", "Fine-tuned baseline"), ("parent", "PTQ / sparsified"), ("trained", "After training"))
STAGE_COLORS = {"baseline": "#7F7F7F", "parent": "#EF553B", "trained": "#00CC96"}
TABLE_COLUMNS = ["recipe", "parent", "model", "baseline", "baseline_loss", "parent_loss", "trained_loss",
                 "gap_closed_pct", "ppl_increase_pct_before", "ppl_increase_pct", "steps", "source", "id"]
# metric name -> the stage whose task accuracy it holds (engine.training.run.task_metrics names)
_TASK_STAGES = {"baseline": "_finetuned_baseline", "parent": "_before", "trained": ""}


def trained_results(results: list[Result]) -> list[Result]:
    """Training results of QAT or sparse fine-tuning runs that finished (not the fine-tuned baselines)."""
    return [r for r in results if r.experiment == EXPERIMENT
            and r.part("training").get("mode") not in (None, "finetune")
            and _finite(r.metrics.get("validation_loss_after"))]


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _task_cells(metrics: dict[str, float]) -> dict[str, str]:
    """'78.8 ± 2.1' (percent) per stage and task where that stage was scored."""
    tasks = sorted({n[len(TASK_ACC):] for n in metrics if n.startswith(TASK_ACC)})
    cells = {}
    for task in tasks:
        for stage, suffix in _TASK_STAGES.items():
            acc = metrics.get(f"{TASK_ACC[:-1]}{suffix}:{task}")
            if not _finite(acc):
                continue
            se = metrics.get(f"{TASK_ACC_STDERR[:-1]}{suffix}:{task}")
            cells[f"{task} · {dict(STAGES)[stage]} (%)"] = (
                f"{100 * acc:.1f}" + (f" ± {100 * se:.1f}" if _finite(se) else ""))
    return cells


def recovery_table(results: list[Result]) -> pd.DataFrame:
    """One row per trained recipe: losses (nats/token) of the fine-tuned baseline, the PTQ/sparsified
    parent and the trained model; the share of the gap closed; the perplexity increases over the
    fine-tuned baseline; task accuracy (%, ± standard error) per stage where scored. Newest first."""
    rows = []
    for r in sorted(trained_results(results), key=lambda r: r.created_at or "", reverse=True):
        m, t = r.metrics, r.part("training")
        rows.append({
            "recipe": t.get("label"), "parent": t.get("parent"), "model": r.model, "baseline": "BF16 (fine-tuned)",
            "baseline_loss": m.get("validation_loss_finetuned_baseline"),
            "parent_loss": m.get("validation_loss_before"),
            "trained_loss": m.get("validation_loss_after"), "gap_closed_pct": m.get("gap_closed_pct"),
            "ppl_increase_pct_before": m.get("ppl_increase_pct_before"), "ppl_increase_pct": m.get("ppl_increase_pct"),
            "steps": t.get("steps"), "source": f"measured ({r.device})", "id": r.id, **_task_cells(m)})
    tasks = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in TABLE_COLUMNS]  # stage order
    return pd.DataFrame(rows, columns=TABLE_COLUMNS + tasks)


def _stage(raw: str) -> str | None:
    text = raw.lower()
    if "baseline" in text:
        return "baseline"
    if text.endswith(" ptq") or "no fine-tuning" in text:
        return "parent"
    if text.endswith(" qat") or "with fine-tuning" in text:
        return "trained"
    return None


def _dataset(condition: str) -> str:
    """'modelopt 0.11.0, samsum, baseline ...' -> 'samsum'; 'Open-Orca fine-tuning ...' -> 'Open-Orca'."""
    parts = [p.strip() for p in str(condition).split(",") if not p.strip().startswith("modelopt")]
    return parts[0].split()[0] if parts and parts[0] else ""


def _stem(raw: str) -> str:
    for tail in (" PTQ", " QAT", " no fine-tuning", " with fine-tuning"):
        raw = raw.removesuffix(tail)
    return raw


def published_recovery(path=None) -> pd.DataFrame:
    """The reference's recovery rows (validation loss of a fine-tuned baseline, PTQ or pruned, after QAT
    or sparse fine-tuning), in recovery_table's columns, with `source` saying they are published figures
    of other models on other data. A group with one parent and one trained row pairs them; otherwise
    rows pair by recipe name (e.g. 'INT4 weight INT8 activation PTQ' with '... QAT')."""
    raw = pd.read_csv(path or asset(REFERENCE_FILE), dtype={"value": float})
    raw = raw[raw["table"].isin(["qat", "sparsity_accuracy"]) & (raw["metric"] == "val_loss")].copy()
    raw["dataset"] = raw["condition"].map(_dataset)
    raw["stage"] = raw["precision"].map(_stage)
    rows = []
    for (model, dataset), group in raw.groupby(["model", "dataset"], sort=False):
        base = group[group["stage"] == "baseline"]
        parents, trained = group[group["stage"] == "parent"], group[group["stage"] == "trained"]
        if base.empty:
            continue
        if len(parents) == 1 and len(trained) == 1:
            pairs = [(parents.iloc[0], trained.iloc[0])]
        else:
            by_stem = {_stem(p["precision"]): p for _, p in parents.iterrows()}
            pairs = [(by_stem[_stem(t["precision"])], t) for _, t in trained.iterrows()
                     if _stem(t["precision"]) in by_stem]
        b = float(base.iloc[0]["value"])
        for parent, done in pairs:
            gap = parent["value"] - b
            rows.append({"recipe": done["precision"], "parent": parent["precision"], "model": model,
                         "baseline": base.iloc[0]["precision"], "baseline_loss": b, "parent_loss": parent["value"],
                         "trained_loss": done["value"],
                         "gap_closed_pct": 100.0 * (parent["value"] - done["value"]) / gap if gap > 0 else np.nan,
                         "source": f"published, different model: {model} on {dataset} ({REFERENCE_SOURCE})",
                         "dataset": dataset})
    return pd.DataFrame(rows, columns=[c for c in TABLE_COLUMNS if c not in ("id",)] + ["dataset"])


def recovery_figure(table: pd.DataFrame, published: pd.DataFrame | None = None):
    """Validation loss per recipe as grouped bars (fine-tuned baseline, PTQ/sparsified, after training):
    the runs measured here on the left, the published rows (other models and data) on the right, each
    panel on its own axis: their losses are not comparable."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    models = sorted({str(m).split("/")[-1] for m in table["model"]})  # the repo name is enough for a title
    panels = [("Measured here<br>" + ", ".join(models) if models else "Measured here (no finished training run)",
               table)]
    if published is not None and len(published):
        panels.append(("Published, different models<br>(NVIDIA Model Optimizer)", published))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[t for t, _ in panels], horizontal_spacing=0.08)
    for col, (_, frame) in enumerate(panels, start=1):
        names = frame["recipe"].astype(str)
        if "dataset" in frame and frame["dataset"].notna().any():  # published: say which model and data
            names = names + "<br>" + frame["model"].astype(str) + ", " + frame["dataset"].astype(str)
        for stage, label in STAGES:
            values = frame[f"{stage}_loss"].astype(float)
            what = frame["baseline"] if stage == "baseline" else frame["parent" if stage == "parent" else "recipe"]
            fig.add_trace(go.Bar(
                x=names, y=values, name=label, legendgroup=stage, showlegend=col == 1,
                marker={"color": STAGE_COLORS[stage], "opacity": 1.0 if col == 1 else 0.55},
                customdata=np.stack([what.astype(str), frame["source"].astype(str)], axis=-1) if len(frame)
                else None, text=values.map(lambda v: f"{v:.3f}"), textposition="outside",
                hovertemplate=f"{label}: %{{customdata[0]}}<br>Validation loss: %{{y:.3f}} nats/token"
                              "<br>%{customdata[1]}<extra></extra>"), row=1, col=col)
        fig.update_yaxes(title_text="Validation loss (nats/token, lower is better)" if col == 1 else None,
                         rangemode="tozero", row=1, col=col)
    fig.update_annotations(font={"size": 13})  # the panel titles
    fig.update_layout(barmode="group", template="plotly_white", height=480, legend_title="Stage",
                      title="Recovery by training: validation loss before and after",
                      margin={"l": 60, "r": 20, "t": 80, "b": 80})
    return fig


# --- on the speedup-vs-accuracy chart ---------------------------------------------------------------

ARROW_COLUMNS = ["id", "recipe", "parent", "model", "precision", "sparsity", "x_parent", "x_trained", "y_speedup",
                 "speed_from", "speed_note", "why_no_point"]


def _arrow_axis(accuracy: str) -> tuple[str, str] | None:
    """(parent's metric, trained model's metric) on this accuracy axis, both against the fine-tuned baseline."""
    if accuracy == "ppl":
        return "ppl_increase_pct_before", "ppl_increase_pct"
    if accuracy.startswith("task:"):
        task = accuracy[len("task:"):]
        return f"{TASK_LOSS_PTS[:-1]}_before:{task}", f"{TASK_LOSS_PTS}{task}"
    return None


def _format(precision: str, sparsity: str) -> str:
    prec = registry.PRECISIONS[precision].label if precision in registry.PRECISIONS else precision
    if sparsity in (None, "none"):
        return prec
    sp = registry.SPARSITIES[sparsity].label if sparsity in registry.SPARSITIES else sparsity
    return f"{prec} + {sp}"


def recovery_arrows(results: list[Result], chart: pd.DataFrame, accuracy: str = "ppl") -> pd.DataFrame:
    """Each trained recipe's point and its parent's on the trade-off chart, one row per trained result.

    x: the parent's and the trained model's loss on the `accuracy` axis ("ppl": perplexity increase, or
    "task:<name>"), both against the fine-tuned baseline on the training run's held-out text. y: the
    speedup of the parent's deployed format (precision, sparsity) measured by a stored sweep of the same
    model on the same device, from `chart` (plots.chart_frame rows: the newest such sweep result with a
    measured speedup at the chart's batch size); the trained model deploys to the same format. A row
    without a point has y NaN and `why_no_point` in words."""
    axis = _arrow_axis(accuracy)
    sweeps = chart[chart["experiment"] != EXPERIMENT] if len(chart) else chart
    rows = []
    for r in trained_results(results):
        t = r.part("training")
        fmt = _format(r.precision, r.sparsity)
        row = {"id": r.id, "recipe": t.get("label"), "parent": t.get("parent"), "model": r.model,
               "precision": r.precision, "sparsity": r.sparsity, "x_parent": np.nan, "x_trained": np.nan,
               "y_speedup": np.nan, "speed_from": None, "speed_note": None, "why_no_point": None}
        if axis is None:
            row["why_no_point"] = "this accuracy axis has no figure for trained models (perplexity and task " \
                                  "accuracy only, against the fine-tuned baseline)"
        elif not (_finite(r.metrics.get(axis[0])) and _finite(r.metrics.get(axis[1]))):
            row["why_no_point"] = f"not measured on this axis ({axis[1]})"
        else:
            row["x_parent"], row["x_trained"] = r.metrics[axis[0]], r.metrics[axis[1]]
            row.update(_speed_of(sweeps, r, fmt))
        rows.append(row)
    return pd.DataFrame(rows, columns=ARROW_COLUMNS)


def _speed_of(sweeps: pd.DataFrame, r: Result, fmt: str) -> dict[str, Any]:
    same = sweeps
    if len(same):
        same = same[(same["model"] == r.model) & (same["precision"] == r.precision)
                    & (same["sparsity"].fillna("none") == r.sparsity) & (same["kv_cache"].fillna("auto") == "auto")]
    here = same[same["device"] == r.device] if len(same) else same
    timed = here[here["y_speedup"].notna() & (here["speed_kind"] == "measured")] if len(here) else here
    if timed.empty:
        if len(here):
            why = (f"the sweep results of {fmt} on {r.device} have no measured speedup at this batch size "
                   "(see their rows in the table for why)")
        elif len(same):
            why = f"{fmt} was swept, but not on {r.device}, where this model was trained"
        else:
            why = (f"no sweep of {r.model} with {fmt} is stored; run one with Measure speed to place it on "
                   "the speed axis")
        return {"why_no_point": why}
    best = timed.sort_values("created_at").iloc[-1]
    return {"y_speedup": float(best["y_speedup"]), "speed_from": best["id"],
            "speed_note": (f"speedup of {fmt} measured on {r.device} by sweep result {best['id']} "
                           f"({best['experiment']}); training keeps the deployed format, so its speed")}


def training_labels(results: list[Result]) -> dict[str, str]:
    """Result id -> the recipe as trained ('W4A8 AWQ (after QAT)', 'BF16 (fine-tuned)') for training results."""
    return {r.id: r.part("training")["label"] for r in results
            if r.experiment == EXPERIMENT and r.part("training").get("label")}
