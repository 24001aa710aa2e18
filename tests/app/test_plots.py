"""engine.plots: the Pareto frontier, chart data and figures (pure functions)."""

import numpy as np
import pandas as pd
import pytest

from engine import plots
from tests.app.results_data import make_record, make_records


def brute_force_front(x, y):
    out = []
    for i in range(len(x)):
        if np.isnan(x[i]) or np.isnan(y[i]):
            out.append(False)
            continue
        dominated = any(x[j] <= x[i] and y[j] >= y[i] and (x[j] < x[i] or y[j] > y[i])
                        for j in range(len(x)) if j != i and not (np.isnan(x[j]) or np.isnan(y[j])))
        out.append(not dominated)
    return out


def test_pareto_mask_small_example():
    x = [0.0, 1.0, 2.0, 1.5, 3.0, np.nan]
    y = [1.0, 1.5, 1.4, 2.0, 2.5, 9.0]
    assert plots.pareto_mask(x, y).tolist() == [True, True, False, True, True, False]


@pytest.mark.parametrize("seed", range(20))
def test_pareto_mask_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    x = rng.integers(0, 8, n).astype(float)  # integers: plenty of ties
    y = rng.integers(0, 8, n).astype(float)
    x[rng.random(n) < 0.1] = np.nan
    mask = plots.pareto_mask(x, y)
    expected = brute_force_front(x, y)
    # Exact duplicates of a frontier point: exactly one of them is kept.
    for i in range(n):
        if mask[i] != expected[i]:
            twins = [j for j in range(n) if x[j] == x[i] and y[j] == y[i]]
            assert len(twins) > 1 and sum(mask[j] for j in twins) == 1


def test_pareto_mask_empty_and_all_nan():
    assert plots.pareto_mask([], []).tolist() == []
    assert plots.pareto_mask([np.nan], [1.0]).tolist() == [False]


def test_recipe_labels():
    df = pd.DataFrame({"precision": ["fp8", "int8_sq", "int4_awq"], "sparsity": ["none", "sparsegpt", "none"],
                       "kv_cache": ["auto", "auto", "fp8"]})
    assert plots.recipe_labels(df).tolist() == ["FP8", "INT8 SmoothQuant + 2:4 SparseGPT", "INT4 AWQ + KV FP8"]


def test_chart_frame_uses_the_chosen_batch_size():
    df = pd.DataFrame([make_record("a", "fp8")["metrics"] | {"precision": "fp8", "sparsity": "none",
                                                              "kv_cache": "auto"}])
    assert plots.batch_sizes(df) == [1, 8]
    assert plots.chart_frame(df, 8)["y_speedup"].iloc[0] == df["speedup_bs8"].iloc[0]
    assert plots.chart_frame(df, None)["y_speedup"].iloc[0] == df["speedup"].iloc[0]
    assert np.isnan(plots.chart_frame(df, 64)["y_speedup"].iloc[0])  # never a number it does not have


def _frame(records):
    from engine.store import open_store

    store = open_store("sqlite://")
    store.save_results(records)
    return store.results_frame()


def test_speedup_figure_has_points_frontier_and_provenance_shapes():
    frame = _frame(make_records(20))
    chart = plots.chart_frame(frame, 1)
    fig = plots.speedup_accuracy_figure(chart)
    markers = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in markers) == 20
    assert {t.marker.symbol for t in markers} == {"circle"}  # all measured
    front = next(t for t in fig.data if t.name == "Pareto frontier (measured speed)")
    expected = chart[plots.pareto_mask(chart["x_loss"], chart["y_speedup"])]
    assert sorted(front.x) == sorted(expected["x_loss"])
    assert front.line.shape in (None, "linear")  # points joined in order, not steps that read like a threshold
    assert "Perplexity increase" in markers[0].hovertemplate and "Device" in markers[0].hovertemplate


def test_speedup_figure_leaves_out_rows_without_speed():
    frame = _frame(make_records(10) + [make_record("x", "fp8", 99, with_speed=False)])
    fig = plots.speedup_accuracy_figure(plots.chart_frame(frame, 1))
    assert sum(len(t.x) for t in fig.data if t.mode == "markers") == 10
    assert not plots.has_speed(_frame([make_record("x", "fp8", 1, with_speed=False)]))


