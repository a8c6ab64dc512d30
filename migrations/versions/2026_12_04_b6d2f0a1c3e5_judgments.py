"""Judgments: an LLM judge's (or an imported benchmark's) verdicts on a candidate run against a baseline.

Revision ID: b6d2f0a1c3e5
Revises: f3b8e1d5c2a7
Create Date: 2026-12-04 16:10:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'b6d2f0a1c3e5'
down_revision: Union[str, None] = 'f3b8e1d5c2a7'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'judgments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('candidate_id', sa.Integer(), nullable=False),
        sa.Column('baseline_id', sa.Integer(), nullable=True),
        sa.Column('baseline_key', sa.Integer(), nullable=False),
        sa.Column('example_id', sa.Integer(), nullable=False),
        sa.Column('order', sa.String(length=2), nullable=False),
        sa.Column('judge', sa.String(length=300), nullable=False),
        sa.Column('mode', sa.String(length=20), nullable=False),
        sa.Column('judge_key', sa.String(length=64), nullable=False),
        sa.Column('config', sa.JSON(), nullable=False),
        sa.Column('preference', sa.Float(), nullable=True),
        sa.Column('score', sa.Float(), nullable=True),
        sa.Column('verdict', sa.String(length=50), nullable=True),
        sa.Column('verdict_logprobs', sa.JSON(), nullable=True),
        sa.Column('reply', sa.Text(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['candidate_id'], ['runs.id'], name=op.f('fk_judgments_candidate_id_runs'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['baseline_id'], ['runs.id'], name=op.f('fk_judgments_baseline_id_runs'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['example_id'], ['examples.id'], name=op.f('fk_judgments_example_id_examples'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_judgments')),
        sa.UniqueConstraint('candidate_id', 'baseline_key', 'example_id', 'order', 'judge_key',
                            name=op.f('uq_judgments_candidate_id')),
    )
    op.create_index('ix_judgments_pair', 'judgments', ['candidate_id', 'baseline_id', 'judge_key'], unique=False)
    op.create_index(op.f('ix_judgments_baseline_id'), 'judgments', ['baseline_id'], unique=False)
    op.create_index(op.f('ix_judgments_example_id'), 'judgments', ['example_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_judgments_example_id'), table_name='judgments')
    op.drop_index(op.f('ix_judgments_baseline_id'), table_name='judgments')
    op.drop_index('ix_judgments_pair', table_name='judgments')
    op.drop_table('judgments')
