"""The store's PostgreSQL-only paths, against a real server: results ingested with COPY (whole batches, text that
COPY must escape, the same values as SQLite stores), metric columns fetched in binary format, statistics refreshed
after a run, and the page query without SQLite's planner hint."""
from __future__ import annotations

import math

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError

import db
from tests.conftest import STORES

pytestmark = pytest.mark.skipif("postgresql" not in STORES, reason="EVAL_TEST_STORES excludes postgresql")

TRICKY = ["tab\there", "line\nbreak\r\n", "back\\slash \\N", "quote ' \" ;", "naïve — 東京 🙂", "=1+2", "", " "]


def _store(url: str):
    engine = db.open_store(url)
    Session = db.session_factory(engine)
    with Session.begin() as s:
        ds = db.get_or_create_dataset(session=s, name="d.jsonl", split="test")
        ex = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"q{i}"}], reference=f"r{i}")
            for i in range(len(TRICKY))])
        run = db.create_run(session=s, name="v1", model="m", backend="transformers", dataset_id=ds)
    return engine, Session, run, [ex[f"k{i}"] for i in range(len(TRICKY))]


def _records(example_ids):
    return [dict(example_id=e, output=t, output_tokens=i, prompt_tokens=3, finish_reason="stop" if i % 2 else "length",
                 failures=i % 3, latency_ms=None if i == 0 else 1.5 * i, logprobs=[-0.5, -1.25 * i] if i else None,
                 tokens=[t, "\\", "\t"] if i % 2 else None, ref_nll=2.0 ** -i, ref_tokens=i, error=t or None,
                 metrics={"bleu": 10.0 * i, "rougeL": (None, "boom\tfailed") if i == 3 else 0.125 * i,
                          "ppl": math.inf if i == 5 else 1.0 + i})
            for i, (e, t) in enumerate(zip(example_ids, TRICKY))]


def _stored(Session, run_id):
    with Session() as s:
        return sorted((r["example_key"], r["output"], r["finish_reason"], r["output_tokens"], r["error"],
                       r["token_logprobs"], r["metrics"]) for r in db.export_rows(session=s, run_id=run_id))


def test_copy_ingest_stores_exactly_what_sqlite_stores(pg_url, tmp_path):
    stored = {}
    for url in (pg_url, f"sqlite:///{tmp_path / 's.sqlite'}"):
        engine, Session, run, examples = _store(url)
        with Session.begin() as s:
            ids = db.insert_results(session=s, run_id=run, results=_records(examples))
        assert len(ids) == len(set(ids)) == len(TRICKY) and ids == sorted(ids)
        with Session() as s:
            details = [db.result_detail(session=s, run_id=run, example_id=e) for e in examples]
        stored[url.split(":")[0]] = (_stored(Session, run), [(d["output"], d["tokens"], d["metric_errors"])
                                                              for d in details])
        engine.dispose()
    assert stored["postgresql+psycopg"] == stored["sqlite"]
    rows, details = stored["postgresql+psycopg"]
    assert [d[0] for d in details] == TRICKY  # the text came back byte for byte
    assert details[1][1] == [TRICKY[1], "\\", "\t"] and details[3][2] == {"rougeL": "boom\tfailed"}


def test_a_copy_batch_that_fails_lands_not_at_all(pg_url):
    engine, Session, run, examples = _store(pg_url)
    with Session.begin() as s:
        db.insert_results(session=s, run_id=run, results=_records(examples)[:2])
    batch = _records(examples)[1:5]  # the first of these is already stored: the unique (run, example) refuses it
    with pytest.raises(IntegrityError):
        with Session.begin() as s:
            db.insert_results(session=s, run_id=run, results=batch)
    with Session() as s:
        assert s.scalar(select(func.count()).select_from(db.Result).where(db.Result.run_id == run)) == 2
        assert s.scalar(select(func.count()).select_from(db.MetricValue).where(db.MetricValue.run_id == run)) == 6
    with Session.begin() as s:  # and the store takes the rest afterwards
        db.insert_results(session=s, run_id=run, results=_records(examples)[2:])
    assert len(_stored(Session, run)) == len(TRICKY)
    engine.dispose()


@pytest.mark.filterwarnings("ignore:invalid value encountered in subtract")  # ppl inf - inf of the run with itself
def test_metric_columns_read_in_binary_equal_the_values(pg_url):
    engine, Session, run, examples = _store(pg_url)
    with Session.begin() as s:
        db.insert_results(session=s, run_id=run, results=_records(examples))
        db.update_run(session=s, run_id=run, status="finished")
        db.refresh_metric_columns(session=s, run_id=run)
    with Session() as s:
        ids, values = db.metric_column(session=s, run_id=run, metric="bleu")
        [summary] = [d for d in db.delta_summary(session=s, run_a_id=run, run_b_id=run) if d["metric"] == "rougeL"]
    assert ids.tolist() == sorted(examples) and values.tolist() == [10.0 * i for i in range(len(TRICKY))]
    assert summary["n"] == len(TRICKY) - 1 and summary["equal"] == len(TRICKY) - 1  # the failed value is left out
    engine.dispose()


def test_refresh_statistics_analyzes_the_tables_a_run_fills(pg_url):
    engine, Session, run, examples = _store(pg_url)
    with Session.begin() as s:
        db.insert_results(session=s, run_id=run, results=_records(examples))
        db.refresh_statistics(session=s)
    with engine.connect() as c:
        analyzed = dict(c.execute(text("SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables "
                                       "WHERE relname IN ('results', 'metric_values', 'examples')")).all())
    assert analyzed == {"results": True, "metric_values": True, "examples": True}
    engine.dispose()


def test_the_filtered_page_query_keeps_sqlites_hint_to_sqlite(pg_url, tmp_path):
    seen = {}
    for url in (pg_url, f"sqlite:///{tmp_path / 's.sqlite'}"):
        engine, Session, run, examples = _store(url)
        with Session.begin() as s:
            db.insert_results(session=s, run_id=run, results=_records(examples))
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
        q = db.ResultQuery(run_id=run, ranges=(db.MetricRange("bleu", 20.0, 60.0),), sort="ppl")
        with Session() as s:
            page = db.page_results(session=s, query=q, page=0, page_size=50)
        seen[engine.dialect.name] = ([r["key"] for r in page.rows], [x for x in statements if "ORDER BY s.value" in x])
        engine.dispose()
    assert seen["postgresql"][0] == seen["sqlite"][0] == ["k2", "k3", "k4", "k6", "k5"]  # k5's ppl is infinite
    [pg_sql], [sqlite_sql] = seen["postgresql"][1], seen["sqlite"][1]
    assert "s.run_id + " in sqlite_sql and "s.run_id + " not in pg_sql and "s.run_id = " in pg_sql
