"""The foundation schema (machines, actions, boots, boot_statuses, events), as bootgate 0.1 created it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "machines",
        sa.Column("mac", sa.String(17), primary_key=True),
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(256), nullable=False),
        sa.Column("manufacturer", sa.String(256), nullable=False),
        sa.Column("product", sa.String(256), nullable=False),
        sa.Column("first_seen", sa.Float, nullable=True),
        sa.Column("last_seen", sa.Float, nullable=True),
    )
    op.create_table(
        "actions",
        sa.Column("mac", sa.String(17), primary_key=True),
        sa.Column("kernel", sa.String(1024), nullable=False),
        sa.Column("initrd", sa.String(1024), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )
    op.create_table(
        "boots",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(256), nullable=False),
        sa.Column("manufacturer", sa.String(256), nullable=False),
        sa.Column("product", sa.String(256), nullable=False),
        sa.Column("buildarch", sa.String(64), nullable=False),
        sa.Column("platform", sa.String(64), nullable=False),
        sa.Column("reported_ip", sa.String(64), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=False),
        sa.Column("scheme", sa.String(8), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("kernel", sa.String(1024), nullable=False),
        sa.Column("initrd", sa.String(1024), nullable=False),
        sa.Column("args", sa.Text, nullable=False),
    )
    op.create_index("ix_boots_mac_time", "boots", ["mac", "time"])
    op.create_index("ix_boots_time", "boots", ["time"])
    op.create_table(
        "boot_statuses",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_boot_statuses_boot", "boot_statuses", ["boot_id", "id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("mac", sa.String(17), nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_events_kind_id", "events", ["kind", "id"])
    op.create_index("ix_events_mac_id", "events", ["mac", "id"])
    op.create_index("ix_events_client_ip_id", "events", ["client_ip", "id"])


def downgrade() -> None:
    for t in ("events", "boot_statuses", "boots", "actions", "machines"):
        op.drop_table(t)
