"""Review-mode helpers without Streamlit: saving a verdict, inter-reviewer agreement, decision-log
exports, example links.

Functions over the plain rows that ``db.latest_verdicts`` / ``db.decision_log`` return, so they are
tested without a browser and could serve a CLI export as well.

Agreement statistics (over each reviewer's latest verdict, the five ``db.VERDICTS`` as categories):

- unanimous share: among examples judged by at least two reviewers, the share where all agree;
- Cohen's kappa (two reviewers): kappa = (p_o - p_e) / (1 - p_e) on the examples both judged, with
  p_o the observed agreement and p_e = sum_k pA(k) pB(k) from each reviewer's own verdict shares;
- Fleiss' kappa (three or more reviewers): on examples with n_i >= 2 verdicts,
  P_i = (sum_k n_ik^2 - n_i) / (n_i (n_i - 1)), P = mean P_i, p_k = sum_i n_ik / sum_i n_i,
  P_e = sum_k p_k^2, kappa = (P - P_e) / (1 - P_e). With the same number of reviewers on every
  example this is Fleiss (1971); with varying numbers it is the usual generalisation that averages
  per-example agreement. Kappa is undefined (None) when p_e = 1 (everyone gave one same verdict).
"""
from __future__ import annotations

import csv
import io
import itertools
import os
import re
from collections import Counter
from typing import Any, Callable, ContextManager, Iterable, Mapping, Optional, Sequence
from urllib.parse import urlencode, urlsplit

from sqlalchemy.exc import SQLAlchemyError

import db
from dashboard import _format as fmt

DEFAULT_BASE_URL = "http://localhost:8501"
BASE_URL_ENV = "EVAL_DASHBOARD_URL"
BROWSER_PATH = "browser"  # url_path of the example browser page (dashboard/app.py)
HISTORY_PATH = "history"
EXPORT_COLUMNS = ("time", "reviewer", "verdict", "comment", "run_id", "run", "example_id", "key", "category",
                  "current", "link")


# ---------------------------------------------------------------- links


def request_base(page_url: Optional[str]) -> Optional[str]:
    """The dashboard's address as the browser reached it, from a page's URL (``st.context.url``):
    "https://evals.acme.dev/team/review?view=x" -> "https://evals.acme.dev/team"."""
    if not page_url:
        return None
    parts = urlsplit(page_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rsplit('/', 1)[0]}" if parts.netloc else None


def base_url(value: Optional[str] = None, page_url: Optional[str] = None) -> str:
    """The dashboard's public address for links: ``value``, else $EVAL_DASHBOARD_URL, else the address the
    browser used to reach this page (``page_url``), else localhost:8501.

    Only http(s) addresses are accepted (anything else falls back to the next), without a trailing slash.
    """
    for candidate in (value, os.environ.get(BASE_URL_ENV), request_base(page_url), DEFAULT_BASE_URL):
        text = (candidate or "").strip()
        parts = urlsplit(text)
        if parts.scheme in ("http", "https") and parts.netloc and not any(c.isspace() for c in text):
            return text.rstrip("/")
    return DEFAULT_BASE_URL


def example_link(base: str, run_id: int, example_id: int) -> str:
    """The example browser opened on one example of one run: ``{base}/browser?run=R&ex=E``."""
    return f"{base_url(base)}/{BROWSER_PATH}?{urlencode({'run': int(run_id), 'ex': int(example_id)})}"


def relative_link(path: str, params: Mapping[str, Any]) -> str:
    """A link to another page of this app, relative to the current page (works behind a path prefix)."""
    clean = {k: v for k, v in params.items() if v is not None and v != ""}
    return f"{path}?{urlencode(clean, doseq=True)}" if clean else path


def relative_links(path: str, params: Mapping[str, Any], name: str, values: Iterable[Any]) -> list[str]:
    """``relative_link(path, {**params, name: v})`` for every v, with what they share encoded once
    (a table of a thousand rows gets a thousand links; ``name`` comes last in each)."""
    clean = {k: v for k, v in params.items() if v is not None and v != "" and k != name}
    head = f"{path}?{urlencode(clean, doseq=True)}&" if clean else f"{path}?"
    return [head + urlencode({name: v}) for v in values]


# ---------------------------------------------------------------- saving a verdict


