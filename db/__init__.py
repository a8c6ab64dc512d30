"""The result store: schema, connection, and every query. Imports neither evaluator nor dashboard.

The names below are loaded on first use (PEP 562): ``import db`` itself is instant, and a program
that only needs ``db.UserError`` (``python -m evaluator --help``) never imports SQLAlchemy. Each name
lives in the private module listed with it.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "db._arena": (
        "ARENA_VERDICTS", "ArenaError", "add_arena_vote", "arena_votes", "judge_preferences", "keep_example",
        "example_messages", "kept_examples", "kept_sets", "reviewer_verdicts",
    ),
    "db._columns": (
        "delta_summary", "join_runs", "metric_column", "paired_metric", "refresh_metric_columns",
    ),
    "db._engine": (
        "DEFAULT_URL", "ENV_VAR", "StoreError", "check_schema", "current_revision", "head_revision", "make_engine",
        "open_store", "open_store_readonly", "resolve_url", "session_factory", "shown_url", "upgrade",
    ),
    "db._errors": (
        "UserError",
    ),
    "db._judgments": (
        "add_judgments", "judge_key", "judged_keys", "judged_metric_values", "judging_inputs", "judgments_of_candidate", "judgments_of_example", "judgments_of_pair", "judgments_of_run_example",
        "judgments_on_dataset",
    ),
    "db._lease": (
        "LEASE_ENV", "acquire_run", "lease_seconds", "release_run", "renew_runs", "status_text", "writer_gone",
    ),
    "db._models": (
        "Aggregate", "Annotation", "ArenaVote", "Base", "Comparison", "Dataset", "ExampleRow", "Judgment", "Metric", "MetricColumn",
        "KeptExample", "MetricValue", "PassThreshold", "RejectedRow", "Result", "Run", "SavedView",
    ),
    "db._query": (
        "JUDGE_FILTERS", "SORT_COLUMNS", "MetricRange", "ResultPage", "ResultQuery", "count_results", "dataset_of_run",
        "example_history", "iter_results", "metric_values", "metrics_for_results", "page_results", "result_detail",
        "run_categories", "run_metric_names", "selected_example_ids",
    ),
    "db._query_dashboard": (
        "COMPARE_ORDERS", "Box", "annotations_of", "compare_examples", "delta_by_slice", "list_datasets",
        "metric_bounds", "metric_info", "paired_grid", "pass_thresholds", "run_index",
    ),
    "db._query_errors": (
        "DEFAULT_LENGTH_EDGES", "LENGTH_MEASURES", "failure_summary", "length_sample", "metric_by_length",
        "metric_disagreements", "metric_histograms", "metric_pair_sample", "reliability_bins",
        "verdict_disagreements", "verdict_metric_summary",
    ),
    "db._query_history": (
        "broken_and_fixed", "count_examples", "count_flips", "dataset_runs", "datasets_holding", "example_by_key",
        "example_ref", "find_examples", "flaky_examples", "pass_pattern",
    ),
    "db._query_review": (
        "QUEUE_LIMIT", "decision_log", "human_pass_rates", "latest_verdicts", "queue_example_ids", "saved_view",
        "saved_views", "verdict_summaries",
    ),
    "db._query_runs": (
        "REUSE_CONFIG_KEYS", "REUSE_REPRO_KEYS", "baseline_links", "baselines_of", "conversation_answers",
        "done_example_ids",
        "find_reusable_run", "export_rows", "find_run", "get_run", "list_runs", "rejected_rows",
        "run_aggregates", "stored_comparisons",
    ),
    "db._query_scoring": (
        "comparison_partners", "run_metric_values", "scoring_inputs", "set_reference_nll",
    ),
    "db._records": (
        "AggregateRecord", "ComparisonRecord", "ExampleRecord", "MetricInput", "RejectedRecord", "ResultRecord",
    ),
    "db._values": (
        "FAILURE_KINDS", "VERDICTS", "FailureKind", "pack_logprobs", "prompt_text", "spreadsheet_safe",
        "unpack_logprobs", "utcnow",
    ),
    "db._write": (
        "AnnotationError", "add_annotation", "add_rejected", "create_run", "get_or_create_dataset",
        "insert_results", "link_baseline", "metric_ids", "refresh_statistics", "replace_aggregates", "replace_comparisons",
        "replace_metric_values", "save_view", "set_pass_threshold", "update_run", "upsert_examples",
    ),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'db' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

