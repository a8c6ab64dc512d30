"""A comparison's method as text of any length.

``comparisons.method`` was VARCHAR(100), but the method of a corpus comparison (sacrebleu's paired
bootstrap, its CI, the metric's tokenisation) runs to about 190 characters, and a recomputed p-value
adds its resample count. SQLite never enforced the length; PostgreSQL refused the row. TEXT on both.

Revision ID: c5e2a8f1d604
Revises: 7b1d5e0c93a2
Create Date: 2026-12-03 19:10:00
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'c5e2a8f1d604'
down_revision: Union[str, None] = '7b1d5e0c93a2'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# A batch migration on SQLite copies ``comparisons`` (a child table: nothing cascades from it); on
# PostgreSQL it is a plain ALTER COLUMN ... TYPE.


def upgrade() -> None:
    with op.batch_alter_table('comparisons') as batch:
        batch.alter_column('method', existing_type=sa.String(length=100), type_=sa.Text(), existing_nullable=False)


def downgrade() -> None:
    # Longer methods are cut to the old limit on the way down (PostgreSQL would refuse them otherwise).
    op.execute(sa.text("UPDATE comparisons SET method = substr(method, 1, 100)"))
    with op.batch_alter_table('comparisons') as batch:
        batch.alter_column('method', existing_type=sa.Text(), type_=sa.String(length=100), existing_nullable=False)
