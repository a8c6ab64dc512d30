"""Preference judgments: an LLM (or a human) says which of two answers is better.

This package only re-exports; each concept lives in a private module. The statistics (``_stats``)::

    from evaluator.judging import (win_rate, combine_orders, position_consistency,
                                   length_controlled_win_rate, bradley_terry, judge_human_agreement,
                                   alpaca_eval_preference)
    summaries = summarize(db.judgments_of_pair(session=s, candidate_id=a, baseline_id=b))  # per judge config
"""
from evaluator.judging._stats import (
    alpaca_eval_preference,
    bradley_terry,
    combine_orders,
    judge_human_agreement,
    length_controlled_win_rate,
    position_consistency,
    win_rate,
)
from evaluator.judging._summary import (
    example_preferences,
    human_pass_fail,
    judge_agreement,
    judge_metric_disagreements,
    ratings,
    score_summary,
    summarize,
)
from evaluator.judging._versions import arena_games, judge_games, reviewer_games, version_ratings

__all__ = ["alpaca_eval_preference", "arena_games", "judge_games", "reviewer_games", "version_ratings", "bradley_terry", "combine_orders", "example_preferences", "human_pass_fail",
           "judge_agreement", "judge_human_agreement", "judge_metric_disagreements", "score_summary", "length_controlled_win_rate", "position_consistency", "ratings",
           "summarize", "win_rate"]
