"""The dashboard on a PostgreSQL team store: one pass over all six pages (and the views that run other
queries: filters, sorts, a pair without metric columns, every error-analysis section, a review queue)
on a seeded store, with no exception and no error message anywhere. The query functions themselves run
on both backends in test_dashboard_queries / test_review_queries / test_history / test_errors_page."""
from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import db
from tests.support.dashboard_seed import seed_store
from tests.support.review_data import APP


@pytest.fixture(scope="module")
def seeded(pg_module_url):
    ids = seed_store(pg_module_url, n_examples=40, versions=3)
    engine = db.open_store(pg_module_url)
    try:
        with db.session_factory(engine).begin() as s:
            db.save_view(session=s, name="support, rouge_l >= 0.5",
                         params={"run": str(ids["latest"]), "category": "support", "range": "rouge_l:0.5:"},
                         created_by="dana")
    finally:
        engine.dispose()
    return pg_module_url, ids


def _views(ids) -> list[tuple[str, dict]]:
    latest, base, qwen = ids["latest"], ids["latest_baseline"], (ids["runs"]["qwen-tune:r2"], ids["runs"]["qwen-tune:r1"])
    ex = ids["hostile_example_ids"][0]
    return [
        ("runs", {}),
        ("runs", {"dataset": str(ids["dataset_id"]), "metric": "rouge_l", "model": "acme"}),
        ("browser", {}),
        ("browser", {"run": str(latest), "ex": str(ex), "sort": "rouge_l", "desc": "1", "range": ["bleu:10:", "exact_match::0"]}),
        ("browser", {"run": str(latest), "text": "100% _match_", "category": "support", "tag": "multi-turn",
                     "failure": "any", "verdict": "unreviewed", "sort": "latency_ms", "page": "1", "size": "5"}),
        ("browser", {"run": str(latest), "verdict": "pass", "sort": "row"}),
        ("browser", {"run": str(latest), "text": "ORDER", "tag": "multi-turn", "failure": "none"}),
        ("compare", {}),
        ("compare", {"a": str(latest), "b": str(base), "metric": "rouge_l", "flips": "1", "thr": "0.5",
                     "slices": "1", "ex": str(ex)}),
        ("compare", {"a": str(qwen[0]), "b": str(qwen[1]), "metric": "perplexity", "category": "support",
                     "order": "diff_asc", "box": "0:100:0:100"}),
        *[("errors", {"run": str(latest), "vs": str(base), "tab": tab}) for tab in ("dist", "conf", "fail", "len", "dis")],
        ("errors", {"run": str(latest), "tab": "len", "by": "reference_chars", "metric": "bleu"}),
        ("compare", {"a": str(latest), "b": str(base), "view": "examples", "metric": "rouge_l"}),
        ("history", {}),
        ("history", {"example": str(ex), "metric": "exact_match"}),
        ("history", {"dataset": str(ids["dataset_id"]), "view": "flaky"}),
        ("review", {"view": "support, rouge_l >= 0.5", "reviewer": "dana"}),
        ("review", {"run": str(latest), "verdict": "any", "reviewer": "erin"}),
    ]


def test_every_page_works_on_a_postgresql_store(seeded, monkeypatch):
    url, ids = seeded
    assert url.startswith("postgresql+psycopg://")
    monkeypatch.setenv(db.ENV_VAR, url)
    for page, params in _views(ids):
        at = AppTest.from_file(APP, default_timeout=60)
        at.switch_page(f"views/{page}.py")
        for k, v in params.items():
            at.query_params[k] = v
        at.run()
        where = f"{page} {params}"
        assert not at.exception, f"{where}: {at.exception}"
        assert not at.error, f"{where}: {[e.value for e in at.error]}"
