"""The review page end to end under AppTest: a queue from a saved browser filter, verdicts from two
reviewers, agreement, the browser's verdict filter, exports, and every way a save can fail."""
from __future__ import annotations

import pytest
from sqlalchemy import delete

import db
from dashboard import _review as review
from tests.support.dashboard_seed import HOSTILE, seed_store
from tests.support.review_data import markdown_texts, open_page, shown_texts

VIEW = "hostile v3"


@pytest.fixture()
def seeded(store_url):
    out = seed_store(store_url, n_examples=60, versions=3)
    engine = db.make_engine(store_url)
    Session = db.session_factory(engine)
    with Session() as s:
        out["queue"] = db.queue_example_ids(session=s, query=db.ResultQuery(run_id=out["latest"], tag="hostile"))
    yield out, Session
    engine.dispose()


def _save_view(Session, out):
    with Session.begin() as s:
        db.save_view(session=s, name=VIEW, params={"run": str(out["latest"]), "tag": "hostile"})


def _verdict_widgets(at):
    radio = next(r for r in at.radio if r.key.startswith("review_verdict_"))
    comment = next(t for t in at.text_area if t.key.startswith("review_comment_"))
    return radio, comment


def _annotations(Session, run_id):
    with Session() as s:
        return db.decision_log(session=s, run_ids=[run_id])


def test_full_review_flow_two_reviewers_agreement_browser_filter_and_export(monkeypatch, store_url, seeded):
    out, Session = seeded
    run, queue = out["latest"], out["queue"]
    before = len(_annotations(Session, run))  # the seed has a few verdicts by "dana"

    # 1. save the browser's current filter (its link) as a named view: the queue's source
    at = open_page(monkeypatch, store_url, "review")
    assert not at.exception and at.selectbox(key="review_view").value is None
    at.text_input(key="review_reviewer").input("alice")
    at.text_input(key="review_new_link").input(f"http://localhost:8501/browser?run={run}&tag=hostile&page=2&ex=4")
    at.text_input(key="review_new_name").input(VIEW)
    at.button(key="review_new_save").click().run()
    assert not at.exception
    assert dict(at.query_params) == {"view": VIEW, "pos": "1", "reviewer": "alice"}
    with Session() as s:
        assert db.saved_view(session=s, name=VIEW)["params"] == {"run": str(run), "tag": "hostile"}
    assert at.selectbox(key="review_view").value == VIEW

    # 2. alice judges the first example and moves on to the second
    radio, comment = _verdict_widgets(at)
    assert radio.key == f"review_verdict_{run}_{queue[0]}"
    radio.set_value("fail: metric misleading")
    comment.input("BLEU is high but the answer is wrong <b>!</b>")
    at.button(key="review_save").click().run()
    assert not at.exception and not at.error
    assert at.query_params["pos"] == "2"
    radio, _ = _verdict_widgets(at)
    assert radio.key == f"review_verdict_{run}_{queue[1]}"
    radio.set_value("pass")
    at.button(key="review_save").click().run()
    assert at.query_params["pos"] == "3"

    # 3. bob opens the same link at position 1 and disagrees on the first example
    at = open_page(monkeypatch, store_url, "review", view=VIEW, pos=1, reviewer="bob")
    radio, comment = _verdict_widgets(at)
    assert radio.value is None  # bob has not judged it
    radio.set_value("pass")
    at.button(key="review_save").click().run()
    assert not at.exception and at.query_params["pos"] == "2"

    with Session() as s:
        latest = {(v["example_id"], v["reviewer"]): v["verdict"]
                  for v in db.latest_verdicts(session=s, run_id=run, example_ids=queue)}
        # 4. the verdicts are a filter of the example browser
        misleading = db.page_results(session=s, query=db.ResultQuery(run_id=run, verdict="fail: metric misleading"))
        passed = {r["example_id"] for r in db.page_results(session=s, query=db.ResultQuery(
            run_id=run, verdict="pass")).rows}
    assert latest[(queue[0], "alice")] == "fail: metric misleading" and latest[(queue[0], "bob")] == "pass"
    assert latest[(queue[1], "alice")] == "pass"
    assert [r["example_id"] for r in misleading.rows] == [queue[0]]
    assert {queue[0], queue[1]} <= passed

    # 5. agreement on the page. The seed's reviewer dana judged queue[0] "pass" and queue[1] "fail: model
    # error", so queue[0] has 3 reviewers (pass, misleading, pass) and queue[1] 2 (model error, pass): Fleiss'
    # kappa with P = (1/3 + 0) / 2, p = (3, 1, 1) / 5 -> P_e = 11/25, kappa = (1/6 - 11/25) / (14/25) = -0.49.
    at = open_page(monkeypatch, store_url, "review", view=VIEW, pos=1, reviewer="bob")
    labels = {m.label: m.value for m in at.metric}
    assert labels["Fleiss' kappa"] == "-0.49"
    assert labels["Unanimous (of those judged by 2+)"] == "0%"
    table = next(df.value for df in at.dataframe if "unanimous" in df.value.columns)
    row = table[table["example_id"] == queue[0]].iloc[0]
    assert (row["alice"], row["bob"], row["unanimous"]) == ("fail: metric misleading", "pass", False)

    # 6. the decision log exports both reviewers' verdicts with links to each example
    log = _annotations(Session, run)
    assert len(log) == before + 3
    md = review.decision_log_markdown(log, "http://localhost:8501", title=VIEW)
    csv_text = review.decision_log_csv(log).decode("utf-8-sig")
    for text in (md, csv_text):
        assert "alice" in text and "bob" in text and "fail: metric misleading" in text
        assert f"http://localhost:8501/browser?run={run}&ex={queue[0]}" in text
    assert len(at.get("download_button")) == 2  # Markdown and CSV


