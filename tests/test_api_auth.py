"""crypto_ml.api.auth: the per-process cache of authenticated keys, against the real database (SQLite and
PostgreSQL); the HTTP side of authentication (401s, 429s) is tested over a real server in test_api_routes.py."""

from __future__ import annotations

from sqlalchemy import text

from crypto_ml.api.auth import AUTH_CACHE_SECONDS, KeyCache, authenticate_cached
from crypto_ml.api.keys import create_key, revoke_key


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_lasts_a_few_seconds():
    assert 1 <= AUTH_CACHE_SECONDS <= 10


def test_a_revoked_key_stops_working_once_the_cache_expires(ledger):
    clock = FakeClock()
    cache = KeyCache(5.0, clock=clock)
    secret, key = create_key(ledger, "alice")
    assert authenticate_cached(ledger, secret, cache) == key
    revoke_key(ledger, "alice")
    # Within the cache's lifetime this process still trusts the key it read ...
    clock.now += 4.9
    assert authenticate_cached(ledger, secret, cache) == key
    # ... and once it expires the database is asked again, and the key is refused.
    clock.now += 0.2
    assert authenticate_cached(ledger, secret, cache) is None
    # Refusals are not remembered as keys: it stays refused.
    assert authenticate_cached(ledger, secret, cache) is None


def test_a_cached_key_is_answered_without_the_database(ledger):
    clock = FakeClock()
    cache = KeyCache(5.0, clock=clock)
    secret, key = create_key(ledger, "bob")
    assert authenticate_cached(ledger, secret, cache) == key
    with ledger.engine.begin() as connection:
        connection.execute(text("ALTER TABLE api_keys RENAME TO api_keys_away"))
    try:
        assert authenticate_cached(ledger, secret, cache) == key
    finally:
        with ledger.engine.begin() as connection:
            connection.execute(text("ALTER TABLE api_keys_away RENAME TO api_keys"))


def test_a_new_key_works_at_once_and_unknown_or_malformed_ones_never(ledger):
    cache = KeyCache(5.0, clock=FakeClock())
    unknown = "cml_" + "A" * 43
    assert authenticate_cached(ledger, unknown, cache) is None
    secret, key = create_key(ledger, "carol")
    assert authenticate_cached(ledger, secret, cache) == key
    for bad in ["", "not-a-key", "cml_" + "x" * 1000, secret + "x"]:
        assert authenticate_cached(ledger, bad, cache) is None


def test_the_cache_holds_hashes_not_secrets(ledger):
    cache = KeyCache(5.0, clock=FakeClock())
    secret, _ = create_key(ledger, "dave")
    authenticate_cached(ledger, secret, cache)
    assert secret not in repr(cache._keys)


def test_without_a_cache_every_call_asks_the_database(ledger):
    secret, key = create_key(ledger, "erin")
    assert authenticate_cached(ledger, secret, None) == key
    revoke_key(ledger, "erin")
    assert authenticate_cached(ledger, secret, None) is None