def test_many_points_use_webgl():
    frame = _frame(make_records(1500))
    fig = plots.speedup_accuracy_figure(plots.chart_frame(frame, 1))
    assert {t.type for t in fig.data if t.mode == "markers"} == {"scattergl"}


def test_published_points_pair_speedup_with_accuracy_from_the_same_source():
    from engine.reference import published_frame

    pub = published_frame()
    points = plots.published_points(pub)
    assert len(points) > 10 and (points["provenance"] == "published").all()
    row = points[(points.model == "meta-llama/Llama-3.1-8B") & (points.precision == "fp8")
                 & (points.batch_size == 8)].iloc[0]
    assert row.y_speedup == pytest.approx(1.31) and row.x_loss == pytest.approx(1.50)
    results = pd.DataFrame({"model": ["meta-llama/Llama-3.1-8B"], "precision": ["fp8"]})
    matched = plots.matching_published(points, results)
    assert set(matched.precision) == {"fp8"} and set(matched.model) == {"meta-llama/Llama-3.1-8B"}
    assert plots.matching_published(points, pd.DataFrame({"model": ["bundled"], "precision": ["fp8"]})).empty


def test_accuracy_figure_plots_loss_only():
    frame = _frame([make_record("x", p, i, with_speed=False) for i, p in enumerate(["bf16", "fp8", "int8_sq"])])
    fig = plots.accuracy_figure(plots.chart_frame(frame))
    assert fig.data[0].type == "bar" and len(fig.data[0].y) == 3


def test_a_cpu_baseline_is_named_as_it_ran():
    """The PyTorch runtime computes a CPU baseline in float32: the legend and table must not say BF16 alone."""
    records = [make_record("cpu", p, i) for i, p in enumerate(["bf16", "int8_sq"])]
    frame = _frame(records)
    frame["speed_compute_bits"] = 32.0
    chart = plots.chart_frame(frame, 1)
    assert list(chart["recipe"]) == ["BF16 weights, FP32 compute", "INT8 SmoothQuant"]
    names = [t.name for t in plots.speedup_accuracy_figure(chart).data]
    assert "BF16 weights, FP32 compute (measured)" in names and "INT8 SmoothQuant (measured)" in names
    frame["speed_compute_bits"] = 16.0  # a GPU baseline in bf16 keeps its name
    assert list(plots.chart_frame(frame, 1)["recipe"])[0] == "BF16"


# --- accuracy axes, error bars and published points (issues #12, #15) ---------------------------

def _task_frame():
    from tests.app.task_results_data import task_record

    return _frame([task_record("t", "bf16", 0, 0.8), task_record("t", "int8_sq", 1, 0.75),
                   task_record("t", "int4_awq", 2, 0.6, spread=0.10)])


def test_accuracy_axes_offer_a_task_axis_only_when_results_have_it():
    assert list(plots.accuracy_axes(_frame(make_records(5)))) == ["ppl", "kl"]
    axes = plots.accuracy_axes(_task_frame())
    assert list(axes) == ["ppl", "kl", "task:tlab_doc_continuation"]
    task = axes["task:tlab_doc_continuation"]
    assert task.published and not axes["ppl"].published and not axes["kl"].published
    assert "points" in task.axis and "tlab_doc_continuation" in task.title


