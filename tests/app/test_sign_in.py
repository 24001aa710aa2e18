"""Sign-in in the app (TLAB_AUTH=password): only the sign-in form until signed in; on the Jobs page a
user manages only their own jobs, an administrator everyone's; no serving beyond loopback without it."""

import pytest

from app.auth import SESSION_KEY
from engine import auth
from tests.app.conftest import MAIN, TEAM_PASSWORD

PASSWORD = TEAM_PASSWORD
SLEEPY = "tests.helpers_jobs:sleepy"


def _app():
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(MAIN, default_timeout=60)


def _sign_in(name: str, password: str = PASSWORD):
    at = _app().run()
    at.text_input(key="sign_in_name").input(name)
    at.text_input(key="sign_in_password").input(password)
    at.button[0].click().run()
    return at


def _buttons(at) -> set[str]:
    return {b.key for b in at.button if b.key}


def test_only_the_sign_in_form_until_signed_in(team):
    at = _app().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    assert not at.sidebar.markdown  # no sidebar, no page: nothing but the form
    at.switch_page("../pages/jobs.py").run()  # a page's own URL shows the form too
    assert [t.value for t in at.title] == ["Sign in"] and "Jobs" not in [t.value for t in at.title]
    wrong = _sign_in("alice", "not the password")
    assert [e.value for e in wrong.error] == ["Wrong user name or password."]
    assert SESSION_KEY not in wrong.session_state
    unknown = _sign_in("nobody")
    assert [e.value for e in unknown.error] == ["Wrong user name or password."]
    signed = _sign_in("alice")
    assert not signed.exception and "Sign in" not in [t.value for t in signed.title]
    assert signed.session_state[SESSION_KEY] == {"name": "alice", "is_admin": False}
    assert any("Signed in as **alice**" in m.value for m in signed.sidebar.markdown)


def test_a_user_cancels_only_their_own_jobs(team):
    bobs = team.enqueue(SLEEPY, {}, "bob's sweep", owner="bob")
    alices = team.enqueue(SLEEPY, {}, "alice's sweep", owner="alice")
    at = _sign_in("alice")
    at.switch_page("../pages/jobs.py").run()
    assert not at.exception
    assert f"cancel_{alices}" in _buttons(at) and f"cancel_{bobs}" not in _buttons(at)
    assert any("started by bob" in c.value for c in at.caption)
    assert "forget_finished" not in _buttons(at)  # housekeeping forgets everyone's jobs: administrators only
    at.button(key=f"cancel_{alices}").click().run()
    assert team.get_job(alices)["status"] == "cancelled" and team.get_job(bobs)["status"] == "queued"
    # A re-run button appears for her cancelled job only; the engine refuses her cancelling bob's job.
    assert f"rerun_{alices}" in _buttons(at)
    with pytest.raises(auth.NotPermitted):
        team.request_cancel(bobs, by="alice", admin=False)
    # A job she queues is hers.
    at.button(key=f"rerun_{alices}").click().run()
    newest = team.list_jobs(limit=1)[0]
    assert newest["id"] not in (alices, bobs) and newest["owner"] == "alice"
    team.request_cancel(bobs, by="bob")  # bob stops his own job: she may not run it again either
    at.run()
    assert f"rerun_{bobs}" not in _buttons(at) and f"rerun_{alices}" in _buttons(at)


def test_an_administrator_manages_every_job(team):
    bobs = team.enqueue(SLEEPY, {}, "bob's sweep", owner="bob")
    team.request_cancel(bobs)
    alices = team.enqueue(SLEEPY, {}, "alice's sweep", owner="alice")
    at = _sign_in("carol")
    at.switch_page("../pages/jobs.py").run()
    assert {f"cancel_{alices}", f"rerun_{bobs}", "forget_finished"} <= _buttons(at)
    at.button(key=f"cancel_{alices}").click().run()
    assert team.get_job(alices)["status"] == "cancelled"
    at.button(key=f"rerun_{bobs}").click().run()
    assert team.list_jobs(limit=1)[0]["owner"] == "carol"  # re-run by carol: carol's job


def test_no_sign_in_keeps_local_use_unchanged(app_home, monkeypatch, tmp_path):
    monkeypatch.delenv(auth.AUTH_ENV, raising=False)
    monkeypatch.setattr(auth, "secrets_files", lambda cwd=None: [tmp_path / "no-secrets.toml"])
    job = app_home.enqueue(SLEEPY, {}, "mine")
    at = _app().run()
    at.switch_page("../pages/jobs.py").run()
    assert not at.exception and "Sign in" not in [t.value for t in at.title]
    assert f"cancel_{job}" in _buttons(at) and app_home.get_job(job)["owner"] == "local"


@pytest.mark.bad_input
def test_app_refuses_a_public_address_without_sign_in(app_home, monkeypatch, tmp_path):
    """`streamlit run app/main.py --server.address 0.0.0.0` skips `tlab app`: the app itself refuses."""
    from streamlit import config

    import app.auth

    monkeypatch.delenv(auth.AUTH_ENV, raising=False)
    monkeypatch.setattr(auth, "secrets_files", lambda cwd=None: [tmp_path / "no-secrets.toml"])
    monkeypatch.setattr(app.auth, "_serving", lambda: True)  # AppTest listens nowhere: act as a real server
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = _app().run()
    finally:
        config.set_option("server.address", before)
    assert not at.exception
    assert len(at.error) == 1 and "without sign-in" in at.error[0].value and not at.title


@pytest.mark.bad_input
def test_a_bad_sign_in_setting_stops_the_app_with_its_reason(app_home, monkeypatch, tmp_path):
    import app.auth

    monkeypatch.setattr(app.auth, "_serving", lambda: True)
    monkeypatch.setenv(auth.AUTH_ENV, "passwd")
    monkeypatch.setattr(auth, "secrets_files", lambda cwd=None: [tmp_path / "no-secrets.toml"])
    at = _app().run()
    assert not at.exception and not at.title
    assert len(at.error) == 1 and "off, password or oidc" in at.error[0].value


def test_in_process_app_tests_listen_nowhere_so_nothing_is_refused(app_home, monkeypatch, tmp_path):
    """AppTest (as in an installed wheel's smoke test, run from a folder without .streamlit/config.toml) has no
    server: the address check does not apply there, while a real server is always checked."""
    from streamlit import config

    import app.auth

    assert app.auth._serving() is False  # outside any Streamlit run
    monkeypatch.delenv(auth.AUTH_ENV, raising=False)
    monkeypatch.setattr(auth, "secrets_files", lambda cwd=None: [tmp_path / "no-secrets.toml"])
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = _app().run()
    finally:
        config.set_option("server.address", before)
    assert not at.exception and not at.error and at.title, [e.value for e in at.error]
