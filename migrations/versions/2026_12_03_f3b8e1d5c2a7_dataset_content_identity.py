"""Datasets identified by content, with a display name.

A dataset was identified by ``name``: the path as given, so the same file in two clones made two
datasets whose history never joined, and pages showed temporary-directory paths. Now:

- ``fingerprint`` identifies it (unique with split and turns): ``sha256:`` of a file's bytes, or
  ``datasets:`` the fingerprint of a save_to_disk directory or Hub dataset;
- ``name`` is its display name (the file name, or the Hub id), ``source`` the path as last given.

Existing rows keep their identity as ``name:<old name>``; the evaluator's next run of that source
gives the row its content fingerprint (``db.get_or_create_dataset``), so no history is split.

On SQLite the table is rebuilt (a batch migration); ``db.upgrade`` turns foreign keys off around
migrations, so rebuilding this parent table cascades nothing, and checks them after.

Revision ID: f3b8e1d5c2a7
Revises: a9d4c6b2e7f1
Create Date: 2026-12-03 20:30:00
"""
import re
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = 'f3b8e1d5c2a7'
down_revision: Union[str, None] = 'a9d4c6b2e7f1'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _display(name: str) -> str:
    """The old name (a path as given, or a Hub id) as a display name: a path's last part."""
    s = name.rstrip("/\\")
    local = s.startswith(("/", "~", ".", "\\")) or re.match(r"^[A-Za-z]:[\\/]", s) or s.count("/") > 1 \
        or "." in s.rsplit("/", 1)[-1]
    return re.split(r"[\\/]", s)[-1] if local and s else name


def upgrade() -> None:
    with op.batch_alter_table('datasets') as batch:
        batch.add_column(sa.Column('fingerprint', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('source', sa.Text(), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, name FROM datasets")).all()
    for id_, name in rows:
        bind.execute(sa.text("UPDATE datasets SET fingerprint = :fp, source = :src, name = :name WHERE id = :id"),
                     dict(fp=f"name:{name}", src=name, name=_display(name), id=id_))
    with op.batch_alter_table('datasets') as batch:
        batch.alter_column('fingerprint', existing_type=sa.String(length=200), nullable=False)
        batch.drop_constraint('uq_datasets_name', type_='unique')
        batch.create_unique_constraint(op.f('uq_datasets_fingerprint'), ['fingerprint', 'split', 'turns'])


def downgrade() -> None:
    # The identity goes back to the path: the source where known, else the display name.
    op.execute(sa.text("UPDATE datasets SET name = COALESCE(source, name)"))
    # Two contents of one path (a file edited between runs) cannot share the old identity: the later
    # ones get " #ID" after the path.
    op.execute(sa.text("UPDATE datasets SET name = name || ' #' || CAST(id AS VARCHAR(20)) WHERE EXISTS "
                       "(SELECT 1 FROM datasets d2 WHERE d2.name = datasets.name AND d2.split = datasets.split "
                       "AND d2.turns = datasets.turns AND d2.id < datasets.id)"))
    with op.batch_alter_table('datasets') as batch:
        batch.drop_constraint('uq_datasets_fingerprint', type_='unique')
        batch.create_unique_constraint(op.f('uq_datasets_name'), ['name', 'split', 'turns'])
        batch.drop_column('source')
        batch.drop_column('fingerprint')