def test_chart_frame_on_the_task_axis_has_the_loss_its_stderr_and_the_speedup_spread():
    frame = _task_frame()
    chart = plots.chart_frame(frame, 1, "task:tlab_doc_continuation").set_index("precision")
    assert chart.loc["int8_sq", "x_loss"] == pytest.approx(5.0)
    assert chart.loc["int4_awq", "x_loss"] == pytest.approx(20.0)
    assert chart.loc["int8_sq", "x_err"] == pytest.approx(100 * np.hypot(0.06, 0.06))
    assert chart.loc["bf16", "x_loss"] == 0.0 and np.isnan(chart.loc["bf16", "x_err"])  # itself: no error
    assert chart.loc["int8_sq", "task_accuracy"] == pytest.approx(0.75)
    # half the relative spread (baseline and recipe in quadrature, stored by the pipeline) times the speedup
    y = chart.loc["int4_awq", "y_speedup"]
    assert chart.loc["int4_awq", "y_err"] == pytest.approx(y * 0.10 / 2)
    assert np.isnan(chart.loc["bf16", "y_err"])
    assert np.isnan(plots.chart_frame(frame, 8)["y_err"]).all()  # no spread stored at batch 8: no bar
    kl = plots.chart_frame(frame, 1, "kl").set_index("precision")
    assert (kl["x_loss"] == frame.set_index("precision")["kl_div"]).all() and kl["x_err"].isna().all()


def test_the_figure_draws_both_error_bars_for_measured_points():
    chart = plots.chart_frame(_task_frame(), 1, "task:tlab_doc_continuation")
    fig = plots.speedup_accuracy_figure(chart, x_title=plots.task_axis("tlab_doc_continuation").axis)
    int4 = next(t for t in fig.data if t.name == "INT4 AWQ (measured)")
    assert int4.error_x.array[0] == pytest.approx(100 * np.hypot(0.06, 0.06))
    assert int4.error_y.array[0] == pytest.approx(int4.y[0] * 0.05)
    assert "standard error" in int4.hovertemplate and "percentage points" in fig.layout.xaxis.title.text
    estimated = chart.assign(speed_kind="estimated", y_low=chart["y_speedup"] * 0.9, y_high=chart["y_speedup"] * 1.2)
    band = next(t for t in plots.speedup_accuracy_figure(estimated).data if t.name == "INT4 AWQ (estimated)")
    assert band.error_y.arrayminus[0] == pytest.approx(band.y[0] * 0.1)  # an estimate keeps its own band


def test_published_mmlu_points_go_on_the_task_axis_only_and_say_what_they_are():
    from engine.reference import published_frame

    points = plots.published_points(published_frame())
    chart = plots.chart_frame(_task_frame(), 1, "task:tlab_doc_continuation")
    for axis in ("ppl", "kl"):
        assert plots.published_on_axis(points, chart, axis, 1).empty
    shown = plots.published_on_axis(points, chart, "task:tlab_doc_continuation", 1)
    assert set(shown["precision"]) == {"int4_awq"} and set(shown["batch_size"]) == {1.0}  # bundled has no fp8 here
    fig = plots.speedup_accuracy_figure(chart, shown)
    published = [t for t in fig.data if "published" in t.name]
    assert len(published) == 1
    assert "MMLU loss of Llama-3.1-70B, Llama-3.1-8B, not this task or model" in published[0].name
    assert "measured on MMLU with" in published[0].hovertemplate


def test_accuracy_bars_on_the_task_axis_carry_the_standard_error():
    from tests.app.task_results_data import task_record

    frame = _frame([task_record("t", p, i, 0.7, with_speed=False) for i, p in enumerate(["bf16", "int8_sq"])])
    bars = plots.accuracy_figure(plots.chart_frame(frame, None, "task:tlab_doc_continuation")).data[0]
    assert list(bars.y) == pytest.approx([0.0, 10.0])
    assert bars.error_y.array[1] == pytest.approx(100 * np.hypot(0.06, 0.06))
    ppl = plots.accuracy_figure(plots.chart_frame(frame)).data[0]
    assert ppl.error_y.array is None and "standard error" not in ppl.hovertemplate


def test_speedup_scopes_name_the_results_whose_speedup_covers_part_of_the_recipe():
    from engine.store.entities import Result

    whole, partial = make_record("gpu", "bf16"), make_record("gpu", "fp8", 1)
    partial["provenance"]["speed"]["scope"] = "the speedup is of the FP8 linear layers only"
    results = [Result.from_dict(r) for r in (whole, partial)]
    assert plots.speedup_scopes(results) == {"the speedup is of the FP8 linear layers only": [partial["id"]]}
