"""The example browser's judge filter in links and on the page (the query itself: tests/store/test_judge_filter_queries.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import db
from dashboard import _links as links
from tests.support.store_seed import seed_judged

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture()
def judged(store_url):
    engine = db.open_store(store_url)
    yield store_url, engine, seed_judged(engine)
    engine.dispose()


def test_the_judge_filter_goes_into_links_and_the_browser(judged, monkeypatch):
    url, _, seed = judged
    q = links.filters_from_params({"run": str(seed["candidate"]), "judge": "worse"})
    assert q.judge == "worse" and links.filters_to_params(q) == {"run": str(seed["candidate"]), "judge": "worse"}
    assert links.filters_from_params({"run": "1", "judge": "nonsense"}).judge is None
    monkeypatch.setenv("EVAL_DB_URL", url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/browser.py")
    at.query_params = {"run": str(seed["candidate"]), "judge": "worse"}
    at.run()
    assert not at.exception, at.exception
    assert at.selectbox(key="br_judge").value == "worse"
    assert any("**1** example matches" in m.value for m in at.markdown)
    assert at.query_params["judge"] == "worse"  # the link keeps the filter
