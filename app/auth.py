"""Sign-in in the app (engine.auth holds the rules): the gate every page passes, and who is signed in.

    user = auth.gate(store)   # in main.py: stops the script with the sign-in form until signed in
    auth.user_name()          # owner of the jobs this session queues (None: sign-in off -> "local")

Sign-in lasts for the browser session (Streamlit's session state); a reload asks again with passwords,
while OIDC keeps Streamlit's signed identity cookie.
"""

from __future__ import annotations

import streamlit as st

from engine import auth
from engine.errors import TlabError

SESSION_KEY = "tlab_user"  # {"name": str, "is_admin": bool}


def mode() -> str:
    return auth.sign_in_mode()


def current_user() -> dict | None:
    """The signed-in user {"name", "is_admin"}, or None when sign-in is off (or nobody signed in yet)."""
    return st.session_state.get(SESSION_KEY)


def user_name() -> str | None:
    user = current_user()
    return user["name"] if user else None


def is_admin() -> bool:
    """Without sign-in this machine's user may manage every job."""
    user = current_user()
    return user is None or bool(user["is_admin"])


def may_manage(job: dict) -> bool:
    return auth.may_manage(job.get("owner"), user_name(), is_admin())


def exposure_problem(store) -> str | None:
    """Why this server must not serve its address with the sign-in configured (None: fine)."""
    if not _serving():
        return None
    try:
        current = mode()
    except TlabError as e:  # a bad TLAB_AUTH or [auth] section: serve nothing until it is fixed
        return str(e)
    count = len(store.list_users()) if current == "password" else None
    return auth.exposure_problem(st.get_option("server.address"), current, count)


def _serving() -> bool:
    """Whether a real Streamlit server runs this script. Streamlit's AppTest runs pages in-process with a
    stand-in runtime and listens on no address, so there is nothing to expose (and no config file is read
    outside the checkout, which would make its default address look like all interfaces)."""
    from streamlit import runtime

    # the class itself: AppTest's stand-in is a mock specced as Runtime, which passes isinstance
    return runtime.exists() and runtime.Runtime in type(runtime.get_instance()).__mro__


def gate(store) -> dict | None:
    """Return the signed-in user (None with sign-in off); otherwise show the sign-in and stop the run."""
    current = mode()
    if current == "off":
        st.session_state.pop(SESSION_KEY, None)
        return None
    if current == "oidc":
        return _oidc(store)
    user = current_user()
    if user is not None:
        return user
    _password_form(store)
    st.stop()


def _password_form(store) -> None:
    st.title("Sign in")
    st.caption("This Tradeoff Lab server is shared. Ask its administrator for an account "
               "(`tlab users add NAME`).")
    with st.form("sign_in", clear_on_submit=True):  # the password does not stay in the widget
        name = st.text_input("User name", key="sign_in_name")
        password = st.text_input("Password", type="password", key="sign_in_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        user = auth.authenticate(store, name.strip(), password)
        if user is None:
            st.error("Wrong user name or password.")  # never which of the two
            return
        st.session_state[SESSION_KEY] = user
        st.rerun()


def _oidc(store) -> dict | None:
    if not st.user.is_logged_in:
        st.title("Sign in")
        st.caption("This Tradeoff Lab server is shared: sign in with your organisation's account.")
        if st.button("Sign in", type="primary", key="oidc_sign_in"):
            try:
                st.login()
            except Exception as e:  # noqa: BLE001 - e.g. Authlib missing or [auth] incomplete: say what to do
                st.error(f"Sign-in is not set up correctly on this server ({e}). The administrator needs "
                         "`pip install 'streamlit[auth]'` and a complete [auth] section in "
                         ".streamlit/secrets.toml (docs/deploy_team.md).")
        st.stop()
    name = auth.oidc_user_name(st.user)
    if name is None:  # a provider that sends no subject: nobody to own jobs
        st.error("Your identity provider sent neither an e-mail address nor a subject (`sub`) for you, "
                 "so this server cannot tell who you are. Ask its administrator.")
        st.button("Sign out", key="oidc_sign_out", on_click=sign_out)
        st.stop()
    user = {"name": name, "is_admin": auth.is_admin(store, name)}
    st.session_state[SESSION_KEY] = user
    return user


def sign_out() -> None:
    st.session_state.pop(SESSION_KEY, None)
    if mode() == "oidc":
        st.logout()
