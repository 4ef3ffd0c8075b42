"""crypto_ml.api.keys: API keys stored as hashes, revocation, dashboard sessions; on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from sqlalchemy import select

from crypto_ml.api.keys import (
    KEY_PREFIX,
    authenticate,
    create_key,
    create_session,
    end_session,
    hash_secret,
    list_keys,
    revoke_key,
    session_key,
)
from crypto_ml.api.schema import ApiKeyRow, ApiSession
from crypto_ml.exceptions import InvalidParameterError


def test_a_key_is_shown_once_and_stored_only_as_its_hash(ledger):
    secret, key = create_key(ledger, "alice", max_concurrent_jobs=2, requests_per_minute=30)
    assert secret.startswith(KEY_PREFIX) and len(secret) == len(KEY_PREFIX) + 43  # 32 random bytes, base64url
    assert key.name == "alice" and key.prefix == secret[:12] and key.active
    assert (key.max_concurrent_jobs, key.requests_per_minute) == (2, 30)
    with ledger.reading() as connection:
        row = connection.execute(select(ApiKeyRow.__table__)).one()
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest() == hash_secret(secret)
    assert secret not in {str(value) for value in row}
    assert authenticate(ledger, secret) == key


def test_two_keys_are_different_and_each_authenticates_as_itself(ledger):
    first, alice = create_key(ledger, "alice")
    second, bob = create_key(ledger, "bob")
    assert first != second and alice.id != bob.id
    assert authenticate(ledger, first).name == "alice"
    assert authenticate(ledger, second).name == "bob"
    assert [key.name for key in list_keys(ledger)] == ["alice", "bob"]


def test_unknown_or_malformed_secrets_authenticate_nobody(ledger):
    create_key(ledger, "alice")
    for secret in ["", "cml_", "cml_not-a-key", "Bearer cml_x", "sk_" + "a" * 43, "cml_" + "a" * 5000, None, 42]:
        assert authenticate(ledger, secret) is None, secret


def test_a_key_with_one_character_changed_authenticates_nobody(ledger):
    secret, _ = create_key(ledger, "alice")
    changed = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert authenticate(ledger, changed) is None


def test_a_key_needs_a_name(ledger):
    for name in ["", "   ", "x" * 101]:
        with pytest.raises(InvalidParameterError, match="needs a name of 1 to 100 characters"):
            create_key(ledger, name)


def test_a_name_is_used_once_even_after_revocation(ledger):
    create_key(ledger, "alice")
    with pytest.raises(InvalidParameterError, match="an API key named 'alice' already exists"):
        create_key(ledger, " alice ")
    revoke_key(ledger, "alice")
    with pytest.raises(InvalidParameterError, match="revoked keys keep their names"):
        create_key(ledger, "alice")


def test_a_limit_below_one_is_refused(ledger):
    with pytest.raises(InvalidParameterError, match="max_concurrent_jobs must be at least 1"):
        create_key(ledger, "alice", max_concurrent_jobs=0)


def test_threads_creating_the_same_name_at_once_make_one_key(ledger):
    outcomes: list[object] = []
    barrier = threading.Barrier(6)

    def create() -> None:
        barrier.wait()
        try:
            outcomes.append(create_key(ledger, "shared")[1])
        except InvalidParameterError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(not isinstance(outcome, Exception) for outcome in outcomes) == 1
    assert [key.name for key in list_keys(ledger)] == ["shared"]


def test_a_revoked_key_authenticates_nobody_and_stays_listed(ledger):
    secret, key = create_key(ledger, "alice")
    revoked = revoke_key(ledger, "alice")
    assert revoked.id == key.id and revoked.revoked_at is not None and not revoked.active
    assert authenticate(ledger, secret) is None
    (listed,) = list_keys(ledger)
    assert listed.revoked_at == revoked.revoked_at


def test_a_key_can_be_revoked_by_its_prefix(ledger):
    secret, _ = create_key(ledger, "alice")
    other, _ = create_key(ledger, "bob")
    assert revoke_key(ledger, secret[:12]).name == "alice"
    assert authenticate(ledger, secret) is None
    assert authenticate(ledger, other) is not None


def test_revoking_an_unknown_or_revoked_key_says_how_to_list_them(ledger):
    create_key(ledger, "alice")
    revoke_key(ledger, "alice")
    for value in ("alice", "nobody"):
        with pytest.raises(InvalidParameterError, match=r"no active API key named .*`crypto-ml apikey list`"):
            revoke_key(ledger, value)


def test_a_session_logs_in_as_its_key_until_logout(ledger):
    _, key = create_key(ledger, "alice")
    token = create_session(ledger, key, hours=1)
    assert session_key(ledger, token) == key
    with ledger.reading() as connection:
        row = connection.execute(select(ApiSession.__table__)).one()
    assert row.token_hash == hash_secret(token) and token not in {str(value) for value in row}
    end_session(ledger, token)
    assert session_key(ledger, token) is None
    end_session(ledger, token)  # twice: no error


def test_a_session_ends_when_it_expires_or_its_key_is_revoked(ledger):
    _, alice = create_key(ledger, "alice")
    _, bob = create_key(ledger, "bob")
    short = create_session(ledger, alice, hours=0.2 / 3600)
    long = create_session(ledger, bob, hours=1)
    time.sleep(0.3)
    assert session_key(ledger, short) is None
    assert session_key(ledger, long) == bob
    revoke_key(ledger, "bob")
    assert session_key(ledger, long) is None
    # The expired session was deleted by the next login, the revoked key's sessions by the revocation.
    create_session(ledger, alice, hours=1)
    with ledger.reading() as connection:
        assert len(connection.execute(select(ApiSession.__table__)).all()) == 1


def test_unknown_session_tokens_are_nobody(ledger):
    _, key = create_key(ledger, "alice")
    create_session(ledger, key, hours=1)
    for token in ["", "nope", "x" * 5000, None]:
        assert session_key(ledger, token) is None, token


def test_a_session_must_last_some_time(ledger):
    _, key = create_key(ledger, "alice")
    with pytest.raises(InvalidParameterError, match="positive number of hours"):
        create_session(ledger, key, hours=0)
