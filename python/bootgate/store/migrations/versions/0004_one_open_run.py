"""At most one unfinished run per deployment and host (concurrent first boots record one run).

Unfinished duplicates already stored (several "sent"/"running" runs of one deployment on one host) are
kept but marked "superseded", all but the newest, so the unique index can be built.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ACTIVE = "state IN ('sent', 'running')"


def upgrade() -> None:
    op.execute(sa.text(
        f"UPDATE deployment_runs SET state = 'superseded' WHERE {_ACTIVE} AND id NOT IN ("
        f" SELECT max(id) FROM deployment_runs WHERE {_ACTIVE} GROUP BY deployment_id, host_id)"))
    op.create_index("uq_deployment_runs_active", "deployment_runs", ["deployment_id", "host_id"], unique=True,
                    sqlite_where=sa.text(_ACTIVE), postgresql_where=sa.text(_ACTIVE))


def downgrade() -> None:
    op.drop_index("uq_deployment_runs_active", table_name="deployment_runs")
