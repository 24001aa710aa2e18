"""The sidebar every page shares: the device found, which engines work here, and the worker."""

from __future__ import annotations

import streamlit as st

from app import auth, state
from engine import devices


def render() -> None:
    gpus, checks = state.device_report()
    with st.sidebar:
        user = auth.current_user()
        if user is not None:
            st.markdown(f":material/account_circle: Signed in as **{user['name']}**"
                        + (" (administrator)" if user["is_admin"] else ""))
            st.button("Sign out", key="sidebar_sign_out", on_click=auth.sign_out)
        st.subheader("This machine")
        if gpus:
            for gpu in gpus:
                st.markdown(f"**{devices.gpu_label(gpu)}**")
        else:
            st.markdown(f"**{devices.cpu_label()}**  \nNo NVIDIA GPU: runs use the CPU.")
        st.caption("Engines")
        lines = []
        for check in checks:
            mark = ":material/check_circle:" if check.ok else ":material/block:"
            version = f" {check.version}" if check.ok and check.version else ""
            lines.append(f"{mark} **{check.name}**{version}: {check.reason}")
        st.markdown("  \n".join(lines))
        st.caption("Jobs")
        if state.worker_alive():
            st.markdown(":material/play_circle: Worker running: queued jobs start by themselves.")
        else:
            st.markdown(":material/pause_circle: No worker is running, so queued jobs wait.")
            if st.button("Start worker", key="sidebar_start_worker",
                         help="Starts a background process that runs queued jobs (same as `tlab worker`)."):
                from engine.jobs.worker import start_worker_process

                start_worker_process()
                st.rerun()
        st.caption(f"Store: {state.store().shown_url}")
