"""The Experiment page with a local diffusers pipeline folder: prompts for a text-to-image pipeline, labels for a
class-conditional one, and the web policy (folders outside the allowed ones are not looked at)."""

import shutil

import pytest

from app.state import SWEEP_FN
from engine.spec import SweepSpec
from tests import diffusion_tiny
from tests.app.conftest import open_page

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-pipelines")
    return {"labels": diffusion_tiny.class_conditional(root / "cc"), "prompts": diffusion_tiny.text_to_image(root / "t2i")}


def _folder_form(at, folder):
    at.radio(key="sweep_kind").set_value("diffusion").run()
    at.radio(key="diff_model").set_value("folder").run()
    at.text_input(key="diff_folder").set_value(str(folder)).run()
    assert not at.exception, at.exception
    return at


def test_text_to_image_folder_shows_prompts_and_queues_its_sweep(app_home, built, tmp_path):
    from engine.paths import tlab_home

    folder = shutil.copytree(built["prompts"], tlab_home() / "pipelines" / "t2i")  # under the allowed folder
    at = _folder_form(open_page("experiment", timeout=180), folder)
    assert "diff_labels" not in {w.key for w in at.multiselect}
    assert any("text-to-image" in c.value and "32x32" in c.value for c in at.caption)
    at.text_area(key="diff_prompts").set_value("a cat\n\na dog\n")
    at.number_input(key="diff_steps").set_value(3)
    at.checkbox(key="diff_measure_speed").uncheck()
    at.text_input(key="exp_name").set_value("t2i-sweep").run()
    assert not [w.value for w in at.warning]
    at.button(key="run_diffusion_sweep").click().run()
    jobs = app_home.list_jobs()
    assert len(jobs) == 1 and jobs[0]["fn"] == SWEEP_FN
    spec = SweepSpec.from_dict(jobs[0]["payload"]["spec"])
    assert spec.model.source == str(folder) and not spec.model.trust_remote_code
    assert (spec.generation.prompts, spec.generation.labels, spec.generation.steps) == (("a cat", "a dog"), (), 3)
    assert str(folder) in jobs[0]["title"]


def test_empty_prompts_are_refused_on_the_page(app_home, built):
    from engine.paths import tlab_home

    folder = shutil.copytree(built["prompts"], tlab_home() / "t2i")
    at = _folder_form(open_page("experiment", timeout=180), folder)
    at.text_area(key="diff_prompts").set_value("  \n").run()
    assert any("prompts" in w.value for w in at.warning)
    assert at.button(key="run_diffusion_sweep").disabled


def test_class_conditional_folder_takes_labels_and_records_its_image_side(app_home, built):
    from engine.paths import tlab_home

    folder = shutil.copytree(built["labels"], tlab_home() / "cc")
    at = _folder_form(open_page("experiment", timeout=180), folder)
    assert "diff_prompts" not in {w.key for w in at.text_area}
    at.text_input(key="diff_class_labels").set_value("0, 2").run()
    at.button(key="run_diffusion_sweep").click().run()
    spec = SweepSpec.from_dict(app_home.list_jobs()[0]["payload"]["spec"])
    assert spec.generation.labels == (0, 2) and spec.workload.input_len == 16


def test_folders_outside_the_allowed_ones_are_not_looked_at(app_home, built):
    at = _folder_form(open_page("experiment", timeout=180), built["prompts"])  # not under TLAB_HOME
    assert any("outside the folders" in w.value for w in at.warning)
    assert not any("text-to-image" in c.value for c in at.caption)  # nothing was read from it
    assert at.button(key="run_diffusion_sweep").disabled


def test_a_pickle_only_folder_is_refused_on_the_page(app_home, built):
    from engine.paths import tlab_home

    folder = shutil.copytree(built["labels"], tlab_home() / "pickled")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").rename(folder / "unet" / "diffusion_pytorch_model.bin")
    at = _folder_form(open_page("experiment", timeout=180), folder)
    assert any("pickle" in w.value for w in at.warning)
    assert at.button(key="run_diffusion_sweep").disabled


def test_scheduler_and_resolution_reach_the_job_and_a_bad_side_is_refused(app_home, built):
    from engine.paths import tlab_home

    folder = shutil.copytree(built["prompts"], tlab_home() / "pipelines" / "t2i-settings")
    at = _folder_form(open_page("experiment", timeout=180), folder)
    assert at.selectbox(key="diff_scheduler").value == "default"  # the pipeline's own, named
    assert "DDIMScheduler" in at.selectbox(key="diff_scheduler").format_func("default")
    assert at.number_input(key="diff_resolution").value == 32
    at.number_input(key="diff_resolution").set_value(36).run()
    assert any("multiple of 8" in w.value for w in at.warning)
    assert at.button(key="run_diffusion_sweep").disabled
    at.number_input(key="diff_resolution").set_value(64).run()
    at.selectbox(key="diff_scheduler").set_value("euler").run()
    at.button(key="run_diffusion_sweep").click().run()
    spec = SweepSpec.from_dict(app_home.list_jobs()[0]["payload"]["spec"])
    assert (spec.generation.scheduler, spec.generation.resolution) == ("euler", 64)
    assert spec.workload.input_len == 64  # the speed stage's image side


def test_the_bundled_model_says_its_sampler_and_size(app_home):
    at = open_page("experiment", timeout=180)
    at.radio(key="sweep_kind").set_value("diffusion").run()
    assert "diff_scheduler" not in {w.key for w in at.selectbox}
    assert any("Sampler: DDIM" in c.value and "16x16" in c.value for c in at.caption)
