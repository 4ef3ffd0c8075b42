"""The ledger's tables, as SQLAlchemy 2 declarative classes.

::

    runs                one pipeline cycle, replay or other writer: when, what with, how it ended
     └── forecasts      one row per (coin, model, params hash, origin date, step): the point forecast
          ├── forecast_intervals   its bounds, one row per level
          ├── scores               its actual price and absolute error, once the target date has a price
          └── interval_scores      per level: whether the actual fell inside, and the interval (Winkler) score
    locks               named locks with an expiry: at most one pipeline cycle at a time

The migrations in ``migrations/versions`` create exactly these tables; the
classes here are what the code reads and writes through. Every timestamp is
stored in UTC (``UTCDateTime``), so a SQLite file and a PostgreSQL database
hold the same values and compare them the same way.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "Run",
    "ForecastStep",
    "ForecastInterval",
    "Score",
    "IntervalScore",
    "Lock",
    "UTCDateTime",
    "ID_TYPE",
    "NAMING_CONVENTION",
    "RUN_STATUSES",
    "utc_now",
]

#: Constraint names spelled the same on every database, so a migration can name what it alters.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: A run is "running" until finish_run marks it "ok" or "failed"; one left "running" was interrupted.
RUN_STATUSES = ("running", "ok", "failed")

#: 64-bit ids on PostgreSQL (a ledger grows by coins x models x steps a day); SQLite only
#: autoincrements a column declared exactly INTEGER PRIMARY KEY, which is 64-bit there anyway.
ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


def utc_now() -> dt.datetime:
    """The current time, aware, in UTC: every timestamp the ledger stores."""
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime stored in UTC, read back aware in UTC on every database.

    SQLite has no time zones: it would store an aware datetime's wall clock and
    read it back naive, so the same instant written from two zones would compare
    wrongly. Converting to UTC on the way in makes the stored text sort in time
    order, which the lock's ``expires_at < now`` relies on.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the ledger stores aware UTC datetimes")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # SQLite
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """The ledger's tables' common base: one metadata, with constraint names spelled the same everywhere."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One writer's session: a pipeline cycle, a replay, ... with its parameters and outcome."""

    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    data_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    code_version: Mapped[str] = mapped_column(String(64))
    library_versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class ForecastStep(Base):
    """One step of one forecast. The unique key is what makes recording idempotent."""

    __tablename__ = "forecasts"
    __table_args__ = (
        UniqueConstraint("coin", "model", "params_hash", "origin_date", "step", name="uq_forecasts_key"),
        Index("ix_forecasts_target_date", "target_date"),
        Index("ix_forecasts_model_origin_date", "model", "origin_date"),
    )

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    # The run that first recorded it; a rerun that finds it already there leaves it pointing at that run.
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    coin: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(64))
    params_hash: Mapped[str] = mapped_column(String(16))
    origin_date: Mapped[dt.date] = mapped_column(Date)
    step: Mapped[int] = mapped_column(Integer)
    target_date: Mapped[dt.date] = mapped_column(Date)
    point: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class ForecastInterval(Base):
    """The central ``level`` % prediction interval of one forecast step."""

    __tablename__ = "forecast_intervals"

    forecast_id: Mapped[int] = mapped_column(ID_TYPE, ForeignKey("forecasts.id", ondelete="CASCADE"), primary_key=True)
    level: Mapped[float] = mapped_column(Float, primary_key=True)
    lower: Mapped[float] = mapped_column(Float)
    upper: Mapped[float] = mapped_column(Float)


class Score(Base):
    """How one forecast step did, once its target date had a price."""

    __tablename__ = "scores"

    forecast_id: Mapped[int] = mapped_column(ID_TYPE, ForeignKey("forecasts.id", ondelete="CASCADE"), primary_key=True)
    actual: Mapped[float] = mapped_column(Float)
    abs_error: Mapped[float] = mapped_column(Float)
    scored_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class IntervalScore(Base):
    """How one interval did: inside or not, and its Winkler score on log prices (metrics.winkler_scores)."""

    __tablename__ = "interval_scores"
    __table_args__ = (
        # The interval it scores: a score can never name a level the forecast did not have.
        ForeignKeyConstraint(
            ["forecast_id", "level"],
            ["forecast_intervals.forecast_id", "forecast_intervals.level"],
            ondelete="CASCADE",
        ),
    )

    forecast_id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True)
    level: Mapped[float] = mapped_column(Float, primary_key=True)
    inside: Mapped[bool] = mapped_column(Boolean)
    interval_score: Mapped[float] = mapped_column(Float)


class Lock(Base):
    """A named lock; whoever holds an unexpired row holds the lock (``lock.cycle_lock``)."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
