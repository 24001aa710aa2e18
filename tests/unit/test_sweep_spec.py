"""SweepSpec: the one object the CLI, the app and a job row build; validated like user input."""

import json

import pytest

from engine import pipeline
from engine.cli import main
from engine.errors import DataError, SpecError, TlabError, UnknownNameError
from engine.spec import (SCHEMA_VERSION, DataSpec, ExperimentSpec, GenerationSpec, ModelRef, Recipe, SweepSpec,
                         Workload)


def _spec(**changes):
    base = dict(model=ModelRef("org/model"), recipes=(Recipe("fp8"), Recipe("int4_awq", "sparsegpt")),
                data=DataSpec(calib_size=8), workload=Workload(64, 32, (1, 4)), runtime="pytorch",
                device="cpu", experiment="x")
    return SweepSpec(**{**base, **changes})


def test_round_trips_through_json_with_its_schema_version():
    spec = _spec()
    d = json.loads(spec.to_json())
    assert d["schema"] == SCHEMA_VERSION and d["runtime"] == "torch" and d["kind"] == "causal_lm"
    assert SweepSpec.from_json(spec.to_json()) == spec


def test_baseline_first_duplicates_dropped_and_ids_are_the_experiment_specs():
    spec = _spec(recipes=(Recipe("fp8"), Recipe("bf16"), Recipe("fp8")))
    assert spec.recipes == (Recipe(), Recipe("fp8"))
    exps = spec.experiments()
    assert [e.recipe for e in exps] == list(spec.recipes)
    # the same ids the store has always used for these specs (the default kind is not hashed)
    assert exps[1].id == ExperimentSpec(spec.model, Recipe("fp8"), spec.data, spec.workload, "cpu").id


@pytest.mark.parametrize("changes, error, words", [
    (dict(recipes=()), SpecError, "at least one recipe"),
    (dict(runtime="tensorrt-llm"), UnknownNameError, "tensorrt_llm"),
    (dict(device="banana"), SpecError, "auto, cpu, cuda"),
    (dict(kind="video"), UnknownNameError, "causal_lm, diffusion"),
    (dict(kind="diffusion"), SpecError, "does not apply to a diffusion model"),
    (dict(generation=GenerationSpec()), SpecError, "apply to diffusion models"),
    (dict(experiment="x" * 500), SpecError, "200 characters"),
])
@pytest.mark.bad_input
def test_bad_values_are_refused_on_creation(changes, error, words):
    with pytest.raises(error, match=words):
        _spec(**changes)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.pop("schema"), "schema"),
    (lambda d: d.update(schema=99), "schema 99"),
    (lambda d: d.update(extra=1), "Unknown field"),
    (lambda d: d.update(recipes="fp8"), "list"),
    (lambda d: d["recipes"].append({"precision": 8}), "must be a name"),
    (lambda d: d["recipes"].append({"precision": "fp8", "bits": 3}), "Unknown field"),
    (lambda d: d["data"].update(calib_size=2.5), "whole number"),
    (lambda d: d["data"].update(calib_size=True), "whole number"),
    (lambda d: d["data"].update(eval_tokens=10**12), "at most"),
    (lambda d: d["workload"].update(batch_sizes=8), "list of whole numbers"),
    (lambda d: d["model"].update(trust_remote_code="yes"), "true or false"),
    (lambda d: d.update(model=["bundled"]), "JSON object"),
])
@pytest.mark.bad_input
def test_a_spec_from_json_is_checked_field_by_field(mutate, words):
    d = _spec().to_dict()
    mutate(d)
    with pytest.raises(TlabError, match=words):
        SweepSpec.from_dict(d)


@pytest.mark.bad_input
def test_garbage_json_is_a_clear_error():
    for text in ("", "{", "[1, 2]", "null"):
        with pytest.raises(SpecError):
            SweepSpec.from_json(text)


@pytest.mark.parametrize("payload", [
    {}, {"spec": None}, {"spec": {}, "store_url": "sqlite:////tmp/elsewhere.db"},
    {"experiment": "old-format", "recipes": [{"precision": "fp8"}]},
])
@pytest.mark.bad_input
def test_a_bad_job_payload_fails_before_any_work(payload):
    with pytest.raises(TlabError):
        pipeline.run_sweep_job(payload, lambda *a: None)


@pytest.mark.bad_input
def test_run_sweep_takes_only_a_spec():
    with pytest.raises(SpecError, match="SweepSpec"):
        pipeline.run_sweep({"recipes": []}, store=None)


def test_sizes_stay_whole_numbers_so_ids_do_not_change():
    assert DataSpec(calib_size=8.0).calib_size == 8 and isinstance(DataSpec(calib_size=8.0).calib_size, int)
    assert ExperimentSpec(data=DataSpec(calib_size=8.0)).id == ExperimentSpec(data=DataSpec(calib_size=8)).id
    with pytest.raises(DataError, match="batch size"):
        Workload(8, 8, (1, 0))


