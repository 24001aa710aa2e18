"""Every page renders without an exception on an empty store and on a populated one, and tells the user
what to do next when there is nothing to show."""

import pytest

from tests.app.conftest import PAGES, open_page, plotly_figures, trace_values
from tests.app.results_data import make_records


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [w.value for w in at.warning] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_empty_store(app_home, page):
    at = open_page(page)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_populated_store(app_home, page):
    app_home.save_results(make_records(40))
    app_home.enqueue("tests.helpers_jobs:sleepy", {"steps": 1}, "a queued job")
    at = open_page(page)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_first_screen_explains_itself_and_offers_the_demo(app_home):
    at = open_page("home")
    assert "Tradeoff Lab" in at.title[0].value
    assert "bundled model" in _texts(at)
    assert at.button(key="run_demo").label == "Run the demo sweep"


def test_sidebar_shows_device_and_every_engine_with_a_reason(app_home):
    at = open_page("home")
    sidebar = "\n".join(m.value for m in at.sidebar.markdown)
    assert "CPU" in sidebar or "GPU" in sidebar
    for engine in ("modelopt", "TensorRT-LLM", "TensorRT", "CUDA"):
        line = next(line for line in sidebar.split("\n") if f"**{engine}**" in line)
        assert len(line.split(":", 2)[-1].strip()) > 5, line  # a reason, not just a mark


def test_empty_results_page_says_what_to_do(app_home):
    at = open_page("results")
    assert "No results yet" in _texts(at)
    assert at.button(key="results_run_demo")
    assert not plotly_figures(at)


def test_empty_jobs_page_says_what_to_do(app_home):
    at = open_page("jobs")
    assert "No jobs yet" in _texts(at)


def test_results_page_draws_points_frontier_and_table(app_home):
    app_home.save_results(make_records(25))
    at = open_page("results")
    fig = plotly_figures(at)[0]
    names = [t.get("name", "") for t in fig["data"]]
    assert "Pareto frontier (measured speed)" in names
    points = sum(len(trace_values(t["x"])) for t in fig["data"] if t.get("mode") == "markers")
    assert points == 25
    assert "Speedup" in fig["layout"]["yaxis"]["title"]["text"]
    assert len(at.dataframe(key="results_table").value) == 25
    assert at.get("download_button")


def test_results_without_speed_show_accuracy_alone(app_home):
    app_home.save_results(make_records(6, with_speed=False))
    at = open_page("results")
    assert "accuracy alone" in _texts(at)
    fig = plotly_figures(at)[0]
    assert [t["type"] for t in fig["data"]] == ["bar"]
    assert "Speedup" not in str(fig["layout"])


def test_results_filter_narrows_chart_and_table(app_home):
    app_home.save_results(make_records(30, experiments=3))
    at = open_page("results")
    at.multiselect(key="filter_experiment").set_value(["run-1"]).run()
    assert not at.exception
    table = at.dataframe(key="results_table").value
    assert set(table["experiment"]) == {"run-1"} and len(table) == 10


def test_results_batch_size_picks_that_speedup(app_home):
    app_home.save_results(make_records(10))
    at = open_page("results")
    at.selectbox(key="filter_batch").set_value(8).run()
    table = at.dataframe(key="results_table").value
    frame = app_home.results_frame().set_index("id")
    assert (table.set_index("id")["y_speedup"] == frame.loc[table["id"], "speedup_bs8"]).all()


def test_compare_runs_side_by_side(app_home):
    app_home.save_results(make_records(30, experiments=3))
    at = open_page("results")
    assert at.multiselect(key="compare_runs").value == ["run-1", "run-2"]
    assert len(plotly_figures(at)) == 3  # main chart + one per compared run
    compare = at.dataframe[-1].value
    assert {"speedup · run-1", "speedup · run-2", "loss % · run-1"} <= set(compare.columns)


def test_reference_page_lists_published_rows_with_sources(app_home):
    at = open_page("reference")
    table = at.dataframe[0].value
    assert len(table) > 100 and table["source"].notna().all()
    assert plotly_figures(at)


def test_published_tradeoff_has_the_right_axis_a_legend_and_says_when_a_model_has_none(app_home):
    at = open_page("reference")
    trade = [f for f in plotly_figures(at) if "MMLU" in str(f["layout"].get("title"))][0]
    assert "MMLU loss" in trade["layout"]["xaxis"]["title"]["text"]
    names = [t["name"] for t in trade["data"] if "published" in t.get("name", "")]
    assert len(names) >= 2 and len(set(names)) == len(names)  # one legend entry per precision
    at.multiselect(key="ref_model").set_value(["GPT-J 6B"]).run()
    assert any("the models that have both are" in i.value and "Llama 3 8B" in i.value for i in at.info)


