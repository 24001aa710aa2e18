"""Diffusion models in the app (issue #11): the Experiment page builds a diffusion sweep, the first screen
queues the diffusion demo, and the Results page charts diffusion results on the quality axis the user
picks and shows the images a result drew. The results come from one real tiny sweep of the bundled
digits model (2 labels x 1 image, 4 steps: about 10 s), run once for the module."""

import copy
import shutil
from pathlib import Path

import pytest

from app.state import SWEEP_FN
from engine.spec import SweepSpec
from engine.diffusion.kernels import int8_unavailable
from tests.app.conftest import open_page, plotly_figures, trace_values
from tests.app.results_data import make_records

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def diffusion_records(tmp_path_factory):
    """Result dicts of a real diffusion sweep (baseline, INT8 SmoothQuant, FP8; no speed stage) and the
    folder holding their image grids."""
    from engine.pipeline import run_sweep
    from engine.spec import GenerationSpec, ModelRef, Recipe
    from engine.store import open_store

    home = tmp_path_factory.mktemp("diffusion-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TLAB_HOME", str(home))
        mp.delenv("TLAB_STORE_URL", raising=False)
        store = open_store()
        spec = SweepSpec(model=ModelRef("bundled-diffusion"), recipes=(Recipe("int8_sq"), Recipe("fp8")),
                         kind="diffusion", experiment="digits",
                         generation=GenerationSpec(labels=(3, 7), images_per_condition=1, steps=4, calib_images=4))
        results = run_sweep(spec, store)
        store.close()
    return [r.to_dict() for r in results]


def _save(store, records: list[dict]) -> list[dict]:
    """Save copies of `records` into `store`, their image grids copied under this test's TLAB_HOME."""
    from engine.paths import tlab_home

    folder = tlab_home() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for r in copy.deepcopy(records):
        grid = Path(r["provenance"]["images"]["grid"])
        shutil.copy(grid, folder / grid.name)
        r["provenance"]["images"]["grid"] = str(folder / grid.name)
        out.append(r)
    store.save_results(out)
    return out


def _with_speed(records: list[dict], speedups: dict[str, float], batch: int = 8) -> list[dict]:
    """The records as a speed stage on a machine with fast kernels would leave them (same shape as the
    pipeline's: step latency per batch, speedup_bs{N} for the recipes, speed provenance)."""
    out = copy.deepcopy(records)
    for r in out:
        base_ms = 20.0
        ratio = speedups.get(r["precision"])
        r["metrics"][f"step_latency_ms_bs{batch}"] = base_ms / (ratio or 1.0)
        r["metrics"][f"latency_ms_bs{batch}"] = 10 * base_ms / (ratio or 1.0)
        if ratio is not None and r["precision"] != "bf16":
            r["metrics"][f"speedup_bs{batch}"] = r["metrics"]["speedup"] = ratio
        r["provenance"]["speed"] = {"kind": "measured", "device": "cpu", "backend": "torch",
                                    "speedup_metric": "step_latency_ms", "speedup_refused": {}}
    return out


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


# --- Experiment page ------------------------------------------------------------------------------

