"""The ledger: runs, forecasts, their intervals, scores and interval scores, and locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Spelled out here rather than imported from schema.py: a migration must keep creating what it
# created when it was written, whatever the models become later.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("data_hash", sa.String(64), nullable=True),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("library_versions", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_table(
        "forecasts",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("coin", sa.String(200), nullable=False),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("params_hash", sa.String(16), nullable=False),
        sa.Column("origin_date", sa.Date(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("target_date", sa.Date(), nullable=False),
        sa.Column("point", sa.Float(), nullable=False),
        sa.Column("recorded_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_forecasts"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_forecasts_run_id_runs"),
        sa.UniqueConstraint("coin", "model", "params_hash", "origin_date", "step", name="uq_forecasts_key"),
    )
    op.create_index("ix_forecasts_target_date", "forecasts", ["target_date"])
    op.create_index("ix_forecasts_model_origin_date", "forecasts", ["model", "origin_date"])
    op.create_table(
        "forecast_intervals",
        sa.Column("forecast_id", ID, nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("lower", sa.Float(), nullable=False),
        sa.Column("upper", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("forecast_id", "level", name="pk_forecast_intervals"),
        sa.ForeignKeyConstraint(
            ["forecast_id"], ["forecasts.id"], name="fk_forecast_intervals_forecast_id_forecasts", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "scores",
        sa.Column("forecast_id", ID, nullable=False),
        sa.Column("actual", sa.Float(), nullable=False),
        sa.Column("abs_error", sa.Float(), nullable=False),
        sa.Column("scored_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("forecast_id", name="pk_scores"),
        sa.ForeignKeyConstraint(
            ["forecast_id"], ["forecasts.id"], name="fk_scores_forecast_id_forecasts", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "interval_scores",
        sa.Column("forecast_id", ID, nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("inside", sa.Boolean(), nullable=False),
        sa.Column("interval_score", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("forecast_id", "level", name="pk_interval_scores"),
        sa.ForeignKeyConstraint(
            ["forecast_id", "level"],
            ["forecast_intervals.forecast_id", "forecast_intervals.level"],
            name="fk_interval_scores_forecast_id_forecast_intervals",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "locks",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("acquired_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )


def downgrade() -> None:
    for table in ("locks", "interval_scores", "scores", "forecast_intervals", "forecasts", "runs"):
        op.drop_table(table)
