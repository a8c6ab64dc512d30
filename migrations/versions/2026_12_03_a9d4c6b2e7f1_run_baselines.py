"""Baseline links as their own table: one baseline run may serve several candidates.

``runs.baseline_for_id`` could name one candidate per baseline, so evaluating the same base model as the
baseline of v1, v2 and v3 made three identical runs. ``run_baselines`` links a candidate to each of its
baselines, and says whether the link reused a run that already existed. Every existing link is copied
(reused = false); ``baseline_for_id`` stays: the candidate a baseline was first evaluated for.

Revision ID: a9d4c6b2e7f1
Revises: c5e2a8f1d604
Create Date: 2026-12-03 20:20:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'a9d4c6b2e7f1'
down_revision: Union[str, None] = 'c5e2a8f1d604'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'run_baselines',
        sa.Column('candidate_id', sa.Integer(), nullable=False),
        sa.Column('baseline_id', sa.Integer(), nullable=False),
        sa.Column('reused', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['candidate_id'], ['runs.id'], name=op.f('fk_run_baselines_candidate_id_runs'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['baseline_id'], ['runs.id'], name=op.f('fk_run_baselines_baseline_id_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('candidate_id', 'baseline_id', name=op.f('pk_run_baselines')),
    )
    op.create_index(op.f('ix_run_baselines_baseline_id'), 'run_baselines', ['baseline_id'], unique=False)
    op.execute("INSERT INTO run_baselines (candidate_id, baseline_id, reused, created_at) "
               "SELECT baseline_for_id, id, false, created_at FROM runs WHERE baseline_for_id IS NOT NULL")


def downgrade() -> None:
    op.drop_index(op.f('ix_run_baselines_baseline_id'), table_name='run_baselines')
    op.drop_table('run_baselines')