def test_experiment_page_queues_the_diffusion_sweep_it_shows(app_home):
    at = open_page("experiment")
    at.radio(key="sweep_kind").set_value("diffusion").run()
    assert not at.exception, at.exception
    keys = {w.key for w in at.number_input} | {w.key for w in at.multiselect}
    assert not {"calib_size", "eval_tokens", "sparsities", "kv_caches", "input_len"} & keys  # language-model only
    assert "scikit-learn digits" in _texts(at)
    assert {c.key for c in at.checkbox if c.key.startswith("diff_prec_")} == {"diff_prec_fp8", "diff_prec_int8_sq"}
    at.checkbox(key="diff_prec_fp8").uncheck()
    at.multiselect(key="diff_labels").set_value([2, 5])
    at.number_input(key="diff_images").set_value(3)
    at.number_input(key="diff_steps").set_value(6)
    at.number_input(key="diff_calib").set_value(4)
    at.checkbox(key="diff_guided").check().run()
    at.number_input(key="diff_guidance").set_value(1.5)
    at.multiselect(key="diff_batch_sizes").set_value([1, 8])
    at.text_input(key="exp_name").set_value("digits-sweep").run()
    assert at.dataframe[0].value["Recipe"].tolist() == [
        "Unquantized baseline (always runs)", "INT8 SmoothQuant"]
    int8_why = int8_unavailable()  # what the speed stage will do on this machine, said before the run
    assert at.dataframe[0].value["Speed"].tolist()[1] == (f"quality only: {int8_why}" if int8_why
                                                           else "measured here on real kernels")
    assert app_home.list_jobs() == []
    at.button(key="run_diffusion_sweep").click().run()
    assert not at.exception, at.exception
    jobs = app_home.list_jobs()
    assert len(jobs) == 1 and jobs[0]["fn"] == SWEEP_FN and jobs[0]["status"] == "queued"
    spec = SweepSpec.from_dict(jobs[0]["payload"]["spec"])  # a valid spec, as the worker reads it
    assert spec.kind == "diffusion" and spec.model.source == "bundled-diffusion"
    assert spec.experiment == "digits-sweep"
    assert [r.precision for r in spec.recipes] == ["bf16", "int8_sq"]
    g = spec.generation
    assert (g.labels, g.images_per_condition, g.steps, g.calib_images, g.guidance_scale) == ((2, 5), 3, 6, 4, 1.5)
    assert spec.workload.batch_sizes == (1, 8)
    assert any("Queued job" in s.value for s in at.success)


def test_diffusion_sweep_without_speed_or_labels(app_home):
    at = open_page("experiment")
    at.radio(key="sweep_kind").set_value("diffusion").run()
    at.multiselect(key="diff_labels").set_value([]).run()
    assert any("class labels" in w.value for w in at.warning)  # GenerationSpec's own message
    assert at.button(key="run_diffusion_sweep").disabled
    at.multiselect(key="diff_labels").set_value([0])
    at.checkbox(key="diff_measure_speed").uncheck().run()
    assert not at.button(key="run_diffusion_sweep").disabled
    at.button(key="run_diffusion_sweep").click().run()
    spec = SweepSpec.from_dict(app_home.list_jobs()[0]["payload"]["spec"])
    assert spec.workload is None and spec.generation.labels == (0,)


def test_switching_back_to_language_models_shows_their_form(app_home):
    at = open_page("experiment")
    at.radio(key="sweep_kind").set_value("diffusion").run()
    at.radio(key="sweep_kind").set_value("causal_lm").run()
    assert not at.exception
    assert at.number_input(key="calib_size") and at.button(key="run_sweep")


# --- first screen ---------------------------------------------------------------------------------

def test_first_screen_queues_the_diffusion_demo(app_home):
    at = open_page("home")
    assert at.button(key="run_demo").label == "Run the demo sweep"
    button = at.button(key="run_diffusion_demo")
    assert button.label == "Run the diffusion demo"
    button.click().run()
    assert not at.exception, at.exception
    jobs = app_home.list_jobs()
    assert len(jobs) == 1 and jobs[0]["fn"] == SWEEP_FN
    spec = SweepSpec.from_dict(jobs[0]["payload"]["spec"])
    assert spec.kind == "diffusion" and [r.precision for r in spec.recipes] == ["bf16", "int8_sq", "fp8"]
    g = spec.generation
    assert (g.labels, g.images_per_condition, g.steps, g.calib_images) == (tuple(range(10)), 2, 10, 8)
    assert spec.workload.batch_sizes == (8,)
    assert jobs[0]["title"].startswith("Diffusion demo")


def test_diffusion_demo_stays_offered_once_there_are_results(app_home):
    app_home.save_results(make_records(3))
    at = open_page("home")
    at.button(key="run_diffusion_demo_again").click().run()
    assert SweepSpec.from_dict(app_home.list_jobs()[0]["payload"]["spec"]).kind == "diffusion"


# --- Results page ---------------------------------------------------------------------------------

