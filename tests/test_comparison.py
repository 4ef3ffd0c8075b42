"""Each model against naive on a constructed run whose every number is known: intervals, regimes, tests, verdicts."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from crypto_ml.evaluation.comparison import by_regime, calibration, interval_summary, significance, verdicts

DATES = ["2017-01-05", "2017-01-10", "2017-01-15", "2017-01-20"]


def _record(coin, model, window, **scores):
    base = {
        "coin": coin,
        "model": model,
        "window": window,
        "status": "ok",
        "cutoff_date": DATES[window - 1],
        "windows_used": 4,
        "mase": 1.0,
        "crps": 1.0,
        "coverage_80": 0.6,
        "width_80": 2.0,
        "winkler_80": 2.0,
        "origin_volatility": None,
        "coverage_grid": {"10": 0.1, "80": 0.6},
    }
    return {**base, **scores}


@pytest.fixture
def records():
    """3 coins x 4 windows. naive: Winkler 2, coverage 0.6, CRPS 1, volatility 1..12 over the 12 windows.
    m: Winkler 1 on odd windows and 1.1 on even ones, coverage 1.0 / 0.8 / 0.6 in the calm / mid / wild
    third of the windows (0.8 overall), width 1, CRPS 0.5, and the same MASE as naive."""
    out = []
    for c, coin in enumerate("abc"):
        for window in range(1, 5):
            volatility = float(4 * c + window)
            regime_cover = 1.0 if volatility <= 4 else 0.8 if volatility <= 8 else 0.6
            out.append(_record(coin, "naive", window, origin_volatility=volatility))
            out.append(
                _record(
                    coin,
                    "m",
                    window,
                    winkler_80=1.0 + 0.1 * (window % 2 == 0),
                    coverage_80=regime_cover,
                    width_80=1.0,
                    crps=0.5,
                    origin_volatility=volatility,
                    coverage_grid={"10": 0.3, "80": regime_cover},
                )
            )
    out.append({"coin": "a", "model": "m", "window": 5, "status": "failed", "error_type": "E", "error": "x"})
    return out


def test_interval_summary_pools_and_compares_on_common_windows(records):
    table = interval_summary(records, ["naive", "m"], (80,)).set_index("model")
    assert table.loc["m", "windows"] == 12 and table.loc["m", "coverage"] == pytest.approx(0.8)
    assert table.loc["m", "naive_coverage"] == pytest.approx(0.6)
    assert table.loc["m", "width_vs_naive"] == pytest.approx(0.5)
    # Winkler: (6 * 1.0 + 6 * 1.1) / (12 * 2) = 12.6 / 24
    assert table.loc["m", "winkler_vs_naive"] == pytest.approx(12.6 / 24)
    assert table.loc["m", "crps_vs_naive"] == pytest.approx(0.5) and table.loc["naive", "winkler_vs_naive"] == 1.0


def test_regimes_are_naives_volatility_terciles(records):
    table = by_regime(records, ["naive", "m"], (80,))
    m = table[table["model"] == "m"].set_index("regime")
    # terciles of 1..12: 1 + 11/3 and 1 + 22/3; windows 1-4 calm, 5-8 mid, 9-12 wild
    assert m.loc["low", "volatility_to"] == pytest.approx(1 + 11 / 3)
    assert m.loc["high", "volatility_from"] == pytest.approx(1 + 22 / 3)
    assert m["windows"].tolist() == [4, 4, 4]
    assert m["coverage"].tolist() == pytest.approx([1.0, 0.8, 0.6])


def test_significance_pools_coins_per_origin(records):
    table = significance(records, ["naive", "m"], (80,), horizon=5, step=5).set_index("loss")
    assert list(table.index) == ["mase", "winkler_80", "crps"] and set(table["model"]) == {"m"}
    winkler = table.loc["winkler_80"]
    # per origin the mean differential over coins is -1, -0.9, -1, -0.9: mean -0.95, gamma0 = 0.0025,
    # DM = -0.95 / sqrt(0.0025 / 4) = -38; HLN factor sqrt(3/4)
    assert winkler["origins"] == 4 and winkler["mean_differential"] == pytest.approx(-0.95)
    assert winkler["statistic"] == pytest.approx(-38 * math.sqrt(0.75))
    assert winkler["p_value"] == pytest.approx(2 * stats.t.sf(38 * math.sqrt(0.75), df=3))
    # every coin better: sign test p = 1/2^3, flagged optimistic in its name
    assert (winkler["coins_better"], winkler["coins_compared"]) == (3, 3)
    assert winkler["sign_p_optimistic"] == pytest.approx(1 / 8)
    assert table.loc["mase", "p_value"] == 1.0  # identical losses
    assert math.isnan(table.loc["crps", "p_value"]) and "variance" in table.loc["crps", "note"]


def test_calibration_reads_the_grid(records):
    table = calibration(records, ["naive", "m"]).set_index(["model", "level"])
    assert table.loc[("m", 10), "observed"] == pytest.approx(0.3) and table.loc[("m", 80), "nominal"] == 0.8
    assert table.loc[("naive", 80), "observed"] == pytest.approx(0.6) and table.loc[("m", 80), "windows"] == 12


def test_verdicts_in_words(records):
    table = verdicts(records, ["naive", "m"], (80,), horizon=5, step=5).set_index("model")
    assert table.loc["m", "intervals"].startswith("calibrated and sharper than naive, significant")
    assert table.loc["m", "point"].startswith("not distinguishable from naive")
    assert table.loc["naive", "intervals"].startswith("benchmark") and table.loc["naive", "point"] == "benchmark"


def test_verdicts_name_what_fell_short(records):
    ok = [r for r in records if r["status"] == "ok"]
    miscalibrated = [{**r, "coverage_80": 0.5} if r["model"] == "m" else r for r in ok]
    text = verdicts(miscalibrated, ["naive", "m"], (80,), 5, 5).set_index("model").loc["m", "intervals"]
    assert text.startswith("not distinguishable from naive")
    assert "not calibrated within 5 points: 80% covers 0.50" in text
    worse = [{**r, "winkler_80": 4.0 - r["winkler_80"]} if r["model"] == "m" else r for r in ok]  # ~2.95 > 2
    assert (
        verdicts(worse, ["naive", "m"], (80,), 5, 5)
        .set_index("model")
        .loc["m", "intervals"]
        .startswith("worse than naive")
    )
