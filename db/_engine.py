"""Where the store is, how to connect to it, and whether its schema matches this code.

Every failure a user can cause (no file, a corrupt file, a URL that does not connect, a store
written by a newer version) becomes a ``StoreError`` whose message is one line saying what to do.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import sqlite3
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker

from db._errors import UserError

ENV_VAR = "EVAL_DB_URL"
DEFAULT_URL = "sqlite:///eval_store.sqlite"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_MMAP_BYTES = 1 << 30  # address space only; pages are shared with the OS cache
SQLITE_CACHE_KIB = 64 * 1024
PG_MIGRATION_LOCK = 0x65766C5F73746F72  # advisory lock key ("evl_stor") held while migrating a PostgreSQL store
SUPPORTED = "sqlite:///PATH (a file; a bare path works too) or postgresql+psycopg://USER@HOST:PORT/DB"

log = logging.getLogger(__name__)


class StoreError(UserError, RuntimeError):
    """A problem with the store that the user can fix; the message says how."""


def resolve_url(url: Optional[str] = None) -> str:
    """``--db`` value, else ``$EVAL_DB_URL``, else ``sqlite:///eval_store.sqlite``.

    A bare file path is taken as a SQLite file.
    """
    url = url or os.environ.get(ENV_VAR) or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{Path(url).expanduser()}"
    return url


def _json_dumps(value) -> str:
    # Keep non-ASCII text readable (and searchable with LIKE) inside JSON columns.
    return json.dumps(value, ensure_ascii=False)


def _sqlite_path(url: str) -> Optional[Path]:
    u = make_url(url)
    if not u.get_backend_name() == "sqlite":
        return None
    db = u.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    return Path(db)


def shown_url(url: str) -> str:
    """The URL as output and logs may show it: its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):  # not a URL SQLAlchemy reads: mask whatever sits between "user:" and "@"
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _backend_of(url: str) -> str:
    """The URL's database ("sqlite", "postgresql"); anything else is a one-line ``StoreError``."""
    try:
        name = make_url(url).get_backend_name()
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise StoreError(f"cannot read store URL {shown_url(url)!r}: use {SUPPORTED}") from None
    if name not in ("sqlite", "postgresql"):
        raise StoreError(f"store URL {shown_url(url)!r}: {name} is not supported; use {SUPPORTED}")
    return name


def _readonly_reason(path: Path) -> Optional[str]:
    """Why this process cannot write the SQLite file (None when it can)."""
    if not os.access(path, os.W_OK):
        return "the file is not writable"
    if not os.access(path.parent, os.W_OK):  # SQLite writes its journal (-wal, -shm) beside the file
        return f"its directory {path.parent} is not writable"
    return None


def _readonly_sqlite_url(path: Path, dir_writable: bool) -> str:
    """A URI that opens the file read-only. Where the directory is not writable either (a read-only
    mount, an archive), ``immutable=1``: SQLite then takes no locks and needs no -shm file."""
    flags = "mode=ro" if dir_writable else "mode=ro&immutable=1"
    return f"sqlite:///file:{quote(str(path.resolve()))}?{flags}&uri=true"


