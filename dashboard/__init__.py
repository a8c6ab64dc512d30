"""The Streamlit dashboard over the result store: ``streamlit run dashboard/server.py``. Reads through ``db`` only."""
