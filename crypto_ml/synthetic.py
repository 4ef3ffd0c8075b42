"""Seeded synthetic crypto price series, written in CoinMarketCap's export format.

The real top-100 dataset cannot ship with the project, so tests, demos and the
bundled sample (``data/sample``) use series from this module instead. They are
built to trip the same wires as the real data:

* log-returns follow a GARCH(1,1) with Student-t innovations, so they have heavy
  tails and volatility clustering, at 2-8 % daily volatility;
* prices span orders of magnitude, from sub-cent coins to thousands of dollars;
* coins are listed on different days but all end on the same date;
* the earliest Volume / Market Cap values are missing, as for new listings.

Public API:

* :func:`generate_series` - one coin as a DataFrame (oldest first);
* :func:`coin_names` - deterministic fictional coin names;
* :func:`write_cmc_csv` - one coin as a CoinMarketCap CSV (newest first);
* :func:`generate_dataset` - many coins, as a directory of CMC CSVs or as one
  long-format ``.parquet`` / ``.csv`` file.

Every function is deterministic for a given seed. In :func:`generate_dataset`
series ``i`` draws from child ``i`` of ``np.random.SeedSequence(seed)``, so it is
the same whatever ``n_series`` is.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crypto_ml.exceptions import DataFormatError, InvalidParameterError

__all__ = ["generate_series", "coin_names", "write_cmc_csv", "generate_dataset"]

logger = logging.getLogger(__name__)

# --- Defaults, each defined once --------------------------------------------------

# The real export ends here (most coins end on 2017-09-22), so synthetic and real
# series line up on the same calendar.
DEFAULT_END_DATE = "2017-09-22"
# Same column order and names as the real export.
CMC_COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume", "Market Cap")
# Long format: one row per (coin, day); the order the rest of crypto_ml reads.
LONG_COLUMNS = ("symbol", "date", "close", "open", "high", "low", "volume", "market_cap")
# Starting prices are log-uniform over this range: Sprouts-like dust to Bitcoin-like.
START_PRICE_RANGE = (1e-6, 5e3)
# Unconditional daily volatility, log-uniform: large caps near 2 %, small caps near 8 %.
DAILY_VOL_RANGE = (0.02, 0.08)
# Student-t degrees of freedom: 3-5 gives the fat tails of real crypto returns.
T_DF_RANGE = (3.0, 5.0)
# GARCH ARCH term; below ~0.08 the clustering is too weak to see in squared returns.
GARCH_ALPHA_RANGE = (0.08, 0.20)
# alpha + beta: how long a volatility burst lasts (half-life ~5-20 days).
GARCH_PERSISTENCE_RANGE = (0.88, 0.97)
# Standardised innovations are clipped here: a t(3) draw beyond 8 sd is so rare
# that keeping it only produces a one-day 20x move no real coin showed.
Z_CLIP = 8.0
# Ceiling on conditional daily volatility, so one extreme shock cannot feed a
# runaway GARCH spiral.
SIGMA_CAP = 0.25
# Daily drift of the log price, uniform; slightly positive, like 2013-2017.
DRIFT_RANGE = (-0.0018, 0.0022)
# Market cap on the first day, log-uniform; circulating supply = cap / price.
START_MARKET_CAP_RANGE = (1e5, 10**9.5)
# Annual growth of the circulating supply (mining, unlocks): slow, never negative.
SUPPLY_GROWTH_RANGE = (0.0, 0.30)
# Daily volume as a fraction of market cap (turnover), log-uniform.
TURNOVER_RANGE = (0.002, 0.15)
# Volume responds to |return| / typical volatility with this elasticity, capped
# so a 10-sigma day multiplies volume by ~12, not by millions.
VOLUME_SHOCK_BETA = 0.25
VOLUME_SHOCK_CAP = 10.0
# Persistence and noise of the log-volume AR(1): busy weeks stay busy.
VOLUME_AR_RANGE = (0.5, 0.9)
VOLUME_NOISE_SD = 0.3
# Open[t] differs from Close[t-1] by this fraction of daily volatility: CMC's
# open and the previous close are snapshots a few minutes apart.
OPEN_GAP_SCALE = 0.05
# High/Low reach beyond the open-close body by |N(0, 1)| * this * sigma_t.
WICK_SCALE = 0.6
# Series simulated together in generate_dataset: bounds memory (~10 arrays of
# chunk x max_points float64) while keeping the numpy calls wide.
_CHUNK_SERIES = 1024

# strftime's %b depends on the process locale; CMC's months are always English.
_MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# Names of the real 2017 top-100 coins (names only, no data): coin_names never
# returns one of them, so a synthetic file cannot be mistaken for a real one.
_REAL_COIN_NAMES = frozenset(
    {
        "ATC Coin",
        "Aidos Kuneen",
        "Ark",
        "BitBay",
        "BitConnect",
        "BitShares",
        "Bitcoin",
        "Bitcoin Cash",
        "BitcoinDark",
        "Bitdeal",
        "BlackCoin",
        "Blocknet",
        "Burst",
        "Byteball Bytes",
        "Bytecoin",
        "Clams",
        "CloakCoin",
        "Compcoin",
        "Counterparty",
        "Crown",
        "DECENT",
        "Dash",
        "Decred",
        "Diamond",
        "DigiByte",
        "DigitalNote",
        "Dogecoin",
        "E-coin",
        "Einsteinium",
        "Elastic",
        "Emercoin",
        "Energycoin",
        "Ethereum",
        "Ethereum Classic",
        "Expanse",
        "Factom",
        "FairCoin",
        "FirstCoin",
        "GXShares",
        "Gambit",
        "GameCredits",
        "Golos",
        "GridCoin",
        "Groestlcoin",
        "Gulden",
        "Hshare",
        "I-O Coin",
        "ION",
        "IOTA",
        "Komodo",
        "LBRY Credits",
        "LEOcoin",
        "Lisk",
        "Litecoin",
        "Lykke",
        "Metaverse ETP",
        "MonaCoin",
        "Monero",
        "MonetaryUnit",
        "Mooncoin",
        "NAV Coin",
        "NEM",
        "NEO",
        "Namecoin",
        "Neblio",
        "Nexus",
        "NoLimitCoin",
        "Nxt",
        "OKCash",
        "Omni",
        "PIVX",
        "Particl",
        "Peercoin",
        "PotCoin",
        "Radium",
        "ReddCoin",
        "Ripple",
        "Rise",
        "Rubycoin",
        "SIBCoin",
        "SaluS",
        "Shift",
        "Siacoin",
        "Skycoin",
        "SpreadCoin",
        "Sprouts",
        "Steem",
        "Stellar Lumens",
        "Stratis",
        "Syscoin",
        "The ChampCoin",
        "Ubiq",
        "Unobtanium",
        "Verge",
        "Vertcoin",
        "Viacoin",
        "Waves",
        "ZCoin",
        "Zcash",
        "ZenCash",
    }
)

# Invented name roots; real-looking but (checked against the list above) not real.
_NAME_ROOTS = (
    "Nova",
    "Zephyr",
    "Ion",
    "Aurora",
    "Quasar",
    "Vela",
    "Lyra",
    "Cobalt",
    "Ember",
    "Halcyon",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nimbus",
    "Onyx",
    "Pulsar",
    "Quill",
    "Rune",
    "Sable",
    "Tessera",
    "Umbra",
    "Vortex",
    "Wren",
    "Xenon",
    "Zenith",
    "Astra",
    "Borealis",
    "Cinder",
    "Echo",
    "Fable",
    "Glint",
    "Helix",
    "Iris",
    "Jade",
    "Lattice",
    "Mosaic",
    "Nebula",
    "Opal",
    "Prism",
    "Quanta",
    "Rook",
    "Solace",
    "Tundra",
    "Vesper",
    "Willow",
    "Axiom",
    "Beacon",
    "Cirrus",
    "Flux",
    "Gossamer",
    "Harbor",
    "Indigo",
    "Juniper",
    "Kelvin",
    "Larch",
    "Mistral",
    "Nadir",
    "Obsidian",
    "Pylon",
    "Quartz",
    "Riven",
    "Sorrel",
    "Talon",
    "Verdant",
    "Wisp",
    "Yarrow",
    "Zircon",
    "Argent",
    "Basalt",
    "Corvid",
)
# Two-syllable roots widen the pool to several thousand names before numbering.
_NAME_ONSETS = (
    "Ka",
    "Lo",
    "Mi",
    "Ne",
    "Or",
    "Pa",
    "Qu",
    "Ri",
    "Sa",
    "Te",
    "Va",
    "Xe",
    "Yu",
    "Za",
    "Bre",
    "Cor",
    "Dra",
    "Fen",
    "Gal",
    "Hy",
)
_NAME_CODAS = ("ra", "lix", "nox", "vo", "ris", "tan", "mir", "dex", "lia", "von", "rum", "zar")
# How real coins are named: bare word, "Xcoin", "X Cash", "I-O Coin" ... Only one
# of "X Coin" / "Xcoin", since coin_names treats those as the same name.
_NAME_FORMS = (
    "{}",
    "{} Cash",
    "{}coin",
    "{} Token",
    "{}-X",
    "{}-X Coin",
    "{} Network",
    "{} Protocol",
    "{} Gold",
    "{}Chain",
    "{} Classic",
    "{}Bit",
    "Bit{}",
    "{} Credits",
    "The {}",
    "{} Pay",
)


# --- Validation helpers -----------------------------------------------------------


def _check_int(name: str, value: object, minimum: int) -> int:
    # bool is an Integral, but n_points=True is a bug, never an intent.
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise InvalidParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 <= float(value) <= 1.0:
        raise InvalidParameterError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_end_date(end_date: Any) -> pd.Timestamp:
    # Any, not object: pd.Timestamp itself decides what is a date, and raises for what is not.
    try:
        ts = pd.Timestamp(end_date)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"end_date must be a date such as '2017-09-22', got {end_date!r}") from exc
    if pd.isna(ts):
        raise InvalidParameterError(f"end_date must be a date such as '2017-09-22', got {end_date!r}")
    # Daily bars are stamped at midnight; a time of day would shift every row.
    return ts.tz_localize(None).normalize() if ts.tzinfo else ts.normalize()


def _make_rng(seed: object) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    # None would mean "fresh OS entropy": refuse it so every run can be repeated.
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise InvalidParameterError(f"seed must be a non-negative integer or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


# --- Simulation -------------------------------------------------------------------


@dataclass(frozen=True)
class _Draws:
    """Everything random about one series, drawn up front in a fixed order."""

    n: int
    log_start: float
    sigma_u: float
    alpha: float
    beta: float
    drift: float
    supply0: float
    supply_growth: float
    turnover0: float
    vol_phi: float
    z: np.ndarray
    gap: np.ndarray
    wick_up: np.ndarray
    wick_down: np.ndarray
    vol_eps: np.ndarray
    n_missing_volume: int
    n_missing_cap: int


def _log_uniform(u: float, bounds: tuple[float, float]) -> float:
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return math.exp(lo + u * (hi - lo))


def _uniform(u: float, bounds: tuple[float, float]) -> float:
    return bounds[0] + u * (bounds[1] - bounds[0])


def _draw(rng: np.random.Generator, n: int, start_price: float | None, missing_frac: float) -> _Draws:
    # The draw order is part of the output contract: change it and every seed's
    # series changes (and data/sample must be regenerated).
    u = rng.random(10)
    # u[0] is consumed even when start_price is given, so the rest of the series
    # (volatility, volume, ...) is the same with or without it.
    price = _log_uniform(u[0], START_PRICE_RANGE) if start_price is None else start_price
    df = _uniform(u[4], T_DF_RANGE)
    alpha = _uniform(u[2], GARCH_ALPHA_RANGE)
    t = rng.standard_t(df, size=n)
    # Rescale to unit variance so sigma_t is the conditional sd (t(df) has var df/(df-2)).
    z = np.clip(t * math.sqrt((df - 2.0) / df), -Z_CLIP, Z_CLIP)
    gap = rng.standard_normal(n)
    wicks = np.abs(rng.standard_normal((2, n)))
    vol_eps = rng.standard_normal(n)
    n_missing_volume = math.floor(missing_frac * n + 0.5)
    # Market Cap tends to appear no later than Volume on a new listing.
    n_missing_cap = int(rng.integers(0, n_missing_volume + 1))
    return _Draws(
        n=n,
        log_start=math.log(price),
        sigma_u=_log_uniform(u[1], DAILY_VOL_RANGE),
        alpha=alpha,
        beta=_uniform(u[3], GARCH_PERSISTENCE_RANGE) - alpha,
        drift=_uniform(u[5], DRIFT_RANGE),
        supply0=_log_uniform(u[6], START_MARKET_CAP_RANGE) / price,
        supply_growth=_uniform(u[7], SUPPLY_GROWTH_RANGE) / 365.0,
        turnover0=_log_uniform(u[8], TURNOVER_RANGE),
        vol_phi=_uniform(u[9], VOLUME_AR_RANGE),
        z=z,
        gap=gap,
        wick_up=wicks[0],
        wick_down=wicks[1],
        vol_eps=vol_eps,
        n_missing_volume=n_missing_volume,
        n_missing_cap=n_missing_cap,
    )


def _simulate(draws: Sequence[_Draws]) -> dict[str, np.ndarray]:
    """Turn draws into OHLCV arrays of shape (max_len, n_series), time-major.

    All series are simulated together: the GARCH recursion is sequential in time
    but element-wise across series, so one loop of ``max_len`` steps serves them
    all. Series ``i`` lives in column ``i``, rows ``[0, len_i)``; rows past its
    length are padding. Every operation is element-wise or runs down a column,
    so a column's values do not depend on which other series share the batch.
    """
    b = len(draws)
    t_max = max(d.n for d in draws)

    def pad(attr: str) -> np.ndarray:
        out = np.zeros((t_max, b))
        for j, d in enumerate(draws):
            out[: d.n, j] = getattr(d, attr)
        return out

    def vec(attr: str) -> np.ndarray:
        return np.array([getattr(d, attr) for d in draws], dtype=np.float64)

    z, gap, wick_up, wick_down, vol_eps = (pad(a) for a in ("z", "gap", "wick_up", "wick_down", "vol_eps"))
    sigma_u, alpha, beta, phi = vec("sigma_u"), vec("alpha"), vec("beta"), vec("vol_phi")
    omega = sigma_u**2 * (1.0 - alpha - beta)
    noise_sd = VOLUME_NOISE_SD * np.ones(b)
    # Start both recursions in their stationary state, so day 0 is not special.
    sigma2 = sigma_u**2
    ar = noise_sd / np.sqrt(1.0 - phi**2) * vol_eps[0]

    sigma = np.empty((t_max, b))
    eps = np.empty((t_max, b))
    vol_ar = np.empty((t_max, b))
    for t in range(t_max):
        s = np.minimum(np.sqrt(sigma2), SIGMA_CAP)
        e = s * z[t]
        sigma[t], eps[t] = s, e
        # Feed the capped sigma back, so the cap also bounds tomorrow's variance.
        sigma2 = omega + alpha * e * e + beta * s * s
        if t:
            ar = phi * ar + noise_sd * vol_eps[t]
        vol_ar[t] = ar

    log_start = vec("log_start")
    log_close = log_start + np.cumsum(vec("drift") + eps, axis=0)
    prev_log_close = np.vstack([log_start[None, :], log_close[:-1]])
    close = np.exp(log_close)
    open_ = np.exp(prev_log_close + OPEN_GAP_SCALE * sigma_u * gap)
    # Multiplying by exp(x >= 0) can only round up, so High >= max(Open, Close)
    # and Low <= min(Open, Close) hold exactly in floating point.
    high = np.maximum(open_, close) * np.exp(WICK_SCALE * sigma * wick_up)
    low = np.minimum(open_, close) * np.exp(-(WICK_SCALE * sigma * wick_down))

    day = np.arange(t_max, dtype=np.float64)[:, None]
    market_cap = close * (vec("supply0") * np.exp(vec("supply_growth") * day))
    shock = np.minimum(np.abs(eps) / sigma_u, VOLUME_SHOCK_CAP)
    # E|z| ~ 0.8 for these innovations: centre the shock so turnover0 is typical.
    turnover = vec("turnover0") * np.exp(VOLUME_SHOCK_BETA * (shock - 0.8) + vol_ar)
    # CMC never reports less than a dollar of volume on a listed day.
    volume = np.maximum(market_cap * turnover, 1.0)

    volume[day < vec("n_missing_volume")] = np.nan
    market_cap[day < vec("n_missing_cap")] = np.nan
    return {
        "lengths": np.array([d.n for d in draws], dtype=np.int64),
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "market_cap": market_cap,
    }


def generate_series(
    n_points: int,
    *,
    seed: int | np.random.Generator,
    end_date: object = DEFAULT_END_DATE,
    start_price: float | None = None,
    missing_volume_frac: float = 0.0,
) -> pd.DataFrame:
    """Generate one synthetic daily price history.

    Log-returns follow a GARCH(1,1) with Student-t innovations (3-5 degrees of
    freedom) and a small random drift; typical daily volatility is 2-8 %.
    Open is the previous close plus a tiny gap, and High/Low extend beyond the
    open-close body in proportion to the day's volatility. Volume is lognormal
    around a turnover of the market cap and rises with ``|return|``. Market Cap
    is Close times a slowly growing circulating supply.

    Args:
        n_points: Number of days, at least 2.
        seed: A non-negative integer, or a ``numpy.random.Generator`` (which is
            advanced, so the caller can draw several series from one stream).
        end_date: Date of the last row; anything ``pd.Timestamp`` accepts.
        start_price: Price before the first day (the first Open is within a
            fraction of a percent of it). None draws it log-uniformly from
            1e-6 to 5e3.
        missing_volume_frac: Fraction of the earliest rows whose Volume is
            missing (NaN), as for a new listing; a random part of those rows
            also lacks Market Cap.

    Returns:
        A DataFrame with columns ``Date`` (datetime64, one row per day, no
        gaps, oldest first), ``Open``, ``High``, ``Low``, ``Close``, ``Volume``
        and ``Market Cap`` (float64; NaN means missing).

    Raises:
        InvalidParameterError: If ``n_points < 2``, the seed is not a
            non-negative integer or Generator, ``start_price`` is not a positive
            finite number, ``missing_volume_frac`` is outside [0, 1], or
            ``end_date`` is not a date.
    """
    n = _check_int("n_points", n_points, 2)
    frac = _check_fraction("missing_volume_frac", missing_volume_frac)
    end = _check_end_date(end_date)
    if start_price is not None and (
        isinstance(start_price, bool)
        or not isinstance(start_price, Real)
        or not math.isfinite(start_price)
        or start_price <= 0
    ):
        raise InvalidParameterError(f"start_price must be a positive finite number or None, got {start_price!r}")
    rng = _make_rng(seed)
    sim = _simulate([_draw(rng, n, None if start_price is None else float(start_price), frac)])
    return pd.DataFrame(
        {
            "Date": pd.date_range(end=end, periods=n, freq="D"),
            "Open": sim["open"][:, 0],
            "High": sim["high"][:, 0],
            "Low": sim["low"][:, 0],
            "Close": sim["close"][:, 0],
            "Volume": sim["volume"][:, 0],
            "Market Cap": sim["market_cap"][:, 0],
        }
    )


# --- Names ------------------------------------------------------------------------


def _name_key(name: str) -> str:
    # "Bit Connect", "bitconnect" and "BitConnect" are the same coin to a reader,
    # and the same file on a case-insensitive file system.
    return re.sub(r"[^0-9a-z]", "", name.casefold())


@lru_cache(maxsize=1)
def _name_pools() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The base names: (from word roots, from syllable roots), deduplicated."""
    taken = {_name_key(n) for n in _REAL_COIN_NAMES}
    pools = []
    for roots in (_NAME_ROOTS, [a + b for a in _NAME_ONSETS for b in _NAME_CODAS]):
        pool = []
        for root in roots:
            for form in _NAME_FORMS:
                name = form.format(root)
                key = _name_key(name)
                if key not in taken:
                    taken.add(key)
                    pool.append(name)
        pools.append(tuple(pool))
    return pools[0], pools[1]


