"""GPU Selector page under AppTest, standalone (AppTest.from_file on the page file)."""

from pathlib import Path

import pytest

from tests.app.conftest import plotly_figures

PAGE = str(Path(__file__).resolve().parents[2] / "pages" / "gpu_selector.py")


def run_page(**widgets):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(PAGE, default_timeout=120).run()
    for key, value in widgets.items():
        w = at.text_input(key=key) if key == "sel_config" else at.multiselect(key=key) \
            if key in ("sel_gpus", "sel_prec", "sel_tp") else at.selectbox(key=key) \
            if key in ("sel_model", "sel_workload") else at.number_input(key=key)
        w.set_value(value)
    return at.run() if widgets else at


def _frame(at, key="sel_table"):
    return next(d.value for d in at.dataframe if d.key == key) if any(d.key == key for d in at.dataframe) \
        else at.dataframe[-1].value


def test_default_view_ranks_options_and_explains_the_best(app_home):
    at = run_page()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.success and "cheapest option" in at.success[0].value
    table = _frame(at)
    assert len(table) > 10 and set(table["provenance"]) == {"estimated"}
    assert table["rank"].iloc[0] == 1 and table["calibrated_from"].notna().iloc[0]
    figs = plotly_figures(at)
    assert len(figs) == 3  # throughput curves, memory breakdown, parity picture
    assert figs[1]["layout"]["barmode"] == "stack"
    assert "± band (80%)" in table.columns  # the band's stated nominal level


def test_published_points_are_drawn_over_the_curves(app_home):
    at = run_page(sel_gpus=["h200"], sel_prec=["bf16", "fp8", "int4_awq"], sel_tp=[1], sel_ttft=0, sel_tpot=0)
    assert not at.exception, at.exception
    names = [t.get("name", "") for t in plotly_figures(at)[0]["data"]]
    assert any(n.endswith("(published)") for n in names), names
    assert sum(1 for n in names if n.startswith("h200 · ") and "(" not in n) == 3  # one curve per option


def test_your_measured_points_calibrate_and_show(app_home):
    # A store record shaped like engine.pipeline's TensorRT-LLM result, replaying a published H200
    # measurement (Model Optimizer benchmark.md: Llama 3.1 8B FP8, batch 8, 2048/128 -> 1051.17 tok/s).
    m = {"backend": "tensorrt_llm", "precision": "fp8", "sparsity": "none", "batch_size": 8, "input_len": 2048,
         "output_len": 128, "metrics": {"output_tokens_per_sec": 1051.17}, "spread": {}, "repeats": 1,
         "provenance": {"kind": "measured", "device": {"kind": "cuda", "name": "NVIDIA H200"}}}
    app_home.save_result({
        "id": "replayed-h200-fp8-bs8", "experiment": "replay", "model": "meta-llama/Llama-3.1-8B",
        "precision": "fp8", "sparsity": "none", "kv_cache": "auto", "device": "cuda: NVIDIA H200",
        "spec": {}, "metrics": {"output_tokens_per_sec_bs8": 1051.17},
        "provenance": {"speed": {"kind": "measured", "backend": "tensorrt_llm", "measurements": [m]}}})
    at = run_page(sel_gpus=["h200"], sel_prec=["fp8"], sel_tp=[1], sel_ttft=0, sel_tpot=0)
    assert not at.exception, at.exception
    names = [t.get("name", "") for t in plotly_figures(at)[0]["data"]]
    assert "h200 · fp8 · TP1 (measured)" in names
    table = _frame(at)
    assert "measured points on h200" in table["calibrated_from"].iloc[0]
    parity = [f for f in plotly_figures(at) if "How good" in str(f["layout"].get("title"))][0]
    assert "your measured (in the fit)" in [t.get("name") for t in parity["data"]]


def _parity(at):
    return [f for f in plotly_figures(at) if "How good is this estimate?" in str(f["layout"].get("title"))][0]


def test_parity_picture_shows_held_out_points_by_protocol(app_home):
    at = run_page(sel_gpus=["h200"], sel_prec=["fp8"], sel_tp=[1])
    assert not at.exception, at.exception
    fig = _parity(at)
    assert fig["layout"]["xaxis"]["type"] == "log" and fig["layout"]["yaxis"]["type"] == "log"
    names = [t.get("name", "") for t in fig["data"]]
    assert "leave-one-GPU-out · this GPU/family" in names and "leave-one-model-family-out" in names
    assert "80% band of this estimate" in names
    title = fig["layout"]["title"]["text"]
    assert "GPU h200 unseen:" in title and "family llama-3 unseen:" in title
    at.radio(key="sel_parity_metric").set_value("ttft").run()
    assert not at.exception, at.exception
    assert "time to first token" in _parity(at)["layout"]["xaxis"]["title"]["text"]


def test_no_feasible_option_says_what_to_change(app_home):
    at = run_page(sel_gpus=["a100-sxm-80gb"], sel_prec=["fp8"])
    assert not at.exception, at.exception
    assert at.warning and "No option meets the limits" in at.warning[0].value
    assert "Ampere" in " ".join(_frame(at)["why"])


@pytest.mark.parametrize("path, match", [("/nonexistent/config.json", "Unknown model")])
def test_bad_model_path_is_an_error_not_a_crash(app_home, path, match):
    at = run_page(sel_config=path)
    assert not at.exception, at.exception
    assert at.error and match in at.error[0].value


def test_workload_preset_sets_lengths(app_home):
    at = run_page(sel_workload="long context", sel_gpus=["h200"], sel_prec=["fp8"], sel_tp=[1])
    assert not at.exception, at.exception
    assert at.number_input(key="sel_isl_long context").value == 32768


def test_comparing_formats_shows_the_best_of_each_side_by_side(app_home):
    at = run_page(sel_prec=["fp8", "int4_awq"])
    assert not at.exception
    side = _frame(at, "sel_per_precision")
    assert set(side["precision"]) == {"fp8", "int4_awq"}
    curves = [f for f in plotly_figures(at) if "Throughput per GPU" in str(f["layout"].get("title"))][0]
    lines = {t["name"] for t in curves["data"] if t.get("mode") == "lines+markers"}
    assert any("fp8" in n for n in lines) and any("int4_awq" in n for n in lines)  # each precision plotted
    assert "1.0x cheaper" not in "\n".join(s.value for s in at.success)


def test_a_tie_is_called_a_tie():
    import pandas as pd

    from engine.perf.selector import explain_best

    table = pd.DataFrame([
        {"feasible": True, "gpu": "h100-sxm", "precision": "fp8", "tp": 1, "batch": 8, "option": "h100 fp8",
         "cost_per_million_output_tokens": 1.00, "output_tokens_per_sec_per_gpu": 1000.0, "uncertainty_rel": 0.2},
        {"feasible": True, "gpu": "h200", "precision": "fp8", "tp": 1, "batch": 8, "option": "h200 fp8",
         "cost_per_million_output_tokens": 1.05, "output_tokens_per_sec_per_gpu": 900.0, "uncertainty_rel": 0.2}])
    assert "a tie with the runner-up h200 fp8 within the estimates' ±20%" in explain_best(table)
    table.loc[1, "cost_per_million_output_tokens"] = 2.0
    assert "2.00x cheaper than the runner-up" in explain_best(table)
