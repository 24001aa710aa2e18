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
    assert [r["precision"] for r in payload["recipes"]] == ["bf16", "fp8", "int8_sq", "int4_awq"]  # the demo's


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
    assert [r["precision"] for r in payload["recipes"]] == ["bf16", "fp8", "int8_sq", "int4_awq"]
    assert payload["data"] == {"source": "bundled", "calib_size": 16, "calib_seq_len": 128, "eval_tokens": 1024,
                               "eval_seq_len": 256, "seed": 1234}
    assert payload["workload"]["batch_sizes"] == [1]


def test_demo_leaves_out_what_this_device_cannot_calibrate():
    from app.sweeps import demo_jobs
    from engine.devices import PrecisionChoice

    choices = [PrecisionChoice("fp8", "FP8", False, "needs a GPU"), PrecisionChoice("int8_sq", "INT8", True, "")]
    ((payload, title),) = demo_jobs(choices, "demo-x")
    assert [r["precision"] for r in payload["spec"]["recipes"]] == ["bf16", "int8_sq"] and title.startswith("Demo sweep")


def _warnings(at) -> str:
    return "\n".join(w.value for w in at.warning)


def test_out_of_range_number_disables_run_and_names_the_field(app_home):
    at = open_page("experiment")
    assert not at.button(key="run_sweep").disabled
    at.number_input(key="calib_size").set_value(100_000).run()  # committed, not silently kept at 32
    assert at.number_input(key="calib_size").value == 100_000
    assert "Calibration sequences: 100,000 is out of range. Enter a whole number from 1 to 4,096." in _warnings(at)
    assert at.button(key="run_sweep").disabled
    at.number_input(key="calib_size").set_value(8).run()
    assert not at.button(key="run_sweep").disabled and "Calibration sequences" not in _warnings(at)
    assert app_home.list_jobs() == []


def test_evaluation_tokens_beyond_the_bundled_text_disable_run(app_home):
    import re

    at = open_page("experiment")
    counts = re.search(r"The text holds ([\d,]+) calibration tokens and ([\d,]+) held-out",
                       "\n".join(c.value for c in at.caption))
    assert counts, "the page says how many tokens the bundled text holds"
    held_out = int(counts.group(2).replace(",", ""))
    at.number_input(key="eval_tokens").set_value(held_out + 1).run()
    assert at.button(key="run_sweep").disabled
    assert (f"Evaluation tokens: the text holds {held_out:,} held-out tokens, fewer than the {held_out + 1:,} "
            f"asked for. Enter at most {held_out:,}") in _warnings(at)
    at.number_input(key="eval_tokens").set_value(held_out).run()  # all of it is fine
    assert not at.button(key="run_sweep").disabled
    _run(at)
    assert app_home.list_jobs()[0]["payload"]["spec"]["data"]["eval_tokens"] == held_out


def test_a_sweep_over_an_hour_needs_a_confirmation(app_home):
    at = open_page("experiment")
    assert not [c for c in at.checkbox if c.key == "confirm_long_run"]  # the default sweep is short
    at.number_input(key="calib_size").set_value(4096).run()  # 4,096 x 256 calibration tokens per recipe
    confirm = at.checkbox(key="confirm_long_run")
    assert confirm.label.startswith("Run anyway: this sweep takes about ") and confirm.label.endswith(" h")
    assert not confirm.value and at.button(key="run_sweep").disabled
    confirm.check().run()
    assert not at.button(key="run_sweep").disabled
    _run(at)
    assert app_home.list_jobs()[0]["payload"]["spec"]["data"]["calib_size"] == 4096


def test_run_refuses_a_value_changed_as_it_was_clicked(app_home):
    at = open_page("experiment")
    # Typed and clicked at once: the value and the click arrive in one rerun, while the button's callback
    # still holds the jobs of the render before (calibration size 32).
    at.number_input(key="calib_size").set_value(8)
    _run(at)
    assert app_home.list_jobs() == []
    assert "A value changed as you clicked Run: check the fields and click Run again." in _warnings(at)
    _run(at)  # the page now shows 8: Run queues it
    assert app_home.list_jobs()[0]["payload"]["spec"]["data"]["calib_size"] == 8


def test_diffusion_fields_out_of_range_or_changed_at_the_click(app_home):
    at = open_page("experiment")
    at.radio(key="sweep_kind").set_value("diffusion").run()
    at.number_input(key="diff_steps").set_value(5000).run()
    assert "Denoising steps: 5,000 is out of range. Enter a whole number from 1 to 1,000." in _warnings(at)
    assert at.button(key="run_diffusion_sweep").disabled
    at.number_input(key="diff_steps").set_value(4).run()
    at.number_input(key="diff_images").set_value(1)
    at.button(key="run_diffusion_sweep").click().run()  # the change and the click in one rerun
    assert app_home.list_jobs() == [] and "click Run again" in _warnings(at)
    at.button(key="run_diffusion_sweep").click().run()
    generation = app_home.list_jobs()[0]["payload"]["spec"]["generation"]
    assert (generation["steps"], generation["images_per_condition"]) == (4, 1)


def test_task_accuracy_goes_into_the_queued_spec(app_home):
    at = open_page("experiment")
    at.checkbox(key="task_enable").check().run()
    assert at.text_input(key="task_names").value == "tlab_doc_continuation"  # the offline task by default
    at.number_input(key="task_limit").set_value(40).run()
    _run(at)
    spec = app_home.list_jobs()[0]["payload"]["spec"]
    assert spec["tasks"]["names"] == ["tlab_doc_continuation"] and spec["tasks"]["limit"] == 40


def test_unknown_task_name_keeps_run_disabled_with_close_names(app_home):
    at = open_page("experiment")
    at.checkbox(key="task_enable").check().run()
    at.text_input(key="task_names").set_value("tlab_doc_continuaton").run()
    warnings = " ".join(w.value for w in at.warning)
    assert "Unknown task 'tlab_doc_continuaton'" in warnings and "tlab_doc_continuation" in warnings
    assert at.button(key="run_sweep").disabled
    at.number_input(key="task_limit").set_value(0).run()
    assert "Questions per task: 0 is out of range" in " ".join(w.value for w in at.warning)
