"""Sign-in and ownership in the engine: password hashes, accounts in the store, owners on jobs and
results (through the worker's child process), the ownership check on cancel, the serving check."""

import io
import os
import sqlite3
from pathlib import Path

import pytest

from engine import auth
from engine.app_launcher import check_exposure
from engine.cli import main as cli_main
from engine.errors import SettingError, TlabError
from engine.jobs.worker import run_worker
from engine.store import open_store

REPO = Path(__file__).resolve().parents[2]
FAST = {"poll_s": 0.05, "heartbeat_s": 0.2}
PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("TLAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TLAB_JOB_MODULES", "tests")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    for name in (auth.AUTH_ENV, auth.ADMINS_ENV, auth.OWNER_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(auth, "secrets_files", lambda cwd=None: [tmp_path / "no-secrets.toml"])
    s = open_store()
    yield s
    s.close()


def test_hash_and_verify():
    stored = auth.hash_password(PASSWORD)
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    assert auth.verify_password(PASSWORD, stored)
    assert not auth.verify_password(PASSWORD + "x", stored)
    assert not auth.verify_password("", stored)
    assert auth.hash_password(PASSWORD) != stored  # a fresh salt each time
    for broken in (None, "", "plain text", stored.replace("scrypt", "md5"), stored[:-8], "scrypt$1$1$1$a$b"):
        assert not auth.verify_password(PASSWORD, broken)


@pytest.mark.bad_input
@pytest.mark.parametrize("name", ["", "local", "a b", "../x", "-x", "x" * 201, "ä"])
def test_bad_user_names_are_refused(name):
    with pytest.raises(TlabError, match="user name|reserved"):
        auth.check_username(name)


@pytest.mark.bad_input
def test_short_and_huge_passwords_are_refused():
    with pytest.raises(TlabError, match="at least 8"):
        auth.check_password("short")
    with pytest.raises(TlabError, match="longer than"):
        auth.check_password("x" * 5000)


def test_accounts_hold_no_plaintext(store):
    store.add_user("alice", auth.hash_password(PASSWORD), is_admin=False)
    with pytest.raises(TlabError, match="never a password"):
        store.add_user("bob", PASSWORD)
    with pytest.raises(TlabError, match="already exists"):
        store.add_user("alice", auth.hash_password("another one"))
    assert auth.authenticate(store, "alice", PASSWORD) == {"name": "alice", "is_admin": False}
    assert auth.authenticate(store, "alice", "wrong password") is None
    assert auth.authenticate(store, "nobody", PASSWORD) is None
    assert auth.authenticate(store, "../etc", PASSWORD) is None
    assert store.list_users()[0] == {"name": "alice", "is_admin": False, "has_password": True,
                                     "created_at": store.list_users()[0]["created_at"]}
    store.close()
    db = Path(os.environ["TLAB_HOME"]) / "tlab.db"
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    dump = "\n".join(conn.iterdump())
    conn.close()
    assert "alice" in dump and PASSWORD not in dump
    assert PASSWORD.encode() not in db.read_bytes()


def test_admins_from_accounts_and_setting(store, monkeypatch):
    store.add_user("carol", auth.hash_password(PASSWORD), is_admin=True)
    store.add_user("dave@example.com", None)  # an identity-provider user: no password, cannot sign in with one
    assert auth.is_admin(store, "carol") and not auth.is_admin(store, "dave@example.com")
    assert auth.authenticate(store, "dave@example.com", "") is None
    monkeypatch.setenv(auth.ADMINS_ENV, "dave@example.com, erin@example.com")
    assert auth.is_admin(store, "dave@example.com") and auth.is_admin(store, "erin@example.com")
    assert store.remove_user("carol") and not store.remove_user("carol")


def test_jobs_record_their_owner_and_only_owner_or_admin_cancels(store):
    local = store.enqueue("tests.helpers_jobs:sleepy", {}, "no sign-in")
    bobs = store.enqueue("tests.helpers_jobs:sleepy", {}, "bob's", owner="bob")
    alices = store.enqueue("tests.helpers_jobs:sleepy", {}, "alice's", owner="alice")
    assert [store.get_job(j)["owner"] for j in (local, bobs, alices)] == ["local", "bob", "alice"]
    with pytest.raises(auth.NotPermitted, match="started by bob"):
        store.request_cancel(bobs, by="alice")
    assert store.get_job(bobs)["status"] == "queued"  # refused: nothing changed
    assert store.request_cancel(alices, by="alice") == "cancelled"
    assert store.request_cancel(bobs, by="carol", admin=True) == "cancelled"
    assert store.request_cancel(local) == "cancelled"  # the command line (no signed-in user)


def test_results_inherit_the_job_owner_through_the_worker(store):
    record = {"id": "owned1", "model": "bundled", "precision": "fp8", "metrics": {"perplexity": 10.0},
              "provenance": {"accuracy": {"kind": "measured"}}}
    store.enqueue("tests.helpers_jobs:save_one_result", {"record": record}, "bob's", owner="bob")
    assert run_worker(store.url, once=True, **FAST) == 1
    assert store.get_result("owned1").owner == "bob"
    assert store.results_frame().set_index("id").loc["owned1", "owner"] == "bob"
    from engine.store.export import to_csv, to_json_records

    assert to_json_records([store.get_result("owned1")])[0]["owner"] == "bob"
    assert to_csv([store.get_result("owned1")]).splitlines()[1].endswith(",bob")
    store.save_result({**record, "id": "cli1"})  # saved outside a job: "local"
    assert store.get_result("cli1").owner == "local"


def test_payload_cannot_claim_an_owner(store):
    """The child takes its owner from the job row, even when its environment says otherwise."""
    record = {"id": "owned2", "model": "bundled", "precision": "fp8", "metrics": {"perplexity": 1.0},
              "provenance": {"accuracy": {"kind": "measured"}}}
    os.environ[auth.OWNER_ENV] = "mallory"  # inherited by the worker's child
    try:
        store.enqueue("tests.helpers_jobs:save_one_result", {"record": record}, "x", owner="bob")
        run_worker(store.url, once=True, **FAST)
    finally:
        del os.environ[auth.OWNER_ENV]
    assert store.get_result("owned2").owner == "bob"


def test_migration_gives_existing_rows_the_local_owner(tmp_path):
    from alembic import command
    from alembic.config import Config

    import sqlalchemy as sa

    from engine.store.db import MIGRATIONS_DIR

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.exec_driver_sql(
            "INSERT INTO jobs (fn, title, payload, status, progress, stage, log, result_ids, cancel_requested, "
            "created_at) VALUES ('engine.pipeline:run_sweep_job', 'old', '{}', 'done', 1, 'done', '', '[]', 0, 1)")
        conn.exec_driver_sql(
            "INSERT INTO results (id, model, precision, sparsity, kv_cache, status, spec, versions, timings, "
            "provenance, created_at) VALUES ('r0', 'm', 'fp8', 'none', 'auto', 'done', '{}', '{}', '{}', '{}', 1)")
    engine.dispose()
    store = open_store(url)
    try:
        assert store.list_jobs()[0]["owner"] == "local"
        assert store.get_result("r0").owner == "local"
        assert store.list_users() == []
    finally:
        store.close()


def test_sign_in_mode_from_setting_and_secrets(tmp_path, monkeypatch):
    secrets = tmp_path / "secrets.toml"
    monkeypatch.delenv(auth.AUTH_ENV, raising=False)
    assert auth.sign_in_mode([secrets]) == "off"
    secrets.write_text('[auth]\nredirect_uri = "https://lab.example.com/oauth2callback"\ncookie_secret = "s"\n'
                       'client_id = "id"\nclient_secret = "x"\n'
                       'server_metadata_url = "https://idp.example.com/.well-known/openid-configuration"\n')
    assert auth.sign_in_mode([secrets]) == "oidc"
    monkeypatch.setenv(auth.AUTH_ENV, "password")
    assert auth.sign_in_mode([secrets]) == "password"
    monkeypatch.setenv(auth.AUTH_ENV, "off")
    assert auth.sign_in_mode([secrets]) == "off"


@pytest.mark.bad_input
def test_bad_sign_in_settings_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(auth.AUTH_ENV, "maybe")
    with pytest.raises(SettingError, match="off, password or oidc"):
        auth.sign_in_mode([])
    monkeypatch.setenv(auth.AUTH_ENV, "oidc")
    with pytest.raises(SettingError, match="redirect_uri, cookie_secret"):
        auth.sign_in_mode([tmp_path / "none.toml"])
    broken = tmp_path / "broken.toml"
    broken.write_text("[auth\n")
    with pytest.raises(SettingError, match="cannot be read as TOML"):
        auth.sign_in_mode([broken])


def test_an_oidc_user_is_named_by_a_verified_email_else_the_subject():
    assert auth.oidc_user_name({"sub": "0f3a", "email": "alice@example.com", "email_verified": True}) \
        == "alice@example.com"
    assert auth.oidc_user_name({"sub": "0f3a", "email": "alice@example.com"}) == "alice@example.com"  # not sent
    # An address the provider has not verified could be anyone's: the identity is its subject instead.
    assert auth.oidc_user_name({"sub": "9d4e", "email": "alice@example.com", "email_verified": False}) == "9d4e"
    assert auth.oidc_user_name({"sub": "9d4e", "email": "alice@example.com", "email_verified": "false"}) == "9d4e"
    assert auth.oidc_user_name({"sub": "auth0|123", "email": ""}) == "auth0|123"
    assert auth.oidc_user_name({"email": "x@example.com", "email_verified": False}) is None
    assert auth.oidc_user_name({}) is None


def test_exposure_needs_sign_in():
    assert auth.exposure_problem("127.0.0.1", "off") is None
    assert auth.exposure_problem("::1", "off") is None
    assert "without sign-in" in auth.exposure_problem("0.0.0.0", "off")
    assert "without sign-in" in auth.exposure_problem(None, "off")  # Streamlit's default: all interfaces
    assert "no accounts" in auth.exposure_problem("0.0.0.0", "password", 0)
    assert auth.exposure_problem("0.0.0.0", "password", 1) is None
    assert auth.exposure_problem("10.0.0.5", "oidc") is None


@pytest.mark.bad_input
def test_launcher_refuses_other_hosts_without_sign_in(store, monkeypatch, capsys):
    assert cli_main(["app", "--host", "0.0.0.0", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "without sign-in" in err and "TLAB_AUTH=password" in err
    monkeypatch.setenv(auth.AUTH_ENV, "pasword")  # a typo is reported, even for loopback
    assert cli_main(["app", "--dry-run"]) == 2
    assert "off, password or oidc" in capsys.readouterr().err
    monkeypatch.setenv(auth.AUTH_ENV, "password")
    with pytest.raises(TlabError, match="no accounts"):
        check_exposure("0.0.0.0")
    store.add_user("alice", auth.hash_password(PASSWORD), is_admin=True)
    assert cli_main(["app", "--host", "0.0.0.0", "--port", "8600", "--dry-run"]) == 0
    assert "--server.address=0.0.0.0" in capsys.readouterr().out


def test_users_command_reads_the_password_and_never_prints_it(store, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli_main(["users", "add", "alice", "--admin"]) == 0
    assert cli_main(["users", "list"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli_main(["users", "add", "bob"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli_main(["users", "add", "bob"]) == 2
    assert cli_main(["users", "remove", "nobody"]) == 2
    out = capsys.readouterr()
    assert "alice\tadministrator" in out.out and "at least 8" in out.err and "No password given" in out.err
    assert PASSWORD not in out.out + out.err
    assert auth.authenticate(store, "alice", PASSWORD) == {"name": "alice", "is_admin": True}


def test_an_email_owner_is_one_user_whatever_the_case_a_provider_sends(monkeypatch):
    assert auth.may_manage("alice@example.com", "Alice@Example.COM", admin=False)
    assert not auth.may_manage("alice@example.com", "bob@example.com", admin=False)
    assert not auth.may_manage("Bob", "bob", admin=False)  # account names (no '@') keep their case
    monkeypatch.setenv(auth.ADMINS_ENV, "Ops@Example.com")
    assert auth.is_admin(None, "ops@example.com")


def test_a_name_longer_than_an_owner_keeps_may_still_manage_its_own_jobs():
    long_name = "x" * 240 + "@example.com"  # OIDC allows 255 characters; an owner keeps OWNER_MAX
    assert auth.may_manage(long_name[:auth.OWNER_MAX], long_name, admin=False)
    assert not auth.may_manage(long_name[:auth.OWNER_MAX], "y" + long_name, admin=False)
