"""End to end in a real browser: open the app, go to the GPU Selector from the sidebar, choose a model,
a workload preset, two GPUs and two precisions, and check the ranked table, the "best choice" sentence
and the throughput-vs-batch chart that come back. No jobs run; the one slow step is the estimator's
first calibration fit (cached under $TLAB_HOME/cache), 10-30 s on a loaded 2-core machine.
Screenshot: artifacts/screenshots/gpu_selector.png.
"""

import re

import pytest

from tests.e2e.conftest import requires_chromium, shot

pytestmark = [pytest.mark.e2e, requires_chromium]

MODEL = "meta-llama/Llama-3.1-8B"
WORKLOAD = "summarization"  # engine.perf.selector.WORKLOADS: ISL 8192, OSL 256
GPUS = ["h100-sxm", "h200"]
PRECISIONS = ["bf16", "fp8"]
FIT_TIMEOUT_MS = 150_000  # the first calibration fit, on a busy machine


def _choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label` (typing filters the long lists)."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    box.fill("")  # the box shows the current choice; type over it
    box.press_sequentially(option.split("/")[-1])
    page.get_by_role("option", name=option, exact=True).click()
    assert box.input_value() == option


def _replace_selection(page, label: str, options: list[str]) -> None:
    """Clear the multiselect labelled `label` and select `options`, one at a time as a person would.
    (Tags are found by CSS: the open dropdown hides them from the accessibility tree.)"""
    widget = page.get_by_test_id("stMultiSelect").filter(has=page.get_by_text(label, exact=True))
    widget.get_by_role("button", name="Clear all").click()
    tags = widget.locator("[data-tag]")
    page.wait_for_function("n => n.querySelectorAll('[data-tag]').length === 0", arg=widget.element_handle())
    for option in options:
        box = widget.get_by_role("combobox")
        box.click()
        box.press_sequentially(option)
        page.get_by_test_id("stMultiSelectDropdown").get_by_role("option", name=option, exact=True).click()
        tags.filter(has=page.locator(f"[title='{option}']")).wait_for()
    page.keyboard.press("Escape")
    assert [t.strip() for t in tags.all_inner_texts()] == options


def _wait_idle(page) -> None:
    """Until Streamlit says the script is no longer running (its status widget shows "Running…")."""
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')"
                           " || !/Running/i.test(document.querySelector('[data-testid=\"stStatusWidget\"]').innerText)",
                           timeout=FIT_TIMEOUT_MS)


def _grid_column(grid, name: str) -> list[str]:
    """The visible cells of column `name` in a Streamlit dataframe (glide-data-grid keeps an accessible
    <table> of the cells in view; scroll right until the column is among them)."""
    headers = grid.locator("th[role='columnheader']")
    headers.first.wait_for(state="attached")
    grid.locator(".dvn-scroller").evaluate("el => el.scrollTo(0, 0)")
    grid.page.wait_for_timeout(300)
    for _ in range(20):
        for i in range(headers.count()):
            if headers.nth(i).inner_text().strip() == name:
                col = headers.nth(i).get_attribute("aria-colindex")
                return [t.strip() for t in grid.locator(f"td[role='gridcell'][aria-colindex='{col}']").all_inner_texts()]
        grid.locator(".dvn-scroller").evaluate("el => el.scrollBy(400, 0)")
        grid.page.wait_for_timeout(300)
    raise AssertionError(f"no column {name!r} in the table; headers: {headers.all_inner_texts()}")


def test_gpu_selector_ranks_the_chosen_gpus_and_plots_them(app_url, page):
    page.goto(app_url)
    page.get_by_role("heading", name="Tradeoff Lab").wait_for()
    page.get_by_test_id("stSidebarNav").get_by_role("link", name="GPU Selector").click()
    page.wait_for_url(re.compile(r"/gpu_selector$"))
    page.get_by_role("heading", name="GPU Selector").wait_for()

    _choose(page, "Model", MODEL)
    _choose(page, "Workload", WORKLOAD)
    page.get_by_text(f"Preset {WORKLOAD}: ISL 8192, OSL 256").wait_for()
    _wait_idle(page)  # the lengths are new widgets (keyed by preset): the old ones go at the end of the run
    assert page.get_by_role("spinbutton", name="Input tokens (ISL)").input_value() == "8192"
    assert page.get_by_role("spinbutton", name="Output tokens (OSL)").input_value() == "256"
    _replace_selection(page, "Precisions", PRECISIONS)
    _replace_selection(page, "Candidate GPUs", GPUS)

    # Once the "best choice" sentence names one of the chosen GPUs, the page shows the new selection.
    best = page.get_by_test_id("stAlert").filter(has_text="cheapest option")
    best.filter(has_text=re.compile(rf"^\W*({'|'.join(GPUS)}) with ")).wait_for(timeout=FIT_TIMEOUT_MS)
    _wait_idle(page)
    assert not page.get_by_test_id("stException").count(), page.get_by_test_id("stException").all_inner_texts()
    sentence = best.inner_text()
    # (the page writes "<="; Streamlit's markdown shows it as "≤")
    assert re.search(r"TTFT (<=|≤) 2000 ms and TPOT (<=|≤) 50 ms", sentence), sentence
    assert re.search(r"about \$[\d.]+ per million output tokens at batch \d+", sentence), sentence

    grid = page.get_by_test_id("stDataFrame").last  # the prices editor (in a closed expander) comes first
    page.get_by_role("heading", name="Ranked options").wait_for()
    gpu_col, precision_col = _grid_column(grid, "gpu"), _grid_column(grid, "precision")
    rank_col, tp_col = _grid_column(grid, "rank"), _grid_column(grid, "tp")
    assert len(gpu_col) == len(GPUS) * len(PRECISIONS) * 2, gpu_col  # default TP 1 and 2
    assert set(gpu_col) == set(GPUS) and set(precision_col) == set(PRECISIONS), (gpu_col, precision_col)
    top = rank_col.index("1")
    assert sentence.strip().lstrip("🏆").strip().startswith(
        f"{gpu_col[top]} with {precision_col[top]} at TP{tp_col[top]} "), (sentence, gpu_col[top])
    provenance = _grid_column(grid, "provenance")
    assert provenance and set(provenance) == {"estimated"}, provenance

    chart = page.locator(".js-plotly-plot").first
    chart.wait_for()
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot .scatterlayer .trace .lines path').length > 0")
    assert "Throughput per GPU vs batch (estimated)" in chart.locator(".gtitle").text_content()
    legend = [t.strip() for t in chart.locator(".legendtext").all_text_contents()]
    curves = [t for t in legend if "(" not in t]  # published/measured points are labelled "(published)"
    assert curves and all(re.match(rf"({'|'.join(GPUS)}) · ({'|'.join(PRECISIONS)}) · TP[12]$", t) for t in curves), legend

    memory = page.locator(".js-plotly-plot").nth(1)  # weights / KV cache / activations per plotted option
    memory.locator(".barlayer .point").first.wait_for()
    assert "Memory per GPU (estimated)" in memory.locator(".gtitle").text_content()

    page.set_viewport_size({"width": 1400, "height": 2600})  # the whole page, memory chart included
    grid.locator(".dvn-scroller").evaluate("el => el.scrollTo(0, 0)")  # the screenshot shows the table's start
    page.evaluate("document.activeElement && document.activeElement.blur()")  # no focus ring in the picture
    shot(page, "gpu_selector_ranked")