def test_results_page_charts_real_diffusion_results_and_shows_their_images(app_home, diffusion_records):
    saved = _save(app_home, diffusion_records)
    at = open_page("results")
    assert not at.exception, at.exception
    assert at.radio(key="quality_axis").options  # the quality-axis choice
    assert "results_kind" not in {r.key for r in at.radio}  # one kind stored: no kind filter
    fig = plotly_figures(at)[0]  # no speed stage: quality alone, on the chosen axis
    assert [t["type"] for t in fig["data"]] == ["bar"]
    assert "Task-metric loss" in fig["layout"]["yaxis"]["title"]["text"]
    at.radio(key="quality_axis").set_value("psnr").run()
    fig = plotly_figures(at)[0]
    y_title = fig["layout"]["yaxis"]["title"]["text"]
    assert "PSNR" in y_title and "higher is better" in y_title
    table = at.dataframe(key="diffusion_table").value
    assert len(table) == 3 and {"psnr_db", "ssim", "task_accuracy"} <= set(table.columns)
    assert "perplexity" not in table.columns
    assert not at.get("image")

    row = table["id"].tolist().index(next(r["id"] for r in saved if r["precision"] == "int8_sq"))
    at.session_state["diffusion_table"] = {"selection": {"rows": [row], "columns": []}}  # select INT8's row
    at.run()
    assert not at.exception, at.exception
    images = at.get("image")
    assert len(images) == 1
    caption = images[0].captions[0]
    assert "baseline" in caption and "INT8 SmoothQuant" in caption
    download = [d for d in at.get("download_button") if d.proto.label.startswith("Download the image grid")]
    assert len(download) == 1


def test_diffusion_chart_uses_the_chosen_quality_axis(app_home, diffusion_records):
    records = _with_speed(diffusion_records, {"int8_sq": 1.6})  # FP8: no fast kernels here, so no speedup
    fp8 = next(r for r in records if r["precision"] == "fp8")
    fp8["metrics"] = {k: v for k, v in fp8["metrics"].items() if "latency" not in k}
    fp8["provenance"].pop("speed")
    fp8["provenance"]["speed_not_measured"] = "PyTorch cannot measure FP8 here: no fast FP8 kernels on CPU"
    _save(app_home, records)
    at = open_page("results")
    fig = plotly_figures(at)[0]
    assert "Task-metric loss" in fig["layout"]["xaxis"]["title"]["text"]
    assert "Speedup" in fig["layout"]["yaxis"]["title"]["text"]
    markers = [t for t in fig["data"] if t.get("mode") == "markers"]
    assert sum(len(trace_values(t["x"])) for t in markers) == 2  # the baseline (1x) and INT8; FP8 has no speedup
    assert any("no fast FP8 kernels" in w.value for w in at.warning)
    assert len(at.dataframe(key="diffusion_table").value) == 3  # FP8 is still in the table

    at.radio(key="quality_axis").set_value("ssim").run()
    fig = plotly_figures(at)[0]
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("SSIM") and "higher is better" in \
        fig["layout"]["xaxis"]["title"]["text"]
    xs = sorted(x for t in fig["data"] if t.get("mode") == "markers" for x in trace_values(t["x"]))
    int8 = next(r for r in records if r["precision"] == "int8_sq")["metrics"]["ssim"]
    assert xs == sorted([int8, 1.0])

    at.radio(key="quality_axis").set_value("psnr").run()
    fig = plotly_figures(at)[0]
    xs = [x for t in fig["data"] if t.get("mode") == "markers" for x in trace_values(t["x"])]
    assert xs == [pytest.approx(next(r for r in records if r["precision"] == "int8_sq")["metrics"]["psnr_db"])]
    assert "PSNR" in fig["layout"]["xaxis"]["title"]["text"]


