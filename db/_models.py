"""The store's schema: SQLAlchemy 2 typed declarative models.

The schema only changes through an Alembic revision in ``migrations/``; a test checks that these
models and the head revision agree.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from db._values import utcnow

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    """A dataset's content and split. Examples belong to it; runs of every model point at it.

    It is identified by its content (``fingerprint``), not by where it lies: runs of the same file from
    two clones in different directories share it, and their history joins. ``name`` is what people
    call it (the file name, or the Hub id); ``source`` is where it was last read from."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("fingerprint", "split", "turns"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(500))  # display name: file or directory name, or the Hub id
    # "sha256:HEX" of a file's bytes, "datasets:FP" (a save_to_disk directory's or a Hub dataset's own
    # fingerprint), or "name:NAME" where no content is at hand (imported runs; stores from before this)
    fingerprint: Mapped[str] = mapped_column(String(200))
    source: Mapped[Optional[str]] = mapped_column(Text)  # the path or Hub id as last given
    split: Mapped[str] = mapped_column(String(100), default="")
    turns: Mapped[str] = mapped_column(String(10), default="last")  # "last" | "all": different examples
    format: Mapped[Optional[str]] = mapped_column(String(50))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)

    examples: Mapped[list["ExampleRow"]] = relationship(back_populates="dataset", lazy="raise")


