"""readings the rules select (for the report's charts); who lifted a silence

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 16:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from recorder.schema import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "readings",
        sa.Column("station_id", sa.String(), nullable=False),
        sa.Column("metric", sa.String(), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.Column("area", sa.String(), nullable=False),
        sa.Column("domain", sa.String(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(), nullable=True),
        sa.Column("source", sa.String(), nullable=True),
        sa.Column("drill", sa.Boolean(), nullable=False),
        # (station, metric, observed_at) leads the key: a chart's series in order.
        sa.PrimaryKeyConstraint(
            "station_id", "metric", "observed_at", "area", name=op.f("pk_readings")
        ),
    )
    with op.batch_alter_table("readings", schema=None) as batch_op:
        # The purge deletes by time alone.
        batch_op.create_index(batch_op.f("ix_readings_observed_at"), ["observed_at"], unique=False)
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.add_column(sa.Column("removed_by", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.drop_column("removed_by")
    with op.batch_alter_table("readings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_readings_observed_at"))
    op.drop_table("readings")