def test_the_link_reproduces_the_position_and_next_previous_move_it(monkeypatch, store_url, seeded):
    out, Session = seeded
    _save_view(Session, out)
    at = open_page(monkeypatch, store_url, "review", view=VIEW, pos=3)
    radio, _ = _verdict_widgets(at)
    assert radio.key == f"review_verdict_{out['latest']}_{out['queue'][2]}"
    at.button(key="review_next").click().run()
    assert at.query_params["pos"] == "4"
    at.button(key="review_prev").click().run()
    at.button(key="review_prev").click().run()
    assert at.query_params["pos"] == "2"
    far = open_page(monkeypatch, store_url, "review", view=VIEW, pos=999)
    assert far.query_params["pos"] == str(len(out["queue"]))  # clamped to the queue


def test_example_text_is_shown_literally_never_as_markdown(monkeypatch, store_url, seeded):
    out, Session = seeded
    _save_view(Session, out)
    for pos in range(1, len(out["queue"]) + 1):
        at = open_page(monkeypatch, store_url, "review", view=VIEW, pos=pos, reviewer="<b>eve</b>")
        assert not at.exception
        shown = "\n".join(shown_texts(at))
        assert any(h in shown for h in HOSTILE), pos
        for text in markdown_texts(at):
            assert not any(h in text for h in HOSTILE) and "<b>eve</b>" not in text


def test_saving_without_a_name_is_refused_and_keeps_the_verdict(monkeypatch, store_url, seeded):
    out, Session = seeded
    _save_view(Session, out)
    before = len(_annotations(Session, out["latest"]))
    at = open_page(monkeypatch, store_url, "review", view=VIEW, pos=2)
    radio, comment = _verdict_widgets(at)
    radio.set_value("needs discussion")
    comment.input("ask the data team")
    at.button(key="review_save").click().run()
    assert not at.exception
    assert any("enter your name" in e.value for e in at.error)
    assert len(_annotations(Session, out["latest"])) == before
    radio, comment = _verdict_widgets(at)
    assert (radio.value, comment.value) == ("needs discussion", "ask the data team")  # nothing lost
    at.text_input(key="review_reviewer").input("frank")
    at.button(key="review_save").click().run()
    assert not at.error and len(_annotations(Session, out["latest"])) == before + 1


