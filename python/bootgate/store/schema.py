"""The database schema, in one place. Alembic migrations (``migrations/versions``) create and upgrade it.

Times are float seconds since the Unix epoch (UTC). JSON values are stored as text (orjson).

The foundation's per-MAC tables (``machines``, ``actions``) stay as they were: they are the simple
per-machine action the admin API's ``/machines/<mac>/action`` sets. Inventory by identity lives in
``hosts`` (one row per physical machine) and ``host_macs`` (the MACs each host was seen with).
"""

from __future__ import annotations

from sqlalchemy import (Boolean, Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text,
                        UniqueConstraint, text)

metadata = MetaData()

machines = Table(
    "machines",
    metadata,
    Column("mac", String(17), primary_key=True),
    Column("uuid", String(64), nullable=False, default=""),
    Column("serial", String(256), nullable=False, default=""),
    Column("manufacturer", String(256), nullable=False, default=""),
    Column("product", String(256), nullable=False, default=""),
    Column("first_seen", Float, nullable=True),
    Column("last_seen", Float, nullable=True),
)

actions = Table(
    "actions",
    metadata,
    Column("mac", String(17), primary_key=True),
    Column("kernel", String(1024), nullable=False),
    Column("initrd", String(1024), nullable=False, default=""),
    Column("args", Text, nullable=False, default=""),
    Column("updated", Float, nullable=False),
)

boots = Table(
    "boots",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("time", Float, nullable=False),
    Column("mac", String(17), nullable=False),
    Column("uuid", String(64), nullable=False, default=""),
    Column("serial", String(256), nullable=False, default=""),
    Column("manufacturer", String(256), nullable=False, default=""),
    Column("product", String(256), nullable=False, default=""),
    Column("buildarch", String(64), nullable=False, default=""),
    Column("platform", String(64), nullable=False, default=""),
    Column("reported_ip", String(64), nullable=False, default=""),
    Column("client_ip", String(64), nullable=False, default=""),
    Column("scheme", String(8), nullable=False, default=""),
    Column("action", String(16), nullable=False),
    Column("kernel", String(1024), nullable=False, default=""),
    Column("initrd", String(1024), nullable=False, default=""),
    Column("args", Text, nullable=False, default=""),
    # added in 0002
    Column("host_id", Integer, nullable=True),
    Column("deployment_id", Integer, nullable=True),
    Column("capabilities", Text, nullable=False, default="{}"),
    Index("ix_boots_mac_time", "mac", "time"),
    Index("ix_boots_time", "time"),
    Index("ix_boots_host_time", "host_id", "time"),
)

boot_statuses = Table(
    "boot_statuses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("boot_id", String(64), nullable=False),
    Column("time", Float, nullable=False),
    Column("state", String(16), nullable=False),
    Column("message", Text, nullable=False, default=""),
    Index("ix_boot_statuses_boot", "boot_id", "id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("time", Float, nullable=False),
    Column("mac", String(17), nullable=True),
    Column("client_ip", String(64), nullable=True),
    Column("detail", Text, nullable=False, default="{}"),
    Index("ix_events_kind_id", "kind", "id"),
    Index("ix_events_mac_id", "mac", "id"),
    Index("ix_events_client_ip_id", "client_ip", "id"),
)

# ---- 0002: inventory, collections, deployments, approvals, audit, tokens

hosts = Table(
    "hosts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=True, unique=True),
    Column("uuid", String(64), nullable=False, default=""),
    Column("serial", String(256), nullable=False, default=""),
    Column("manufacturer", String(256), nullable=False, default=""),
    Column("product", String(256), nullable=False, default=""),
    Column("known", Boolean, nullable=False, default=False),
    Column("registered", Float, nullable=False),
    Column("last_seen", Float, nullable=True),
    Column("installed_at", Float, nullable=True),
    Column("wipe_approved", Boolean, nullable=False, default=False),
    Index("ix_hosts_uuid", "uuid"),
    Index("ix_hosts_serial", "serial"),
)

host_macs = Table(
    "host_macs",
    metadata,
    Column("host_id", Integer, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
    Column("mac", String(17), primary_key=True),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Index("ix_host_macs_mac", "mac"),
)

shared_macs = Table(
    "shared_macs",
    metadata,
    Column("mac", String(17), primary_key=True),
    Column("time", Float, nullable=False),
    Column("reason", Text, nullable=False, default=""),
)

collections = Table(
    "collections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("rules", Text, nullable=False, default="[]"),
    Column("created", Float, nullable=False),
    Column("require_login", Boolean, nullable=False, default=False),  # 0003: login at the iPXE prompt
)

collection_members = Table(
    "collection_members",
    metadata,
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), primary_key=True),
    Column("host_id", Integer, ForeignKey("hosts.id", ondelete="CASCADE"), primary_key=True),
)

deployments = Table(
    "deployments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("collection_id", Integer, ForeignKey("collections.id", ondelete="CASCADE"), nullable=False),
    Column("profile", Text, nullable=False),
    Column("intent", String(16), nullable=False),
    Column("countdown", Integer, nullable=False, default=10),
    Column("window_start", Float, nullable=True),
    Column("window_end", Float, nullable=True),
    Column("one_shot", Boolean, nullable=False, default=True),
    Column("require_approval", Boolean, nullable=False, default=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("priority", Integer, nullable=False, default=0),
    Column("created", Float, nullable=False),
    Column("require_login", Boolean, nullable=False, default=False),  # 0003: login at the iPXE prompt
)

deployment_runs = Table(
    "deployment_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", Integer, nullable=False),
    Column("host_id", Integer, nullable=False),
    Column("boot_id", String(64), nullable=False),
    Column("started", Float, nullable=False),
    Column("state", String(16), nullable=False, default="sent"),
    Column("finished", Float, nullable=True),
    Index("ix_deployment_runs_host", "host_id", "deployment_id"),
    Index("ix_deployment_runs_boot", "boot_id"),
)

# 0004: at most one unfinished run per (deployment, host), so concurrent first boots (even in two processes on
# one database) record one run; older duplicates were marked "superseded" by the migration
RUN_ACTIVE = deployment_runs.c.state.in_(("sent", "running"))
RUN_ACTIVE_SQL = "state IN ('sent', 'running')"
Index("uq_deployment_runs_active", deployment_runs.c.deployment_id, deployment_runs.c.host_id, unique=True,
      sqlite_where=text(RUN_ACTIVE_SQL), postgresql_where=text(RUN_ACTIVE_SQL))

approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("deployment_id", Integer, ForeignKey("deployments.id", ondelete="CASCADE"), nullable=False),
    Column("host_id", Integer, ForeignKey("hosts.id", ondelete="CASCADE"), nullable=False),
    Column("approved_by", String(128), nullable=False),
    Column("time", Float, nullable=False),
    Column("note", Text, nullable=False, default=""),
    UniqueConstraint("deployment_id", "host_id", name="uq_approvals_deployment_host"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(256), nullable=False, default=""),
    Column("allowed", Boolean, nullable=True),
    Column("detail", Text, nullable=False, default="{}"),
    Index("ix_audit_log_action_id", "action", "id"),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created", Float, nullable=False),
)

store_settings = Table(
    "store_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
