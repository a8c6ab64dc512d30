"""Partial index of failed results (finish_reason = 'error') per run, so that listing runs with
their failure counts does not read every result row.

Revision ID: c3a0acd7d471
Revises: d8fede65d34f
Create Date: 2026-11-29 00:15:44.422255
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'c3a0acd7d471'
down_revision: Union[str, None] = 'd8fede65d34f'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.create_index('ix_results_run_failed', ['run_id'], unique=False, sqlite_where=sa.text("finish_reason = 'error'"), postgresql_where=sa.text("finish_reason = 'error'"))



def downgrade() -> None:
    with op.batch_alter_table('results', schema=None) as batch_op:
        batch_op.drop_index('ix_results_run_failed', sqlite_where=sa.text("finish_reason = 'error'"), postgresql_where=sa.text("finish_reason = 'error'"))