def test_cli_prints_a_spec_and_runs_one_from_a_file(tmp_path, capsys):
    assert main(["sweep", "--precisions", "int8_sq", "--device", "cpu", "--benchmark", "--batch-sizes", "1",
                 "--print-spec"]) == 0
    printed = capsys.readouterr().out
    spec = SweepSpec.from_json(printed)
    assert [r.precision for r in spec.recipes] == ["bf16", "int8_sq"] and spec.workload.batch_sizes == (1,)
    path = tmp_path / "sweep.json"
    path.write_text(printed)
    assert main(["sweep", "--spec", str(path), "--print-spec"]) == 0
    assert SweepSpec.from_json(capsys.readouterr().out) == spec


@pytest.mark.parametrize("argv, words", [
    (["sweep", "--recipes", ","], "at least one recipe"),
    (["sweep", "--device", "banana"], "auto, cpu, cuda"),
    (["sweep", "--calib-size", "100000000"], "at most"),
    (["sweep", "--spec", "/nonexistent/sweep.json"], "Cannot read"),
])
@pytest.mark.bad_input
def test_cli_refuses_bad_sweeps_with_exit_2(argv, words, capsys):
    assert main(argv) == 2
    assert words in capsys.readouterr().err


@pytest.mark.bad_input
def test_a_cuda_device_that_is_not_there_is_refused_before_loading():
    import torch

    from engine.errors import UnsupportedOnDevice
    from engine.system import resolve_device

    with pytest.raises(UnsupportedOnDevice, match="cuda:63 was asked for"):
        resolve_device("cuda:63")
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UnsupportedOnDevice, match="no CUDA GPU"):
            resolve_device("cuda")
        assert resolve_device("auto") == "cpu"


def test_a_diffusion_sweep_is_the_same_spec_with_generation_settings():
    spec = SweepSpec(ModelRef("bundled-diffusion"), (Recipe("int8_sq"), Recipe("fp8")), kind="diffusion",
                     generation=GenerationSpec(labels=[3, 7], steps=10, guidance_scale=2))
    assert SweepSpec.from_json(spec.to_json()) == spec
    assert spec.generation.labels == (3, 7) and spec.generation.guidance_scale == 2.0
    ids = {e.id for e in spec.experiments()}
    assert len(ids) == 3
    other = spec.replace(generation=GenerationSpec(labels=[3, 7], steps=20, guidance_scale=2))
    assert ids.isdisjoint(e.id for e in other.experiments())  # generation settings are part of a result's identity
    assert SweepSpec(ModelRef("bundled-diffusion"), (Recipe("fp8"),), kind="diffusion").generation == GenerationSpec()


@pytest.mark.parametrize("changes, words", [
    (dict(steps=0), "steps must be a positive"), (dict(labels=[]), "labels or the prompts"),
    (dict(labels=[1.5]), "whole number"), (dict(prompts=[""], labels=[]), "non-empty text"),
    (dict(guidance_scale=-1), "guidance scale"), (dict(resolution=4), "at least 8"),
    (dict(scheduler="magic"), "ddim"), (dict(images_per_condition=10**6), "at most"),
])
@pytest.mark.bad_input
def test_bad_generation_settings_are_refused(changes, words):
    with pytest.raises(SpecError, match=words):
        GenerationSpec(**changes)


def test_cli_builds_a_diffusion_sweep(capsys):
    assert main(["sweep", "--model", "bundled-diffusion", "--labels", "1,2", "--steps", "10", "--print-spec"]) == 0
    spec = SweepSpec.from_json(capsys.readouterr().out)
    assert spec.kind == "diffusion" and spec.generation.labels == (1, 2) and spec.generation.steps == 10
    assert [r.precision for r in spec.recipes] == ["bf16", "int8_sq", "fp8"]
    assert main(["sweep", "--model", "bundled-diffusion", "--precisions", "int4_awq", "--print-spec"]) == 2
    assert "does not apply to a diffusion model" in capsys.readouterr().err


def test_only_results_of_finished_sweeps_are_reused(tmp_path, monkeypatch):
    from engine.store import open_store
    from tests.app.results_data import make_record

    monkeypatch.setenv("TLAB_HOME", str(tmp_path))
    store = open_store()
    done, cut = make_record("a", "fp8", 1), {**make_record("b", "int8_sq", 2), "status": "partial"}
    store.save_results([done, cut])
    assert store.has_finished_result(done["id"]) and not store.has_finished_result(cut["id"])
    assert not store.has_finished_result("no-such-id")


# --- task accuracy (issue #12) ------------------------------------------------------------------

