"""Pass thresholds: one stored value per (dataset, metric) at which a result passes.

Before this revision every dashboard page proposed its own threshold (the middle of a run's range on
one page, 50 on another); now the team sets one per dataset and metric and every page reads it. A new
table only: no existing row changes.

Revision ID: 7b1d5e0c93a2
Revises: e41b7c2f9a10
Create Date: 2026-12-03 18:45:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '7b1d5e0c93a2'
down_revision: Union[str, None] = 'e41b7c2f9a10'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'pass_thresholds',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=False),
        sa.Column('metric', sa.String(length=100), nullable=False),
        sa.Column('threshold', sa.Float(), nullable=False),
        sa.Column('set_by', sa.String(length=200), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_pass_thresholds_dataset_id_datasets'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_pass_thresholds')),
        sa.UniqueConstraint('dataset_id', 'metric', name=op.f('uq_pass_thresholds_dataset_id')),
    )


def downgrade() -> None:
    op.drop_table('pass_thresholds')