def coin_names(n: int, seed: int = 0) -> list[str]:
    """Return ``n`` distinct fictional coin names, deterministic for ``seed``.

    Names look like real listings ("Nova Cash", "Zephyr", "Ion-X Coin") and may
    contain spaces and hyphens, but never commas, quotes or path separators, so
    each is a valid file stem. None matches a real 2017 top-100 coin, even
    ignoring case and punctuation, and no two differ only by case. The list for
    ``n`` is a prefix of the list for any larger ``n``. Past the pool of a few
    thousand base names, numbers are appended ("Nova Cash 2").

    Args:
        n: How many names, at least 0.
        seed: Non-negative integer that picks the order.

    Returns:
        A list of ``n`` unique names.

    Raises:
        InvalidParameterError: If ``n`` or ``seed`` is not a non-negative integer.
    """
    n = _check_int("n", n, 0)
    seed = _check_int("seed", seed, 0)
    words, syllables = _name_pools()
    rng = np.random.default_rng(seed)
    # Word-root names ("Nova Cash") come first because they read best; the
    # order never depends on n, which keeps shorter lists prefixes of longer ones.
    pool = [words[i] for i in rng.permutation(len(words))]
    pool += [syllables[i] for i in rng.permutation(len(syllables))]
    names = []
    for i in range(n):
        cycle = i // len(pool)
        names.append(pool[i % len(pool)] if cycle == 0 else f"{pool[i % len(pool)]} {cycle + 1}")
    return names


