"""Who is using the dashboard, and what they may change.

Sign-in is Streamlit's OpenID Connect (``st.login`` / ``st.user``, with Authlib), configured by an ``[auth]``
section in ``.streamlit/secrets.toml``. With it, every page asks for sign-in first and the signed-in email is
the identity stored with each verdict, saved view and threshold. Without it, the dashboard is in local
single-user mode: nobody signs in, the reviewer types a name, and each page says it is unauthenticated.

Roles (docs/deploying.md): a TOML file, ``$EVAL_ROLES_FILE`` or else ``.streamlit/roles.toml`` in the
directory the dashboard runs from::

    admins = ["ana@example.com"]
    reviewers = ["bo@example.com", "@example.com"]   # "@domain": every address of that domain

- viewer (everyone else signed in): browse, filter, compare, export;
- reviewer: also record verdicts and comments, save review queues and views, store pass thresholds;
- admin: also edit the role list (the Team page).

``require(role)`` is called by the write path itself (``_store.write_session``), so a role is enforced where
the write happens, whatever a page shows.
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import streamlit as st

import db

ROLES = ("viewer", "reviewer", "admin")  # each may do what the ones before it may
ROLES_ENV = "EVAL_ROLES_FILE"
DEFAULT_ROLES_FILE = Path(".streamlit") / "roles.toml"


class AccessDenied(db.StoreError):
    """A write the signed-in user's role does not allow (a StoreError: every write path reports those)."""


@dataclass(frozen=True)
class User:
    email: Optional[str]  # None in local single-user mode
    role: str

    @property
    def local(self) -> bool:
        return self.email is None

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def sign_in_configured() -> bool:
    """Whether ``secrets.toml`` has an ``[auth]`` section (then every page requires sign-in)."""
    try:
        return bool(st.secrets.load_if_toml_exists()) and "auth" in st.secrets
    except Exception:  # a malformed secrets file: Streamlit reports it when a page reads it
        return False


def roles_file() -> Path:
    return Path(os.environ.get(ROLES_ENV) or DEFAULT_ROLES_FILE)


def load_roles(path: Optional[Path] = None) -> dict[str, list[str]]:
    """{"admins": [...], "reviewers": [...]} from the roles file (both empty when there is none)."""
    path = path or roles_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"the roles file {path} could not be read: {exc}") from exc
    out = {}
    for key in ("admins", "reviewers"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"the roles file {path}: '{key}' must be a list of emails or \"@domain\" entries")
        out[key] = [v.strip().lower() for v in value if v.strip()]
    return out


def _listed(email: str, entries: list[str]) -> bool:
    domain = "@" + email.rsplit("@", 1)[-1] if "@" in email else None
    return email in entries or (domain is not None and domain in entries)


def role_of(email: str, roles: dict[str, list[str]]) -> str:
    email = email.strip().lower()
    if _listed(email, roles.get("admins", [])):
        return "admin"
    if _listed(email, roles.get("reviewers", [])):
        return "reviewer"
    return "viewer"


def save_roles(roles: dict[str, list[str]], path: Optional[Path] = None) -> None:
    """Write the role list (admins only: checked here, where the write happens)."""
    require("admin")
    path = path or roles_file()
    lines = ["# Who may change what in the evalbench dashboard (docs/deploying.md). Edited on the Team page."]
    for key in ("admins", "reviewers"):
        entries = sorted({e.strip().lower() for e in roles.get(key, []) if e.strip()})
        lines.append(f"{key} = [" + ", ".join(f'"{_toml_string(e)}"' for e in entries) + "]")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)


def _toml_string(text: str) -> str:
    if any(c in text for c in '"\\\n\r\t') or not text.isprintable():
        raise ValueError(f"not an email or @domain: {text!r}")
    return text


def _signed_in_email() -> Optional[str]:
    if not st.user.get("is_logged_in"):
        return None
    return str(st.user.get("email") or "").strip().lower() or None


def current_user() -> User:
    """The user of this session: local mode (may do everything, as before sign-in existed), or the signed-in
    email and its role; a configured but not signed-in session is a viewer with no email (pages stop before)."""
    if not sign_in_configured():
        return User(None, "admin")
    email = _signed_in_email()
    if email is None:
        return User("", "viewer")
    try:
        return User(email, role_of(email, load_roles()))
    except ValueError:
        return User(email, "viewer")  # a broken roles file grants nothing; the Team page shows why


def require(role: str) -> User:
    """The current user when their role allows ``role``'s actions; otherwise AccessDenied."""
    user = current_user()
    if user.email == "":
        raise AccessDenied("sign in first")
    if not user.may(role):
        raise AccessDenied(f"{user.email} is a {user.role}: only a {role} or above may do this "
                           "(an admin can change roles on the Team page)")
    return user


def gate() -> User:
    """Top of every page: with sign-in configured, a signed-out visitor sees only a sign-in button."""
    user = current_user()
    if user.local:
        return user
    if user.email == "":
        st.title("Sign in")
        st.write("This dashboard holds the team's evaluation results: sign in with your work account to open it.")
        st.button("Sign in", type="primary", icon=":material/login:", on_click=st.login, key="auth_login")
        st.stop()
    return user


def sidebar(user: User) -> None:
    """Who is signed in and as what, or that this is unauthenticated local mode."""
    with st.sidebar:
        if user.local:
            st.caption("Local single-user mode: nobody signs in (no [auth] in .streamlit/secrets.toml).")
        else:
            st.text(f"Signed in as {user.email} · {user.role}")  # text: an identity is data, never markup
            st.button("Sign out", key="auth_logout", on_click=st.logout, icon=":material/logout:")