def make_engine(url: Optional[str] = None, *, readonly: bool = False, must_exist: bool = False) -> Engine:
    """Create an engine for ``url``. SQLite gets WAL, a busy timeout and foreign keys.

    ``readonly`` makes every connection refuse writes (the dashboard's main connection); a SQLite file
    this process cannot write (a read-only mount, an archived store) is then opened read-only, and a
    writer gets a ``StoreError`` saying so. ``must_exist`` raises ``StoreError`` instead of creating a
    new SQLite file. A URL of another database than SQLite or PostgreSQL is a ``StoreError`` too.
    """
    url = resolve_url(url)
    _backend_of(url)
    path = _sqlite_path(url)
    if path is not None and must_exist and not path.exists():
        raise StoreError(
            f"no store at {path}: create one with 'python -m evaluator demo' or 'python -m evaluator run', "
            f"or point {ENV_VAR} / --db at an existing store"
        )
    if path is not None and not path.parent.exists():
        raise StoreError(f"directory {path.parent} does not exist: create it or choose another --db path")
    sqlite_readonly_file = False
    if path is not None and path.exists():
        why = _readonly_reason(path)
        if why is not None:
            if not readonly:
                raise StoreError(f"the store {path} is read-only here ({why}): 'runs', 'export' and the dashboard "
                                 "can read it; to write to it, copy it somewhere writable or fix its permissions")
            log.warning("store %s is read-only here (%s): opened read-only", path, why)
            url = _readonly_sqlite_url(path, dir_writable=os.access(path.parent, os.W_OK))
            sqlite_readonly_file = True
    try:
        options = {}
        if readonly and make_url(url).get_backend_name() == "postgresql":
            # Like SQLite's deferred BEGIN below: every statement of a reader's transaction sees one
            # snapshot (READ COMMITTED gives each statement its own, so a page of results could
            # disagree with the count beside it while an evaluator commits). A read-only transaction
            # never fails to serialize.
            options["isolation_level"] = "REPEATABLE READ"
        engine = create_engine(url, json_serializer=_json_dumps, pool_pre_ping=path is None, **options)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StoreError(f"cannot use store URL {url!r}: {exc}") from None

    _configure_connections(engine, readonly=readonly, sqlite_readonly_file=sqlite_readonly_file)
    return engine


