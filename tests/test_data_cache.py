"""The shared dataset cache (crypto_ml.data.cache): built once, mapped after, verified, race-safe, pruned."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from crypto_ml.data import CryptoLoader, cache
from crypto_ml.exceptions import CryptoMLError, DataFormatError

from data_helpers import daily_rows, quirky_long_frame, write_coin

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def long_file(tmp_path) -> Path:
    """A Parquet long table with clean coins, coins that need cleaning and coins that fail."""
    path = tmp_path / "quirky.parquet"
    quirky_long_frame().to_parquet(path, index=False)
    return path


@pytest.fixture
def coin_folder(tmp_path, synth_dir) -> Path:
    """CoinMarketCap files: twelve generated coins, one broken file and two files that normalise alike."""
    folder = tmp_path / "coins"
    shutil.copytree(synth_dir, folder)
    write_coin(folder, "Broken", ["not,a,row"])
    write_coin(folder, "Foo Bar", daily_rows(5))
    write_coin(folder, "foo_bar", daily_rows(6))
    return folder


def build(path: Path, cache_dir: Path) -> cache.CachedDataset:
    loader = CryptoLoader(path)
    dataset = cache.open_dataset(loader.data_hash(), cache_dir, loader)
    assert dataset is not None
    return dataset


def outcome(call):
    """What a call gives: its arrays, or its error's type and message."""
    try:
        dates, prices = call()
    except CryptoMLError as exc:
        return type(exc).__name__, str(exc)
    return np.asarray(dates).tolist(), np.asarray(prices).tolist()


def cached_outcome(dataset: cache.CachedDataset, coin: str, **selection):
    def call():
        found = dataset.dated_prices(coin)
        assert found is not None, coin
        return cache.select(*found, selection.get("max_points"), selection.get("from_date"), selection.get("to_date"))

    return outcome(call)


@pytest.mark.parametrize("dataset_kind", ["long_file", "coin_folder"])
@pytest.mark.parametrize(
    "selection",
    [{}, {"max_points": 2}, {"from_date": "2017-09-20"}, {"from_date": "2017-09-01", "to_date": "2017-09-21"}],
)
def test_every_coin_matches_the_plain_loader(request, tmp_path, dataset_kind, selection):
    path = request.getfixturevalue(dataset_kind)
    dataset = build(path, tmp_path / "cache")
    plain = CryptoLoader(path, **selection)
    names = plain.get_crypto_names()
    assert sorted([*dataset.names, *dataset.failures]) == names
    assert dataset.failures, "the fixture has coins that fail"
    for coin in names:
        assert cached_outcome(dataset, coin, **selection) == outcome(lambda c=coin: plain.get_dated_prices(c)), coin


def test_failing_coins_keep_their_error_type_and_message(long_file, tmp_path):
    dataset = build(long_file, tmp_path / "cache")
    mapped = cache.open_dataset(dataset.sha256, tmp_path / "cache")
    assert mapped is not None and not mapped.built
    for coin in ("conflict", "only_bad"):
        with pytest.raises(DataFormatError) as plain:
            CryptoLoader(long_file).get_dated_prices(coin)
        for _ in range(2):  # and again: a fresh exception each time, as the loader gives
            with pytest.raises(DataFormatError) as cached:
                mapped.dated_prices(coin)
            assert type(cached.value) is type(plain.value) and str(cached.value) == str(plain.value)
    assert mapped.dated_prices("no_such_coin") is None  # the loader answers for unknown names


def test_first_reader_builds_and_the_next_maps_without_parsing(long_file, tmp_path, monkeypatch):
    first = build(long_file, tmp_path / "cache")
    assert first.built and first.path == cache.entry_path(tmp_path / "cache", first.sha256)
    assert sorted(p.name for p in first.path.iterdir()) == ["close.npy", "dates.npy", "manifest.json", "offsets.npy"]

    def parse_again(*args, **kwargs):
        raise AssertionError("the dataset was parsed again")

    monkeypatch.setattr(CryptoLoader, "get_dated_prices", parse_again)
    monkeypatch.setattr(cache.parse, "_parse", parse_again)
    second = cache.open_dataset(first.sha256, tmp_path / "cache", CryptoLoader(long_file))
    assert second is not None and not second.built
    assert isinstance(second.dates, np.memmap) and isinstance(second.close, np.memmap)
    assert not second.close.flags.writeable
    assert second.names == first.names


