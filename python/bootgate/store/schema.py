"""The database schema, in one place (to be lifted into Alembic migrations).

Times are float seconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, MetaData, String, Table, Text

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
    Index("ix_boots_mac_time", "mac", "time"),
    Index("ix_boots_time", "time"),
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
