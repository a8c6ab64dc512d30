"""Metric columns: a finished run's values of each metric as packed arrays (see db.MetricColumn),
so that joining two runs and whole-run distributions do not visit every metric_values row.
A cache: downgrading drops it and loses nothing that metric_values does not hold.

Revision ID: d8fede65d34f
Revises: bcad80f530d7
Create Date: 2026-11-28 23:28:43.212734
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'd8fede65d34f'
down_revision: Union[str, None] = 'bcad80f530d7'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('metric_columns',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('metric_id', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.Column('example_ids', sa.LargeBinary(), nullable=False),
    sa.Column('values', sa.LargeBinary(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['metric_id'], ['metrics.id'], name=op.f('fk_metric_columns_metric_id_metrics'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_metric_columns_run_id_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'metric_id', name=op.f('pk_metric_columns'))
    )


def downgrade() -> None:
    op.drop_table('metric_columns')