def record_verdict(open_transaction: Callable[[], ContextManager[Any]], *, run_id: int, example_id: int,
                   reviewer: str, verdict: Optional[str], comment: str = "") -> Optional[str]:
    """Store one verdict in its own transaction; None on success, else a one-line reason nothing was saved.

    ``open_transaction()`` yields a session inside a transaction (``_store.write_session``, or
    ``sessionmaker.begin`` in tests). Nothing is lost on failure: the caller keeps the form's values.
    Two reviewers saving at once queue on the store's write lock (SQLite: BEGIN IMMEDIATE with a busy
    timeout); only a lock held past that timeout ends here, as a "press Save again" message.
    """
    if not (reviewer or "").strip():
        return "enter your name before saving a verdict"
    if verdict is None:
        return "choose a verdict before saving"
    try:
        with open_transaction() as session:
            db.add_annotation(session=session, run_id=run_id, example_id=example_id, reviewer=reviewer,
                              verdict=verdict, comment=comment or "")
    except db.AnnotationError as exc:
        return str(exc)
    except db.StoreError as exc:
        return f"verdict not saved: {exc}"
    except SQLAlchemyError as exc:
        return f"verdict not saved: {write_error(exc)}"
    return None


def write_error(exc: BaseException) -> str:
    """What a failed dashboard write means, in one line: the database role may not write (a write URL with
    the read-only role), or the store is busy or unreachable (press again)."""
    first = (str(getattr(exc, "orig", exc)).strip().splitlines() or [type(exc).__name__])[0]
    if "permission denied" in first or "read-only" in first or "readonly" in first:
        return (f"the dashboard's database role is not allowed to write this ({first}): its write URL must use "
                "the review role (docs/deploying.md); nothing was saved")
    return (f"the store is busy or unreachable ({first}); what you entered is still in the form, press Save "
            "again")


# ---------------------------------------------------------------- agreement


def by_example(verdicts: Iterable[Mapping[str, Any]]) -> dict[Any, dict[str, str]]:
    """(run_id, example_id) -> {reviewer: verdict} from latest-verdict rows."""
    out: dict[Any, dict[str, str]] = {}
    for v in verdicts:
        out.setdefault((v["run_id"], v["example_id"]), {})[v["reviewer"]] = v["verdict"]
    return out


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> Optional[float]:
    """Cohen's kappa of two raters from their (verdict A, verdict B) pairs; None if undefined."""
    n = len(pairs)
    if n == 0:
        return None
    po = sum(1 for a, b in pairs if a == b) / n
    ca, cb = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    pe = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if pe >= 1.0:
        return None
    return (po - pe) / (1.0 - pe)


def fleiss_kappa(items: Sequence[Sequence[str]]) -> Optional[float]:
    """Fleiss' kappa from each item's verdicts (items with fewer than two verdicts are ignored)."""
    items = [list(i) for i in items if len(i) >= 2]
    if not items:
        return None
    total = sum(len(i) for i in items)
    shares = Counter(v for i in items for v in i)
    pe = sum((c / total) ** 2 for c in shares.values())
    per_item = []
    for i in items:
        n = len(i)
        per_item.append((sum(c * c for c in Counter(i).values()) - n) / (n * (n - 1)))
    p = sum(per_item) / len(per_item)
    if pe >= 1.0:
        return None
    return (p - pe) / (1.0 - pe)