class ExampleRow(Base):
    """One evaluation item. ``key`` is stable: the same row (and turn) has the same key in every run."""

    __tablename__ = "examples"
    __table_args__ = (
        UniqueConstraint("dataset_id", "key"),
        Index("ix_examples_dataset_category", "dataset_id", "category"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    row_index: Mapped[int] = mapped_column(Integer)
    messages: Mapped[list[Any]] = mapped_column(JSON)  # [{"role", "content"}, ...] given to the model
    prompt_text: Mapped[str] = mapped_column(Text, default="")  # plain text of `messages`, for search
    reference: Mapped[Optional[str]] = mapped_column(Text)
    category: Mapped[Optional[str]] = mapped_column(String(200))
    source: Mapped[Optional[str]] = mapped_column(String(200))
    conversation_id: Mapped[Optional[str]] = mapped_column(String(200))
    turn_index: Mapped[Optional[int]] = mapped_column(Integer)
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)

    dataset: Mapped[Dataset] = relationship(back_populates="examples", lazy="raise")


class Run(Base):
    """One model evaluated on one dataset split."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_dataset_created", "dataset_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    family: Mapped[Optional[str]] = mapped_column(String(300))  # groups versions of one model in trends
    model: Mapped[str] = mapped_column(String(500))
    model_revision: Mapped[Optional[str]] = mapped_column(String(200))
    adapter: Mapped[Optional[str]] = mapped_column(String(500))
    backend: Mapped[str] = mapped_column(String(50))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="RESTRICT"))
    generation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # generation settings
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # resolved, validated run config
    repro: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # git sha, versions, hashes, seed
    # A baseline run points at the candidate it was first evaluated for; the candidate has NULL here.
    # Which runs are whose baselines is ``RunBaseline`` (a reused baseline serves several candidates).
    baseline_for_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | finished | failed | interrupted
    error: Mapped[Optional[str]] = mapped_column(Text)
    n_rows: Mapped[int] = mapped_column(Integer, default=0)  # rows read from the dataset
    n_examples: Mapped[int] = mapped_column(Integer, default=0)  # examples to evaluate
    n_rejected: Mapped[int] = mapped_column(Integer, default=0)  # rows rejected (see rejected_rows)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)
    # The lease of the process writing the run ("host:pid:token"), renewed every few seconds while it
    # runs: a second writer is refused while the heartbeat is fresh, and a "running" run whose heartbeat
    # went stale lost its writer without a word (kill -9, power loss) and is shown as interrupted.
    writer: Mapped[Optional[str]] = mapped_column(String(200))
    heartbeat_at: Mapped[Optional[dt.datetime]] = mapped_column(DateTime)

    dataset: Mapped[Dataset] = relationship(lazy="raise")


class RunBaseline(Base):
    """Run ``baseline_id`` is a baseline of candidate ``candidate_id``. One baseline run may serve many
    candidates: ``--baseline`` reuses a finished run of the identical model, settings and data instead of
    generating again (``reused`` says so; ``--no-reuse`` forces a fresh run)."""

    __tablename__ = "run_baselines"

    candidate_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    baseline_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True,
                                             index=True)
    reused: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RejectedRow(Base):
    """A dataset row that did not become an example, with why."""

    __tablename__ = "rejected_rows"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    row_index: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[Optional[str]] = mapped_column(Text)


class Result(Base):
    """The model's answer to one example in one run."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("run_id", "example_id"),
        # Partial index of the (few) results whose generation failed: the runs table counts them
        # per run without reading every result row.
        Index("ix_results_run_failed", "run_id", sqlite_where=text("finish_reason = 'error'"),
              postgresql_where=text("finish_reason = 'error'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), index=True)
    output: Mapped[str] = mapped_column(Text, default="")
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    finish_reason: Mapped[str] = mapped_column(String(10))  # stop | length | error
    # Bit set of db.FailureKind (empty output, truncated, repetition, prompt truncated, error).
    failures: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[Optional[float]] = mapped_column(Float)
    # Per-token log-probabilities of the output as little-endian float32 bytes (db.pack_logprobs):
    # 4 bytes a token instead of a row a token.
    token_logprobs: Mapped[Optional[bytes]] = mapped_column(LargeBinary)
    tokens: Mapped[Optional[list[Any]]] = mapped_column(JSON)  # decoded text of each output token
    # Teacher-forced log-likelihood of the reference, for token-weighted corpus perplexity.
    ref_nll: Mapped[Optional[float]] = mapped_column(Float)
    ref_tokens: Mapped[Optional[int]] = mapped_column(Integer)
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Metric(Base):
    """A metric name, interned so that metric_values rows carry a small integer."""

    __tablename__ = "metrics"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    higher_is_better: Mapped[Optional[bool]] = mapped_column()
    description: Mapped[Optional[str]] = mapped_column(Text)


class MetricValue(Base):
    """One metric of one result.

    Layout: long ("entity-attribute-value") rather than a column per metric, because users add metrics
    without a migration. Speed comes from (a) the primary key (result_id, metric_id), which fetches all
    metrics of a page of results, and (b) the covering index (run_id, metric_id, value, result_id): a
    range filter on one metric is an index range scan, and "sorted by metric M" walks that index in
    order and stops after one page. run_id is denormalised onto the row for exactly that index.
    On SQLite the table is WITHOUT ROWID, so the primary key is the table (no second copy).
    """

    __tablename__ = "metric_values"
    __table_args__ = (
        Index("ix_metric_values_run_metric_value", "run_id", "metric_id", "value", "result_id"),
        {"sqlite_with_rowid": False},
    )

    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"), primary_key=True)
    metric_id: Mapped[int] = mapped_column(ForeignKey("metrics.id", ondelete="CASCADE"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    value: Mapped[Optional[float]] = mapped_column(Float)  # NULL when the metric failed (see error)
    error: Mapped[Optional[str]] = mapped_column(Text)


class MetricColumn(Base):
    """A finished run's values of one metric as two packed arrays, ordered by example id.

    The row layout above answers "a page of results filtered and sorted by metrics" from its indexes;
    whole-run analytics (joining two runs on example with per-metric deltas, distributions, A-vs-B
    scatter) would have to visit every (result, metric) row through B-tree lookups, ~10 µs each, which
    is seconds for two 100k runs. So when a run is finalised the evaluator also writes each metric as a
    column: ``example_ids`` (int64) and ``values`` (float64, NaN where the metric failed), both
    little-endian. Joining two runs is then an intersection of two sorted arrays in numpy.
    It is a cache of metric_values: readers fall back to metric_values when it is missing, and
    re-scoring rewrites it (db.refresh_metric_columns).
    """

    __tablename__ = "metric_columns"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    metric_id: Mapped[int] = mapped_column(ForeignKey("metrics.id", ondelete="CASCADE"), primary_key=True)
    n: Mapped[int] = mapped_column(Integer)
    example_ids: Mapped[bytes] = mapped_column(LargeBinary)
    values: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Aggregate(Base):
    """A run-level number for one metric over all examples ("") or one slice ("category=support")."""

    __tablename__ = "aggregates"
    __table_args__ = (UniqueConstraint("run_id", "metric", "slice", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(100))
    slice: Mapped[str] = mapped_column(String(300), default="")
    kind: Mapped[str] = mapped_column(String(20))  # "mean" (of per-example values) | "corpus"
    n: Mapped[int] = mapped_column(Integer)
    value: Mapped[Optional[float]] = mapped_column(Float)
    ci_low: Mapped[Optional[float]] = mapped_column(Float)
    ci_high: Mapped[Optional[float]] = mapped_column(Float)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Comparison(Base):
    """Candidate run A against baseline run B for one metric (and slice), on the examples both have."""

    __tablename__ = "comparisons"
    __table_args__ = (UniqueConstraint("run_a_id", "run_b_id", "metric", "slice", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_a_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    run_b_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(100))
    slice: Mapped[str] = mapped_column(String(300), default="")
    kind: Mapped[str] = mapped_column(String(20), default="mean")  # "mean" | "corpus"
    n: Mapped[int] = mapped_column(Integer)
    value_a: Mapped[Optional[float]] = mapped_column(Float)
    value_b: Mapped[Optional[float]] = mapped_column(Float)
    delta: Mapped[Optional[float]] = mapped_column(Float)  # A - B
    ci_low: Mapped[Optional[float]] = mapped_column(Float)
    ci_high: Mapped[Optional[float]] = mapped_column(Float)
    p_value: Mapped[Optional[float]] = mapped_column(Float)
    p_holm: Mapped[Optional[float]] = mapped_column(Float)  # Holm-adjusted across the metrics compared
    wins: Mapped[int] = mapped_column(Integer, default=0)  # examples where A is better
    ties: Mapped[int] = mapped_column(Integer, default=0)
    losses: Mapped[int] = mapped_column(Integer, default=0)
    method: Mapped[str] = mapped_column(Text, default="")  # e.g. the bootstrap and its resample counts
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Annotation(Base):
    """A human verdict on one example of one run. Several reviewers may judge the same example."""

    __tablename__ = "annotations"
    __table_args__ = (Index("ix_annotations_run_example", "run_id", "example_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(200))
    verdict: Mapped[str] = mapped_column(String(50))  # see db.VERDICTS
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SavedView(Base):
    """A named example-browser filter (its query parameters), e.g. the source of a review queue."""

    __tablename__ = "saved_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class PassThreshold(Base):
    """The value at which a metric passes on a dataset, one per (dataset, metric), set by the team and used
    by every page that speaks of pass and fail (error analysis, history, compare's flips). A result passes
    when its value is on the metric's good side of the threshold (>= when higher is better, else <=)."""

    __tablename__ = "pass_thresholds"
    __table_args__ = (UniqueConstraint("dataset_id", "metric"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(100))
    threshold: Mapped[float] = mapped_column(Float)
    set_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Judgment(Base):
    """One judge's verdict on one example of a candidate run against a baseline run (pairwise), or on the
    candidate's answer alone (single-answer and reference-guided grading: ``baseline_id`` is None).

    ``preference`` is the probability that the candidate's answer is better, 0.5 a tie, from the parsed
    verdict or weighted from the verdict tokens' log-probabilities; None when the reply could not be parsed
    (``error`` says why: a judge failure, never a tie). ``order`` is which answer the judge saw first: "ab"
    the candidate, "ba" the baseline. ``judge_key`` identifies the judge config (judge, mode, template hash,
    generation settings), so a re-run finds what it already judged and a changed template judges anew."""

    __tablename__ = "judgments"
    __table_args__ = (
        UniqueConstraint("candidate_id", "baseline_key", "example_id", "order", "judge_key"),
        Index("ix_judgments_pair", "candidate_id", "baseline_id", "judge_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    baseline_id: Mapped[Optional[int]] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    baseline_key: Mapped[int] = mapped_column(Integer, default=0)  # baseline_id, or 0 without one (unique key)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), index=True)
    order: Mapped[str] = mapped_column(String(2))  # "ab": candidate shown first; "ba": baseline first
    judge: Mapped[str] = mapped_column(String(300))  # the judge model, e.g. openai:gpt-4o or a path
    mode: Mapped[str] = mapped_column(String(20))  # pairwise | single | reference
    judge_key: Mapped[str] = mapped_column(String(64))  # sha256 of the judge config
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # template text and hash, settings
    preference: Mapped[Optional[float]] = mapped_column(Float)
    score: Mapped[Optional[float]] = mapped_column(Float)  # single-answer grading: 1-10
    verdict: Mapped[Optional[str]] = mapped_column(String(50))  # the parsed verdict, e.g. "A", "B", "tie"
    verdict_logprobs: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON)
    reply: Mapped[str] = mapped_column(Text, default="")  # the judge's whole reply
    error: Mapped[Optional[str]] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ArenaVote(Base):
    """One blind vote in the dashboard's Arena: two answers to the same conversation, A better, B better, tie
    or both bad. ``model_a``/``model_b`` are the model ids the endpoints were asked for (a served version's
    name), ``endpoint_a``/``endpoint_b`` their API roots; ``left`` is which of them was shown on the left
    ("a" or "b", randomised). Each side keeps its own history: ``conversation_a``/``_b`` are the full
    conversations, the answers voted on last. ``preference`` is the probability that A is better (1, 0, 0.5
    for a tie and for both bad)."""

    __tablename__ = "arena_votes"

    id: Mapped[int] = mapped_column(primary_key=True)
    reviewer: Mapped[str] = mapped_column(String(200))
    model_a: Mapped[str] = mapped_column(String(300))
    model_b: Mapped[str] = mapped_column(String(300))
    endpoint_a: Mapped[str] = mapped_column(String(500))
    endpoint_b: Mapped[str] = mapped_column(String(500))
    left: Mapped[str] = mapped_column(String(1))
    verdict: Mapped[str] = mapped_column(String(20))  # see db.ARENA_VERDICTS
    preference: Mapped[float] = mapped_column(Float)
    comment: Mapped[str] = mapped_column(Text, default="")
    conversation_a: Mapped[list[Any]] = mapped_column(JSON)
    conversation_b: Mapped[list[Any]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class KeptExample(Base):
    """A conversation kept from the Arena as a test example of a named set: ``messages`` up to the last user
    turn, ``reference`` the preferred answer. Exported as JSONL in the messages format
    (``python -m evaluator export_kept NAME``), it is a regression set for the next ``evaluator run``."""

    __tablename__ = "kept_examples"
    __table_args__ = (Index("ix_kept_examples_set", "set_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    set_name: Mapped[str] = mapped_column(String(300))
    messages: Mapped[list[Any]] = mapped_column(JSON)
    reference: Mapped[str] = mapped_column(Text)
    vote_id: Mapped[Optional[int]] = mapped_column(ForeignKey("arena_votes.id", ondelete="SET NULL"))
    kept_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