def test_published_points_overlay_the_same_precision_on_the_task_axis_only(app_home):
    from tests.app.task_results_data import TASK, task_record

    records = [task_record("llama", p, i, 0.7, model="meta-llama/Llama-3.1-8B") for i, p in enumerate(["bf16", "fp8"])]
    app_home.save_results(records)
    at = open_page("results")
    assert not [t for t in plotly_figures(at)[0]["data"] if "published" in t.get("name", "")]  # MMLU vs perplexity: no
    at.radio(key="accuracy_axis").set_value(f"task:{TASK}").run()
    fig = plotly_figures(at)[0]
    published = [t for t in fig["data"] if "published" in t.get("name", "")]
    assert len(published) == 1 and "MMLU" in published[0]["hovertemplate"]
    assert "published" in "\n".join(c.value for c in at.caption)


def test_bundled_results_get_no_published_overlay(app_home):
    app_home.save_results(make_records(5))
    fig = plotly_figures(open_page("results"))[0]
    assert not [t for t in fig["data"] if "published" in t.get("name", "")]


def test_measured_speed_without_speedup_says_why(app_home):
    """The pipeline refuses a speedup when runs are too noisy; the page shows accuracy and that reason."""
    from tests.app.results_data import make_record

    records = []
    for i, p in enumerate(["bf16", "int8_sq"]):
        r = make_record("noisy", p, i)
        r["metrics"] = {k: v for k, v in r["metrics"].items() if not k.startswith("speedup")}
        r["provenance"]["speed"]["speedup_refused"] = {"1": "The baseline (bf16) varied by 35% between runs"}
        records.append(r)
    app_home.save_results(records)
    at = open_page("results")
    assert [t["type"] for t in plotly_figures(at)[0]["data"]] == ["bar"]
    assert any("BF16, INT8 SmoothQuant: batch 1: The baseline (bf16) varied by 35%" in w.value for w in at.warning)
    assert "accuracy alone" in _texts(at)


def test_recipes_without_fast_kernels_say_so(app_home):
    from tests.app.results_data import make_record

    timed = make_record("mixed", "bf16", 0)
    untimed = make_record("mixed", "fp8", 1, with_speed=False)
    untimed["provenance"]["speed_not_measured"] = "PyTorch cannot measure FP8 here: no fast FP8 kernels on CPU"
    app_home.save_results([timed, untimed])
    at = open_page("results")
    assert any("- FP8: PyTorch cannot measure FP8 here" in w.value for w in at.warning)  # which recipe, and why
    fig = plotly_figures(at)[0]
    assert sum(len(trace_values(t["x"])) for t in fig["data"] if t.get("mode") == "markers") == 1


def test_speed_on_a_catalog_gpu_gives_every_recipe_an_estimated_point(app_home):
    """Accuracy measured here, speed estimated for the GPU you will deploy on: FP8 and W4A8, which have
    no CPU kernels, get a point too; a recipe the GPU cannot run says why."""
    from tests.app.results_data import make_record

    model = "HuggingFaceTB/SmolLM2-135M-Instruct (bundled GGUF Q4_1)"
    records = [make_record("here", p, i, model=model, with_speed=p in ("bf16", "int8_sq"))
               for i, p in enumerate(["bf16", "fp8", "int8_sq", "w4a8_awq", "nvfp4"])]
    app_home.save_results(records)
    at = open_page("results")
    at.radio(key="speed_on").set_value("gpu").run()
    assert not at.exception
    at.selectbox(key="est_gpu").set_value("h100-sxm").run()
    fig = plotly_figures(at)[0]
    assert "h100-sxm" in fig["layout"]["title"]["text"] and "estimated" in fig["layout"]["title"]["text"]
    points = [t for t in fig["data"] if t.get("mode") == "markers" and "published" not in t.get("name", "")]
    assert {t["marker"]["symbol"] for t in points} == {"diamond-open"}
    assert sorted(t["name"] for t in points) == ["BF16 (estimated)", "FP8 (estimated)", "INT8 SmoothQuant (estimated)",
                                                 "W4A8 AWQ (estimated)"]  # all but NVFP4, measured speed or not
    assert any(t.get("error_y", {}).get("array") is not None for t in points)  # the estimate's band
    assert "Pareto frontier (estimated speed)" in [t.get("name") for t in fig["data"]]
    assert any("NVFP4" in w.value and "Blackwell" in w.value for w in at.warning)


def test_results_of_a_sweep_that_was_stopped_are_left_out(app_home):
    from tests.app.results_data import make_record

    done = [make_record("complete", p, i) for i, p in enumerate(["bf16", "fp8"])]
    cut = [{**make_record("cancelled", p, i + 5), "status": "partial"} for i, p in enumerate(["bf16", "int8_sq"])]
    app_home.save_results(done + cut)
    at = open_page("results")
    table = at.dataframe[0].value
    assert set(table["experiment"]) == {"complete"}
    assert any("stopped before they finished" in c.value for c in at.caption)
