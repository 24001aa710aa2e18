"""Results page: the accuracy axis is the user's choice (perplexity increase, KL divergence, task-accuracy
loss where results have it); published MMLU points appear on the task axis only (issues #12, #15)."""

from tests.app.conftest import open_page, plotly_figures, trace_values
from tests.app.results_data import make_records
from tests.app.task_results_data import TASK, task_record

TASK_AXIS = f"task:{TASK}"


def _markers(fig):
    return [t for t in fig["data"] if t.get("mode") == "markers" and "published" not in t.get("name", "")]


def test_the_task_axis_is_offered_and_draws_loss_in_points_with_error_bars(app_home):
    app_home.save_results([task_record("t", "bf16", 0, 0.8), task_record("t", "int8_sq", 1, 0.75),
                           task_record("t", "int4_awq", 2, 0.6)])
    at = open_page("results")
    radio = at.radio(key="accuracy_axis")
    assert radio.options == ["Perplexity increase (%)", "KL divergence",
                             f"Task-accuracy loss (points): {TASK}"] and radio.value == "ppl"
    fig = plotly_figures(at)[0]
    assert "perplexity" in fig["layout"]["xaxis"]["title"]["text"]
    assert not [t for t in fig["data"] if "published" in t.get("name", "")]  # never beside perplexity

    radio.set_value(TASK_AXIS).run()
    assert not at.exception, at.exception
    fig = plotly_figures(at)[0]
    assert "percentage points" in fig["layout"]["xaxis"]["title"]["text"]
    int4 = next(t for t in _markers(fig) if t["name"] == "INT4 AWQ (measured)")
    assert abs(trace_values(int4["x"])[0] - 20.0) < 1e-9  # 0.8 - 0.6 in points
    assert trace_values(int4["error_x"]["array"])[0] > 0 and trace_values(int4["error_y"]["array"])[0] > 0
    published = [t for t in fig["data"] if "published" in t.get("name", "")]
    assert published and all("not this task or model" in t["name"] for t in published)
    assert "not this task or model" in "\n".join(c.value for c in at.caption)
    table = at.dataframe(key="results_table").value
    assert {"x_err", "task_accuracy"} <= set(table.columns)


def test_results_without_task_accuracy_get_no_task_axis(app_home):
    app_home.save_results(make_records(6))
    at = open_page("results")
    assert [o for o in at.radio(key="accuracy_axis").options] == ["Perplexity increase (%)", "KL divergence"]
    at.radio(key="accuracy_axis").set_value("kl").run()
    fig = plotly_figures(at)[0]
    assert "KL divergence" in fig["layout"]["xaxis"]["title"]["text"]
    assert "x_err" not in at.dataframe(key="results_table").value.columns
