"""Prices by reference (crypto_ml.references): through the shared cache, the same answers as the loader."""

from __future__ import annotations

import numpy as np
import pytest

from crypto_ml import references
from crypto_ml.config import get_settings
from crypto_ml.data import CryptoLoader, cache
from crypto_ml.exceptions import CryptoMLError, DataFormatError, UnknownCoinError

from data_helpers import quirky_long_frame


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """A cache of this test's own, and a worker process that has read nothing yet."""
    folder = tmp_path / "dataset-cache"
    monkeypatch.setenv("CRYPTO_ML_CACHE_DIR", str(folder))
    get_settings.cache_clear()
    fresh_process()
    yield folder
    fresh_process()


def fresh_process() -> None:
    """Forget what this process has read, as a new pool process would have."""
    references._DATASETS.clear()
    references._LOADERS.clear()


@pytest.fixture
def long_file(tmp_path) -> str:
    path = tmp_path / "quirky.parquet"
    quirky_long_frame().to_parquet(path, index=False)
    return str(path)


def outcome(call):
    try:
        prices, dates = call()
    except CryptoMLError as exc:
        return type(exc).__name__, str(exc)
    return np.asarray(prices).tolist(), list(dates)


@pytest.mark.parametrize("selection", [{}, {"max_points": 2}, {"from_date": "2017-09-21", "to_date": "2017-09-21"}])
def test_every_coin_by_reference_matches_the_loader(long_file, cache_dir, selection):
    loader = CryptoLoader(long_file, **selection)
    reference = references.dataset_reference(loader)
    for coin in [*loader.get_crypto_names(), "Rising", "no such coin"]:

        def plain(coin=coin):
            dates, prices = loader.get_dated_prices(coin)
            if not prices.size:
                raise DataFormatError(f"{coin} has no prices in the selected date range")
            return prices, np.datetime_as_string(dates, unit="D").tolist()

        assert outcome(lambda c=coin: references.load_dated_series(reference, c)) == outcome(plain), coin
    entry = cache.entry_path(cache_dir, reference["sha256"])
    assert entry.is_dir() and references._DATASETS[reference["sha256"]].built


def test_a_new_process_maps_the_entry_even_without_the_file(long_file, cache_dir, tmp_path):
    reference = references.dataset_reference(CryptoLoader(long_file))
    prices, last = references.load_series(reference, "rising")
    fresh_process()
    (tmp_path / "quirky.parquet").unlink()
    again, again_last = references.load_series(reference, "rising")
    assert again.tolist() == prices.tolist() and again_last == last == "2017-09-22"
    assert not references._DATASETS[reference["sha256"]].built


def test_different_data_still_fails_loudly_and_is_not_cached(long_file, cache_dir):
    reference = {**references.dataset_reference(CryptoLoader(long_file)), "sha256": "0" * 64}
    for _ in range(2):
        with pytest.raises(DataFormatError, match="differs from the producer's"):
            references.load_series(reference, "rising")
    assert not cache.entry_path(cache_dir, "0" * 64).exists()


def test_missing_data_and_no_entry_says_how_to_fix_it(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CRYPTO_ML_DATA_DIR", str(tmp_path / "nowhere"))
    get_settings.cache_clear()
    reference = {"path": str(tmp_path / "gone.parquet"), "sha256": "1" * 64}
    with pytest.raises(DataFormatError, match="cannot read the producer's data"):
        references.load_series(reference, "rising")


def test_unknown_coin_fails_as_the_loader_does(long_file, cache_dir):
    reference = references.dataset_reference(CryptoLoader(long_file))
    with pytest.raises(UnknownCoinError) as by_reference:
        references.load_series(reference, "risin")
    with pytest.raises(UnknownCoinError) as plain:
        CryptoLoader(long_file).get_dated_prices("risin")
    assert str(by_reference.value) == str(plain.value)
