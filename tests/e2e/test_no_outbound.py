"""Starting the app and walking through its pages makes no outbound network request (issue #15 §5).

The server (and every process it starts: the local worker included) runs under `strace -f`, which records
each connect()/sendto() with the address it targets; a real Chromium opens every page. Any IPv4/IPv6
address other than loopback fails the test, DNS lookups included (they connect to the resolver).
strace is installed by .ci/install_browser.sh.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import REPO, SHOTS, _free_port, _wait_healthy, requires_chromium, shot

pytestmark = [pytest.mark.e2e, requires_chromium,
              pytest.mark.skipif(shutil.which("strace") is None,
                                 reason="strace is missing: run .ci/install_browser.sh (CI does)")]

# sidebar label -> the page's title
PAGES = {"Experiment": "Experiment", "Training": "Training", "Results": "Results", "Jobs": "Jobs", "GPU Selector": "GPU Selector",
         "Reference": "Published reference measurements"}
INET = re.compile(r'sin6?_addr=inet_(?:addr|pton)\((?:AF_INET6, )?"([^"]+)"\)')
LOOPBACK = re.compile(r"^(127\.|::1$|::ffff:127\.)")


def outbound_addresses(strace_log: str) -> list[str]:
    """The non-loopback IP addresses that connect()/sendto() calls in an strace log aimed at."""
    found = []
    for line in strace_log.splitlines():
        if "connect(" not in line and "sendto(" not in line and "sendmsg(" not in line:
            continue
        found += [a for a in INET.findall(line) if not LOOPBACK.match(a) and a not in ("0.0.0.0", "::")]
    return found


def test_outbound_parser_sees_a_real_request():
    """The check itself can fail: a real connect() to a public address shows up in strace's log."""
    log = subprocess.run(["strace", "-f", "-e", "trace=connect", sys.executable, "-c",
                          "import socket\ns = socket.socket(); s.setblocking(False)\n"
                          "try: s.connect(('192.0.2.1', 80))\nexcept OSError: pass"],
                         capture_output=True, text=True, timeout=60).stderr
    assert outbound_addresses(log) == ["192.0.2.1"]


def test_starting_the_app_makes_no_outbound_request(tmp_path, page):
    home = tmp_path / "home"
    trace = tmp_path / "strace.log"
    env = {**os.environ, "TLAB_HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("TLAB_STORE_URL", None)
    env.pop("TLAB_APP_WORKER", None)  # the app starts its own worker, as for a user
    port = _free_port()
    log = tmp_path / "streamlit.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace),
                                 sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
                                 "--server.headless", "true"], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log, timeout_s=150)  # slower under strace
        page.goto(url)
        page.get_by_text("Tradeoff Lab").first.wait_for()
        for label, title in PAGES.items():
            page.get_by_test_id("stSidebarNav").get_by_text(label, exact=True).click()
            page.get_by_role("heading", name=title).first.wait_for(timeout=120_000)
        shot(page, "no_outbound_last_page")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "streamlit-no-outbound.log").write_text(log.read_text(errors="replace"))
    text = Path(trace).read_text(errors="replace")
    # The server's answers to the browser are in the trace: it saw the process's network calls.
    assert "sendto(" in text or "sendmsg(" in text, "strace recorded no network call at all: the trace did not work"
    assert outbound_addresses(text) == [], "the app reached outside this machine:\n" + "\n".join(
        line for line in text.splitlines() if any(a in line for a in outbound_addresses(text)))[:3000]
