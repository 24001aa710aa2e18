"""App tests: Streamlit AppTest against a store in a temporary TLAB_HOME, no background worker."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `tests.app.results_data`, `tests.helpers_jobs`
    sys.path.insert(0, str(REPO))

MAIN = str(REPO / "app" / "main.py")
PAGES = ["home", "experiment", "training", "jobs", "results", "reference", "gpu_selector"]


TEAM_PASSWORD = "correct horse battery"


@pytest.fixture
def team(app_home, monkeypatch, tmp_path):
    """A store with password sign-in on: alice and bob (users), carol (administrator), all TEAM_PASSWORD."""
    from engine import auth

    monkeypatch.setenv(auth.AUTH_ENV, "password")
    monkeypatch.delenv(auth.ADMINS_ENV, raising=False)
    monkeypatch.setattr(auth, "secrets_files", lambda cwd=None: [tmp_path / "no-secrets.toml"])
    for name, admin in (("alice", False), ("bob", False), ("carol", True)):
        app_home.add_user(name, auth.hash_password(TEAM_PASSWORD), is_admin=admin)
    return app_home


@pytest.fixture
def app_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TLAB_STORE_URL", raising=False)
    monkeypatch.setenv("TLAB_APP_WORKER", "0")  # tests run jobs themselves when they need to
    monkeypatch.setenv("TLAB_JOB_MODULES", "tests")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    from engine.store import open_store

    store = open_store()
    yield store
    store.close()


def open_page(name: str, timeout: float = 60):
    """An AppTest on page `name` (a file in pages/), run once."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(MAIN, default_timeout=timeout).run()
    if name != "home":
        at.switch_page(f"../pages/{name}.py").run()
    return at


def plotly_figures(at) -> list[dict]:
    """The plotly figure specs (JSON dicts) rendered on the page."""
    import json

    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def trace_values(values) -> list:
    """A plotly trace's x/y as a list (plotly 6 sends numpy arrays as {"dtype", "bdata"} base64)."""
    import base64

    import numpy as np

    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)
