"""What a newcomer does: the demo into a fresh store, then the dashboard on it in headless Chromium.

Runs `python -m evaluator demo --no-dashboard` as a subprocess (models from the session's demo cache),
checks the store, then serves the dashboard and opens every page. Screenshots go to
$ARTIFACTS_DIR/demo only: a test never writes a tracked file. ``make screenshots`` runs this test and
then copies them over the README's (docs/screenshots/).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

import db
from tests.support.browser import chromium, no_error_on_page, running_dashboard, settle

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_store(demo_models, demo_cache, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo-e2e")
    url = f"sqlite:///{tmp / 'store.sqlite'}"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "evaluator", "demo", "--no-dashboard", "--no-progress", "--db", url,
         "--cache", str(demo_cache)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return url, tmp, proc.stdout + proc.stderr


def _runs(url):
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            listed = db.list_runs(session=s)
            by_id = {r["id"]: r for r in listed}
            runs = {r["name"]: r for r in listed if not r["is_baseline"]}  # the candidates
            baselines = {r["id"]: by_id[r["baselines"][0]] for r in listed if r["baselines"]}  # candidate -> its base
            comparisons = {name: db.stored_comparisons(session=s, run_a_id=r["id"], run_b_id=baselines[r["id"]]["id"])
                           for name, r in runs.items() if r["id"] in baselines}
            runs["baselines"] = baselines
            runs["all"] = listed
            failed = s.scalar(select(func.count()).select_from(db.Result).where(db.Result.failures != 0))
        return runs, comparisons, failed
    finally:
        engine.dispose()


def test_demo_stores_three_versions_each_compared_with_the_one_base_run(demo_store):
    url, _, out = demo_store
    runs, comparisons, _ = _runs(url)
    versions = [f"demo-v{i}" for i in (1, 2, 3)]
    assert set(versions) <= set(runs)
    # the base is evaluated once (for v1) and reused by v2 and v3: four runs, names all different
    assert sorted(r["name"] for r in runs["all"]) == ["demo-base", "demo-v1", "demo-v2", "demo-v3"]
    assert len({runs["baselines"][runs[v]["id"]]["id"] for v in versions}) == 1
    assert out.count("reused") >= 2
    assert all(runs[v]["status"] == "finished" and runs[v]["family"] == "demo" for v in versions)
    assert [runs[v]["created_at"] for v in versions] == sorted(runs[v]["created_at"] for v in versions)
    for v in versions:
        rows = comparisons[v]
        assert {r["metric"] for r in rows} >= {"bleu", "chrf", "rougeL"}
        overall = [r for r in rows if r["slice"] == "" and r["metric"] == "bleu" and r["kind"] == "corpus"]
        assert overall and overall[0]["delta"] > 0  # every version beats its base on corpus BLEU


def test_later_versions_are_better_and_failures_remain_to_browse(demo_store):
    url, _, _ = demo_store
    runs, comparisons, failed = _runs(url)
    bleu = [runs[f"demo-v{i}"]["aggregates"]["bleu"]["corpus"][0] for i in (1, 2, 3)]
    assert bleu == sorted(bleu) and bleu[2] - bleu[0] > 10
    v3 = [r for r in comparisons["demo-v3"] if r["slice"] == "" and r["metric"] == "bleu" and r["kind"] == "corpus"][0]
    assert v3["ci_low"] > 0 and v3["p_value"] < 0.05  # the CI says so
    assert failed > 0


def test_the_demo_judges_its_newest_version_against_the_base_with_the_base_model(demo_store):
    url, _, out = demo_store
    runs = _runs(url)[0]
    v3, base = runs["demo-v3"]["id"], runs["baselines"][runs["demo-v3"]["id"]]["id"]
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        rows = db.judgments_of_pair(session=s, candidate_id=v3, baseline_id=base)
        n = len(db.judging_inputs(session=s, candidate_id=v3, baseline_id=base))
    engine.dispose()
    assert n > 100 and len(rows) == 2 * n and {r["judge"] for r in rows} == {"demo-base"}
    assert f"judged run {v3} against run {base} with the demo base model as the judge" in out
    # the demo model's context cannot hold a judging prompt: every judgment is a failure that says why
    assert all(r["preference"] is None and "did not fit the judge's context" in r["error"] for r in rows)


def test_a_second_demo_run_reuses_everything(demo_store, demo_cache):
    url, _, _ = demo_store
    before = len(_runs(url)[0]["baselines"])
    proc = subprocess.run(
        [sys.executable, "-m", "evaluator", "demo", "--no-dashboard", "--no-progress", "--db", url,
         "--cache", str(demo_cache)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "0 new judgments" in proc.stdout  # judged already
    assert len(_runs(url)[0]["baselines"]) == before == 3  # three candidates, each with its base
    assert len(_runs(url)[0]["all"]) == 4


def test_dashboard_on_the_demo_store_in_chromium(demo_store):
    url, tmp, _ = demo_store
    runs, _, _ = _runs(url)
    v1, v3 = runs["demo-v1"]["id"], runs["demo-v3"]["id"]
    base = runs["baselines"][v3]["id"]
    engine = db.open_store_readonly(url)
    with db.session_factory(engine)() as s:
        page_rows = db.page_results(session=s, query=db.ResultQuery(run_id=v3, failure="any", sort="bleu"),
                                    page_size=1).rows
    engine.dispose()
    example = page_rows[0]["example_id"]
    shots = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts")) / "demo"
    shots.mkdir(parents=True, exist_ok=True)
    pages = [
        ("runs", "/", "Runs and trends"),
        ("browser", f"/browser?run={v3}&failure=any&sort=bleu&ex={example}", "Example browser"),
        ("compare", f"/compare?a={v3}&b={base}&metric=bleu", "Compare runs"),
        ("compare-examples", f"/compare?a={v3}&b={base}&metric=bleu&view=examples", "Compare runs"),
        ("errors", f"/errors?run={v3}&vs={v1}", "Error analysis"),
        ("history", f"/history?example={example}", "Example history"),
        ("review", f"/review?run={v3}&failure=any", "Review"),
    ]
    taken = []
    with running_dashboard(url, tmp / "streamlit.log") as server, chromium() as browser:
        context = browser.new_context(viewport={"width": 1440, "height": 2000})
        page = context.new_page()
        for name, path, title in pages:
            page.goto(server + path)
            page.get_by_role("heading", name=title).first.wait_for(timeout=90_000)
            settle(page)
            no_error_on_page(page)
            if name == "browser":  # filtered to failures, one example open with its conversation
                page.get_by_role("heading", name=f"Example {example}").first.wait_for(timeout=30_000)
                assert page.get_by_text("Conversation").count() > 0
                assert "failure=any" in page.url
            if name == "compare":  # the version's gains over its base, as headline cards
                cards = page.locator('[data-testid="stMetric"]')
                assert cards.count() >= 1
                assert "bleu" in cards.first.inner_text()
                assert "+" in page.locator('[data-testid="stMetricDelta"]').first.inner_text()
            if name == "compare-examples":  # the scatter of A against B and the examples by difference
                page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=30_000)
                assert page.get_by_text("page 1 of").count() > 0
            target = shots / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            taken.append(target)
        context.close()
    for shot in taken:
        assert shot.stat().st_size > 10_000