def test_language_and_diffusion_results_never_share_a_chart(app_home, diffusion_records):
    _save(app_home, _with_speed(diffusion_records, {"int8_sq": 1.6, "fp8": 1.2}))
    app_home.save_results(make_records(10))
    at = open_page("results")
    assert at.radio(key="results_kind").value == "causal_lm"
    table = at.dataframe(key="results_table").value
    assert len(table) == 10 and "digits" not in set(table["experiment"])
    assert at.selectbox(key="filter_batch").options == ["1", "8"]
    fig = plotly_figures(at)[0]
    assert "perplexity" in fig["layout"]["xaxis"]["title"]["text"]
    at.radio(key="results_kind").set_value("diffusion").run()
    assert not at.exception, at.exception
    table = at.dataframe(key="diffusion_table").value
    assert set(table["experiment"]) == {"digits"} and len(table) == 3
    fig = plotly_figures(at)[0]
    assert "Task-metric loss" in fig["layout"]["xaxis"]["title"]["text"]
    assert sum(len(trace_values(t["x"])) for t in fig["data"] if t.get("mode") == "markers") == 3


# --- engine.plots (pure) --------------------------------------------------------------------------

def test_diffusion_chart_frame_and_frontier_follow_the_quality_axis():
    import pandas as pd

    from engine import plots

    df = pd.DataFrame({
        "id": ["b", "i", "f"], "precision": ["bf16", "int8_sq", "fp8"], "sparsity": "none", "kv_cache": "auto",
        "speed_kind": "measured", "task_accuracy_loss_pts": [None, 5.0, 0.0], "psnr_db": [None, 30.0, 40.0],
        "ssim": [None, 0.9, 0.99], "speedup_bs8": [None, 2.0, 1.5], "step_latency_ms_bs8": [20.0, 10.0, 13.3]})
    loss = plots.diffusion_chart_frame(df, 8, "loss")
    assert loss["x_loss"].tolist() == [0.0, 5.0, 0.0] and loss["y_speedup"].tolist() == [1.0, 2.0, 1.5]
    psnr = plots.diffusion_chart_frame(df, 8, "psnr")
    assert pd.isna(psnr["x_loss"].iloc[0])  # identical images have no finite PSNR: never made up
    assert plots.diffusion_chart_frame(df, 8, "ssim")["x_loss"].tolist() == [1.0, 0.9, 0.99]
    # higher PSNR is better: FP8 (40 dB, 1.5x) and INT8 (30 dB, 2x) are both on the frontier
    front = plots.pareto_frontier(psnr.dropna(subset=["x_loss"]), lower_x_is_better=False)
    assert sorted(front["id"]) == ["f", "i"]
    fig = plots.speedup_accuracy_figure(psnr, x_title=plots.DIFFUSION_QUALITY["psnr"].axis, lower_x_is_better=False)
    assert "higher is better" in fig.layout.xaxis.title.text


def test_rows_of_kind_keeps_each_kinds_own_metrics():
    import pandas as pd

    from engine import plots

    df = pd.DataFrame({"id": ["a", "b"], "kind": ["causal_lm", "diffusion"], "precision": "fp8", "device": None,
                       "ppl_increase_pct": [1.0, None], "speedup_bs1": [1.2, None], "psnr_db": [None, 40.0],
                       "speedup_bs8": [None, 1.5]})
    lm = plots.rows_of_kind(df, "causal_lm")
    assert lm["id"].tolist() == ["a"] and plots.batch_sizes(lm) == [1] and "psnr_db" not in lm
    assert "device" in lm  # frame columns stay, empty or not
    assert plots.batch_sizes(plots.rows_of_kind(df, "diffusion")) == [8]


def test_the_default_quality_axis_is_one_the_results_have():
    import pandas as pd

    from engine import plots

    df = pd.DataFrame({"id": ["b", "i"], "precision": ["bf16", "int8_sq"], "sparsity": "none", "kv_cache": "auto",
                       "speed_kind": "measured", "task_accuracy_loss_pts": [None, 5.0], "psnr_db": [None, 30.0],
                       "ssim": [None, 0.9]})
    assert plots.default_quality(df) == "loss"  # the bundled model: its digit classifier scores every recipe
    local = df.assign(task_accuracy_loss_pts=[None, None])  # a local pipeline has no task metric
    assert plots.default_quality(local) == "ssim"