def agreement(verdicts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Agreement over latest-verdict rows.

    Returns {examples (judged), overlapping (judged by >= 2), unanimous (count), unanimous_share (None
    without overlap), reviewers (names), kappa, kappa_kind ("Cohen's kappa" | "Fleiss' kappa" | None), kappa_n
    (examples it is computed on), pairwise: [{a, b, n, kappa}] (Cohen's kappa of every pair sharing an
    example)}.
    """
    table = by_example(verdicts)
    names = sorted({r for judged in table.values() for r in judged})
    overlap = {k: j for k, j in table.items() if len(j) >= 2}
    unanimous = sum(1 for j in overlap.values() if len(set(j.values())) == 1)
    pairwise = []
    for a, b in itertools.combinations(names, 2):
        pairs = [(j[a], j[b]) for j in table.values() if a in j and b in j]
        if pairs:
            pairwise.append(dict(a=a, b=b, n=len(pairs), kappa=cohen_kappa(pairs)))
    raters = sorted({r for j in overlap.values() for r in j})
    kappa, kind, kappa_n = None, None, 0
    if len(raters) == 2:
        a, b = raters
        pairs = [(j[a], j[b]) for j in overlap.values()]
        kappa, kind, kappa_n = cohen_kappa(pairs), "Cohen's kappa", len(pairs)
    elif len(raters) >= 3:
        kappa, kind, kappa_n = fleiss_kappa([list(j.values()) for j in overlap.values()]), "Fleiss' kappa", len(overlap)
    return dict(examples=len(table), overlapping=len(overlap), unanimous=unanimous,
                unanimous_share=(unanimous / len(overlap)) if overlap else None, reviewers=names,
                kappa=kappa, kappa_kind=kind, kappa_n=kappa_n, pairwise=pairwise)


def verdict_table(verdicts: Iterable[Mapping[str, Any]], keys: Mapping[int, str]) -> list[dict[str, Any]]:
    """One row per judged example: example_id, key, one column per reviewer (their verdict), agree (bool)."""
    table = by_example(verdicts)
    names = sorted({r for j in table.values() for r in j})
    rows = []
    for (run_id, example_id), judged in sorted(table.items(), key=lambda kv: kv[0]):
        row: dict[str, Any] = dict(example_id=example_id, key=keys.get(example_id, ""))
        row.update({n: judged.get(n, "") for n in names})
        row["unanimous"] = len(set(judged.values())) == 1 if len(judged) >= 2 else None
        rows.append(row)
    return rows


# ---------------------------------------------------------------- decision log exports


def _export_rows(log: Iterable[Mapping[str, Any]], base: str) -> list[dict[str, Any]]:
    out = []
    for r in log:
        when = r.get("created_at")
        out.append(dict(
            time=when.strftime("%Y-%m-%d %H:%M:%S") if hasattr(when, "strftime") else str(when or ""),
            reviewer=r.get("reviewer") or "", verdict=r.get("verdict") or "", comment=r.get("comment") or "",
            run_id=r.get("run_id"), run=r.get("run_name") or "", example_id=r.get("example_id"),
            key=r.get("key") or "", category=r.get("category") or "",
            current="yes" if r.get("latest", True) else "no (replaced by a later verdict)",
            link=example_link(base, r["run_id"], r["example_id"])))
    return out


def decision_log_csv(log: Iterable[Mapping[str, Any]], base: Optional[str] = None) -> bytes:
    """The decision log as UTF-8 CSV (with BOM, so spreadsheets read accents), one row per verdict given."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(EXPORT_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in _export_rows(log, base_url(base)):
        writer.writerow({k: db.spreadsheet_safe(v) for k, v in row.items()})
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


# Inside a table cell (never at a line start) only these characters have Markdown meaning.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_text(value: Any) -> str:
    """Data as inert Markdown inside a line: HTML entities for & < >, a backslash before emphasis, code,
    link and table syntax, and white space (newlines included) folded to single spaces."""
    text = str(value if value is not None else "")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return " ".join(text.split())  # newlines (and tabs) would break a table row


def decision_log_markdown(log: Sequence[Mapping[str, Any]], base: Optional[str] = None, *, title: str = "Review",
                          agreement_summary: Optional[Mapping[str, Any]] = None) -> str:
    """The decision log as a Markdown document: a title, counts per verdict, agreement, a table of verdicts."""
    rows = _export_rows(log, base_url(base))
    lines = [f"# Decision log: {md_text(title)}", ""]
    current = [r for r in rows if r["current"] == "yes"]
    lines.append(f"{fmt.count(len(rows), 'verdict')} given ({len(current)} current) on "
                 f"{fmt.count(len({(r['run_id'], r['example_id']) for r in rows}), 'example')} by "
                 f"{fmt.count(len({r['reviewer'] for r in rows}), 'reviewer')}.")
    lines.append("")
    counts = Counter(r["verdict"] for r in current)
    if counts:
        lines += ["| verdict | current verdicts |", "|---|---:|"]
        lines += [f"| {md_text(v)} | {k} |" for v, k in counts.most_common()]
        lines.append("")
    if agreement_summary and agreement_summary.get("overlapping"):
        a = agreement_summary
        share = a.get("unanimous_share")
        text = (f"Agreement: {a['unanimous']} of {a['overlapping']} examples judged by two or more reviewers are "
                f"unanimous ({share:.0%}).")
        if a.get("kappa_kind"):
            kappa = "undefined (a single verdict was used)" if a.get("kappa") is None else f"{a['kappa']:.2f}"
            text += f" {a['kappa_kind']}: {kappa} on {a['kappa_n']} examples."
        lines += [text, ""]
    lines += ["| time | reviewer | verdict | comment | run | example | category | current | link |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {md_text(r['time'])} | {md_text(r['reviewer'])} | {md_text(r['verdict'])} | {md_text(r['comment'])} "
            f"| {md_text(r['run'])} (\\#{r['run_id']}) | {md_text(r['key'])} (\\#{r['example_id']}) "
            f"| {md_text(r['category'])} | {md_text(r['current'])} | [open]({r['link']}) |")
    return "\n".join(lines) + "\n"
