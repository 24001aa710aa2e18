"""The Streamlit app: entry point (app/main.py) and the widgets its pages share."""
