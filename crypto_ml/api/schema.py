"""The HTTP API's tables, in the ledger's database and on the ledger's metadata.

::

    api_keys            one row per key: its name, the sha256 of the secret (never the secret), limits, revocation
     ├── api_sessions   dashboard logins: the sha256 of the cookie token, until when it is valid
     └── jobs           one forecast or backtest request: status, progress, who collects it (owner + heartbeat)
          ├── job_tasks     one row per batch task: its task id, coins and payload, planned -> sent -> collected
          └── job_results   one row per result record, unique per (job, record key): what makes a job exactly-once

A job lives in the database, not in the API process: a restarted API (or another
one) finds its tasks by id, collects what finished meanwhile and sends what was
never sent. ``migrations/versions/0002_api.py`` creates exactly these tables.
Importing this module registers them on ``crypto_ml.ledger.schema.Base``; it
imports SQLAlchemy only, never FastAPI.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..ledger.schema import ID_TYPE, Base, UTCDateTime

__all__ = [
    "ApiKeyRow",
    "ApiSession",
    "Job",
    "JobTask",
    "JobResult",
    "JOB_KINDS",
    "JOB_STATUSES",
    "TASK_STATES",
    "RESULT_STATUSES",
]

#: What a job runs.
JOB_KINDS = ("forecast", "backtest")
#: queued (stored, not planned yet) -> running (tasks planned and sent) -> one of the last three.
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
#: A job task is stored before it is sent, so a restarted API sends it if the first never did.
TASK_STATES = ("planned", "sent", "collected")
#: A stored record's outcome, as the record's own ``status``.
RESULT_STATUSES = ("ok", "failed")


class ApiKeyRow(Base):
    """An API key as stored: only the sha256 of the secret, and the first characters for display."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # None: the settings' api_max_concurrent_jobs / api_requests_per_minute, read when used.
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ApiSession(Base):
    """A dashboard login: the cookie token's sha256, the key it logged in with, and its expiry."""

    __tablename__ = "api_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Job(Base):
    """One forecast or backtest request of one key, from submission to its last result."""

    __tablename__ = "jobs"
    __table_args__ = (
        # A key's jobs newest first (GET /v1/jobs); its leading column also serves "this key's active jobs".
        Index("ix_jobs_api_key_id_created_at", "api_key_id", "created_at"),
        # Every runner looks for active jobs several times a second: the few among many finished ones.
        Index("ix_jobs_status", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The API process collecting the job, and when it last said so: a heartbeat older than the lease
    # (api_job_lease_seconds) means it died, and another process takes the job over.
    owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    transfer: Mapped[str | None] = mapped_column(String(16), nullable=True)


class JobTask(Base):
    """One batch task of a job: sent under its own id (``<job id>.<batch index>``), so it can be found again."""

    __tablename__ = "job_tasks"
    __table_args__ = (UniqueConstraint("job_id", "batch_index", name="uq_job_tasks_job_id_batch_index"),)

    task_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    batch_index: Mapped[int] = mapped_column(Integer)
    coins: Mapped[list[str]] = mapped_column(JSON)
    # Each coin's place in the request (parallel to ``coins``): results are shown in request order, and
    # coins that failed before any task was planned leave gaps a batch's own order cannot tell.
    positions: Mapped[list[int]] = mapped_column(JSON)
    # The JSON-safe payload, kept until the task is collected: a restarted API sends it if it never was.
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16))
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    collected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobResult(Base):
    """One result record of a job: a coin's forecast, or one backtest window, or a failure.

    ``record`` is exactly what the CLI's ``--out`` JSON holds for it. The unique
    (job, record key) is what makes collection exactly-once: a record collected
    again after a restart or a redelivery inserts nothing.
    """

    __tablename__ = "job_results"
    __table_args__ = (UniqueConstraint("job_id", "record_key", name="uq_job_results_job_id_record_key"),)

    id: Mapped[int] = mapped_column(ID_TYPE, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    # The coin for a forecast; "coin|model|window" for a backtest record.
    record_key: Mapped[str] = mapped_column(String(300))
    coin: Mapped[str] = mapped_column(String(200))
    # Sort order: the coin's place in the request, then the record's place among the coin's
    # (jobs.POSITION_STRIDE apart); 64-bit, as coins x stride outgrows 32 bits.
    position: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    stored_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
