"""Sign-in for a shared deployment: which mode is on, password hashes, who may manage which job.

Pure functions (no Streamlit, no store import: functions that need the user records take the store).

Modes (`TLAB_AUTH`):
- `off` (default on this machine): no sign-in; everything belongs to "local". Only loopback serving.
- `password`: accounts set by an administrator (`tlab users add NAME [--admin]`), kept in the store's
  `users` table as salted scrypt hashes; the app shows a sign-in form.
- `oidc`: Streamlit's `st.login` with an identity provider configured in `[auth]` of
  `.streamlit/secrets.toml`; it is chosen by itself when that section exists and TLAB_AUTH is unset.
Administrators: users added with `--admin`, plus the identities listed in `TLAB_ADMINS` (comma-separated,
e.g. the e-mail addresses of OIDC users). An OIDC user is named by `oidc_user_name`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import sys
from pathlib import Path

from engine.errors import SettingError, TlabError

AUTH_ENV = "TLAB_AUTH"
ADMINS_ENV = "TLAB_ADMINS"
OWNER_ENV = "TLAB_OWNER"  # set by the worker for a job's child process: who started the job
DEFAULT_OWNER = "local"  # no sign-in (and every row written before sign-in existed)
MODES = ("off", "password", "oidc")
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024  # scrypt hashes any length; a cap keeps a pasted file from being "a password"
OIDC_KEYS = ("redirect_uri", "cookie_secret")  # plus client_id etc., per provider (Streamlit checks those)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,199}$")
# scrypt cost: n=2**14, r=8 uses 16 MiB; 65 ms per check measured on a busy 2-core CPU (OWASP minimum).
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class NotPermitted(TlabError):
    """A signed-in user asked for something only its owner or an administrator may do."""


# --- names and passwords -------------------------------------------------------------------------
def check_username(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise TlabError(f"{name!r} cannot be a user name: use 1 to 200 letters, digits or . _ @ + - "
                        "(starting with a letter or digit), e.g. alice or alice@example.com.")
    if name == DEFAULT_OWNER:
        raise TlabError(f"'{DEFAULT_OWNER}' is reserved for work done without sign-in; choose another name.")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise TlabError(f"The password is too short: use at least {MIN_PASSWORD_CHARS} characters.")
    if len(password) > MAX_PASSWORD_CHARS:
        raise TlabError(f"The password is longer than {MAX_PASSWORD_CHARS} characters; use a shorter one.")
    return password


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """'scrypt$n$r$p$<salt>$<hash>' with a fresh 16-byte salt: what the store keeps, never the password."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str | None) -> bool:
    """True if `password` matches the stored hash; compared in constant time. A malformed or missing
    hash never matches (and still costs one hash, so a missing user takes as long as a wrong password)."""
    try:
        algo, n, r, p, salt, digest = (stored or "").split("$")
        n, r, p = int(n), int(r), int(p)
        salt, digest = base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)
        if algo != "scrypt" or not (2 <= n <= 2**16 and 1 <= r <= 16 and 1 <= p <= 4) or len(digest) != 32:
            raise ValueError(algo)
    except (ValueError, TypeError):
        n, r, p, salt, digest = _SCRYPT["n"], _SCRYPT["r"], _SCRYPT["p"], b"\0" * 16, b""
    try:
        candidate = hashlib.scrypt(str(password).encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32,
                                   maxmem=256 * n * r + 2**20)
    except ValueError:
        return False
    return bool(digest) and hmac.compare_digest(candidate, digest)


# --- users (records kept by the store: store.get_user / add_user / list_users / remove_user) -------
def admin_names() -> set[str]:
    return {n.strip() for n in os.environ.get(ADMINS_ENV, "").split(",") if n.strip()}


def authenticate(store, name: str, password: str) -> dict | None:
    """The user record {"name", "is_admin"} if name and password match an account, else None."""
    user = store.get_user(name) if isinstance(name, str) and _NAME.match(name) else None
    if not verify_password(password, user and user.get("password_hash")):
        return None
    return {"name": user["name"], "is_admin": bool(user["is_admin"]) or user["name"] in admin_names()}


OWNER_MAX = 200  # characters of a name a job or result records as its owner


def same_identity(a: str | None, b: str | None) -> bool:
    """Two names of one user: equal, or the same e-mail address in another case (providers differ in the
    case they send it in), compared as far as an owner is kept."""
    a, b = str(a or "")[:OWNER_MAX], str(b or "")[:OWNER_MAX]
    return a == b or ("@" in a and a.casefold() == b.casefold())


