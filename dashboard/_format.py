"""How the dashboard writes numbers, runs and user text: formatting shared by every page.

Pure functions of their arguments (no Streamlit, no store), so they are tested directly.
"""
from __future__ import annotations

import difflib
import math
import re
from collections import Counter
from typing import Any, Callable, Mapping, Optional

import pandas as pd

_MARKDOWN_SPECIALS = set("\\`*_{}[]()#+-.!|<>~$:=&\"'")


def escape_markdown(text: str) -> str:
    """``text`` with every Markdown-significant character backslash-escaped, for the few elements that
    only take Markdown (st.error, st.info, ...) when a message must include a path or a name."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIALS else ch for ch in str(text))


def family_of(name: str, family: Optional[str]) -> str:
    """A run's model family: ``run.family``, else its name up to the last "-" or ":" ("acme-v3" -> "acme")."""
    if family:
        return family
    cut = max(name.rfind("-"), name.rfind(":"))
    return name[:cut] if cut > 0 else name


def verdict_text(counts: dict[str, int]) -> str:
    """{"pass": 2, "needs discussion": 1} -> "pass ×2, needs discussion" ("" when unreviewed)."""
    return ", ".join(v if n == 1 else f"{v} ×{n}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _is_baseline(runs: pd.DataFrame) -> pd.Series:
    """Which runs serve as some candidate's baseline (``is_baseline`` from the store; a frame without it
    falls back on ``baseline_for_id``)."""
    if "is_baseline" in runs:
        return runs["is_baseline"].fillna(False).astype(bool)
    return runs["baseline_for_id"].notna()


def _baseline_map(runs: pd.DataFrame) -> dict[int, list[int]]:
    """run id -> its baseline run ids, newest first, for every run of the frame (one pass: a page asks for many)."""
    newest_first = runs.sort_values(["created_at", "id"], ascending=False)
    rank = {int(i): n for n, i in enumerate(newest_first["id"])}
    out: dict[int, list[int]] = {}
    if "baselines" in runs:
        for run_id, ids in zip(runs["id"], runs["baselines"]):
            listed = ids if hasattr(ids, "__iter__") and not isinstance(ids, str) else []  # NaN: none
            known = [int(i) for i in listed if int(i) in rank]
            out[int(run_id)] = sorted(known, key=rank.__getitem__)
    else:
        for base, cand in zip(newest_first["id"], newest_first["baseline_for_id"]):
            if pd.notna(cand):
                out.setdefault(int(cand), []).append(int(base))
    return out


def _baselines(runs: pd.DataFrame, run_id: int) -> list[int]:
    """The baseline run ids of ``run_id``, newest first."""
    return _baseline_map(runs).get(int(run_id), [])


def default_run(runs: pd.DataFrame) -> Optional[int]:
    """The run a page opens on: the newest finished candidate (a run that is no other run's baseline),
    else the newest finished run, else the newest run."""
    if runs.empty:
        return None
    runs = runs.sort_values(["created_at", "id"], ascending=False)
    finished = runs[runs["status"] == "finished"]
    for pool in (finished[~_is_baseline(finished)], finished, runs):
        if not pool.empty:
            return int(pool.iloc[0]["id"])
    return None


def own_baseline(runs: pd.DataFrame, run_id: Optional[int]) -> Optional[int]:
    """The newest baseline of ``run_id`` (evaluated for it or reused; None when it has none)."""
    if run_id is None or runs.empty:
        return None
    mine = _baselines(runs, int(run_id))
    return mine[0] if mine else None


def default_pair(runs: pd.DataFrame) -> tuple[Optional[int], Optional[int]]:
    """Default (A, B) to compare: the latest candidate that has a baseline and its newest baseline;
    else the two latest runs on the dataset of the latest run; else what exists."""
    if runs.empty:
        return None, None
    runs = runs.sort_values(["created_at", "id"], ascending=False)
    baselines = _baseline_map(runs)
    for cand in runs[~_is_baseline(runs)]["id"]:
        mine = baselines.get(int(cand), [])
        if mine:
            return int(cand), mine[0]
    first = runs.iloc[0]
    same = runs[(runs["dataset_id"] == first["dataset_id"]) & (runs["id"] != first["id"])]
    return int(first["id"]), (int(same.iloc[0]["id"]) if not same.empty else None)


def headline(aggs: pd.DataFrame) -> pd.DataFrame:
    """One aggregate per (run, metric): the corpus-level figure where stored, else the mean."""
    if aggs.empty:
        return aggs
    order = aggs.assign(_rank=(aggs["kind"] != "corpus").astype(int)).sort_values("_rank")
    return order.drop_duplicates(["run_id", "metric"]).drop(columns="_rank")


def fmt_num(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}g}" if abs(v) < 10 ** digits else f"{v:.0f}"


def delta_decimals(scale: Any) -> int:
    """Decimals for a difference of a metric whose values are about ``scale`` in size: three significant
    digits at that scale (0.492 on a 0-1 metric, 45.1 on BLEU's 0-100), at most 4."""
    if scale is None or not math.isfinite(float(scale)) or float(scale) == 0:
        return 3
    return max(0, min(4, 3 - math.ceil(math.log10(abs(float(scale))))))


