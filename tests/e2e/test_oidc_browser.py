"""OIDC sign-in end to end in a real browser, against a real OpenID provider over HTTP.

The identity provider is oidc-provider-mock (a Flask/Authlib OpenID provider with a sign-in form) on a free
127.0.0.1 port. The app is started as a deployer does (docs/deploy_team.md): `tlab app` from a folder whose
.streamlit/secrets.toml holds the [auth] section, with TLAB_AUTH=oidc. Chromium signs alice in through the
provider's form, she queues the demo sweep (no worker runs, so it stays queued and costs nothing), signs out
through the provider's end-session page; bob signs in and may not cancel her jobs; neither may mallory, whose
provider calls the address alice@example.com unverified; alice signs in again and cancels one. Subjects are
opaque ids, as real providers issue them: the app must name users by their (verified) e-mail.
"""

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import urllib.request
from urllib.parse import quote

import pytest

from tests.e2e.conftest import REPO, SHOTS, _free_port, _wait_healthy, requires_chromium, shot

pytestmark = [pytest.mark.e2e, pytest.mark.browser, requires_chromium]
# sub, email, email_verified. Mallory's provider lets her type any address: unverified, it must not make her alice.
USERS = {"alice": ("0f3a-alice", "alice@example.com", True), "bob": ("7c21-bob", "bob@example.com", True),
         "mallory": ("9d4e-mallory", "alice@example.com", False)}


@pytest.fixture
def idp_url():
    """oidc-provider-mock on 127.0.0.1 (its run_server_in_thread binds "localhost", which may not be IPv4)."""
    pytest.importorskip("oidc_provider_mock", reason="pip install -e '.[test]' installs oidc-provider-mock")
    import oidc_provider_mock
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, oidc_provider_mock.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        for sub, email, verified in USERS.values():  # the claims the provider returns for each subject
            body = json.dumps({"email": email, "email_verified": verified, "name": sub}).encode()
            req = urllib.request.Request(f"{url}/users/{quote(sub)}", data=body, method="PUT",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 204
        yield url
    finally:
        server.shutdown()
        thread.join(5)


@pytest.fixture
def oidc_app(idp_url, tmp_path, monkeypatch, request):
    """`tlab app` with TLAB_AUTH=oidc, started from a folder with .streamlit/secrets.toml; no worker."""
    pytest.importorskip("authlib", reason="pip install 'streamlit[auth]' (in the test extra)")
    monkeypatch.setenv("TLAB_AUTH", "oidc")
    monkeypatch.setenv("TLAB_APP_WORKER", "0")  # queued jobs stay queued: only their owner matters here
    monkeypatch.delenv("TLAB_ADMINS", raising=False)  # nobody is an administrator
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    site = tmp_path / "site"
    (site / ".streamlit").mkdir(parents=True)
    (site / ".streamlit" / "secrets.toml").write_text(
        "[auth]\n"
        f'redirect_uri = "{url}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(32)}"\n'
        'client_id = "tradeoff-lab"\n'
        f'client_secret = "{secrets.token_urlsafe(16)}"\n'
        f'server_metadata_url = "{idp_url}/.well-known/openid-configuration"\n')
    log = tmp_path / "streamlit.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "app", "--port", str(port)], cwd=site,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / f"streamlit-{request.node.name}.log").write_text(log.read_text(errors="replace"))


def _sign_in(page, app_url: str, idp_url: str, who: str) -> str:
    """Sign `who` in through the provider's form; the name the app's sidebar shows."""
    sub = USERS[who][0]
    page.goto(app_url)
    page.get_by_role("heading", name="Sign in").wait_for()
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile("^" + re.escape(idp_url) + "/oauth2/authorize"))  # the provider's own form
    page.get_by_placeholder("sub").fill(sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(re.compile("^" + re.escape(app_url)))
    signed = page.get_by_test_id("stSidebar").get_by_text(re.compile("Signed in as"))
    signed.wait_for()
    return signed.inner_text().split("Signed in as", 1)[1].strip()


def _sign_out(page, app_url: str, idp_url: str) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile("^" + re.escape(idp_url) + "/oauth2/end_session"))  # RP-initiated logout
    page.get_by_role("button", name="End session").click()
    page.wait_for_url(re.compile("^" + re.escape(app_url)))
    page.get_by_role("heading", name="Sign in").wait_for()
    assert "Signed in as" not in page.inner_text("body")


