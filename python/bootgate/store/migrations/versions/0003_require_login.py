"""Login at the iPXE prompt (issue 6): collections and deployments can require it.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("collections", "deployments"):
        with op.batch_alter_table(table) as b:
            b.add_column(sa.Column("require_login", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    for table in ("deployments", "collections"):
        with op.batch_alter_table(table) as b:
            b.drop_column("require_login")
