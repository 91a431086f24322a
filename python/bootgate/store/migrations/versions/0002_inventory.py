"""Inventory by identity, capabilities per boot, collections, deployments, approvals, audit, API tokens.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("boots") as b:
        b.add_column(sa.Column("host_id", sa.Integer, nullable=True))
        b.add_column(sa.Column("deployment_id", sa.Integer, nullable=True))
        b.add_column(sa.Column("capabilities", sa.Text, nullable=False, server_default="{}"))
        b.create_index("ix_boots_host_time", ["host_id", "time"])
    op.create_table(
        "hosts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(63), nullable=True, unique=True),
        sa.Column("uuid", sa.String(64), nullable=False),
        sa.Column("serial", sa.String(256), nullable=False),
        sa.Column("manufacturer", sa.String(256), nullable=False),
        sa.Column("product", sa.String(256), nullable=False),
        sa.Column("known", sa.Boolean, nullable=False),
        sa.Column("registered", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=True),
        sa.Column("installed_at", sa.Float, nullable=True),
        sa.Column("wipe_approved", sa.Boolean, nullable=False),
    )
    op.create_index("ix_hosts_uuid", "hosts", ["uuid"])
    op.create_index("ix_hosts_serial", "hosts", ["serial"])
    op.create_table(
        "host_macs",
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("mac", sa.String(17), primary_key=True),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
    )
    op.create_index("ix_host_macs_mac", "host_macs", ["mac"])
    op.create_table(
        "shared_macs",
        sa.Column("mac", sa.String(17), primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    collections = op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("rules", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "collection_members",
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("profile", sa.Text, nullable=False),
        sa.Column("intent", sa.String(16), nullable=False),
        sa.Column("countdown", sa.Integer, nullable=False),
        sa.Column("window_start", sa.Float, nullable=True),
        sa.Column("window_end", sa.Float, nullable=True),
        sa.Column("one_shot", sa.Boolean, nullable=False),
        sa.Column("require_approval", sa.Boolean, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    op.create_table(
        "deployment_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment_id", sa.Integer, nullable=False),
        sa.Column("host_id", sa.Integer, nullable=False),
        sa.Column("boot_id", sa.String(64), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("finished", sa.Float, nullable=True),
    )
    op.create_index("ix_deployment_runs_host", "deployment_runs", ["host_id", "deployment_id"])
    op.create_index("ix_deployment_runs_boot", "deployment_runs", ["boot_id"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("deployment_id", sa.Integer, sa.ForeignKey("deployments.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("host_id", sa.Integer, sa.ForeignKey("hosts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("approved_by", sa.String(128), nullable=False),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.UniqueConstraint("deployment_id", "host_id", name="uq_approvals_deployment_host"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("allowed", sa.Boolean, nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_log_action_id", "audit_log", ["action", "id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("created", sa.Float, nullable=False),
    )
    settings = op.create_table(
        "store_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.bulk_insert(collections, [{
        "name": "unknown", "description": "machines registered by zero-touch that nobody has marked known",
        "rules": '[{"unknown": true}]', "created": time.time(),
    }])
    op.bulk_insert(settings, [{"key": "name_pattern", "value": '"PC-{serial|uuid8}"'}])


def downgrade() -> None:
    for t in ("store_settings", "api_tokens", "audit_log", "approvals", "deployment_runs", "deployments",
              "collection_members", "collections", "shared_macs", "host_macs", "hosts"):
        op.drop_table(t)
    with op.batch_alter_table("boots") as b:
        b.drop_index("ix_boots_host_time")
        b.drop_column("capabilities")
        b.drop_column("deployment_id")
        b.drop_column("host_id")
