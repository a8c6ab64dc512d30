"""One pass threshold per dataset and metric, stored, editable, and the same on every page."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import db
from dashboard import _threshold
from tests.support.dashboard_seed import seed_store

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


@pytest.fixture()
def seeded(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    return url, seed_store(url)


def _open(url, monkeypatch, page, **params) -> AppTest:
    monkeypatch.setenv("EVAL_DB_URL", url)
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(page)
    at.query_params = {k: str(v) for k, v in params.items()}
    at.run()
    assert not at.exception, at.exception
    return at


def _threshold_input(at):
    (box,) = [n for n in at.number_input if n.label.startswith("Pass threshold (value")]
    return box


def _stored(url, dataset_id):
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            return db.pass_thresholds(session=s, dataset_id=dataset_id)
    finally:
        engine.dispose()


def test_without_a_stored_threshold_every_page_proposes_the_same_one_for_every_run(seeded, monkeypatch):
    url, ids = seeded
    proposals = set()
    for run in (ids["latest"], ids["candidates"][0], ids["runs"]["qwen-tune:r1"]):
        at = _open(url, monkeypatch, "views/errors.py", run=run, metric="bleu")
        proposals.add(_threshold_input(at).value)
    at = _open(url, monkeypatch, "views/history.py", dataset=ids["dataset_id"], metric="bleu")
    proposals.add(_threshold_input(at).value)
    assert proposals == {50.0}  # bleu lies in [0, 100]: the middle of its scale, not of one run's range


def test_a_threshold_stored_on_one_page_is_used_by_the_others_and_only_for_its_dataset(seeded, monkeypatch):
    url, ids = seeded
    at = _open(url, monkeypatch, "views/errors.py", run=ids["latest"], metric="bleu")
    _threshold_input(at).set_value(35.0).run()
    (save,) = [b for b in at.button if b.label.startswith("Store 35 as bleu")]
    save.click().run()
    assert not at.exception
    assert _stored(url, ids["dataset_id"])["bleu"]["threshold"] == 35.0
    assert _stored(url, ids["dataset2_id"]) == {}

    # another run of the same dataset, the history page and compare's flips all start from it
    assert _threshold_input(_open(url, monkeypatch, "views/errors.py", run=ids["candidates"][0],
                                  metric="bleu")).value == 35.0
    assert _threshold_input(_open(url, monkeypatch, "views/history.py", dataset=ids["dataset_id"],
                                  metric="bleu")).value == 35.0
    at = _open(url, monkeypatch, "views/compare.py", a=ids["latest"], b=ids["latest_baseline"], metric="bleu",
               view="examples")
    assert at.number_input(key="cmp_thr").proto.placeholder == "35"
    # a run of the other dataset does not inherit it
    probe = ids["runs"]["acme-chat-v1-probe"]
    assert _threshold_input(_open(url, monkeypatch, "views/errors.py", run=probe, metric="bleu")).value == 50.0


def test_switching_run_on_the_errors_page_takes_the_new_datasets_threshold(seeded, monkeypatch):
    url, ids = seeded
    engine = db.open_store(url)
    with db.session_factory(engine).begin() as s:
        db.set_pass_threshold(session=s, dataset_id=ids["dataset2_id"], metric="bleu", threshold=12.5)
    engine.dispose()
    at = _open(url, monkeypatch, "views/errors.py", run=ids["latest"], metric="bleu")
    _threshold_input(at).set_value(41.0).run()  # typed, not stored
    at.selectbox(key="errors_run").set_value(ids["runs"]["acme-chat-v1-probe"]).run()
    assert not at.exception and _threshold_input(at).value == 12.5  # not the 41 typed for the other dataset


@pytest.mark.parametrize("bounds, value", [(None, 0.5), ((0.0, 1.0), 0.5), ((0.1, 0.7), 0.5), ((0.0, 100.0), 50.0),
                                           ((3.0, 80.0), 50.0), ((1.2, 412.0), 210.0), ((-3.0, 1.0), -1.0)])
def test_the_proposal_is_the_middle_of_the_metrics_scale(bounds, value):
    assert _threshold.proposed(bounds) == value
