"""crypto_ml.api.jobs: the job store on SQLite and PostgreSQL: limits, documents, paging, cancelling,
results stored exactly once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, insert, select, update

from crypto_ml.api.jobs import (
    POSITION_STRIDE,
    cancel_job,
    create_job,
    job_document,
    list_jobs,
    store_records,
)
from crypto_ml.api.keys import create_key
from crypto_ml.api.schema import Job, JobResult, JobTask
from crypto_ml.exceptions import InvalidParameterError, TooManyJobsError, UnknownJobError
from crypto_ml.ledger.schema import utc_now

JOBS = Job.__table__
TASKS = JobTask.__table__
RESULTS = JobResult.__table__
REQUEST = {"coins": ["bitcoin", "ethereum"], "model": "naive", "horizon": 3, "levels": [80.0], "params": {}}


@pytest.fixture
def alice(ledger):
    return create_key(ledger, "alice")[1]


@pytest.fixture
def bob(ledger):
    return create_key(ledger, "bob")[1]


def submit(ledger, key, *, kind="forecast", total=2, max_active=100):
    return create_job(ledger, key, kind, REQUEST, total, owner="runner-1", max_active=max_active)


def set_status(ledger, job_id, status):
    with ledger.engine.begin() as connection:
        connection.execute(update(JOBS).where(JOBS.c.id == job_id).values(status=status, finished_at=utc_now()))


def test_a_new_job_is_queued_with_no_progress_and_no_results(ledger, alice):
    job_id = submit(ledger, alice)
    document = job_document(ledger, job_id, alice.id)
    assert len(job_id) == 32 and int(job_id, 16) >= 0
    assert document["job_id"] == job_id and document["kind"] == "forecast" and document["status"] == "queued"
    assert document["request"] == REQUEST
    assert document["progress"] == {"done": 0, "total": 2}
    assert document["status_url"] == f"/v1/jobs/{job_id}"
    assert document["created_at"].endswith("+00:00") and document["started_at"] is None
    assert document["finished_at"] is None and document["error"] is None and document["seconds"] >= 0
    assert document["results"] is None and document["failures"] is None
    with ledger.reading() as connection:
        row = connection.execute(select(JOBS).where(JOBS.c.id == job_id)).one()
    assert row.owner == "runner-1" and row.heartbeat_at is not None


def test_another_keys_job_is_reported_as_missing(ledger, alice, bob):
    job_id = submit(ledger, alice)
    for call in (lambda: job_document(ledger, job_id, bob.id), lambda: cancel_job(ledger, job_id, bob.id)):
        with pytest.raises(UnknownJobError, match=f"no job '{job_id}' for this API key"):
            call()
    with pytest.raises(UnknownJobError):
        job_document(ledger, "0" * 32, alice.id)
    assert job_document(ledger, job_id, alice.id)["status"] == "queued"  # bob's cancel changed nothing


def test_a_bad_kind_or_total_is_refused(ledger, alice):
    with pytest.raises(InvalidParameterError, match="unknown job kind 'train'"):
        create_job(ledger, alice, "train", REQUEST, 1, owner="x", max_active=1)
    with pytest.raises(InvalidParameterError, match="zero or more coins"):
        create_job(ledger, alice, "forecast", REQUEST, -1, owner="x", max_active=1)


def test_a_key_at_its_limit_of_active_jobs_is_told_to_wait(ledger, alice, bob):
    first = submit(ledger, alice, max_active=2)
    submit(ledger, alice, max_active=2)
    with pytest.raises(TooManyJobsError, match="API key 'alice' has 2 jobs queued or running, its limit") as raised:
        submit(ledger, alice, max_active=2)
    assert raised.value.retry_after == 5
    submit(ledger, bob, max_active=2)  # the limit is per key
    set_status(ledger, first, "succeeded")
    submit(ledger, alice, max_active=2)  # a finished job no longer counts


def test_concurrent_submits_never_pass_the_limit_together(ledger, alice):
    created: list[str] = []
    refused: list[Exception] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            created.append(submit(ledger, alice, max_active=3))
        except TooManyJobsError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(created), len(refused)) == (3, 5)
    with ledger.reading() as connection:
        assert connection.execute(select(func.count()).select_from(JOBS)).scalar_one() == 3


def test_a_revoked_key_cannot_submit(ledger, alice):
    from crypto_ml.api.keys import revoke_key

    revoke_key(ledger, "alice")
    with pytest.raises(InvalidParameterError, match="API key 'alice' is revoked"):
        submit(ledger, alice)


def test_records_are_stored_once_and_progress_counts_coins(ledger, alice):
    job_id = submit(ledger, alice, kind="backtest", total=3)
    windows = [
        (f"bitcoin|naive|{window}", "bitcoin", window, "ok", {"coin": "bitcoin", "window": window}) for window in (1, 2)
    ]
    assert store_records(ledger, job_id, windows) == 2
    assert job_document(ledger, job_id, alice.id)["progress"] == {"done": 1, "total": 3}  # one coin, two records
    # The same records again (a restart, a redelivered task), and one new: only the new one is stored.
    failed = ("ethereum|naive|None", "ethereum", POSITION_STRIDE, "failed", {"coin": "ethereum", "error": "x"})
    assert store_records(ledger, job_id, [*windows, failed]) == 1
    assert store_records(ledger, job_id, windows) == 0
    assert store_records(ledger, job_id, []) == 0
    assert job_document(ledger, job_id, alice.id)["progress"] == {"done": 2, "total": 3}
    with ledger.reading() as connection:
        counts = connection.execute(
            select(RESULTS.c.record_key, func.count()).where(RESULTS.c.job_id == job_id).group_by(RESULTS.c.record_key)
        ).all()
    assert sorted(counts) == [("bitcoin|naive|1", 1), ("bitcoin|naive|2", 1), ("ethereum|naive|None", 1)]


def test_a_record_already_stored_keeps_its_first_content(ledger, alice):
    job_id = submit(ledger, alice)
    store_records(ledger, job_id, [("bitcoin", "bitcoin", 0, "ok", {"coin": "bitcoin", "forecast": [1.0]})])
    store_records(ledger, job_id, [("bitcoin", "bitcoin", 0, "failed", {"coin": "bitcoin", "error": "late"})])
    set_status(ledger, job_id, "succeeded")
    document = job_document(ledger, job_id, alice.id)
    assert document["results"] == [{"coin": "bitcoin", "forecast": [1.0]}] and document["failures"] == []


def test_a_finished_job_shows_its_results_and_failures_in_request_order(ledger, alice):
    job_id = submit(ledger, alice, total=3)
    # Collected out of order, as batches finish.
    store_records(
        ledger,
        job_id,
        [
            ("solana", "solana", 2 * POSITION_STRIDE, "ok", {"coin": "solana", "forecast": [3.0, float("nan")]}),
            ("ethereum", "ethereum", POSITION_STRIDE, "failed", {"coin": "ethereum", "error": "too short"}),
        ],
    )
    store_records(ledger, job_id, [("bitcoin", "bitcoin", 0, "ok", {"coin": "bitcoin", "forecast": [1.5]})])
    assert job_document(ledger, job_id, alice.id)["results"] is None  # running: not yet
    partial = job_document(ledger, job_id, alice.id, with_results=True)
    assert [record["coin"] for record in partial["results"]] == ["bitcoin", "solana"]
    set_status(ledger, job_id, "succeeded")
    document = job_document(ledger, job_id, alice.id)
    # NaN has no JSON (and PostgreSQL refuses it in a json column): stored as null.
    assert document["results"] == [
        {"coin": "bitcoin", "forecast": [1.5]},
        {"coin": "solana", "forecast": [3.0, None]},
    ]
    assert document["failures"] == [{"coin": "ethereum", "error": "too short"}]
    assert document["progress"] == {"done": 3, "total": 3}
    assert document["finished_at"] is not None
    assert job_document(ledger, job_id, alice.id, with_results=False)["results"] is None


def test_jobs_are_listed_newest_first_a_page_at_a_time(ledger, alice, bob):
    mine = [submit(ledger, alice) for _ in range(5)]
    submit(ledger, bob)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page, cursor = list_jobs(ledger, alice.id, limit=2, before=cursor)
        pages += 1
        assert all(document["results"] is None for document in page)
        seen += [document["job_id"] for document in page]
        if cursor is None:
            break
    assert pages == 3 and seen == mine[::-1]
    page, cursor = list_jobs(ledger, alice.id, limit=5)
    assert len(page) == 5 and cursor is None
    assert list_jobs(ledger, bob.id)[0][0]["request"] == REQUEST
    assert list_jobs(ledger, create_key(ledger, "carol")[1].id) == ([], None)


def test_jobs_created_in_the_same_instant_are_paged_without_loss_or_repeat(ledger, alice):
    ids = [submit(ledger, alice) for _ in range(4)]
    same = utc_now()
    with ledger.engine.begin() as connection:
        connection.execute(update(JOBS).values(created_at=same))
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = list_jobs(ledger, alice.id, limit=1, before=cursor)
        seen += [document["job_id"] for document in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 4


def test_a_bad_page_request_is_refused(ledger, alice, bob):
    bobs = submit(ledger, bob)
    with pytest.raises(InvalidParameterError, match="limit must be between 1 and 100"):
        list_jobs(ledger, alice.id, limit=0)
    with pytest.raises(InvalidParameterError, match="is not a job of this API key"):
        list_jobs(ledger, alice.id, before=bobs)


def test_cancelling_an_active_job_returns_the_tasks_to_revoke(ledger, alice):
    job_id = submit(ledger, alice)
    with ledger.engine.begin() as connection:
        connection.execute(
            insert(TASKS),
            [
                {
                    "task_id": f"{job_id}.{index}",
                    "job_id": job_id,
                    "batch_index": index,
                    "coins": [coin],
                    "positions": [index],
                    "payload": {"series": []},
                    "state": state,
                }
                for index, (coin, state) in enumerate(
                    [("bitcoin", "collected"), ("ethereum", "sent"), ("solana", "planned")]
                )
            ],
        )
    document, task_ids = cancel_job(ledger, job_id, alice.id)
    assert document["status"] == "cancelled" and document["finished_at"] is not None
    assert document["results"] == [] and document["failures"] == []
    assert task_ids == [f"{job_id}.1", f"{job_id}.2"]
    # Idempotent: cancelling again changes nothing and revokes nothing.
    again, task_ids = cancel_job(ledger, job_id, alice.id)
    assert again["status"] == "cancelled" and again["finished_at"] == document["finished_at"] and task_ids == []


def test_cancelling_a_finished_job_leaves_it_as_it_is(ledger, alice):
    job_id = submit(ledger, alice)
    set_status(ledger, job_id, "succeeded")
    document, task_ids = cancel_job(ledger, job_id, alice.id)
    assert document["status"] == "succeeded" and task_ids == []
