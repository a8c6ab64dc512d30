"""Team: who may change what (docs/deploying.md). Everyone sees the role list and their own role; an admin
edits it here (the roles file, ``$EVAL_ROLES_FILE`` or ``.streamlit/roles.toml``).

No query parameters.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

import db
from dashboard import _auth
from dashboard import _format as fmt


def _entries(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


def _editor(roles: dict[str, list[str]], user: _auth.User) -> None:
    st.subheader("Edit the role list")
    c1, c2 = st.columns(2)
    admins = c1.text_area("Admins: one email or @domain per line", "\n".join(roles["admins"]), key="team_admins",
                          height=160)
    reviewers = c2.text_area("Reviewers: one email or @domain per line", "\n".join(roles["reviewers"]),
                             key="team_reviewers", height=160)
    if st.button("Save the role list", key="team_save", type="primary", icon=":material/save:"):
        new = {"admins": _entries(admins), "reviewers": _entries(reviewers)}
        if not user.local and _auth.role_of(user.email or "", new) != "admin":
            st.error("Keep yourself among the admins: otherwise nobody signed in here could change roles again.")
            return
        try:
            _auth.save_roles(new)
        except (db.StoreError, ValueError, OSError) as exc:
            st.error(f"The role list was not saved: {exc}")
            return
        st.success(f"Saved: {fmt.count(len(new['admins']), 'admin entry', 'admin entries')}, "
                   f"{fmt.count(len(new['reviewers']), 'reviewer entry', 'reviewer entries')}.")


def main() -> None:
    st.title("Team")
    user = _auth.current_user()
    if user.local:
        st.info("Local single-user mode: nobody signs in, so roles do not apply yet. An [auth] section in "
                ".streamlit/secrets.toml turns sign-in on (docs/deploying.md); the role list below is what it "
                "will use.", icon=":material/info:")
    else:
        st.text(f"You are {user.email}: {user.role}.")
    st.text(f"Roles file: {_auth.roles_file().resolve()}")
    try:
        roles = _auth.load_roles()
    except ValueError as exc:
        st.error(str(exc))
        roles = {"admins": [], "reviewers": []}
    st.dataframe(pd.DataFrame([{"entry": e, "role": role} for role, key in (("admin", "admins"),
                                                                             ("reviewer", "reviewers"))
                               for e in roles[key]], columns=["entry", "role"]),
                 hide_index=True, width="content")
    st.caption("Viewers (everyone else signed in) browse, filter, compare and export. Reviewers also record "
               "verdicts and comments, save review queues and store pass thresholds. Admins also edit this list.")
    if user.may("admin"):
        _editor(roles, user)
    else:
        st.caption("Only an admin can change the role list.")


main()
