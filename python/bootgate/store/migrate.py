"""Runs the Alembic migrations on a connection (no alembic.ini: the script location is this package)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

__all__ = ["FOUNDATION_REVISION", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS = Path(__file__).parent / "migrations"
FOUNDATION_REVISION = "0001"


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, target: str = "head") -> None:
    """Brings the database to `target`. A database made by the foundation (tables, no alembic_version)
    is stamped as revision 0001 first, so its rows are kept and only the newer steps run."""
    tables = set(inspect(connection).get_table_names())
    cfg = alembic_config(connection)
    if "alembic_version" not in tables and "boots" in tables:
        command.stamp(cfg, FOUNDATION_REVISION)
    command.upgrade(cfg, target)
