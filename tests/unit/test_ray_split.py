"""The Ray executor's split of a job into parts, and its dispatch choices (no Ray needed)."""

import pytest

from engine.errors import TlabError
from engine.jobs.ray_split import SWEEP_FN, job_progress, plan_job, resources_for, results_to_save
from engine.spec import DataSpec, Recipe, SweepSpec

RECIPES = (Recipe("int8_sq"), Recipe("int4_awq"), Recipe("w4a8_awq"), Recipe("fp8"))


def _spec(device="cpu", recipes=RECIPES) -> SweepSpec:
    return SweepSpec(recipes=recipes, data=DataSpec(calib_size=2, eval_tokens=256), device=device)


def _payload(spec: SweepSpec) -> dict:
    return {"spec": spec.to_dict()}


def test_each_recipe_is_one_part_with_the_baseline():
    spec = _spec()
    plan = plan_job(SWEEP_FN, _payload(spec), lambda _id: False, cluster_has_gpu=False)
    ids = [e.id for e in spec.experiments()]  # the ids the pipeline gives the results on this CPU
    assert plan.result_ids == ids and plan.reused == []
    assert len(plan.parts) == 4
    for part, recipe, rid in zip(plan.parts, RECIPES, ids[1:]):
        sub = SweepSpec.from_dict(part.payload["spec"])
        assert sub.recipes == (Recipe(), recipe)  # baseline + this recipe: the pipeline runs it unchanged
        assert [e.id for e in sub.experiments()] == [ids[0], rid] == list(part.result_ids)
        assert part.fn == SWEEP_FN and part.resources == {"num_cpus": 1, "num_gpus": 0}
    assert len({p.key for p in plan.parts}) == 4


def test_finished_recipes_are_not_dispatched():
    spec = _spec()
    ids = [e.id for e in spec.experiments()]
    finished = {ids[0], ids[1], ids[3]}
    plan = plan_job(SWEEP_FN, _payload(spec), finished.__contains__, cluster_has_gpu=False)
    assert sorted(plan.reused) == sorted(finished)
    assert [p.result_ids[1] for p in plan.parts] == [ids[2], ids[4]]


def test_only_the_baseline_missing_runs_alone_and_nothing_missing_runs_nothing():
    spec = _spec()
    ids = [e.id for e in spec.experiments()]
    plan = plan_job(SWEEP_FN, _payload(spec), lambda i: i != ids[0], cluster_has_gpu=False)
    assert len(plan.parts) == 1 and plan.parts[0].result_ids == (ids[0],)
    assert SweepSpec.from_dict(plan.parts[0].payload["spec"]).recipes == (Recipe(),)
    plan = plan_job(SWEEP_FN, _payload(spec), lambda _id: True, cluster_has_gpu=False)
    assert plan.parts == [] and plan.result_ids == ids
    assert job_progress({}) == (1.0, "reused every result already in the store")


def test_gpu_parts_ask_for_a_gpu_of_the_given_type():
    assert resources_for("cuda:3", True, "H100") == ("cuda", {"num_cpus": 1, "num_gpus": 1, "accelerator_type": "H100"})
    assert resources_for("auto", True) == ("cuda", {"num_cpus": 1, "num_gpus": 1})
    assert resources_for("auto", False) == ("cpu", {"num_cpus": 1, "num_gpus": 0})
    assert resources_for("cpu", True) == ("cpu", {"num_cpus": 1, "num_gpus": 0})
    plan = plan_job(SWEEP_FN, _payload(_spec(device="cuda:1")), lambda _id: False, True, "A100")
    sub = SweepSpec.from_dict(plan.parts[0].payload["spec"])
    assert sub.device == "cuda" and plan.parts[0].resources["accelerator_type"] == "A100"
    # the ids are those of a sweep on "cuda", as the pipeline names them on the GPU node
    assert plan.result_ids == [e.id for e in _spec(device="cuda").experiments()]


@pytest.mark.bad_input
def test_a_gpu_sweep_on_a_cluster_without_gpus_is_refused_with_what_to_do():
    with pytest.raises(TlabError, match="no GPU.*ray start --address"):
        plan_job(SWEEP_FN, _payload(_spec(device="cuda")), lambda _id: False, cluster_has_gpu=False)


