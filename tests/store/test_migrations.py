"""The schema's history: one head, reversible, and in agreement with db/_models.py."""
from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select

import db
from db._engine import MIGRATIONS_DIR, _alembic_config, migration_connection
from tests.support.store_seed import seed_minimal


def _script() -> ScriptDirectory:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg)


def test_exactly_one_head():
    assert len(_script().get_heads()) == 1


def test_models_and_head_revision_agree(any_engine):
    engine = any_engine
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "render_as_batch": True})
        diff = compare_metadata(ctx, db.Base.metadata)
    assert diff == []


def _counts(engine) -> dict[str, int]:
    tables = [t for t in db.Base.metadata.sorted_tables]
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar() for t in tables}


def test_upgrade_downgrade_upgrade_keeps_rows_when_reupgraded(any_engine):
    engine = any_engine
    seed_minimal(engine)
    before = _counts(engine)
    assert all(n > 0 for n in before.values()), before
    cfg = _alembic_config(engine)
    # Downgrading the first revision drops everything; so dump the rows, go down and up, restore,
    # and check the round trip is lossless (this is what a real down/up of a later revision needs).
    with engine.connect() as conn:
        dump = {t.name: [dict(r._mapping) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                for t in db.Base.metadata.sorted_tables}
    with migration_connection(engine) as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    with migration_connection(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    with engine.begin() as conn:
        for t in db.Base.metadata.sorted_tables:
            if dump[t.name]:
                conn.execute(t.insert(), dump[t.name])
    assert _counts(engine) == before
    with engine.connect() as conn:
        after = {t.name: [dict(r._mapping) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
                 for t in db.Base.metadata.sorted_tables}
    assert after == dump


def test_stepping_down_one_revision_and_back_up_keeps_every_row(any_engine):
    engine = any_engine
    seed_minimal(engine)
    before = _counts(engine)
    with engine.connect() as conn:
        columns = [tuple(r) for r in conn.execute(select(db.MetricColumn.__table__).order_by("run_id", "metric_id"))]
    cfg = _alembic_config(engine)
    kept: set[str] = set()
    for target in ("-1", "head"):
        with migration_connection(engine) as conn:
            cfg.attributes["connection"] = conn
            (command.downgrade if target == "-1" else command.upgrade)(cfg, target)
        kept = kept or set(inspect(engine).get_table_names())  # the tables the revision below has
    after = _counts(engine)
    # every row of every table the revision below has stays; a table the head revision adds comes back empty
    assert {t: n for t, n in after.items() if t in kept} == {t: n for t, n in before.items() if t in kept}
    # the head revision adds two tables (arena_votes, kept_examples)
    assert all(after[t] == 0 for t in after if t not in kept) and len(kept) >= len(before) - 2
    Session = db.session_factory(engine)
    with Session.begin() as s:
        for run in s.scalars(select(db.Run.id)):
            db.refresh_metric_columns(session=s, run_id=run)
    with engine.connect() as conn:
        rebuilt = [tuple(r)[:-1] for r in conn.execute(select(db.MetricColumn.__table__).order_by("run_id", "metric_id"))]
    assert rebuilt == [c[:-1] for c in columns]


def test_upgrade_is_a_no_op_at_head(engine):
    rev = db.current_revision(engine)
    db.upgrade(engine)
    assert db.current_revision(engine) == rev == db.head_revision()


def _step(engine, target: str) -> None:
    cfg = _alembic_config(engine)
    with migration_connection(engine) as conn:
        cfg.attributes["connection"] = conn
        (command.upgrade if target == "head" else command.downgrade)(cfg, target)


LATER_TABLES = ("judgments", "kept_examples", "arena_votes")  # children before parents


def test_a_store_from_before_baseline_links_and_content_identity_migrates_without_losing_a_row(any_engine):
    """A store at c5e2a8f1d604 (datasets named by their path, one candidate per baseline) comes up
    with its baseline links copied and each dataset known as ``name:<path>`` under its file name; the
    next run of that path takes the row over (same id), so the dataset's history goes on."""
    engine = any_engine
    seed = seed_minimal(engine)
    with engine.begin() as conn:  # tables that came after c5e2a8f1d604 (other than run_baselines) start empty
        for t in LATER_TABLES:
            conn.execute(db.Base.metadata.tables[t].delete())
    before = _counts(engine)
    _step(engine, "c5e2a8f1d604")
    with engine.begin() as conn:  # what such a store held: the path as given
        conn.execute(db.Dataset.__table__.update().values(name="/home/ann/evals/fixture.jsonl"))
    _step(engine, "head")
    assert _counts(engine) == before  # every row of every table, examples and results included
    with db.session_factory(engine)() as s:
        assert db.baseline_links(session=s) == [
            dict(candidate_id=seed["candidate"], baseline_id=seed["baseline"], reused=False)]
        ds = s.get(db.Dataset, seed["dataset_id"])
        assert (ds.name, ds.source, ds.fingerprint) == (
            "fixture.jsonl", "/home/ann/evals/fixture.jsonl", "name:/home/ann/evals/fixture.jsonl")
    with db.session_factory(engine).begin() as s:
        again = db.get_or_create_dataset(session=s, name="fixture.jsonl", split="test", fingerprint="sha256:abc",
                                         source="/home/ann/evals/fixture.jsonl")
    assert again == seed["dataset_id"]
    with db.session_factory(engine)() as s:
        assert s.get(db.Dataset, again).fingerprint == "sha256:abc"
    # and down again: the path is the identity once more, every row kept
    _step(engine, "c5e2a8f1d604")
    with engine.connect() as conn:
        assert {t: conn.execute(select(func.count()).select_from(db.Base.metadata.tables[t])).scalar()
                for t in before if t not in {"run_baselines", *LATER_TABLES}} == {
            t: n for t, n in before.items() if t not in {"run_baselines", *LATER_TABLES}}
        assert conn.execute(select(db.Dataset.__table__.c.name)).scalar() == "/home/ann/evals/fixture.jsonl"
