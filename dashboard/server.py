"""``streamlit run dashboard/server.py [-- --db URL]``: the dashboard of ``app.py``, served warm.

The pages are ``app.py``'s. This file adds what a plain ``streamlit run dashboard/app.py`` cannot: work done
once when the server starts rather than during the first page a colleague opens. The pages' libraries
(pandas, Altair and its Vega-Lite schema, SQLAlchemy, the store queries) take about a second to import on a
2-core machine; imported here, a cold server's first load costs what a warm one's does (docs/dashboard.md,
``benchmarks/bench_browser.py``). ``streamlit run dashboard/app.py`` still works, without the warm start.
"""
from __future__ import annotations

import contextlib
import importlib
from pathlib import Path

import streamlit as st

import db

# Libraries only: the dashboard's own modules declare st.cache_data functions, which belong to the runtime
# that the first page run sees (and take milliseconds to import).
PRELOAD = ("pandas", "pandas.io.formats.style", "altair", "sqlalchemy", "sqlalchemy.orm", "alembic.script", "db",
           "evaluator.judging", "evaluator._arena", "statsmodels.api", "statsmodels.stats.inter_rater")


def warm() -> None:
    """Import the pages' libraries and build one chart, so that the first page run finds them loaded."""
    for name in PRELOAD:
        importlib.import_module(name)
    for name in sorted(set(db._HOME.values())):  # the store's modules, imported lazily by `db` otherwise
        importlib.import_module(name)
    db.head_revision()  # every store the pages open is checked against it
    import altair as alt
    import pandas as pd

    alt.Chart(pd.DataFrame({"x": [0.0, 1.0]})).mark_bar().encode(x="x:Q").to_dict()  # loads the schema validator


@contextlib.asynccontextmanager
async def _lifespan(_app):
    warm()
    yield


app = st.App(Path(__file__).with_name("app.py"), lifespan=_lifespan)
