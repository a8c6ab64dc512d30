"""The Arena: blind pairwise votes between served versions, and conversations kept as test examples.

Revision ID: d7a3e9c1b5f2
Revises: b6d2f0a1c3e5
Create Date: 2026-12-05 22:00:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'd7a3e9c1b5f2'
down_revision: Union[str, None] = 'b6d2f0a1c3e5'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'arena_votes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('reviewer', sa.String(length=200), nullable=False),
        sa.Column('model_a', sa.String(length=300), nullable=False),
        sa.Column('model_b', sa.String(length=300), nullable=False),
        sa.Column('endpoint_a', sa.String(length=500), nullable=False),
        sa.Column('endpoint_b', sa.String(length=500), nullable=False),
        sa.Column('left', sa.String(length=1), nullable=False),
        sa.Column('verdict', sa.String(length=20), nullable=False),
        sa.Column('preference', sa.Float(), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False),
        sa.Column('conversation_a', sa.JSON(), nullable=False),
        sa.Column('conversation_b', sa.JSON(), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_arena_votes')),
    )
    op.create_table(
        'kept_examples',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('set_name', sa.String(length=300), nullable=False),
        sa.Column('messages', sa.JSON(), nullable=False),
        sa.Column('reference', sa.Text(), nullable=False),
        sa.Column('vote_id', sa.Integer(), nullable=True),
        sa.Column('kept_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['vote_id'], ['arena_votes.id'], name=op.f('fk_kept_examples_vote_id_arena_votes'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_kept_examples')),
    )
    op.create_index('ix_kept_examples_set', 'kept_examples', ['set_name'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_kept_examples_set', table_name='kept_examples')
    op.drop_table('kept_examples')
    op.drop_table('arena_votes')
