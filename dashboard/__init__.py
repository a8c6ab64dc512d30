"""The Streamlit dashboard over the result store: ``streamlit run dashboard/app.py``. Reads through ``db`` only."""
