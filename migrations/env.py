"""Alembic environment: the URL comes from the application's setting, the metadata from db."""
from __future__ import annotations

from logging.config import fileConfig

from alembic import context

from db import Base, make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )


def run_migrations_offline() -> None:
    from db import resolve_url

    context.configure(
        url=config.get_main_option("sqlalchemy.url") or resolve_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # called from db.upgrade() with an open connection
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    from db._engine import check_foreign_keys, sqlite_foreign_keys_off

    engine = make_engine(config.get_main_option("sqlalchemy.url") or None)
    with engine.connect() as conn, sqlite_foreign_keys_off(conn):
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
            check_foreign_keys(conn)
        conn.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
