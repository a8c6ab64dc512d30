"""The writer's lease on a run: who is writing it and when it last said so.

``writer`` ("host:pid:token") and ``heartbeat_at`` let a second ``--resume`` of a live run be
refused up front, and let ``runs`` and the dashboard tell a run being written from one whose writer
died without a word. Existing rows get NULLs: a finished or failed run has no writer, and an old
"running" run has none either (it is shown as interrupted).

Revision ID: e41b7c2f9a10
Revises: c3a0acd7d471
Create Date: 2026-12-03 09:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'e41b7c2f9a10'
down_revision: Union[str, None] = 'c3a0acd7d471'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# Plain ALTER TABLE, not a batch migration: on SQLite a batch copy would drop and recreate ``runs``,
# and with foreign keys on, dropping it cascades to every result. SQLite (3.35+) and PostgreSQL both
# add and drop a nullable column in place.


def upgrade() -> None:
    op.add_column('runs', sa.Column('writer', sa.String(length=200), nullable=True))
    op.add_column('runs', sa.Column('heartbeat_at', sa.DateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column('runs', 'heartbeat_at')
    op.drop_column('runs', 'writer')
