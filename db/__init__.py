"""The result store: schema, connection, and every query. Imports neither evaluator nor dashboard."""
from db._errors import UserError
from db._engine import (
    DEFAULT_URL,
    ENV_VAR,
    StoreError,
    check_schema,
    current_revision,
    head_revision,
    make_engine,
    open_store,
    open_store_readonly,
    resolve_url,
    session_factory,
    upgrade,
)
from db._lease import LEASE_ENV, acquire_run, lease_seconds, release_run, renew_runs, status_text, writer_gone
from db._models import (
    Aggregate,
    Annotation,
    Base,
    Comparison,
    Dataset,
    ExampleRow,
    Metric,
    MetricColumn,
    MetricValue,
    RejectedRow,
    Result,
    Run,
    SavedView,
)
from db._values import (
    FAILURE_KINDS,
    VERDICTS,
    FailureKind,
    pack_logprobs,
    prompt_text,
    spreadsheet_safe,
    unpack_logprobs,
)
from db._write import (
    AnnotationError,
    add_annotation,
    add_rejected,
    create_run,
    get_or_create_dataset,
    insert_results,
    metric_ids,
    replace_aggregates,
    replace_comparisons,
    replace_metric_values,
    save_view,
    update_run,
    upsert_examples,
)
from db._columns import delta_summary, join_runs, metric_column, paired_metric, refresh_metric_columns
from db._query import (
    SORT_COLUMNS,
    MetricRange,
    ResultPage,
    ResultQuery,
    count_results,
    dataset_of_run,
    example_history,
    iter_results,
    metric_values,
    metrics_for_results,
    page_results,
    result_detail,
    run_categories,
    run_metric_names,
    selected_example_ids,
)
from db._query_runs import (
    baselines_of,
    find_run,
    get_run,
    list_runs,
    rejected_rows,
    run_aggregates,
    stored_comparisons,
)
from db._query_dashboard import (
    COMPARE_ORDERS,
    Box,
    annotations_of,
    compare_examples,
    delta_by_slice,
    list_datasets,
    metric_bounds,
    metric_info,
    paired_grid,
    run_index,
)
from db._query_errors import (
    DEFAULT_LENGTH_EDGES,
    LENGTH_MEASURES,
    failure_summary,
    length_sample,
    metric_by_length,
    metric_disagreements,
    metric_histograms,
    metric_pair_sample,
    reliability_bins,
    verdict_disagreements,
    verdict_metric_summary,
)
from db._query_history import (
    broken_and_fixed,
    count_examples,
    count_flips,
    dataset_runs,
    datasets_holding,
    example_by_key,
    example_ref,
    find_examples,
    flaky_examples,
    pass_pattern,
)
from db._query_review import (
    QUEUE_LIMIT,
    decision_log,
    human_pass_rates,
    latest_verdicts,
    queue_example_ids,
    saved_view,
    saved_views,
    verdict_summaries,
)
from db._query_scoring import comparison_partners, run_metric_values, scoring_inputs, set_reference_nll
from db._query_runs import done_example_ids, export_rows