def test_another_process_maps_the_entry_without_the_file(long_file, tmp_path):
    dataset = build(long_file, tmp_path / "cache")
    coin = dataset.names[0]
    expected = np.asarray(dataset.dated_prices(coin)[1]).tolist()
    long_file.unlink()  # nothing left to parse: the new process can only map
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np
        from crypto_ml.data import cache
        dataset = cache.open_dataset({dataset.sha256!r}, {str(tmp_path / "cache")!r})
        dates, prices = dataset.dated_prices({coin!r})
        print(json.dumps([dataset.built, isinstance(prices, np.memmap), prices.tolist()]))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(result.stdout) == [False, True, expected]


def test_a_changed_dataset_gets_a_new_entry_and_the_old_one_is_pruned(long_file, tmp_path):
    old = build(long_file, tmp_path / "cache")
    frame = quirky_long_frame()
    frame.loc[0, "close"] = 123.0
    frame.to_parquet(long_file, index=False)
    new = build(long_file, tmp_path / "cache")
    assert new.sha256 != old.sha256 and new.path != old.path and new.built
    assert new.dated_prices("rising")[1][0] == 123.0
    # Unused for longer than the limit: removed by the next build's prune (or an explicit one).
    long_ago = time.time() - (cache.PRUNE_AFTER_DAYS + 1) * 86400
    os.utime(old.path, (long_ago, long_ago))
    assert cache.prune(tmp_path / "cache", keep=new.path) == [old.path]
    assert new.path.is_dir()


def test_an_entry_of_another_format_version_is_ignored_and_pruned(long_file, tmp_path):
    dataset = build(long_file, tmp_path / "cache")
    older = tmp_path / "cache" / f"v0-{dataset.sha256}"
    shutil.copytree(dataset.path, older)
    assert cache.prune(tmp_path / "cache") == [older]


