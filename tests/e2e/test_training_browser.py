"""In a real browser with the app's own worker: the Training page starts a tiny QAT run of the bundled model
(INT8 SmoothQuant, 3 steps of 1 x 32 tokens), its loss curve appears while it trains, and the finished run
shows its validation losses. About two minutes on an idle 2-core machine (most of it loading, evaluating and
checkpointing the model; six when other jobs share the cores)."""

import re

import pytest

from tests.e2e.conftest import requires_chromium, shot

pytestmark = [pytest.mark.e2e, pytest.mark.browser, requires_chromium]
START_ENABLED = ("() => { const b = [...document.querySelectorAll('button')]"
                 ".find(b => b.innerText.trim() == 'Start training'); return b && !b.disabled; }")
TINY = {"Steps": 3, "Sequence length (tokens)": 32, "Batch size": 1}
ADVANCED = {"Warm-up steps": 1, "Evaluation tokens": 64, "Calibration sequences": 2}


def _fill(page, fields: dict) -> None:
    for label, value in fields.items():
        field = page.get_by_role("spinbutton", name=label, exact=True)
        field.fill(str(value))
        field.press("Enter")
        page.wait_for_timeout(400)  # let the rerun the value causes finish before the next one


def test_a_tiny_qat_run_trains_with_a_live_loss_curve(app_url, page):
    page.goto(app_url + "/training")
    page.wait_for_function(START_ENABLED)
    _fill(page, TINY)
    page.get_by_text("Advanced").click()
    _fill(page, ADVANCED)
    page.wait_for_function(START_ENABLED)
    page.get_by_role("button", name="Start training").click()
    queued = page.get_by_text(re.compile(r"^Queued job #\d+"))
    refused = page.get_by_text("A value changed as you clicked Run")
    queued.or_(refused).wait_for()
    if refused.count():  # a rerun was still on its way with the click: the page shows the values now
        page.get_by_role("button", name="Start training").click()
        queued.wait_for()

    page.locator(".js-plotly-plot").first.wait_for(timeout=400_000)  # the first logged step
    page.mouse.move(0, 0)
    shot(page, "training-live")
    page.get_by_text("See it on the Results page").wait_for(timeout=600_000)  # done (slow when the CPU is shared)
    page.set_viewport_size({"width": 1400, "height": 2600})  # the figures and the whole curve in one shot
    page.mouse.move(0, 0)  # no tooltip over the page
    shot(page, "training-done")
    body = page.locator("body").inner_text()
    for stage in ("Original model", "Fine-tuned baseline (BF16)", "INT8 SmoothQuant (PTQ)",
                  "INT8 SmoothQuant (after QAT)"):
        assert stage in body
    from engine.store import open_store

    store = open_store()
    try:
        job = store.list_jobs(limit=1)[0]
        assert job["status"] == "done" and job["fn"] == "engine.training.run:run_training_job"
        spec = job["payload"]["spec"]
        assert (spec["precision"], spec["steps"], spec["seq_len"], spec["batch_size"], spec["eval_tokens"]) == \
            ("int8_sq", 3, 32, 1, 64)
        assert len(job["result_ids"]) == 2
    finally:
        store.close()
