"""End to end in a real browser: open the app, run the demo sweep on the bundled model, watch the job
finish, see points on the results chart, download the CSV and the chart's PNG.

Runs `streamlit run app/main.py` (which starts its own worker) on a free local port with a fresh
TLAB_HOME and drives Debian's Chromium (/usr/bin/chromium; .ci/install_browser.sh installs it) with
Playwright (fixtures `app_url` and `page` in conftest.py). Screenshots of every page go to
artifacts/screenshots/. Takes a few minutes: the demo really calibrates, evaluates and benchmarks the
bundled model.
"""

import csv
import io
import re

import pytest

from engine.runtimes.torch.kernels import int8_probe_exact
from tests.e2e.conftest import SHOTS, requires_chromium
from tests.e2e.conftest import shot as _shot
from tests.e2e.conftest import wait_for_jobs

JOB_TIMEOUT_S = 1200  # all demo jobs; a loaded 2-core CPU needs several minutes

pytestmark = [pytest.mark.e2e, pytest.mark.browser, requires_chromium]


def _wait_for_jobs(page) -> None:
    wait_for_jobs(page, JOB_TIMEOUT_S, "")


def test_demo_sweep_from_first_screen_to_pareto_chart_and_csv(app_url, page):
    page.goto(app_url)
    page.get_by_role("heading", name="Tradeoff Lab").wait_for()
    page.get_by_role("heading", name="This machine").wait_for()
    _shot(page, "home_first_screen")

    page.get_by_role("button", name="Run the demo sweep").click()
    page.wait_for_url(re.compile(r"/jobs$"))
    page.get_by_text(re.compile("Demo sweep")).first.wait_for()
    _wait_for_jobs(page)
    _shot(page, "jobs_done")

    page.get_by_role("link", name="See the results").click()
    page.wait_for_url(re.compile(r"/results$"))
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for()
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .scatterlayer .points path, "
                           ".js-plotly-plot .barlayer .point').length > 0")
    _shot(page, "results")
    # The demo times its recipes (the runtime adds rounds while a busy machine makes them noisy): the
    # trade-off chart with measured speedups and its frontier. Where the host stays too noisy even so
    # (hypervisor steal reached 60% on the CI machine), the speedup is refused and the page must say
    # why, with the speed itself still measured: never an invented speedup, never a missing measurement.
    # A CPU without AVX512-VNNI computes INT8 wrongly, so INT8 is not timed there and the page says why.
    int8_why = int8_probe_exact()
    points = page.locator(".js-plotly-plot .scatterlayer .trace .points path")
    body = page.inner_text("body")
    if int8_why:
        assert "AVX512-VNNI" in body, body[-1500:]
    # the baseline and the recipes with CPU kernels (INT8 SQ where exact, INT4 AWQ)
    measured = points.count() >= (2 if int8_why else 3)
    if measured:
        assert "Pareto frontier" in chart.inner_text()
    else:
        assert re.search(r"varied by \d+% between runs", body), "no speedup and no reason: " + body[-1500:]

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download CSV").click()
    csv_path = SHOTS.parent / "results.csv"
    download_info.value.save_as(csv_path)
    rows = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    assert len(rows) >= 3 and {"precision", "ppl_increase_pct", "provenance"} <= set(rows[0])
    assert "bf16" in {r["precision"] for r in rows}
    timed = {r["precision"]: r for r in rows if r.get("speed_provenance") == "measured"}
    assert {"bf16", "int4_awq"} | (set() if int8_why else {"int8_sq"}) <= set(timed)
    assert all(float(r["decode_tokens_per_sec_bs1"]) > 0 for r in timed.values())
    if measured:
        assert any(r.get("speedup") and float(r["speedup"]) > 0 for r in rows)

    # The speed axis for a GPU to deploy on: every recipe gets an estimated point (FP8 too) and a front.
    page.get_by_text("a catalog GPU (estimated)").click()
    page.wait_for_function("[...document.querySelectorAll('.js-plotly-plot')].some("
                           "p => p.innerText.includes('Pareto frontier (estimated speed)'))")
    estimated = page.locator(".js-plotly-plot").first
    assert estimated.locator(".scatterlayer .trace .points path").count() >= 4  # BF16, FP8, INT8, INT4
    _shot(page, "results_estimated_gpu")
    chart = estimated

    chart.hover()
    with page.expect_download() as png_info:
        chart.locator(".modebar-btn[data-title*='png' i]").first.click()  # plotly's own client-side export
    png_path = SHOTS.parent / "chart.png"
    png_info.value.save_as(png_path)
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    for name in ("experiment", "reference", "gpu_selector"):
        page.goto(f"{app_url}/{name}")
        page.get_by_role("heading", name="This machine").wait_for()
        page.wait_for_timeout(2000)
        assert not page.locator("[data-testid='stException']").count(), f"{name} page raised"
        _shot(page, name)
