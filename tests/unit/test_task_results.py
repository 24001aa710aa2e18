"""Task accuracy as stored results (issue #12) and speedup spreads (#15): metric names, CSV export,
`tlab results` columns, and the pipeline's pure helpers. No model is loaded."""

import math

import pytest

from engine import pipeline
from engine.cli import main
from engine.store import export, open_store
from engine.store.entities import Measurement, Result, task_names_in
from engine.task_accuracy import result_metrics
from tests.app.results_data import make_record
from tests.app.task_results_data import TASK, score, task_record


def test_result_metrics_name_each_tasks_accuracy_and_loss_in_points():
    base, cand = score(0.8, 0.06), score(0.7, 0.08)
    m = result_metrics({TASK: base}, {TASK: cand})
    assert m == pytest.approx({f"task_acc:{TASK}": 0.7, f"task_acc_stderr:{TASK}": 0.08,
                               f"task_loss_pts:{TASK}": 10.0, f"task_loss_pts_stderr:{TASK}": 10.0})
    own = result_metrics({TASK: base}, {TASK: base})  # the baseline against itself: 0 points, no error bar
    assert own[f"task_loss_pts:{TASK}"] == 0.0 and f"task_loss_pts_stderr:{TASK}" not in own
    assert task_names_in(m) == [TASK] and task_names_in(["perplexity", "kl_div"]) == []


def test_csv_has_task_columns_and_their_provenance_only_when_results_have_them():
    with_tasks = [Result.from_dict(task_record("t", p, i, 0.7)) for i, p in enumerate(["bf16", "int8_sq"])]
    columns, rows = export.flat_rows(with_tasks)
    assert {f"task_acc:{TASK}", f"task_loss_pts:{TASK}", f"task_loss_pts_stderr:{TASK}",
            "task_accuracy_provenance", "task_accuracy_detail"} <= set(columns)
    assert rows[1]["task_accuracy_detail"] == f"{TASK} v1.0, 40 questions, 0-shot, first 40 (lm-eval 0.4.13)"
    assert rows[1]["task_accuracy_provenance"] == "measured"
    assert f"task_loss_pts:{TASK}" in export.to_csv(with_tasks).splitlines()[0]
    plain, _ = export.flat_rows([Result.from_dict(make_record("t", "fp8"))])
    assert not [c for c in plain if c.startswith("task_")]


def test_tlab_results_shows_task_columns_and_where_they_come_from(capsys):
    open_store().save_results([task_record("t", p, i, 0.7) for i, p in enumerate(["bf16", "int8_sq"])])
    assert main(["results"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header.index(f"task_loss_pts:{TASK}") < header.index("speedup")
    assert f"task_acc:{TASK}" in header and f"task_loss_pts_stderr:{TASK}" in header
    assert "task accuracy: measured on cpu — lm-evaluation-harness 0.4.13" in out
    assert f"{TASK} v1.0, 40 questions, 0-shot" in out


def _m(precision, tok_s, spread):
    return Measurement("torch", precision, "none", 1, 32, 16, {"decode_tokens_per_sec": tok_s},
                       {"decode_tokens_per_sec": spread}, 5, {"device": {"name": "cpu"}})


def test_a_speedups_spread_adds_baseline_and_recipe_spreads_in_quadrature():
    base, fast = [_m("bf16", 100.0, 0.03)], [_m("int8_sq", 150.0, 0.04)]
    m = pipeline._speed_metrics(fast, base)
    assert m["speedup"] == pytest.approx(1.5)
    assert m["speedup_spread"] == m["speedup_spread_bs1"] == pytest.approx(0.05)  # hypot(0.03, 0.04)
    own = pipeline._speed_metrics(base, base)
    assert own["speedup"] == 1.0 and "speedup_spread" not in own  # exactly 1 against itself
    assert "speedup_spread" not in pipeline._speed_metrics([_m("int8_sq", 150.0, 0.3)], base)  # refused: too noisy
    assert math.isclose(pipeline._speedup_spread(base[0], fast[0]), 0.05)