def test_a_verdict_for_an_example_deleted_meanwhile_is_refused_with_a_message(monkeypatch, store_url, seeded):
    out, Session = seeded
    _save_view(Session, out)
    run, victim = out["latest"], out["queue"][3]
    at = open_page(monkeypatch, store_url, "review", view=VIEW, pos=4, reviewer="carol")
    radio, comment = _verdict_widgets(at)
    radio.set_value("fail: model error")
    comment.input("wrong sum")
    with Session.begin() as s:  # the run is re-evaluated or cleaned up while carol reads
        s.execute(delete(db.Result).where(db.Result.run_id == run, db.Result.example_id == victim))
    before = len(_annotations(Session, run))
    at.button(key="review_save").click().run()
    assert not at.exception
    assert any("no longer in the run" in e.value for e in at.error)
    assert len(_annotations(Session, run)) == before
    radio, comment = _verdict_widgets(at)
    assert (radio.value, comment.value) == ("fail: model error", "wrong sum")


def test_a_link_to_a_missing_view_or_a_store_without_views_explains(monkeypatch, store_url, seeded):
    at = open_page(monkeypatch, store_url, "review", view="<script>nope</script>")
    assert not at.exception
    assert any("does not exist" in w.value for w in at.warning)
    assert any("<script>nope</script>" in t for t in shown_texts(at))
    assert any("Choose a saved view" in i.value for i in at.info)


def test_a_browser_filter_link_prefills_a_new_queue(monkeypatch, store_url, seeded):
    out, _ = seeded
    at = open_page(monkeypatch, store_url, "review", run=out["latest"], category="support")
    assert not at.exception
    assert at.text_input(key="review_new_link").value == f"?run={out['latest']}&category=support"
    at.text_input(key="review_new_name").input("support")
    at.button(key="review_new_save").click().run()
    assert at.query_params["view"] == "support" and not at.exception


def test_a_new_queue_never_replaces_an_existing_view(monkeypatch, store_url, seeded):
    out, Session = seeded
    _save_view(Session, out)
    at = open_page(monkeypatch, store_url, "review")
    at.text_input(key="review_new_link").input(f"/browser?run={out['latest']}&category=support")
    at.text_input(key="review_new_name").input(VIEW)
    at.button(key="review_new_save").click().run()
    assert any("exists already" in e.value for e in at.error)
    with Session() as s:
        assert db.saved_view(session=s, name=VIEW)["params"] == {"run": str(out["latest"]), "tag": "hostile"}
    at.text_input(key="review_new_link").input("/browser?category=support")  # no run: not a filter
    at.text_input(key="review_new_name").input("other")
    at.button(key="review_new_save").click().run()
    assert any("not an example-browser filter" in e.value for e in at.error) and not at.exception


def test_a_queue_whose_filter_names_a_metric_the_run_lacks_is_refused_with_the_likely_name(monkeypatch, store_url,
                                                                                          seeded):
    out, Session = seeded
    at = open_page(monkeypatch, store_url, "review")
    at.text_input(key="review_new_link").input(f"/browser?run={out['latest']}&range=rougeL::0.2")
    at.text_input(key="review_new_name").input("typo")
    at.button(key="review_new_save").click().run()
    assert not at.exception
    assert any("'rougeL' (did you mean 'rouge\\_l'?)" in e.value and "would hold no example" in e.value for e in at.error)
    with Session() as s:
        assert db.saved_view(session=s, name="typo") is None


def test_the_queue_name_placeholder_does_not_look_like_a_name(monkeypatch, store_url, seeded):
    at = open_page(monkeypatch, store_url, "review")
    assert at.text_input(key="review_new_name").placeholder.startswith("required")
    assert "localhost" not in at.text_input(key="review_new_link").placeholder
