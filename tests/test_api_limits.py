"""crypto_ml.api.limits: a fixed one-minute window per key, in Redis (shared) or in this process (fallback)."""

from __future__ import annotations

import uuid

import pytest

from crypto_ml.api.limits import WINDOW_SECONDS, RateLimiter
from crypto_ml.config import get_settings


class Clock:
    """A settable clock, so window boundaries are exact."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def exhaust(limiter: RateLimiter, key, limit: int) -> list[bool]:
    return [limiter.hit(key, limit).allowed for _ in range(limit + 2)]


def check_window(limiter: RateLimiter, clock: Clock, key) -> None:
    clock.now = 1_000 * WINDOW_SECONDS + 15.2  # 15.2 s into a window
    decisions = [limiter.hit(key, 3) for _ in range(5)]
    assert [d.allowed for d in decisions] == [True, True, True, False, False]
    assert [d.count for d in decisions] == [1, 2, 3, 4, 5]
    # Retry-After: whole seconds to the window's end, rounded up.
    assert {d.retry_after for d in decisions} == {45}
    clock.now += 44.7  # 59.9 s into the window: still refused, retry in 1 s, never 0
    late = limiter.hit(key, 3)
    assert (late.allowed, late.retry_after) == (False, 1)
    clock.now += 0.2  # the next window
    assert limiter.hit(key, 3).allowed
    # Keys are counted apart.
    assert limiter.hit(f"{key}-other", 1).allowed


def test_in_process_window_without_redis():
    clock = Clock(0)
    limiter = RateLimiter(None, clock=clock)
    check_window(limiter, clock, "k1")
    assert limiter.hit("k1", 3).shared is False


def test_a_result_backend_that_is_not_redis_counts_in_process():
    assert RateLimiter("rpc://").redis_url is None
    assert RateLimiter("db+postgresql://x/y").redis_url is None
    assert RateLimiter("redis://localhost:6379/0").redis_url is not None


def test_unreachable_redis_falls_back_to_process_counts_and_says_so(caplog):
    clock = Clock(0)
    limiter = RateLimiter("redis://127.0.0.1:9/0", clock=clock)  # port 9 (discard): nothing listens
    with caplog.at_level("WARNING", logger="crypto_ml.api.limits"):
        check_window(limiter, clock, "k2")
    assert limiter.hit("k2", 3).shared is False
    warnings = [r.getMessage() for r in caplog.records if "counted in this process" in r.getMessage()]
    assert len(warnings) == 1, warnings  # said once, not per request
    assert "redis://" not in warnings[0]  # a URL may hold a password


@pytest.mark.broker
def test_redis_window_is_shared_by_every_limiter(services):
    url = get_settings().result_backend
    prefix = f"crypto_ml:test-rpm:{uuid.uuid4().hex}"
    clock = Clock(0)
    first = RateLimiter(url, clock=clock, prefix=prefix)
    second = RateLimiter(url, clock=clock, prefix=prefix)  # another API process
    try:
        check_window(first, clock, "k3")
        assert first.hit("k3", 3).shared is True
        # Two processes share one count: 2 here and 2 there is 4, over a limit of 3.
        clock.now += WINDOW_SECONDS
        assert [first.hit("k4", 3).allowed, second.hit("k4", 3).allowed] == [True, True]
        assert [first.hit("k4", 3).allowed, second.hit("k4", 3).allowed] == [True, False]
        # The window's key expires by itself.
        client = first._client()
        window = int(clock.now // WINDOW_SECONDS)
        ttl = client.ttl(f"{prefix}:k4:{window}")
        assert 0 < ttl <= 2 * WINDOW_SECONDS
    finally:
        first.close()
        second.close()