@pytest.mark.bad_input
def test_a_malformed_sweep_payload_is_refused():
    with pytest.raises(TlabError, match="payload must be"):
        plan_job(SWEEP_FN, {"spec": {}, "extra": 1}, lambda _id: False, cluster_has_gpu=False)


def test_other_job_functions_run_as_one_part():
    plan = plan_job("engine.training.run:run_training_job", {"x": 1}, lambda _id: False, cluster_has_gpu=True)
    assert [(p.key, p.fn, p.payload) for p in plan.parts] == [("job", "engine.training.run:run_training_job", {"x": 1})]


def test_the_shared_baseline_is_saved_once_and_reused_results_never():
    saved, reused = {"base"}, {"old"}
    returned = [{"id": "base"}, {"id": "new"}, {"id": "old"}]
    assert results_to_save(returned, saved, reused) == [{"id": "new"}]


def test_job_progress_averages_parts_and_names_a_running_one():
    fraction, stage = job_progress({"a": {"fraction": 1.0, "state": "done"},
                                    "b": {"fraction": 0.5, "state": "running", "stage": "calibrating"}})
    assert fraction == pytest.approx(0.75)
    assert stage == "on Ray: 1/2 part(s) finished; b: calibrating"


@pytest.mark.bad_input
def test_worker_refuses_an_unknown_executor_and_a_missing_ray_address(monkeypatch, capsys):
    from engine.jobs.worker import main

    monkeypatch.setenv("TLAB_EXECUTOR", "spark")
    assert main(["--once"]) == 2
    assert "use local or ray" in capsys.readouterr().err
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["--once", "--executor", "ray"]) == 2
    err = capsys.readouterr().err
    assert "--ray-address" in err or "pip install 'tradeoff-lab[ray]'" in err


def test_log_lines_are_forwarded_once_even_when_the_stored_log_scrolls():
    from engine.jobs.ray_split import new_lines

    assert new_lines([], ["a", "b"]) == ["a", "b"]
    assert new_lines(["a"], ["a", "b"]) == ["b"]
    assert new_lines(["a", "b", "c"], ["b", "c", "d"]) == ["d"]  # "a" scrolled off the kept tail
    assert new_lines(["x"], ["y"]) == ["y"]


@pytest.mark.bad_input
def test_a_gpu_type_no_machine_has_is_refused_before_dispatch():
    from engine.jobs.ray_split import check_feasible

    plan = plan_job(SWEEP_FN, _payload(_spec(device="cuda")), lambda _id: False, True, "H100")
    with pytest.raises(TlabError, match="No machine in the Ray cluster has a H100 GPU.*A100"):
        check_feasible(plan.parts, {"CPU": 8.0, "GPU": 2.0, "accelerator_type:A100": 1.0})
    check_feasible(plan.parts, {"CPU": 8.0, "GPU": 2.0, "accelerator_type:H100": 1.0})  # takes it


def test_no_more_parts_than_the_cluster_runs_at_once_and_each_loads_the_model_once():
    spec = _spec()
    ids = [e.id for e in spec.experiments()]
    plan = plan_job(SWEEP_FN, _payload(spec), lambda _id: False, False, cluster={"CPU": 2.0, "memory": 1e9})
    assert len(plan.parts) == 2
    subs = [SweepSpec.from_dict(p.payload["spec"]) for p in plan.parts]
    assert [s.recipes for s in subs] == [(Recipe(), RECIPES[0], RECIPES[2]), (Recipe(), RECIPES[1], RECIPES[3])]
    assert sorted({i for p in plan.parts for i in p.result_ids}) == sorted(ids)
    assert plan.parts[0].key == "INT8 SmoothQuant, W4A8 AWQ"
    # GPU parts count GPUs, not CPUs; a cluster with room for all runs one part per recipe
    gpu = plan_job(SWEEP_FN, _payload(_spec(device="cuda")), lambda _id: False, True,
                   cluster={"CPU": 64.0, "GPU": 3.0})
    assert len(gpu.parts) == 3
    assert len(plan_job(SWEEP_FN, _payload(spec), lambda _id: False, False, cluster={"CPU": 16.0}).parts) == 4
