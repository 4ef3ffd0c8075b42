"""The Celery application: ``celery -A crypto_ml worker``, ``... beat`` and ``... flower``.

Beat starts the daily pipeline cycle (``crypto_ml.pipeline_cycle``) on
``CRYPTO_ML_PIPELINE_SCHEDULE``, a cron expression in UTC. Run exactly one
beat: two beats each send every cycle (the cycle lock makes the second a no-op,
but it is still a mistake), which is why beat is its own single-replica service
and never a worker's ``-B`` under an autoscaler.

Settings use Celery's lowercase names. Each says what it trades off.
"""

from __future__ import annotations

import logging
import os
import sys

from celery import Celery
from celery.schedules import crontab
from celery.signals import task_postrun, worker_init, worker_process_init
from kombu import Exchange, Queue

from .config import get_settings

__all__ = ["app", "LIGHT_QUEUE", "HEAVY_QUEUE", "PIPELINE_QUEUE", "QUEUES", "PIPELINE_TASK", "pipeline_crontab"]

log = logging.getLogger(__name__)

#: Cheap models (naive, drift, linear, SVR): many tasks, each milliseconds.
LIGHT_QUEUE = "crypto_ml.light"
#: Deep models: few tasks, each seconds to minutes, each worker holding TensorFlow.
HEAVY_QUEUE = "crypto_ml.heavy"
#: The daily cycle: one task a day that runs for minutes and sends forecasting tasks to the others, so
#: it has its own queue and worker; on a forecasting queue it would hold a slot the forecasts need.
PIPELINE_QUEUE = "crypto_ml.pipeline"
QUEUES = (LIGHT_QUEUE, HEAVY_QUEUE, PIPELINE_QUEUE)
PIPELINE_TASK = "crypto_ml.pipeline_cycle"
#: A scheduled cycle still queued this long after beat sent it (no pipeline worker was up) is dropped:
#: the next day's cycle forecasts from newer prices, and stale ones would only pile up.
PIPELINE_EXPIRES_SECONDS = 12 * 3600

# True in a prefork pool child: the only kind of process Celery replaces for its memory.
_in_pool_process = False