def is_admin(store, name: str) -> bool:
    """An administrator: listed in TLAB_ADMINS, or a user added with --admin."""
    if any(same_identity(name, admin) for admin in admin_names()):
        return True
    user = store.get_user(name) if isinstance(name, str) and _NAME.match(name) else None
    return bool(user and user["is_admin"])


def may_manage(job_owner: str | None, user: str | None, admin: bool) -> bool:
    """Whether `user` may cancel or re-run a job started by `job_owner` (None user: no sign-in)."""
    return user is None or admin or same_identity(job_owner or DEFAULT_OWNER, user)


def oidc_user_name(claims) -> str | None:
    """Who a signed-in OIDC identity is: its `email` claim, unless the provider marks that address
    unverified (some let users type any address, e.g. Keycloak with self-registration: it would make them
    whoever owns it, or an administrator); then its `sub`. None when the identity has neither."""
    email = str(claims.get("email") or "").strip()
    verified = claims.get("email_verified")
    if email and not (verified is False or str(verified).strip().lower() == "false"):  # Cognito sends "false"
        return email
    return str(claims.get("sub") or "").strip() or None


def current_owner() -> str:
    """Who the work in this process is for: TLAB_OWNER (the worker sets it for a job), else 'local'."""
    return os.environ.get(OWNER_ENV, "").strip()[:OWNER_MAX] or DEFAULT_OWNER


# --- which mode, and whether this server may be reached from other machines ----------------------
def secrets_files(cwd: Path | None = None) -> list[Path]:
    """Where Streamlit reads secrets.toml by default: the user's, then the current folder's."""
    return [Path.home() / ".streamlit" / "secrets.toml", (cwd or Path.cwd()) / ".streamlit" / "secrets.toml"]


def oidc_section(paths: list[Path] | None = None) -> dict | None:
    """The merged [auth] section of the secrets files, or None when none has one."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    merged: dict = {}
    for path in paths if paths is not None else secrets_files():
        try:
            with open(path, "rb") as f:
                section = tomllib.load(f).get("auth")
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise SettingError(f"{path} cannot be read as TOML ({e}); fix it or remove it.") from None
        if isinstance(section, dict):
            merged.update(section)
    return merged or None


def sign_in_mode(paths: list[Path] | None = None) -> str:
    """'off', 'password' or 'oidc' from TLAB_AUTH (default: 'oidc' when [auth] is configured)."""
    raw = os.environ.get(AUTH_ENV, "").strip().lower()
    if raw in ("", "auto"):
        return "oidc" if oidc_section(paths) else "off"
    if raw in ("0", "none", "no", "false"):
        raw = "off"
    if raw not in MODES:
        raise SettingError(f"{AUTH_ENV}={raw!r} is not a sign-in mode; use off, password or oidc.")
    if raw == "oidc":
        section = oidc_section(paths) or {}
        missing = [k for k in OIDC_KEYS if not section.get(k)]
        if missing:
            raise SettingError(f"{AUTH_ENV}=oidc needs an [auth] section in .streamlit/secrets.toml with "
                               f"{', '.join(missing)} and your identity provider's client_id, client_secret "
                               "and server_metadata_url (see docs/deploy_team.md).")
    return raw


def is_loopback(host: str | None) -> bool:
    host = (host or "").strip()
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_problem(address: str | None, mode: str, user_count: int | None = None) -> str | None:
    """Why the app must not serve `address` with this sign-in mode, or None when it may.
    `user_count`: accounts in the store (password mode needs one to sign in with; None: not checked)."""
    if is_loopback(address):
        return None
    where = repr(address) if address else "all interfaces"
    if mode == "off":
        return (f"refusing to listen on {where} without sign-in: anyone who reaches the port could run jobs "
                "and read every result. Serve this machine only (--host 127.0.0.1), or turn sign-in on: "
                f"{AUTH_ENV}=password with accounts from `tlab users add NAME --admin`, or an [auth] "
                "section in .streamlit/secrets.toml for your identity provider (docs/deploy_team.md).")
    if mode == "password" and user_count == 0:
        return (f"refusing to listen on {where}: {AUTH_ENV}=password but the store has no accounts, so nobody "
                "could sign in. Add one first: tlab users add NAME --admin")
    return None
