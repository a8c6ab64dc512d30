"""The Arena page under AppTest against a real ``evaluator serve`` app on loopback: a dead endpoint says so, a
blind match stores a vote that the runs page's rating then counts, and the preferred answer is kept as a test
example that exports as a dataset the evaluator reads."""
from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import db
from evaluator import _serve
from evaluator.data import load_examples
from tests.support.dashboard_seed import seed_store
from tests.support.serving import RunningServer, free_port, serve_demo

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
TIMEOUT = 120


@pytest.fixture(scope="module")
def endpoint(demo_models):
    served = serve_demo(demo_models)
    server = RunningServer(_serve.create_app(served))
    yield server.base_url
    server.stop()
    served.close()


@pytest.fixture()
def store_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    seed_store(url, n_examples=8, versions=1)
    return url


def _arena(url, endpoint, monkeypatch) -> AppTest:
    monkeypatch.setenv("EVAL_DB_URL", url)
    monkeypatch.setenv("EVAL_ARENA_URL", endpoint)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("views/arena.py").run()
    assert not at.exception, at.exception
    return at


def _read(url, fn, **kw):
    engine = db.open_store_readonly(url)
    try:
        with db.session_factory(engine)() as s:
            return fn(session=s, **kw)
    finally:
        engine.dispose()


def test_a_dead_endpoint_is_named_and_no_match_starts(store_url, monkeypatch):
    at = _arena(store_url, f"http://127.0.0.1:{free_port()}/v1", monkeypatch)
    assert any("is not answering" in e.value for e in at.error)
    assert at.button(key="arena_start").disabled


def test_a_blind_vote_is_stored_rated_and_kept(store_url, endpoint, monkeypatch):
    at = _arena(store_url, endpoint, monkeypatch)
    at.selectbox(key="arena_model_1").set_value("demo-base")
    at.selectbox(key="arena_model_2").set_value("demo-v3")
    at.number_input(key="arena_temperature").set_value(0.0)
    at.button(key="arena_start").click().run()
    at.chat_input(key="arena_prompt").set_value("What is the capital of France?").run()
    assert not at.exception, at.exception
    shown = " ".join(m.value for m in at.markdown)
    assert "**A**" in shown and "demo-v3" not in shown  # names hidden until the vote
    match = at.session_state["arena_match"]
    assert match.answered and len(match.conversation_a) == 2
    at.text_input(key="arena_reviewer").set_value("ana")
    at.button(key="arena_vote_right").click().run()

    (vote,) = _read(store_url, db.arena_votes)
    right = "b" if match.left == "a" else "a"
    assert (vote["model_a"], vote["model_b"], vote["reviewer"]) == ("demo-base", "demo-v3", "ana")
    assert (vote["left"], vote["verdict"]) == (match.left, right)
    assert vote["conversation_a"] == match.conversation_a and vote["settings"]["temperature"] == 0.0
    assert any("demo-v3 at" in s.value.replace("\\", "") for s in at.success)  # revealed (Markdown-escaped)

    at.text_input(key="arena_set").set_value("capitals")
    at.button(key="arena_keep").click().run()
    (kept,) = _read(store_url, db.kept_examples, set_name="capitals")
    preferred = match.conversation(right)
    assert kept["messages"] == preferred[:-1] and kept["reference"] == preferred[-1]["content"]
    assert kept["vote_id"] == vote["id"]

    at.switch_page("views/runs.py").run()
    assert not at.exception, at.exception
    ratings = next(d.value for d in at.dataframe if "version" in d.value.columns)
    assert set(ratings["version"]) == {"demo-base", "demo-v3"}
    assert ratings.set_index("version").loc["demo-v3", "arena"] == 1


def test_a_kept_example_round_trips_into_a_run(store_url, demo_models, tmp_path, capsys):
    from evaluator.api import open_store
    from evaluator.cli import main

    engine = db.open_store(store_url)
    with db.session_factory(engine).begin() as s:
        turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                 {"role": "user", "content": "Capital of France? =cmd"}]
        db.keep_example(session=s, set_name="capitals", messages=turns, reference="Paris.")
        db.keep_example(session=s, set_name="capitals", messages=turns[:1], reference="Hello!")
    engine.dispose()
    out = tmp_path / "capitals.jsonl"
    assert main(["export_kept", "capitals", "-o", str(out), "--db", store_url]) == 0
    loaded = load_examples(str(out), turns="last")
    assert loaded.rejected == [] and [e.reference for e in loaded.examples] == ["Paris.", "Hello!"]
    assert loaded.examples[0].messages == turns and loaded.examples[0].category == "capitals"

    assert main(["run", "--model", str(demo_models.base_dir), "--dataset", str(out), "--name", "regression",
                 "--db", store_url, "--max-new-tokens", "8", "--no-progress"]) == 0
    results = open_store(store_url).run("regression").results()
    assert results["reference"].tolist() == ["Paris.", "Hello!"]
    assert set(results["category"]) == {"capitals"} and "rougeL" in results.columns

    capsys.readouterr()
    assert main(["export_kept", "--db", store_url]) == 0
    assert "capitals\t2 examples" in capsys.readouterr().out
    assert main(["export_kept", "nope", "--db", store_url]) == 2
    assert "no kept examples in a set named 'nope' (sets: capitals)" in capsys.readouterr().err


def test_a_match_from_a_stored_example_goes_on_with_each_side_its_own_history(store_url, endpoint, monkeypatch):
    at = _arena(store_url, endpoint, monkeypatch)
    at.selectbox(key="arena_model_1").set_value("demo-v1")
    at.selectbox(key="arena_model_2").set_value("demo-v3")
    at.number_input(key="arena_temperature").set_value(0.0)
    at.selectbox(key="arena_dataset").set_value(_first_dataset(store_url)).run()
    at.text_input(key="arena_search").set_value("plus").run()
    example = _read(store_url, db.find_examples, dataset_id=_first_dataset(store_url), text="plus")[0]["id"]
    at.selectbox(key="arena_example").set_value(example).run()
    opening = _read(store_url, db.example_messages, example_id=example)
    at.button(key="arena_start").click().run()  # the stored conversation is sent to both sides at once
    assert not at.exception, at.exception
    match = at.session_state["arena_match"]
    assert match.answered and match.conversation_a[:-1] == opening == match.conversation_b[:-1]
    at.chat_input(key="arena_prompt").set_value("And times two?").run()
    match = at.session_state["arena_match"]
    assert [m["role"] for m in match.conversation_a][-4:] == ["user", "assistant", "user", "assistant"]
    assert match.conversation_a[-2] == match.conversation_b[-2] == {"role": "user", "content": "And times two?"}
    # each side answered after its own first answer: v1's and v3's differ, and so do their second turns' histories
    assert match.conversation_a[len(opening)] != match.conversation_b[len(opening)]


def _first_dataset(url):
    return _read(url, db.list_datasets)[0]["id"]
