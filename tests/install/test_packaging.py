"""Packaging checks that need no build: the wheel's package list, declared dependencies, and the
settings `tlab app` passes to Streamlit. tests/install/test_wheel.py builds and installs the real wheel."""

import ast
import re
import sys
from pathlib import Path

import pytest

from engine import app_launcher
from engine.cli import main

REPO = Path(__file__).resolve().parents[2]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
CONFIG = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())

# Import name -> distribution name, where they differ.
DIST_OF = {"modelopt": "nvidia-modelopt", "skimage": "scikit-image", "lm_eval": "lm-eval", "yaml": "pyyaml",
           "sklearn": "scikit-learn", "PIL": "pillow", "google": "protobuf"}
FIRST_PARTY = {"engine", "app", "pages", "tests", "tradeoff_lab_ui"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    return _norm(re.match(r"[A-Za-z0-9_.-]+", req).group(0))


def test_every_engine_package_is_listed():
    """pyproject lists the packages (the mapped folders need it): a new engine subpackage must be added."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.relative_to(REPO).parent.parts) for p in (REPO / "engine").rglob("__init__.py")}
    missing = found - listed
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    dirs = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert dirs == {"engine.assets": "assets", "tradeoff_lab_ui.app": "app", "tradeoff_lab_ui.pages": "pages",
                    "tradeoff_lab_ui.config": ".streamlit"}
    for pkg, folder in dirs.items():
        assert pkg in listed and (REPO / folder).is_dir()


def test_every_third_party_import_is_declared():
    project = PYPROJECT["project"]
    declared = {_req_name(r) for r in project["dependencies"]}
    for reqs in project["optional-dependencies"].values():
        declared |= {_req_name(r) for r in reqs}
    std = set(sys.stdlib_module_names)
    undeclared = {}
    for folder in ("engine", "app", "pages"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in std or top in FIRST_PARTY:
                        continue
                    if _norm(DIST_OF.get(top, top)) not in declared:
                        undeclared.setdefault(top, set()).add(str(path.relative_to(REPO)))
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_extras_document_the_heavier_parts():
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"trtllm", "eval", "diffusion", "ray", "test"} <= set(extras)
    assert "torch>=2.4" in PYPROJECT["project"]["dependencies"]  # a range: a GPU user keeps their CUDA build


def test_app_flags_come_from_the_config_file():
    root, config = app_launcher.ui_root()
    assert root == REPO and config == REPO / ".streamlit" / "config.toml"
    args = app_launcher.streamlit_args(root / "app" / "main.py", app_launcher.load_settings(config))
    assert args[:2] == ["run", str(REPO / "app" / "main.py")]
    flags = dict(a[2:].split("=", 1) for a in args[2:])
    # Every setting of the file is passed, so `tlab app` cannot drift from `streamlit run` in the checkout.
    assert len(flags) == sum(len(opts) for opts in CONFIG.values())
    for section, opts in CONFIG.items():
        for key, value in opts.items():
            assert flags[f"{section}.{key}"] == (str(value).lower() if isinstance(value, bool) else str(value))
    # The project's safe settings, as the issue asks for them.
    assert flags["server.address"] == "127.0.0.1"
    assert flags["server.enableXsrfProtection"] == "true"
    assert flags["server.headless"] == "true"
    assert flags["server.fileWatcherType"] == "none"
    assert flags["browser.gatherUsageStats"] == "false"
    assert "client.showErrorDetails" in flags and "server.maxUploadSize" in flags


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_app_accepts_loopback_hosts(host, capsys):
    assert main(["app", "--host", host, "--port", "8765", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "streamlit run" in out and f"--server.address={host}" in out and "--server.port=8765" in out


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_app_refuses_other_hosts(host, capsys):
    assert main(["app", "--host", host, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "without sign-in" in err and host in err


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"tlab {app_launcher.package_version()}"
