"""Tests for crypto_ml.data.schema: coin names."""

from __future__ import annotations

import pytest

from crypto_ml.data import normalize_name
from crypto_ml.exceptions import InvalidParameterError

# --- Names -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Bitcoin Cash", "bitcoin_cash"),
        ("I-O Coin", "i-o_coin"),
        ("The ChampCoin", "the_champcoin"),
        ("  Bitcoin \t Cash  ", "bitcoin_cash"),
        ("bitcoin_cash", "bitcoin_cash"),
        ("Déjà Coin", "déjà_coin"),
        ("Ｂｉｔｃｏｉｎ", "bitcoin"),  # noqa: RUF001 - full-width letters on purpose: they fold under NFKC
        ("Bitcoin\u00a0Cash", "bitcoin_cash"),  # a non-breaking space is still a space
    ],
)
def test_normalize_name(raw, expected):
    assert normalize_name(raw) == expected


def test_normalize_name_rejects_non_strings():
    with pytest.raises(InvalidParameterError, match="string"):
        normalize_name(42)