@pytest.mark.parametrize(
    "damage",
    ["truncate close", "flip a byte", "drop the manifest", "other format", "other key", "empty folder"],
)
def test_a_corrupt_or_partial_entry_is_rebuilt(long_file, tmp_path, damage):
    good = build(long_file, tmp_path / "cache")
    expected = {coin: cached_outcome(good, coin) for coin in good.names}
    entry = good.path
    del good
    manifest = entry / "manifest.json"
    if damage == "truncate close":
        with open(entry / "close.npy", "r+b") as handle:
            handle.truncate(os.path.getsize(entry / "close.npy") - 8)
    elif damage == "flip a byte":
        data = bytearray((entry / "close.npy").read_bytes())
        data[-3] ^= 0xFF
        (entry / "close.npy").write_bytes(bytes(data))
    elif damage == "drop the manifest":
        manifest.unlink()
    elif damage in ("other format", "other key"):
        content = json.loads(manifest.read_text())
        content["format" if damage == "other format" else "sha256"] = 99 if damage == "other format" else "0" * 64
        manifest.write_text(json.dumps(content))
    else:
        shutil.rmtree(entry)
        entry.mkdir()
    loader = CryptoLoader(long_file)
    assert cache.open_dataset(loader.data_hash(), tmp_path / "cache") is None  # never trusted
    rebuilt = cache.open_dataset(loader.data_hash(), tmp_path / "cache", loader)
    assert rebuilt is not None and rebuilt.built and rebuilt.path == entry
    assert {coin: cached_outcome(rebuilt, coin) for coin in rebuilt.names} == expected
    assert sorted(p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")) == [entry.name]


def test_the_loser_of_a_rename_race_discards_its_copy_and_maps_the_winner(long_file, tmp_path):
    root = tmp_path / "cache"
    root.mkdir()
    loader = CryptoLoader(long_file)
    sha256 = loader.data_hash()
    target = cache.entry_path(root, sha256)
    # Two builds finished at once, neither holding the lock: both publish.
    first = cache.entry._publish(root, target, sha256, cache.parse._parse(loader))
    second = cache.entry._publish(root, target, sha256, cache.parse._parse(loader))
    assert first.built and not second.built and second.path == target
    assert sorted(p.name for p in root.iterdir()) == [target.name]


BUILD_SCRIPT = """
import json, sys, time
from pathlib import Path
from crypto_ml.data import CryptoLoader, cache
path, root, start = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
loader = CryptoLoader(path)
sha256 = loader.data_hash()
while time.time() < start:
    time.sleep(0.001)
dataset = cache.open_dataset(sha256, root, loader, verify=lambda: None)
print(json.dumps({"built": dataset.built, "path": str(dataset.path), "coins": len(dataset.names)}))
"""


def test_processes_building_at_once_all_succeed_and_leave_one_entry(long_file, tmp_path):
    root = tmp_path / "cache"
    start = time.time() + 3  # all started and past their imports by then
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", BUILD_SCRIPT, str(long_file), str(root), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for _ in range(4)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        results.append(json.loads(out))
    entry = cache.entry_path(root, CryptoLoader(long_file).data_hash())
    assert {r["path"] for r in results} == {str(entry)}
    assert sum(r["built"] for r in results) == 1  # the others waited and mapped it
    assert len({r["coins"] for r in results}) == 1
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == [entry.name]


def test_a_failed_check_leaves_no_entry(long_file, tmp_path):
    loader = CryptoLoader(long_file)

    def mismatch() -> None:
        raise DataFormatError("not the producer's data")

    with pytest.raises(DataFormatError, match="not the producer's data"):
        cache.open_dataset(loader.data_hash(), tmp_path / "cache", loader, verify=mismatch)
    assert not any(p.is_dir() for p in (tmp_path / "cache").iterdir())


def test_an_unwritable_cache_still_serves_this_process(long_file, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    dataset = build(long_file, blocked / "cache")
    assert dataset.built and dataset.path is None
    assert cached_outcome(dataset, "rising") == outcome(lambda: CryptoLoader(long_file).get_dated_prices("rising"))


def test_select_rejects_what_the_loader_rejects():
    dates = np.array(["2017-09-20", "2017-09-21"], dtype="datetime64[ns]")
    prices = np.array([1.0, 2.0])
    for selection, message in [
        ((0, None, None), "max_points=0 must be an integer >= 1"),
        ((None, "soon", None), "from_date='soon' is not a date"),
        ((None, "2017-09-22", "2017-09-20"), "from_date 2017-09-22 is after to_date 2017-09-20"),
    ]:
        with pytest.raises(CryptoMLError, match=message):
            cache.select(dates, prices, *selection)
    out_dates, out_prices = cache.select(dates, prices, 1, None, None)
    assert out_prices.tolist() == [2.0] and out_prices.flags.writeable and out_dates.flags.c_contiguous


def arrays_of(parsed: cache.entry._Arrays) -> tuple:
    return parsed.names, parsed.failures, parsed.offsets.tolist(), parsed.dates.tolist(), parsed.close.tolist()


@pytest.mark.parametrize("layout", ["as generated", "small row groups", "a coin spelt two ways"])
def test_the_three_column_path_gives_what_the_loader_gives_for_a_tidy_file(tmp_path, layout):
    import pandas as pd

    from crypto_ml.synthetic import generate_dataset

    path = generate_dataset(30, tmp_path / "tidy.parquet", seed=3, min_points=20, max_points=60)
    if layout == "small row groups":  # coins cross row group boundaries
        pd.read_parquet(path).to_parquet(path, index=False, row_group_size=37)
    elif layout == "a coin spelt two ways":
        frame = pd.read_parquet(path)
        first = frame["symbol"].iloc[0]
        frame.loc[frame.index[:5], "symbol"] = f"  {first.upper()} "
        frame.to_parquet(path, index=False)
    loader = CryptoLoader(path)
    quick = cache.parse._parse_simple_parquet(loader)
    assert quick is not None
    assert arrays_of(quick) == arrays_of(cache.parse._parse_each_coin(CryptoLoader(path)))


@pytest.mark.parametrize("change", ["infinite volume", "text volume", "newest first", "a bad close", "split coin"])
def test_the_three_column_path_leaves_anything_else_to_the_loader(tmp_path, change):
    from crypto_ml.synthetic import generate_dataset

    path = generate_dataset(5, tmp_path / "tidy.parquet", seed=3, min_points=20, max_points=30)
    import pandas as pd

    frame = pd.read_parquet(path)
    if change == "infinite volume":
        frame.loc[3, "volume"] = np.inf
    elif change == "text volume":
        frame["volume"] = frame["volume"].astype(str)
    elif change == "newest first":
        frame = frame.iloc[::-1]
    elif change == "a bad close":
        frame.loc[4, "close"] = -1.0
    else:
        frame = pd.concat([frame.iloc[:10], frame.iloc[40:], frame.iloc[10:40]])
    frame.to_parquet(path, index=False)
    assert cache.parse._parse_simple_parquet(CryptoLoader(path)) is None
    dataset = build(path, tmp_path / "cache")  # the loader's way, coin by coin
    plain = CryptoLoader(path)
    for coin in plain.get_crypto_names():
        assert cached_outcome(dataset, coin) == outcome(lambda c=coin: plain.get_dated_prices(c)), coin