# --- CoinMarketCap CSV ------------------------------------------------------------


def _format_price(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    # Six significant digits in positional notation: the export never uses
    # exponents, and a fixed number of decimals would round dust coins to 0.
    return np.format_float_positional(x, precision=6, unique=False, fractional=False, trim="-")


def _format_count(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    # CMC rounds Volume and Market Cap to six significant digits, then prints
    # whole dollars with thousands separators: "1,194,830,000".
    return f"{round(float(f'{x:.6g}')):,}"


def write_cmc_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write one coin in CoinMarketCap's export format.

    The file has the header ``Date,Open,High,Low,Close,Volume,Market Cap`` and
    rows newest first. Dates are quoted as ``"Sep 22, 2017"``; prices are
    unquoted with six significant digits; Volume and Market Cap are whole
    numbers with thousands separators (quoted when they contain a comma), or an
    unquoted ``-`` when missing. Lines end with ``\\n``.

    Args:
        df: A frame with the columns of :func:`generate_series`, in any row order.
        path: Destination file; its stem is the coin name. Parent directories
            are created.

    Returns:
        The path written, as a ``Path``.

    Raises:
        DataFormatError: If a column is missing or a Date is not a date.
    """
    missing = [c for c in CMC_COLUMNS if c not in df.columns]
    if missing:
        raise DataFormatError(f"cannot write a CMC CSV: columns {missing} missing; expected {list(CMC_COLUMNS)}")
    try:
        parsed = pd.to_datetime(df["Date"])
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"cannot write a CMC CSV: Date column is not dates ({exc})") from exc
    if parsed.isna().any():
        raise DataFormatError("cannot write a CMC CSV: Date column has missing values")
    order = np.argsort(parsed.to_numpy(), kind="stable")[::-1]
    dates = pd.DatetimeIndex(parsed.to_numpy()[order])
    prices = {c: df[c].to_numpy(dtype=np.float64)[order] for c in ("Open", "High", "Low", "Close")}
    counts = {c: df[c].to_numpy(dtype=np.float64)[order] for c in ("Volume", "Market Cap")}

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        # QUOTE_MINIMAL reproduces the export: dates and numbers with separators
        # are quoted because they contain commas, everything else is bare.
        writer = csv.writer(fh, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(CMC_COLUMNS)
        for i, (y, m, d) in enumerate(zip(dates.year, dates.month, dates.day, strict=True)):
            writer.writerow(
                [
                    f"{_MONTH_ABBR[m - 1]} {d:02d}, {y}",
                    *(_format_price(prices[c][i]) for c in ("Open", "High", "Low", "Close")),
                    _format_count(counts["Volume"][i]),
                    _format_count(counts["Market Cap"][i]),
                ]
            )
    return path


# --- Datasets ---------------------------------------------------------------------


def _long_table(names: Sequence[str], sim: dict[str, np.ndarray], end: pd.Timestamp):
    # pyarrow is imported here, not at the top, so importing this module (as the
    # CLI does at startup) costs nothing until a long-format file is written.
    import pyarrow as pa
    import pyarrow.compute as pc

    lengths = sim["lengths"]
    t_max = int(lengths.max())
    # (series, day) masks in row-major order give each coin's rows together,
    # oldest first.
    valid = np.arange(t_max)[None, :] < lengths[:, None]
    # Series are left-aligned in simulation time but all end on `end`: day k of
    # a series of length L is end - (L - 1 - k).
    days_before_end = (lengths[:, None] - 1 - np.arange(t_max)[None, :])[valid]
    date_strings = pa.array(
        list(pd.date_range(end=end, periods=t_max, freq="D")[::-1].strftime("%Y-%m-%d")), pa.string()
    )
    symbol_index = np.repeat(np.arange(len(names)), lengths)
    columns = {
        # take() from a small dictionary avoids building millions of Python strings.
        "symbol": pc.take(pa.array(list(names), pa.string()), pa.array(symbol_index)),
        "date": pc.take(date_strings, pa.array(days_before_end)),
    }
    for col in ("close", "open", "high", "low", "volume", "market_cap"):
        values = np.ascontiguousarray(sim[col].T)[valid]
        columns[col] = pa.array(values, type=pa.float64(), from_pandas=True)
    return pa.table(columns)


def _series_draws(seed_seq: np.random.SeedSequence, min_points: int, max_points: int, frac: float) -> _Draws:
    rng = np.random.default_rng(seed_seq)
    n = int(rng.integers(min_points, max_points + 1))
    return _draw(rng, n, None, frac)


def generate_dataset(
    n_series: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    min_points: int = 60,
    max_points: int = 1000,
    end_date: object = DEFAULT_END_DATE,
    missing_volume_frac: float = 0.05,
) -> Path:
    """Generate many synthetic coins and write them to disk.

    Series ``i`` is drawn from child ``i`` of ``np.random.SeedSequence(seed)``:
    its length is drawn first (uniform in ``[min_points, max_points]``), then
    the series as in :func:`generate_series` with the same generator. So series
    ``i`` and its name (``coin_names(n_series, seed)[i]``) do not depend on
    ``n_series``. All series end on ``end_date``; shorter ones are later listings.

    Args:
        n_series: Number of coins, at least 1.
        out: A directory (created if needed) to receive one CoinMarketCap CSV
            per coin, named ``<coin name>.csv``; or a file path ending in
            ``.parquet`` or ``.csv`` to receive one long-format table with
            columns ``symbol, date, close, open, high, low, volume,
            market_cap`` (date as an ISO ``YYYY-MM-DD`` string, missing values
            null/empty), rows grouped by coin and oldest first.
        seed: Non-negative integer root seed.
        min_points: Shortest series, at least 2.
        max_points: Longest series, at least ``min_points``.
        end_date: Date of every series' last row.
        missing_volume_frac: For every series, the fraction of its earliest
            rows with no Volume (see :func:`generate_series`).

    Returns:
        ``out`` as a ``Path``.

    Raises:
        InvalidParameterError: If an argument is out of range; the message
            names it and its value.
    """
    n_series = _check_int("n_series", n_series, 1)
    seed = _check_int("seed", seed, 0)
    min_points = _check_int("min_points", min_points, 2)
    max_points = _check_int("max_points", max_points, 2)
    if max_points < min_points:
        raise InvalidParameterError(f"max_points ({max_points}) must be >= min_points ({min_points})")
    frac = _check_fraction("missing_volume_frac", missing_volume_frac)
    end = _check_end_date(end_date)
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise InvalidParameterError(f"out must be a directory or a .parquet/.csv path, got {out!r}")
    out = Path(out)

    names = coin_names(n_series, seed)
    children = np.random.SeedSequence(seed).spawn(n_series)
    suffix = out.suffix.lower()
    if suffix in (".parquet", ".csv"):
        _write_long(out, suffix, names, children, min_points, max_points, frac, end)
    else:
        if out.exists() and not out.is_dir():
            raise InvalidParameterError(
                f"out {str(out)!r} is an existing file; give a directory or a .parquet/.csv path"
            )
        out.mkdir(parents=True, exist_ok=True)
        dates_cache: dict[int, pd.DatetimeIndex] = {}
        for start in range(0, n_series, _CHUNK_SERIES):
            chunk = range(start, min(start + _CHUNK_SERIES, n_series))
            sim = _simulate([_series_draws(children[i], min_points, max_points, frac) for i in chunk])
            for j, i in enumerate(chunk):
                n = int(sim["lengths"][j])
                if n not in dates_cache:
                    dates_cache[n] = pd.date_range(end=end, periods=n, freq="D")
                frame = pd.DataFrame(
                    {
                        "Date": dates_cache[n],
                        "Open": sim["open"][:n, j],
                        "High": sim["high"][:n, j],
                        "Low": sim["low"][:n, j],
                        "Close": sim["close"][:n, j],
                        "Volume": sim["volume"][:n, j],
                        "Market Cap": sim["market_cap"][:n, j],
                    }
                )
                write_cmc_csv(frame, out / f"{names[i]}.csv")
        logger.info("wrote %d synthetic coins (seed %d) as CMC CSVs to %s", n_series, seed, out)
    return out


def _write_long(
    out: Path,
    suffix: str,
    names: Sequence[str],
    children: Sequence[np.random.SeedSequence],
    min_points: int,
    max_points: int,
    frac: float,
    end: pd.Timestamp,
) -> None:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target and rename at the end, so an interrupted run
    # never leaves a truncated file where a complete one is expected.
    tmp = out.with_name(out.name + ".part")
    schema = pa.schema([("symbol", pa.string()), ("date", pa.string())] + [(c, pa.float64()) for c in LONG_COLUMNS[2:]])
    rows = 0
    try:
        if suffix == ".parquet":
            writer = pq.ParquetWriter(tmp, schema)
        else:
            sink = open(tmp, "wb")  # noqa: SIM115 - the finally below closes it, after the writer
            # pyarrow quotes every header field; write a plain one like the
            # rest of the project's CSVs. Names never contain commas or quotes
            # (see coin_names), so the rows need no quoting either.
            sink.write((",".join(LONG_COLUMNS) + "\n").encode())
            writer = pacsv.CSVWriter(
                sink,
                schema,
                write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
            )
        try:
            for start in range(0, len(names), _CHUNK_SERIES):
                chunk = range(start, min(start + _CHUNK_SERIES, len(names)))
                sim = _simulate([_series_draws(children[i], min_points, max_points, frac) for i in chunk])
                table = _long_table([names[i] for i in chunk], sim, end)
                writer.write_table(table)
                rows += table.num_rows
        finally:
            writer.close()
            if suffix == ".csv":
                sink.close()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    logger.info("wrote %d synthetic coins, %d rows, to %s", len(names), rows, out)