def _configure_connections(engine: Engine, *, readonly: bool, sqlite_readonly_file: bool) -> None:
    """Settings every new connection gets: SQLite's pragmas and transaction control, or a PostgreSQL
    reader's read-only session."""
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # Take transaction control away from the sqlite3 driver (which never BEGINs before a
            # SELECT) and BEGIN ourselves below, so that a reader's statements share one snapshot
            # and writers wait for each other (busy timeout) instead of failing "database is locked".
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            if not readonly:
                cur.execute("PRAGMA journal_mode = WAL")
            if not sqlite_readonly_file:
                cur.execute("PRAGMA synchronous = NORMAL")
            # Memory-map the file and keep a larger page cache: index probes of a page of results
            # then cost a memory read instead of a read() call each.
            cur.execute(f"PRAGMA mmap_size = {SQLITE_MMAP_BYTES}")
            cur.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
            cur.execute("PRAGMA foreign_keys = ON")
            if readonly:
                cur.execute("PRAGMA query_only = ON")
            cur.close()

        # A writer takes the write lock when its transaction starts (IMMEDIATE), so two writers queue
        # on the busy timeout rather than deadlock upgrading read locks; a reader's BEGIN is deferred.
        begin_sql = "BEGIN" if readonly else "BEGIN IMMEDIATE"

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql(begin_sql)

    elif engine.dialect.name == "postgresql" and readonly:

        @event.listens_for(engine, "connect")
        def _pg_readonly(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cur.close()
            dbapi_conn.commit()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# ---------------------------------------------------------------- schema version


def _alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    """The migrations' head; read once per process (the revision files are part of the installed code)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head()


def _known_revisions() -> set[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}


def _describe_connect_error(engine: Engine, exc: Exception) -> StoreError:
    orig = getattr(exc, "orig", exc)
    url = engine.url.render_as_string(hide_password=True)
    if isinstance(orig, sqlite3.DatabaseError) and "not a database" in str(orig):
        return StoreError(f"{engine.url.database} is not a store (corrupt or not SQLite): restore it or choose another --db")
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return StoreError(f"cannot open store {url}: {first}")


def current_revision(engine: Engine) -> Optional[str]:
    """The store's Alembic revision, or None for an empty database."""
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                if inspect(conn).get_table_names():
                    raise StoreError(
                        f"{engine.url.render_as_string(hide_password=True)} holds tables but no schema "
                        "version: it is not a store of this tool; choose another --db"
                    )
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except (OperationalError, DatabaseError) as exc:
        raise _describe_connect_error(engine, exc) from None


def upgrade(engine: Engine) -> None:
    """Bring the store to the head revision (the evaluator does this before it writes)."""
    rev = current_revision(engine)
    if rev is not None and rev not in _known_revisions():
        raise _newer_store(rev)
    if rev == head_revision():
        return
    from alembic import command

    cfg = _alembic_config(engine)
    try:
        _migrate(engine, cfg, command)
    except (OperationalError, DatabaseError) as exc:
        first = (str(getattr(exc, "orig", exc)).strip().splitlines() or [type(exc).__name__])[0]
        raise StoreError(
            f"migrating the store from schema {rev} to {head_revision()} failed ({first}): its recorded version "
            "does not match its tables (stamped by hand, or restored from another copy?). Nothing was changed; "
            "restore a backup, or if the tables are already current run 'alembic stamp head'") from None


def _migrate(engine: Engine, cfg, command) -> None:
    """``alembic upgrade head`` in one transaction (rolled back whole on any error)."""
    with migration_connection(engine) as conn:
        if conn.dialect.name == "postgresql":
            # Two evaluators starting on an empty database would both create the tables (one fails on
            # "relation already exists"): the second waits here until the first has committed, and
            # Alembic then reads the version the first wrote and has nothing to do. (On SQLite the
            # migration's BEGIN IMMEDIATE already makes the second writer wait.)
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@contextlib.contextmanager
def migration_connection(engine: Engine):
    """A connection in one transaction for Alembic commands (upgrade, downgrade): on SQLite with
    foreign keys off while they run and checked before the commit (``sqlite_foreign_keys_off``)."""
    with engine.connect() as conn, sqlite_foreign_keys_off(conn), conn.begin():
        yield conn
        check_foreign_keys(conn)


@contextlib.contextmanager
def sqlite_foreign_keys_off(conn):
    """On SQLite, foreign keys off for the migrations run on ``conn`` (outside any transaction, where
    the pragma takes effect): a batch migration rebuilds a table by copying it and dropping the old
    one, and dropping a parent table with foreign keys on would delete its children (CASCADE). This is
    SQLite's own procedure for altering a table; ``check_foreign_keys`` checks them before commit."""
    if conn.dialect.name != "sqlite":
        yield
        return
    raw = conn.connection.driver_connection
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def check_foreign_keys(conn) -> None:
    """SQLite: refuse to commit a migration that left a row pointing at nothing."""
    if conn.dialect.name == "sqlite":
        bad = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
        if bad:
            raise StoreError(f"a migration left {len(bad)} rows whose foreign key points at nothing "
                             f"(first: table {bad[0][0]}, row {bad[0][1]}); nothing was changed")


def _newer_store(rev: str) -> StoreError:
    return StoreError(
        f"the store is from a newer version of this tool (schema revision {rev}): "
        "update this checkout (git pull; pip install -r requirements.txt) before opening it"
    )


def check_schema(engine: Engine) -> None:
    """For readers that must not change the schema: raise ``StoreError`` unless the store is at head."""
    rev = current_revision(engine)
    head = head_revision()
    if rev == head:
        return
    if rev is None:
        raise StoreError(
            "the store is empty (no schema yet): run 'python -m evaluator demo' or 'python -m evaluator run' to fill it"
        )
    if rev not in _known_revisions():
        raise _newer_store(rev)
    raise StoreError(
        f"the store's schema ({rev}) is older than this code ({head}): run 'alembic upgrade head' "
        f"with {ENV_VAR} set to this store, or any 'python -m evaluator run', to migrate it"
    )


def open_store(url: Optional[str] = None) -> Engine:
    """Engine for a writer: creates/migrates the store to head."""
    engine = make_engine(url)
    upgrade(engine)
    return engine


def open_store_readonly(url: Optional[str] = None) -> Engine:
    """Engine for a reader (the dashboard): the store must exist and be at head; writes are refused."""
    engine = make_engine(url, readonly=True, must_exist=True)
    check_schema(engine)
    return engine
