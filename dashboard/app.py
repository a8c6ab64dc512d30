"""The page router: page config, the page list, run the chosen page. Pages live in ``views/``.

Served by ``streamlit run dashboard/server.py`` (store from $EVAL_DB_URL, or ``... -- --db URL``), which
warms the server before the first page; ``streamlit run dashboard/app.py`` serves the same pages cold.
"""
from pathlib import Path

import streamlit as st

from dashboard import _auth, _store

HERE = Path(__file__).resolve().parent

st.set_page_config(page_title="Eval workbench", page_icon=":material/analytics:", layout="wide")

pages = [
    st.Page("views/runs.py", title="Runs and trends", icon=":material/timeline:", url_path="runs", default=True),
    st.Page("views/browser.py", title="Example browser", icon=":material/table_rows:", url_path="browser"),
    st.Page("views/compare.py", title="Compare runs", icon=":material/compare_arrows:", url_path="compare"),
]
# Pages of the error-analysis / history / review work, when present in this checkout.
for file, title, icon, path in (("errors.py", "Error analysis", ":material/bug_report:", "errors"),
                                ("history.py", "Example history", ":material/history:", "history"),
                                ("review.py", "Review", ":material/rate_review:", "review")):
    if (HERE / "views" / file).is_file():
        pages.append(st.Page(f"views/{file}", title=title, icon=icon, url_path=path))

pages.append(st.Page("views/arena.py", title="Arena", icon=":material/forum:", url_path="arena"))
pages.append(st.Page("views/team.py", title="Team", icon=":material/group:", url_path="team"))

user = _auth.gate()  # with sign-in configured, nothing below runs for a signed-out visitor
_auth.sidebar(user)
if _store.writes_off_reason():
    st.sidebar.info(_store.writes_off_reason(), icon=":material/lock:")
elif not user.may("reviewer"):
    st.sidebar.info("You are a viewer: you can browse, filter, compare and export. Recording verdicts, saving "
                    "queues and storing thresholds needs the reviewer role.", icon=":material/visibility:")
st.navigation(pages).run()
