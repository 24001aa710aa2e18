"""The Experiment page queues exactly the sweep the form describes, and explains every option it disables."""

from app.state import SWEEP_FN
from engine import devices
from tests.app.conftest import open_page


def _run(at):
    at.button(key="run_sweep").click().run()
    assert not at.exception, at.exception
    return at


def test_form_queues_the_sweep_it_shows(app_home):
    at = open_page("experiment")
    at.checkbox(key="prec_fp8").check()
    at.checkbox(key="prec_int8_sq").uncheck()
    at.checkbox(key="prec_int4_awq").check()
    at.multiselect(key="kv_caches").set_value(["auto", "fp8"])
    at.number_input(key="calib_size").set_value(8)
    at.number_input(key="calib_seq_len").set_value(64)
    at.number_input(key="eval_tokens").set_value(1024)
    at.number_input(key="input_len").set_value(32)
    at.number_input(key="output_len").set_value(16)
    at.multiselect(key="batch_sizes").set_value([1, 4])
    at.text_input(key="exp_name").set_value("my-sweep").run()
    grid = at.dataframe[0].value
    assert grid["Recipe"].tolist() == ["BF16 baseline (always runs)", "FP8", "FP8 + KV FP8", "INT4 AWQ",
                                       "INT4 AWQ + KV FP8"]
    assert any("Estimated time" in m.label for m in at.metric)
    assert app_home.list_jobs() == []  # nothing is queued before Run
    _run(at)
    jobs = app_home.list_jobs()
    assert len(jobs) == 1 and jobs[0]["fn"] == SWEEP_FN and jobs[0]["status"] == "queued"
    assert jobs[0]["payload"] == {"spec": {
        "schema": 1,
        "kind": "causal_lm",
        "experiment": "my-sweep",
        "model": {"source": "bundled", "revision": None, "gguf_file": None, "trust_remote_code": False},
        "recipes": [{"precision": "bf16", "sparsity": "none", "kv_cache": "auto"}]
                   + [{"precision": p, "sparsity": "none", "kv_cache": kv} for p in ("fp8", "int4_awq")
                      for kv in ("auto", "fp8")],
        "data": {"source": "bundled", "calib_size": 8, "calib_seq_len": 64, "eval_tokens": 1024,
                 "eval_seq_len": 512, "seed": 1234},
        "workload": {"input_len": 32, "output_len": 16, "batch_sizes": [1, 4]},
        "runtime": "torch",
        "device": "auto",
        "generation": None,  # what a diffusion sweep generates: none for a language model
    }}
    assert any("Queued job" in s.value for s in at.success)
    assert at.text_input(key="exp_name").value != "my-sweep"  # the next sweep gets a fresh name


def test_accuracy_only_sweep_has_no_workload(app_home):
    at = open_page("experiment")
    at.checkbox(key="measure_speed").uncheck().run()
    _run(at)
    payload = app_home.list_jobs()[0]["payload"]["spec"]
    assert payload["workload"] is None
    assert [r["precision"] for r in payload["recipes"]] == ["bf16", "fp8", "int8_sq"]


def test_sparsity_multiplies_the_grid(app_home):
    at = open_page("experiment")
    at.checkbox(key="measure_speed").uncheck()
    for name in ("fp8", "int8_sq"):
        at.checkbox(key=f"prec_{name}").check()
    at.checkbox(key="prec_int4_awq").uncheck()
    at.multiselect(key="sparsities").set_value(["none", "magnitude"]).run()
    _run(at)
    recipes = app_home.list_jobs()[0]["payload"]["spec"]["recipes"][1:]  # after the baseline
    assert {(r["precision"], r["sparsity"]) for r in recipes} == {
        ("fp8", "none"), ("fp8", "magnitude"), ("int8_sq", "none"), ("int8_sq", "magnitude")}


def test_run_is_disabled_until_the_form_is_complete(app_home):
    at = open_page("experiment")
    for box in at.checkbox:
        if box.key.startswith("prec_") and not box.disabled:
            box.uncheck()
    at.run()
    assert at.button(key="run_sweep").disabled
    assert any("at least one precision" in w.value for w in at.warning)
    at.radio(key="model_kind").set_value("folder").run()
    at.text_input(key="model_folder").set_value("/no/such/folder").run()
    assert any("outside the folders this server lets web users read" in w.value for w in at.warning)
    from engine.paths import tlab_home

    at.text_input(key="model_folder").set_value(str(tlab_home() / "no-such-model")).run()
    assert any("does not exist" in w.value for w in at.warning)
    assert app_home.list_jobs() == []


def test_web_users_cannot_read_files_outside_the_allowed_folders(app_home):
    at = open_page("experiment")
    at.radio(key="data_kind").set_value("path").run()
    at.text_input(key="data_path").set_value("/etc/shadow").run()
    assert any("outside the folders" in w.value for w in at.warning) and at.button(key="run_sweep").disabled
    at.radio(key="model_kind").set_value("hf").run()
    assert not [c for c in at.checkbox if c.key == "hf_trust"]  # remote code: only where the administrator allows


def test_disabled_precisions_carry_their_reason(app_home):
    at = open_page("experiment")
    captions = "\n".join(c.value for c in at.caption)
    choices = devices.precision_choices(devices.detect_gpus())
    for choice in choices:
        if choice.name == "bf16":  # the baseline always runs; it is not a checkbox
            continue
        box = at.checkbox(key=f"prec_{choice.name}")
        assert box.disabled == (not choice.runnable)
        if not choice.runnable:
            assert box.help == choice.reason and choice.reason
            assert choice.reason in captions
    if not devices.detect_gpus():  # this machine: NVFP4 calibration needs CUDA
        nvfp4 = at.checkbox(key="prec_nvfp4")
        assert nvfp4.disabled and "NVIDIA GPU" in nvfp4.help


def test_speed_column_says_which_recipes_are_timed_here(app_home):
    at = open_page("experiment")
    grid = at.dataframe[0].value.set_index("Recipe")
    gpus = devices.detect_gpus()
    for choice in devices.precision_choices(gpus, "pytorch"):
        if choice.label in grid.index:
            speed = grid.loc[choice.label, "Speed"]
            assert speed == "measured here" if choice.speed_ok else speed.startswith("accuracy only: ")


def test_demo_button_queues_the_small_demo_sweep(app_home):
    at = open_page("home")
    at.button(key="run_demo").click().run()
    assert not at.exception
    jobs = app_home.list_jobs()
    assert len(jobs) == 1 and jobs[0]["title"].startswith("Demo sweep")
    payload = jobs[0]["payload"]["spec"]
    assert payload["model"]["source"] == "bundled"
    assert [r["precision"] for r in payload["recipes"]] == ["bf16", "fp8", "int8_sq"]
    assert payload["data"] == {"source": "bundled", "calib_size": 16, "calib_seq_len": 256, "eval_tokens": 1024,
                               "eval_seq_len": 256, "seed": 1234}
    assert payload["workload"]["batch_sizes"] == [1]


def test_demo_leaves_out_what_this_device_cannot_calibrate():
    from app.sweeps import demo_jobs
    from engine.devices import PrecisionChoice

    choices = [PrecisionChoice("fp8", "FP8", False, "needs a GPU"), PrecisionChoice("int8_sq", "INT8", True, "")]
    ((payload, title),) = demo_jobs(choices, "demo-x")
    assert [r["precision"] for r in payload["spec"]["recipes"]] == ["bf16", "int8_sq"] and title.startswith("Demo sweep")
