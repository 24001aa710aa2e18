"""The app's pages, in one place: main.py builds the navigation from them and pages link to each other
with `page(name)` (a fresh st.Page for the same file is the same page to Streamlit)."""

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parents[1]
PAGES_DIR = ROOT / "pages"

# name -> (file in pages/, title, icon)
PAGES = {
    "home": ("home.py", "Start here", ":material/flag:"),
    "experiment": ("experiment.py", "Experiment", ":material/science:"),
    "training": ("training.py", "Training", ":material/model_training:"),
    "jobs": ("jobs.py", "Jobs", ":material/hourglass_top:"),
    "results": ("results.py", "Results", ":material/scatter_plot:"),
    "reference": ("reference.py", "Reference", ":material/menu_book:"),
    "gpu_selector": ("gpu_selector.py", "GPU Selector", ":material/memory:"),  # written separately; listed once it exists
}


def page(name: str) -> st.Page:
    file, title, icon = PAGES[name]
    return st.Page(PAGES_DIR / file, title=title, icon=icon, default=(name == "home"))


def all_pages() -> list[st.Page]:
    return [page(name) for name, (file, _, _) in PAGES.items() if (PAGES_DIR / file).exists()]