def test_tasks_round_trip_and_are_part_of_a_results_identity():
    from engine.spec import TaskAccuracySpec

    tasks = TaskAccuracySpec(["tlab_doc_continuation", "mmlu", "tlab_doc_continuation"], limit=40.0)
    assert tasks.names == ("tlab_doc_continuation", "mmlu") and tasks.limit == 40 and isinstance(tasks.limit, int)
    spec = _spec(tasks=tasks)
    d = json.loads(spec.to_json())
    assert d["tasks"] == {"names": ["tlab_doc_continuation", "mmlu"], "limit": 40, "num_fewshot": 0, "batch_size": 8}
    assert SweepSpec.from_json(spec.to_json()) == spec
    with_tasks, without = spec.experiments(), _spec().experiments()
    assert all(e.tasks == tasks for e in with_tasks)
    assert {e.id for e in with_tasks}.isdisjoint(e.id for e in without)  # no reuse of results scored without them
    assert ExperimentSpec.from_dict(with_tasks[1].to_dict()) == with_tasks[1]
    assert with_tasks[1].id != spec.replace(tasks=tasks.__class__(tasks.names, limit=41)).experiments()[1].id


def test_no_tasks_leaves_the_serialized_spec_and_ids_as_they_were():
    spec = _spec()
    assert "tasks" not in spec.to_dict() and "tasks" not in spec.experiments()[1].to_dict()
    # a sweep spec file saved before the field existed still reads, to the same spec
    assert SweepSpec.from_dict({k: v for k, v in spec.to_dict().items()}) == spec
    # the id this spec had before task accuracy existed (computed with the previous engine/spec.py)
    exp = ExperimentSpec(ModelRef("org/model"), Recipe("fp8"), DataSpec(calib_size=8), None, "cpu")
    assert exp.id == "a632e55fd4379750"


@pytest.mark.parametrize("tasks, words", [
    (dict(names=()), "at least one task"),
    (dict(names="mmlu"), "must be a list"),
    (dict(names=("mmlu; rm -rf",)), "not a task name"),
    (dict(names=("",)), "not a task name"),
    (dict(names=(3,)), "not a task name"),
    (dict(names=("mmlu",), limit=0), "positive whole number"),
    (dict(names=("mmlu",), limit=2.5), "whole number"),
    (dict(names=("mmlu",), num_fewshot=-1), "at least 0"),
    (dict(names=("mmlu",), num_fewshot=1000), "at most"),
    (dict(names=("mmlu",), batch_size=0), "positive"),
])
@pytest.mark.bad_input
def test_bad_task_settings_are_refused(tasks, words):
    from engine.spec import TaskAccuracySpec

    with pytest.raises(SpecError, match=words):
        TaskAccuracySpec(**tasks)


@pytest.mark.parametrize("mutate, words", [
    (lambda d: d.update(tasks={"limit": 4}), "need 'names'"),
    (lambda d: d.update(tasks={"names": ["mmlu"], "shots": 5}), "Unknown field"),
    (lambda d: d.update(tasks=["mmlu"]), "JSON object"),
    (lambda d: d.update(tasks={"names": []}), "at least one task"),
])
@pytest.mark.bad_input
def test_tasks_from_json_are_checked(mutate, words):
    d = _spec().to_dict()
    mutate(d)
    with pytest.raises(SpecError, match=words):
        SweepSpec.from_dict(d)


@pytest.mark.bad_input
def test_tasks_apply_to_language_models_only():
    from engine.spec import TaskAccuracySpec

    with pytest.raises(SpecError, match="language models"):
        SweepSpec(ModelRef("bundled-diffusion"), (Recipe("int8_sq"),), kind="diffusion",
                  tasks=TaskAccuracySpec(("tlab_doc_continuation",)))


def test_cli_builds_a_sweep_with_tasks(capsys):
    pytest.importorskip("lm_eval")
    assert main(["sweep", "--recipes", "int8_sq", "--tasks", "tlab_doc_continuation", "--task-limit", "40",
                 "--print-spec"]) == 0
    spec = SweepSpec.from_json(capsys.readouterr().out)
    assert spec.tasks.names == ("tlab_doc_continuation",) and spec.tasks.limit == 40
    assert main(["sweep", "--task-limit", "40", "--print-spec"]) == 2
    assert "--task-limit needs --tasks" in capsys.readouterr().err


@pytest.mark.bad_input
def test_cli_refuses_an_unknown_task_with_close_names_before_loading(capsys, monkeypatch):
    pytest.importorskip("lm_eval")
    from engine.models import loader

    monkeypatch.setattr(loader, "resolve", lambda *a, **k: pytest.fail("the model must not be touched"))
    assert main(["sweep", "--recipes", "int8_sq", "--tasks", "tlab_doc_continuaton"]) == 2
    err = capsys.readouterr().err
    assert "Unknown task 'tlab_doc_continuaton'" in err and "tlab_doc_continuation" in err.split("Close names:")[1]


def test_a_missing_lm_eval_is_a_clear_error(monkeypatch):
    import builtins

    from engine import task_accuracy
    from engine.spec import TaskAccuracySpec

    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name.startswith("lm_eval") else real(name, *a, **k))
    with pytest.raises(TlabError, match=r"pip install 'tradeoff-lab\[eval\]'"):
        task_accuracy.check_tasks(TaskAccuracySpec(("tlab_doc_continuation",)))