def pipeline_crontab(expression: str) -> crontab:
    """``CRYPTO_ML_PIPELINE_SCHEDULE`` (minute hour day-of-month month day-of-week, UTC) as a Celery schedule.

    Raises:
        InvalidParameterError: not five fields, or a field out of range; the message names the variable.
    """
    from .exceptions import InvalidParameterError

    fields = expression.split()
    if len(fields) != 5:
        raise InvalidParameterError(
            f"CRYPTO_ML_PIPELINE_SCHEDULE={expression!r} is not a 5-field cron expression "
            "(minute hour day-of-month month day-of-week, UTC), e.g. '30 0 * * *'"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        schedule = crontab(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year, day_of_week=day_of_week
        )
    except ValueError as exc:  # celery's crontab_parser: a value out of range or a bad name
        raise InvalidParameterError(
            f"CRYPTO_ML_PIPELINE_SCHEDULE={expression!r} is not a valid cron expression ({exc}); "
            "give minute hour day-of-month month day-of-week in UTC, e.g. '30 0 * * *'"
        ) from None
    return schedule


_settings = get_settings()

app = Celery("crypto_ml", include=["crypto_ml.tasks"])
app.conf.update(
    broker_url=_settings.broker_url,
    result_backend=_settings.result_backend,
    # JSON only, both ways: a pickled message is rejected before it is decoded,
    # so publishing to the queue cannot run code on a worker.
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    # Each queue on its own direct exchange and key: a bare Queue(name) would bind
    # every queue to the first one's exchange, copying messages published there into both.
    task_queues=[Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
    task_default_queue=LIGHT_QUEUE,
    task_routes={PIPELINE_TASK: {"queue": PIPELINE_QUEUE}},
    # Cron expressions read in UTC, whatever the host's zone: exchanges close their days at 00:00 UTC.
    timezone="UTC",
    enable_utc=True,
    beat_schedule={
        "pipeline-cycle": {
            "task": PIPELINE_TASK,
            "schedule": pipeline_crontab(_settings.pipeline_schedule),
            "options": {"queue": PIPELINE_QUEUE, "expires": PIPELINE_EXPIRES_SECONDS},
        }
    },
    # acks_late: a task whose worker dies is redelivered, so it may run twice;
    # tasks are pure functions of their payload and results are keyed by task
    # id, so a second run overwrites the first with the same value.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # One message at a time per process: a long task never holds others hostage.
    worker_prefetch_multiplier=1,
    # Soft limit raises inside the task (it fails cleanly, reported per coin);
    # the hard limit kills the process if even that hangs.
    task_soft_time_limit=_settings.task_timeout,
    task_time_limit=_settings.task_timeout + 60,
    # Results are read once by the producer; a day leaves room to re-read after a crash.
    result_expires=24 * 3600,
    # Events feed Flower; the sent event shows queued tasks too.
    worker_send_task_events=True,
    task_send_sent_event=True,
    task_track_started=True,
    # Heartbeats both ways every broker_heartbeat / 2 s: a worker whose host is cut off
    # is dropped by RabbitMQ after about two missed intervals and its unacked tasks go to
    # others (README "Across hosts"); a link that stalls longer than that is a false positive.
    broker_heartbeat=_settings.broker_heartbeat,
    # Keep reconnecting after a broker restart instead of exiting.
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    # Recycle a process that grew past this (KiB) after its current task, rather
    # than --max-tasks-per-child 1, which paid the TensorFlow import on every task.
    worker_max_memory_per_child=_settings.worker_max_memory_mb * 1024 or None,
)


@worker_process_init.connect
def _configure_pool_process(**_: object) -> None:
    """Each prefork child shares the cores with its siblings: TensorFlow gets one thread by default.

    TensorFlow itself is imported later, inside the child, on its first deep task:
    never in the parent, whose forked children would inherit its thread pools.
    """
    from .deep import mark_pool_process

    global _in_pool_process
    _in_pool_process = True
    mark_pool_process()


@worker_init.connect
def _preload_light_models(**_: object) -> None:
    """Import the light models' libraries in the worker's parent, so forked pool processes start with them.

    scikit-learn costs ~1 s per process otherwise. When the ``stats`` extra is
    installed, statsforecast and arch cost seconds more (statsmodels, scipy,
    pandas), and a first fit sets up more still; so one tiny fit and
    interval forecast of each stats model runs here, through our own wrappers,
    and every forked child inherits the imported, already-exercised code. A
    failure here is logged and never stops the worker: a task imports what it
    needs itself, only slower.

    TensorFlow is deliberately not preloaded: see ``_configure_pool_process``.
    """
    import time

    import numpy as np
    import sklearn.linear_model
    import sklearn.svm  # noqa: F401

    from .models import get_model
    from .models.registry import missing_extra

    start = time.perf_counter()
    # 60 days of a 3 %-a-day random walk: long enough for every model's minimum, short enough to fit in ms.
    prices = 100.0 * np.exp(np.cumsum(0.03 * np.random.default_rng(0).standard_normal(60)))
    warmed = []
    for name in ("ets", "theta", "arima", "garch"):
        try:
            if missing_extra(name) is not None:  # the stats extra is not installed: nothing to preload
                continue
            get_model(name).fit(prices).predict_interval(2)
        except Exception:  # a preload is an optimisation; the worker must start regardless
            log.warning(
                "preloading model %r failed; its first task in each pool process will import it", name, exc_info=True
            )
        else:
            warmed.append(name)
    if warmed:
        log.info("preloaded %s (statsforecast/arch) in %.1f s", ", ".join(warmed), time.perf_counter() - start)


def peak_memory_mb() -> float:
    """This process's peak resident memory in MB: what Celery compares with its memory limit."""
    import resource  # POSIX only, as are prefork pools

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


@task_postrun.connect
def _warn_before_recycling(task: object = None, **_: object) -> None:
    """Say why a pool process is about to be replaced: Celery itself does not say it in the worker's log.

    A dataset read by reference whose peak exceeds the limit otherwise makes
    every task start cold (read the data, import the models) without a word.
    """
    limit = app.conf.worker_max_memory_per_child
    if not (limit and _in_pool_process):
        return
    peak = peak_memory_mb()
    if peak * 1024 > limit:
        log.warning(
            "pool process %d peaked at %.0f MB, over CRYPTO_ML_WORKER_MAX_MEMORY_MB=%d: it is replaced after "
            "%s, so the next task starts cold (data read, libraries imported again). If this repeats on every "
            "task, raise CRYPTO_ML_WORKER_MAX_MEMORY_MB above the peak (the memory one task needs).",
            os.getpid(),
            peak,
            limit // 1024,
            getattr(task, "name", "this task"),
        )
