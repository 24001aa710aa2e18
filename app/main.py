"""Tradeoff Lab: `streamlit run app/main.py`.

The entry script: page setup, the serving check and sign-in (app.auth), the background worker, the
shared sidebar and the navigation over the pages in the top-level pages/ folder.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ first on the path, not the repo
    sys.path.insert(0, str(ROOT))

import streamlit as st

from app import auth, nav, sidebar, state

st.set_page_config(page_title="Tradeoff Lab", page_icon=":material/balance:", layout="wide")
# `streamlit run` can be given any --server.address: refuse to serve other machines without sign-in.
problem = auth.exposure_problem(state.store())
if problem:
    st.error(f"This app does not serve pages here: {problem}")
    st.stop()
auth.gate(state.store())  # with sign-in on, only the sign-in form until signed in
current = st.navigation(nav.all_pages())
state.ensure_worker()
sidebar.render()
current.run()
