"""Tests for crypto_ml.synthetic: the model's statistics, the CMC text format,
the long-format outputs, determinism, and the committed sample dataset."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crypto_ml.exceptions import DataFormatError, InvalidParameterError
from crypto_ml.synthetic import (
    CMC_COLUMNS,
    LONG_COLUMNS,
    coin_names,
    generate_dataset,
    generate_series,
    write_cmc_csv,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO_ROOT / "data" / "sample"
# Must match the command in data/README.md.
SAMPLE_ARGS = dict(n_series=8, seed=2017, min_points=150, max_points=900)
REAL_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "top100-2017"

PRICE_COLUMNS = ["Open", "High", "Low", "Close"]
DATE_RE = re.compile(r'^"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{2}, \d{4}"$')
PRICE_RE = re.compile(r"^\d+(\.\d+)?$")
# Whole numbers with thousands separators, quoted only when they contain a comma.
COUNT_RE = re.compile(r'^(-|\d{1,3}|"\d{1,3}(,\d{3})+")$')
# A CMC row: quoted date, four bare prices, two counts.
ROW_RE = re.compile(
    r'^(?P<date>"[A-Z][a-z]{2} \d{2}, \d{4}"),(?P<prices>[^,"]+,[^,"]+,[^,"]+,[^,"]+),'
    r'(?P<volume>-|\d{1,3}|"[\d,]+"),(?P<cap>-|\d{1,3}|"[\d,]+")$'
)


def log_returns(df: pd.DataFrame) -> np.ndarray:
    return np.diff(np.log(df["Close"].to_numpy()))


def round6(x: np.ndarray) -> np.ndarray:
    return np.array([float(f"{v:.6g}") for v in x])


@pytest.fixture(scope="module")
def long_series() -> pd.DataFrame:
    return generate_series(5000, seed=7)


@pytest.fixture
def series_with_gaps() -> pd.DataFrame:
    return generate_series(300, seed=11, start_price=0.00042, missing_volume_frac=0.1)


@pytest.fixture
def cmc_file(tmp_path, series_with_gaps) -> Path:
    return write_cmc_csv(series_with_gaps, tmp_path / "Nova Cash.csv")


# --- generate_series ----------------------------------------------------------------


def test_same_seed_gives_identical_frames():
    a = generate_series(500, seed=3, missing_volume_frac=0.1)
    b = generate_series(500, seed=3, missing_volume_frac=0.1)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_different_seeds_give_different_frames():
    a = generate_series(500, seed=3)
    b = generate_series(500, seed=4)
    assert not np.allclose(a["Close"], b["Close"])


def test_generator_seed_is_advanced_so_draws_differ():
    rng = np.random.default_rng(5)
    first = generate_series(100, seed=rng)
    second = generate_series(100, seed=rng)
    assert not np.allclose(first["Close"], second["Close"])
    pd.testing.assert_frame_equal(first, generate_series(100, seed=np.random.default_rng(5)))


def test_columns_dtypes_and_length():
    df = generate_series(250, seed=0)
    assert list(df.columns) == list(CMC_COLUMNS)
    assert len(df) == 250
    assert df["Date"].dtype.kind == "M"
    for col in CMC_COLUMNS[1:]:
        assert df[col].dtype == np.float64


def test_dates_are_daily_without_gaps_and_end_on_end_date():
    df = generate_series(400, seed=1, end_date="2018-01-05")
    diffs = df["Date"].diff().dropna()
    assert (diffs == pd.Timedelta(days=1)).all()
    assert df["Date"].iloc[-1] == pd.Timestamp("2018-01-05")
    assert df["Date"].iloc[0] == pd.Timestamp("2018-01-05") - pd.Timedelta(days=399)


@pytest.mark.parametrize("seed", range(8))
def test_ohlc_is_consistent(seed):
    df = generate_series(800, seed=seed)
    body_low = np.minimum(df["Open"], df["Close"])
    body_high = np.maximum(df["Open"], df["Close"])
    assert (df["Low"] <= body_low).all()
    assert (body_high <= df["High"]).all()
    assert (df["Low"] < df["High"]).all()


@pytest.mark.parametrize("seed", range(8))
def test_open_follows_previous_close(seed):
    df = generate_series(500, seed=seed)
    gap = np.abs(np.log(df["Open"].to_numpy()[1:] / df["Close"].to_numpy()[:-1]))
    # The gap is a small fraction of daily volatility, not a day's move.
    assert np.median(gap) < 0.005
    assert gap.max() < 0.05


def test_prices_strictly_positive_and_finite_even_for_dust_coins():
    for seed in range(10):
        df = generate_series(2000, seed=seed, start_price=1e-6)
        prices = df[PRICE_COLUMNS].to_numpy()
        assert np.isfinite(prices).all()
        assert (prices > 0).all()


def test_start_price_is_respected():
    df = generate_series(50, seed=2, start_price=123.0)
    assert df["Open"].iloc[0] == pytest.approx(123.0, rel=0.05)


def test_start_price_spans_orders_of_magnitude_when_not_given():
    starts = np.array([generate_series(2, seed=s)["Open"].iloc[0] for s in range(200)])
    assert starts.min() < 1e-4
    assert starts.max() > 100
    assert ((starts > 5e-7) & (starts < 6e3)).all()


def test_daily_volatility_is_in_the_crypto_range():
    vols = np.array([log_returns(generate_series(1500, seed=s)).std() for s in range(30)])
    assert 0.02 < np.median(vols) < 0.08
    assert ((vols > 0.01) & (vols < 0.15)).all()


def test_log_returns_have_heavy_tails(long_series):
    assert pd.Series(log_returns(long_series)).kurt() > 1


@pytest.mark.parametrize("seed", [7, 21, 99])
def test_volatility_clusters(seed):
    r = log_returns(generate_series(5000, seed=seed))
    assert pd.Series(r**2).autocorr(1) > 0.05
    # |r| is the more robust clustering statistic; it should be clearly positive.
    assert pd.Series(np.abs(r)).autocorr(1) > 0.1


def test_volume_rises_with_absolute_return(long_series):
    r = np.abs(log_returns(long_series))
    # Volume's level follows the market cap's multi-year trend, so compare
    # |return| with turnover (volume / cap) and with the day's volume change.
    log_turnover = np.log((long_series["Volume"] / long_series["Market Cap"]).to_numpy()[1:])
    assert pd.Series(r).rank().corr(pd.Series(log_turnover).rank()) > 0.15
    volume_change = np.diff(np.log(long_series["Volume"].to_numpy()))
    assert np.corrcoef(r[1:], volume_change[1:])[0, 1] > 0.2


def test_market_cap_is_close_times_slowly_growing_supply(long_series):
    supply = (long_series["Market Cap"] / long_series["Close"]).to_numpy()
    assert (supply > 0).all()
    assert (np.diff(supply) >= -1e-9 * supply[1:]).all()
    years = len(supply) / 365
    assert np.log(supply[-1] / supply[0]) / years <= 0.30


@pytest.mark.parametrize("frac", [0.0, 0.05, 0.3])
def test_missing_volume_fraction_is_respected_and_early(frac):
    df = generate_series(1000, seed=4, missing_volume_frac=frac)
    missing_volume = df["Volume"].isna().to_numpy()
    missing_cap = df["Market Cap"].isna().to_numpy()
    assert missing_volume.mean() == pytest.approx(frac, abs=0.002)
    # Missing values are a prefix (a new listing), never scattered.
    k = missing_volume.sum()
    assert missing_volume[:k].all() and not missing_volume[k:].any()
    assert missing_cap.sum() <= k
    assert not missing_cap[k:].any()
    assert not df[PRICE_COLUMNS].isna().any().any()


def test_no_missing_values_by_default():
    assert not generate_series(300, seed=0).isna().any().any()


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        (dict(n_points=1, seed=0), "n_points"),
        (dict(n_points=0, seed=0), "n_points"),
        (dict(n_points=10.0, seed=0), "n_points"),
        (dict(n_points=True, seed=0), "n_points"),
        (dict(n_points=10, seed=-1), "seed"),
        (dict(n_points=10, seed=None), "seed"),
        (dict(n_points=10, seed="abc"), "seed"),
        (dict(n_points=10, seed=0, start_price=0.0), "start_price"),
        (dict(n_points=10, seed=0, start_price=-5.0), "start_price"),
        (dict(n_points=10, seed=0, start_price=float("nan")), "start_price"),
        (dict(n_points=10, seed=0, missing_volume_frac=1.5), "missing_volume_frac"),
        (dict(n_points=10, seed=0, missing_volume_frac=-0.1), "missing_volume_frac"),
        (dict(n_points=10, seed=0, end_date="not a date"), "end_date"),
        (dict(n_points=10, seed=0, end_date=None), "end_date"),
    ],
)
def test_generate_series_rejects_bad_arguments(kwargs, bad):
    with pytest.raises(InvalidParameterError, match=bad):
        generate_series(**kwargs)


# --- coin_names -------------------------------------------------------------------


def test_coin_names_unique_for_ten_thousand():
    names = coin_names(10_000)
    assert len(names) == 10_000
    assert len(set(names)) == 10_000
    # Unique on case-insensitive file systems too.
    assert len({n.casefold() for n in names}) == 10_000


def test_coin_names_deterministic_and_prefix_stable():
    assert coin_names(50, seed=3) == coin_names(50, seed=3)
    assert coin_names(50, seed=3) != coin_names(50, seed=4)
    assert coin_names(6000, seed=1)[:20] == coin_names(20, seed=1)


def test_coin_names_look_like_coins_and_are_valid_file_stems():
    names = coin_names(200, seed=0)
    assert any(" " in n for n in names)
    assert any("-" in n for n in names)
    for name in coin_names(10_000, seed=0):
        assert name == name.strip()
        assert not re.search(r'[,"/\\:*?<>|\n]', name), name


def test_coin_names_avoid_real_top100_names():
    from crypto_ml.synthetic import _REAL_COIN_NAMES

    def key(s: str) -> str:
        return re.sub(r"[^0-9a-z]", "", s.casefold())

    real = {key(n) for n in _REAL_COIN_NAMES}
    assert "ion" in real and "bitcoincash" in real
    assert not real & {key(n) for n in coin_names(10_000, seed=0)}


@pytest.mark.realdata
def test_coin_names_avoid_the_real_dataset_file_names():
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real dataset not found at {REAL_DATA_DIR}")
    real = {p.stem.casefold() for p in REAL_DATA_DIR.glob("*.csv")}
    assert "bitcoin" in real
    assert not real & {n.casefold() for n in coin_names(10_000, seed=0)}


@pytest.mark.parametrize("kwargs", [dict(n=-1), dict(n=2.5), dict(n=3, seed=-1), dict(n=3, seed="x")])
def test_coin_names_rejects_bad_arguments(kwargs):
    with pytest.raises(InvalidParameterError):
        coin_names(**kwargs)


# --- write_cmc_csv ----------------------------------------------------------------


def test_cmc_header_and_line_endings(cmc_file):
    raw = cmc_file.read_bytes()
    assert raw.startswith(b"Date,Open,High,Low,Close,Volume,Market Cap\n")
    assert b"\r" not in raw
    assert raw.endswith(b"\n") and not raw.endswith(b"\n\n")


def test_cmc_rows_are_newest_first_with_quoted_dates(cmc_file, series_with_gaps):
    lines = cmc_file.read_text().splitlines()
    assert len(lines) == len(series_with_gaps) + 1
    assert lines[1].startswith('"Sep 22, 2017",')
    dates = [line.split('",', 1)[0] + '"' for line in lines[1:]]
    assert all(DATE_RE.match(d) for d in dates)
    parsed = pd.to_datetime([d.strip('"') for d in dates], format="%b %d, %Y")
    assert parsed.is_monotonic_decreasing
    assert parsed[-1] == series_with_gaps["Date"].iloc[0]


def test_cmc_fields_have_the_export_format(cmc_file):
    volumes, caps = [], []
    for line in cmc_file.read_text().splitlines()[1:]:
        m = ROW_RE.match(line)
        assert m, line
        # Prices are bare decimals: no quotes, no exponent, even for 0.0004.
        assert all(PRICE_RE.match(p) for p in m["prices"].split(",")), line
        assert COUNT_RE.match(m["volume"]) and COUNT_RE.match(m["cap"]), line
        volumes.append(m["volume"])
        caps.append(m["cap"])
    assert volumes.count("-") == 30  # 10 % of 300 rows
    assert volumes[-30:] == ["-"] * 30  # the oldest rows, at the bottom
    assert any(re.fullmatch(r'"\d{1,3}(,\d{3})+"', c) for c in caps)


def test_cmc_round_trips_through_pandas(cmc_file, series_with_gaps):
    back = pd.read_csv(cmc_file, thousands=",", na_values=["-"])
    assert list(back.columns) == list(CMC_COLUMNS)
    back["Date"] = pd.to_datetime(back["Date"], format="%b %d, %Y")
    back = back.iloc[::-1].reset_index(drop=True)
    pd.testing.assert_series_equal(back["Date"], series_with_gaps["Date"], check_dtype=False)
    for col in PRICE_COLUMNS:
        np.testing.assert_allclose(back[col], series_with_gaps[col], rtol=5.01e-6)
        np.testing.assert_array_equal(back[col].to_numpy(), round6(series_with_gaps[col].to_numpy()))
    for col in ("Volume", "Market Cap"):
        assert back[col].isna().equals(series_with_gaps[col].isna())
        ok = series_with_gaps[col].notna()
        np.testing.assert_allclose(back[col][ok], series_with_gaps[col][ok], rtol=1e-5, atol=0.5)


def test_cmc_writer_sorts_any_input_order(tmp_path):
    df = generate_series(30, seed=1)
    shuffled = df.sample(frac=1.0, random_state=0)
    a = write_cmc_csv(df, tmp_path / "a.csv").read_bytes()
    b = write_cmc_csv(shuffled, tmp_path / "b.csv").read_bytes()
    assert a == b


def test_cmc_writer_rejects_missing_columns(tmp_path):
    df = generate_series(10, seed=1).drop(columns=["Market Cap"])
    with pytest.raises(DataFormatError, match="Market Cap"):
        write_cmc_csv(df, tmp_path / "x.csv")


# --- generate_dataset -------------------------------------------------------------


def test_directory_output_writes_one_cmc_file_per_coin(tmp_path):
    out = generate_dataset(6, tmp_path / "coins", seed=1, min_points=30, max_points=90)
    assert out == tmp_path / "coins"
    files = sorted(out.glob("*.csv"))
    assert sorted(p.stem for p in files) == sorted(coin_names(6, seed=1))
    for path in files:
        df = pd.read_csv(path, thousands=",", na_values=["-"])
        assert list(df.columns) == list(CMC_COLUMNS)
        assert 30 <= len(df) <= 90
        assert df["Date"].iloc[0] == "Sep 22, 2017"


@pytest.mark.parametrize("ext", ["parquet", "csv"])
def test_long_format_columns_rows_and_dates(tmp_path, ext):
    path = generate_dataset(12, tmp_path / f"all.{ext}", seed=5, min_points=20, max_points=70, end_date="2017-09-23")
    df = pd.read_parquet(path) if ext == "parquet" else pd.read_csv(path)
    assert list(df.columns) == list(LONG_COLUMNS)
    assert df["symbol"].unique().tolist() == coin_names(12, seed=5)
    lengths = df.groupby("symbol", sort=False).size()
    assert ((lengths >= 20) & (lengths <= 70)).all()
    assert len(df) == lengths.sum()
    for _, group in df.groupby("symbol", sort=False):
        dates = pd.to_datetime(group["date"], format="%Y-%m-%d")
        assert (dates.diff().dropna() == pd.Timedelta(days=1)).all()
        assert dates.iloc[-1] == pd.Timestamp("2017-09-23")
    assert (df[["close", "open", "high", "low"]] > 0).all().all()
    assert df["volume"].isna().any()
    assert not tmp_path.joinpath(f"all.{ext}.part").exists()


def test_long_parquet_and_csv_hold_the_same_data(tmp_path):
    pq_df = pd.read_parquet(generate_dataset(5, tmp_path / "d.parquet", seed=9, min_points=10, max_points=40))
    csv_df = pd.read_csv(generate_dataset(5, tmp_path / "d.csv", seed=9, min_points=10, max_points=40))
    pd.testing.assert_frame_equal(pq_df, csv_df, check_dtype=False)


def test_series_i_does_not_depend_on_n_series(tmp_path):
    small = pd.read_parquet(generate_dataset(5, tmp_path / "s.parquet", seed=3, max_points=200))
    big = pd.read_parquet(generate_dataset(10, tmp_path / "b.parquet", seed=3, max_points=200))
    assert big["symbol"].nunique() == 10
    pd.testing.assert_frame_equal(small, big[big["symbol"].isin(set(small["symbol"]))].reset_index(drop=True))

    generate_dataset(5, tmp_path / "dir5", seed=3, max_points=200)
    generate_dataset(10, tmp_path / "dir10", seed=3, max_points=200)
    for path in (tmp_path / "dir5").iterdir():
        assert path.read_bytes() == (tmp_path / "dir10" / path.name).read_bytes()


def test_dataset_series_equals_generate_series_with_its_child_seed(tmp_path):
    df = pd.read_parquet(generate_dataset(4, tmp_path / "d.parquet", seed=8, min_points=50, max_points=120))
    child = np.random.SeedSequence(8).spawn(4)[2]
    rng = np.random.default_rng(child)
    n = int(rng.integers(50, 121))
    expected = generate_series(n, seed=rng, missing_volume_frac=0.05)
    got = df[df["symbol"] == coin_names(4, seed=8)[2]]
    np.testing.assert_array_equal(got["close"].to_numpy(), expected["Close"].to_numpy())
    np.testing.assert_array_equal(got["volume"].to_numpy(), expected["Volume"].to_numpy())


def test_dataset_is_deterministic_per_seed(tmp_path):
    a = generate_dataset(3, tmp_path / "a.csv", seed=4, max_points=100).read_bytes()
    b = generate_dataset(3, tmp_path / "b.csv", seed=4, max_points=100).read_bytes()
    c = generate_dataset(3, tmp_path / "c.csv", seed=5, max_points=100).read_bytes()
    assert a == b
    assert a != c


@pytest.mark.parametrize(
    "kwargs, bad",
    [
        (dict(n_series=0), "n_series"),
        (dict(n_series=2.0), "n_series"),
        (dict(n_series=2, seed=-3), "seed"),
        (dict(n_series=2, min_points=1), "min_points"),
        (dict(n_series=2, min_points=100, max_points=50), "max_points"),
        (dict(n_series=2, missing_volume_frac=2), "missing_volume_frac"),
        (dict(n_series=2, end_date="2017-13-45"), "end_date"),
    ],
)
def test_generate_dataset_rejects_bad_arguments(tmp_path, kwargs, bad):
    with pytest.raises(InvalidParameterError, match=bad):
        generate_dataset(out=tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_generate_dataset_rejects_an_existing_file_as_directory(tmp_path):
    existing = tmp_path / "taken"
    existing.write_text("not a directory")
    with pytest.raises(InvalidParameterError, match="taken"):
        generate_dataset(2, existing)


# --- the committed sample ---------------------------------------------------------


def test_committed_sample_matches_its_generator(tmp_path):
    regenerated = generate_dataset(out=tmp_path / "sample", **SAMPLE_ARGS)
    committed = sorted(p.name for p in SAMPLE_DIR.glob("*.csv"))
    assert committed == sorted(p.name for p in regenerated.glob("*.csv"))
    for name in committed:
        assert (SAMPLE_DIR / name).read_bytes() == (regenerated / name).read_bytes(), (
            f"data/sample/{name} drifted from its generator; regenerate it (see data/README.md)"
        )


def test_committed_sample_has_the_quirks_it_is_meant_to_show():
    files = sorted(SAMPLE_DIR.glob("*.csv"))
    assert len(files) == 8
    assert any(" " in p.stem for p in files)
    assert sum(p.stat().st_size for p in files) < 600_000
    frames = [pd.read_csv(p, thousands=",", na_values=["-"]) for p in files]
    lengths = [len(f) for f in frames]
    assert min(lengths) >= 150 and max(lengths) <= 900 and max(lengths) - min(lengths) > 200
    assert any(f["Close"].max() < 0.01 for f in frames)
    assert any(f["Volume"].isna().any() for f in frames)
    assert "-" in (SAMPLE_DIR / files[0].name).read_text()