def _jobs_page(page, app_url: str) -> str:
    """Open the Jobs page and return its text once the queued jobs are listed."""
    page.goto(app_url + "/jobs")
    page.get_by_role("heading", name="Jobs").wait_for()
    page.get_by_text(re.compile(r"Waiting for the worker")).first.wait_for()
    return page.inner_text("body")


def _cancel_button(page, job_id: int):
    # Streamlit marks a keyed widget's container st-key-<key> (it also holds a hidden copy for measuring)
    return page.locator(f".st-key-cancel_{job_id}").get_by_role("button", name="Cancel")


def test_oidc_sign_in_owns_jobs_and_signs_out(oidc_app, idp_url, page):
    from engine.store import open_store

    page.goto(oidc_app + "/jobs")  # a page's own address shows the sign-in too
    page.get_by_role("heading", name="Sign in").wait_for()
    shot(page, "oidc_sign_in")
    assert page.get_by_role("heading", name="Jobs").count() == 0
    assert page.get_by_role("link", name="Jobs").count() == 0  # no navigation either: nothing but the button

    assert _sign_in(page, oidc_app, idp_url, "alice") == "alice@example.com"  # the e-mail, not the sub
    page.get_by_role("heading", name="Tradeoff Lab").wait_for()
    sidebar = page.get_by_test_id("stSidebar").inner_text()
    assert "Signed in as alice@example.com" in sidebar and "administrator" not in sidebar
    page.mouse.move(0, 0)
    shot(page, "oidc_signed_in")

    page.get_by_role("button", name="Run the demo sweep").click()
    page.wait_for_url(re.compile(r"/jobs$"))
    store = open_store()
    try:
        jobs = [j["id"] for j in store.list_jobs(limit=50)]
        assert jobs and {j["owner"] for j in store.list_jobs(limit=50)} == {"alice@example.com"}  # not the sub
        body = _jobs_page(page, oidc_app)
        assert body.count("by alice@example.com") == len(jobs)
        for job_id in jobs:
            _cancel_button(page, job_id).wait_for()  # visible (the board redraws every 2 s)
        shot(page, "oidc_alice_jobs")
        _sign_out(page, oidc_app, idp_url)
        shot(page, "oidc_signed_out")
        page.reload()  # the identity cookie is gone, not only this browser session's state
        page.get_by_role("heading", name="Sign in").wait_for()

        assert _sign_in(page, oidc_app, idp_url, "bob") == "bob@example.com"
        body = _jobs_page(page, oidc_app)
        assert body.count("started by alice@example.com") == len(jobs)
        assert page.locator("[class*='st-key-cancel_']").count() == 0
        page.get_by_text("Housekeeping").click()  # forgetting everyone's finished jobs: administrators only
        page.get_by_text("Only an administrator can forget finished jobs.").wait_for()
        assert page.get_by_role("button", name="Forget finished jobs").count() == 0
        shot(page, "oidc_bob_jobs")
        _sign_out(page, oidc_app, idp_url)

        assert _sign_in(page, oidc_app, idp_url, "mallory") == "9d4e-mallory"  # her subject, not alice's address
        body = _jobs_page(page, oidc_app)
        assert body.count("started by alice@example.com") == len(jobs)
        assert page.locator("[class*='st-key-cancel_']").count() == 0
        _sign_out(page, oidc_app, idp_url)

        assert _sign_in(page, oidc_app, idp_url, "alice") == "alice@example.com"
        _jobs_page(page, oidc_app)
        _cancel_button(page, jobs[-1]).click()
        page.get_by_text(f"Job {jobs[-1]}: cancelled").wait_for()
        after = {j["id"]: j["status"] for j in store.list_jobs(limit=50)}
        assert after[jobs[-1]] == "cancelled" and all(s == "queued" for i, s in after.items() if i != jobs[-1])
    finally:
        store.close()
