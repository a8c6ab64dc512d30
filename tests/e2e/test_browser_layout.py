"""Layout a meeting sees, checked in headless Chromium where AppTest cannot see it: tables drawn on a
canvas, their heights and what they cut off.
"""
from __future__ import annotations

import pytest

import db
from tests.support.browser import chromium, no_error_on_page, running_dashboard, settle

METRICS = [f"metric_{i:02d}" for i in range(14)]  # more than the ten rows a table shows by default


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two runs of three examples, each result with 14 metrics, and a saved review queue of run A."""
    tmp = tmp_path_factory.mktemp("layout")
    url = f"sqlite:///{tmp / 'store.sqlite'}"
    engine = db.open_store(url)
    with db.session_factory(engine).begin() as s:
        ds = db.get_or_create_dataset(session=s, name="layout.jsonl")
        keys = db.upsert_examples(session=s, dataset_id=ds, examples=[
            dict(key=f"k{i}", row_index=i, messages=[{"role": "user", "content": f"question {i}"}],
                 reference=f"answer {i}") for i in range(3)])
        runs = {}
        for name in ("A", "B"):
            runs[name] = db.create_run(session=s, name=f"run-{name}", model="m", backend="transformers",
                                       dataset_id=ds)
            db.insert_results(session=s, run_id=runs[name], results=[
                dict(example_id=keys[f"k{i}"], output=f"output {i}", output_tokens=2, finish_reason="stop",
                     metrics={m: float(j + i) for j, m in enumerate(METRICS)}) for i in range(3)])
        db.save_view(session=s, name="layout-queue", params={"run": str(runs["A"])})
    engine.dispose()
    with running_dashboard(url, tmp / "streamlit.log") as base:
        yield base, runs, keys["k1"]


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def _clipped_tables(page) -> list[int]:
    """Indexes of the dataframes on the page whose rows do not all fit (their grid scrolls vertically)."""
    return page.evaluate("""() => [...document.querySelectorAll('[data-testid="stDataFrame"]')].flatMap((el, i) => {
        const s = el.querySelector('.dvn-scroller');
        return s && s.scrollHeight > s.clientHeight + 1 ? [i] : [];
    })""")


@pytest.mark.parametrize("path", ["browser?run={a}&ex={ex}", "compare?a={a}&b={b}&ex={ex}",
                                  "review?view=layout-queue&pos=2"])
def test_an_examples_metric_table_shows_every_metric(server, browser, path):
    base, runs, ex = server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/{path.format(a=runs['A'], b=runs['B'], ex=ex)}")
    settle(page)
    no_error_on_page(page)
    tables = page.locator('[data-testid="stDataFrame"]')
    assert tables.count() >= 1
    assert _clipped_tables(page) == []  # three examples, 14 metrics: every table shows all its rows
    page.close()