def fmt_delta(v: Any, scale: Any = 1.0) -> str:
    """A signed difference, "+0.492" or "-45.1", never without its sign; a difference too small for the
    metric's precision is written in full ("+4.2e-05") rather than as a signed zero."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    digits = delta_decimals(scale)
    if v == 0:
        return f"{0:.{digits}f}"
    if abs(v) < 0.5 * 10 ** -digits:
        return f"{v:+.2g}"
    return f"{v:+.{digits}f}"


def fmt_delta_ci(lo: Any, hi: Any, scale: Any = 1.0) -> str:
    """The 95% CI of a difference, signed like the difference: "[+0.449, +0.533]" ("–" when absent)."""
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)) or \
            (isinstance(hi, float) and math.isnan(hi)):
        return "–"
    return f"[{fmt_delta(lo, scale)}, {fmt_delta(hi, scale)}]"


ALPHA = 0.05  # the significance level the dashboard speaks of


def fmt_p(p: Any) -> str:
    """A p-value as a reader takes it: "0.023", "< 0.001" below a thousandth (where a resampling test's
    floor lies: 1,000 resamples cannot show less than 1/1001), "–" when absent."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def significance(p_holm: Any, alpha: float = ALPHA) -> str:
    """In words: "significant at 5% after Holm" or "not significant" ("" without a p-value)."""
    if p_holm is None or (isinstance(p_holm, float) and math.isnan(p_holm)):
        return ""
    return f"significant at {alpha:.0%} after Holm" if p_holm < alpha else "not significant"


def fmt_ci(value: Any, lo: Any, hi: Any) -> str:
    """"0.612 [0.580, 0.640]"; the brackets are the 95% confidence interval."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return fmt_num(value)
    return f"{fmt_num(value)} [{fmt_num(lo)}, {fmt_num(hi)}]"


_HUB_CACHE_DIR = re.compile(r"models--([^/\\]+?)--([^/\\]+)")


def source_label(text: Any) -> str:
    """A model, adapter or dataset as a team says it: a Hub id as it is ("meta-llama/Llama-3.1-8B"), a
    Hugging Face cache folder as its Hub id, a local path as its last part ("acme-v3"). Tables show this;
    the full path stays in the run's detail."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or text == "":
        return ""
    s = str(text).rstrip("/\\")
    cached = _HUB_CACHE_DIR.search(s)
    if cached:
        return f"{cached.group(1)}/{cached.group(2)}"
    local = s.startswith(("/", "~", "./", "../", "\\")) or re.match(r"^[A-Za-z]:[\\/]", s) or s.count("/") > 1
    return re.split(r"[\\/]", s)[-1] if local else s


def unknown_metrics_text(unknown: list[str], metrics: list[str]) -> str:
    """"'rouge_l' (did you mean 'rougeL'?)" for each unknown metric name, Markdown-escaped (names come
    from links, typed by people)."""
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, metrics, n=1, cutoff=0.6) or \
            [m for m in metrics if m.lower().replace("_", "") == name.lower().replace("_", "")]
        parts.append(f"'{escape_markdown(name)}'" + (f" (did you mean '{escape_markdown(close[0])}'?)" if close else ""))
    return ", ".join(parts)


def count(n: int, noun: str, plural: Optional[str] = None) -> str:
    """"1 example", "1,204 examples": the number and the noun that agrees with it."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def dataset_label(d: dict[str, Any], same_name: bool = False) -> str:
    """A row of ``db.list_datasets`` as "support-chat.jsonl / test (10 runs)". ``same_name``: another
    dataset has this name and split (the file changed between runs): its last run's day and content
    hash tell them apart."""
    text = f"{source_label(d['name'])} / {d['split'] or '-'} ({count(d['n_runs'], 'run')}"
    if same_name:
        last = d.get("last_run_at")
        day = f"last {pd.Timestamp(last).strftime('%Y-%m-%d')} · " if last is not None and pd.notna(last) else ""
        fp = str(d.get("fingerprint") or "")
        text += f" · {day}{fp.split(':', 1)[-1][:8] if fp else '#' + str(d['id'])}"
    return text + ")"


def dataset_labels(datasets: list[dict[str, Any]]) -> dict[int, str]:
    """Dataset id -> ``dataset_label``, telling apart datasets that share a name and split."""
    names = Counter((source_label(d["name"]), d["split"]) for d in datasets)
    return {d["id"]: dataset_label(d, names[(source_label(d["name"]), d["split"])] > 1) for d in datasets}


def run_label(runs: pd.DataFrame) -> Callable[[Any], str]:
    """format_func for a selectbox over run ids: "#5 acme-chat-v3 · support-chat.jsonl/test · 2026-03-16".

    Option labels are plain text in Streamlit, so run names (data) are safe here; never use them in a
    widget *label*, which renders markdown.
    """
    by_id = {int(r.id): r for r in runs.itertuples()}

    def label(run_id: Any) -> str:
        if run_id is None or run_id == "":
            return "(none)"
        r = by_id.get(int(run_id))
        if r is None:
            return f"#{run_id}"
        day = pd.Timestamp(r.created_at).strftime("%Y-%m-%d") if pd.notna(r.created_at) else ""
        return f"#{r.id} {r.name} · {source_label(r.dataset)}/{r.split} · {day}"
    return label


def verdict_words(j: Mapping[str, Any], a: int, names: tuple[str, str] = ("A", "B")) -> str:
    """One pairwise judgment in words, from run ``a``'s side (``names[0]``; the other run is ``names[1]``): which
    answer the judge saw first and which it preferred."""
    cand_is_a = int(j["candidate_id"]) == a
    first = names[0] if (j["order"] == "ab") == cand_is_a else names[1]
    p = j["preference"]
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return f"{first} shown first · no verdict ({j['error'] or 'unparsed'})"
    p_a = p if cand_is_a else 1 - p
    verdict = "a tie" if p_a == 0.5 else f"prefers {names[0] if p_a > 0.5 else names[1]}"
    return f"{first} shown first · {verdict}"
