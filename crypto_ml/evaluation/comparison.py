"""How each model's forecasts compare with the benchmark's: interval scores, regimes, significance, verdicts.

Everything here reads a run's ok records (see ``backtest.backtest_series``)
and compares a model with ``naive`` on the same (coin, window) pairs only, so
a model that failed on some windows is not flattered or punished by them.
A ratio "vs naive" is the model's sum of a score over those pairs divided by
naive's sum over the same pairs: below 1 is better (narrower, lower loss).

The verdicts follow fixed rules, stated once here:

* intervals, "calibrated and sharper than naive, significant": at every
  reported level the pooled coverage is within ``CALIBRATION_TOLERANCE`` of
  nominal, the Winkler score is below naive's (ratio < 1) and the
  Diebold-Mariano p-value is below ``SIGNIFICANCE``;
* "worse than naive": at some level the Winkler ratio is above 1 with p below
  ``SIGNIFICANCE``;
* otherwise "not distinguishable from naive", saying which of calibration
  and sharpness fell short.

The point verdict reads the same test on the windows' MASE.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..models.base import level_label
from .backtest import BENCHMARK
from .significance import diebold_mariano, overlap_lags, pool_by_origin, sign_test

__all__ = [
    "CALIBRATION_TOLERANCE",
    "REGIMES",
    "SIGNIFICANCE",
    "by_regime",
    "calibration",
    "interval_summary",
    "loss_names",
    "significance",
    "verdicts",
]

#: How far (in coverage share) a level's pooled coverage may sit from nominal and still count as calibrated:
#: 5 points, about the sampling noise of the coverage of a few hundred correlated windows.
CALIBRATION_TOLERANCE = 0.05

#: The p-value below which a Diebold-Mariano test counts as significant.
SIGNIFICANCE = 0.05

#: Volatility regimes: the terciles of the origins' trailing realised volatility.
REGIMES = ("low", "mid", "high")


def loss_names(levels: Sequence[int | float]) -> list[str]:
    """The losses compared with naive: the window's MASE, the log Winkler score of each level, the CRPS."""
    return ["mase", *(f"winkler_{level_label(level)}" for level in levels), "crps"]


def _frame(records: list[dict[str, Any]], levels: Sequence[int | float]):
    """The ok records' scores as a float frame, one row per (coin, model, window)."""
    import pandas as pd

    labels = [level_label(level) for level in levels]
    scores = [
        "mase",
        "crps",
        "origin_volatility",
        *(f"{kind}_{label}" for label in labels for kind in ("coverage", "width", "winkler")),
    ]
    columns = ["coin", "model", "window", "cutoff_date", "windows_used", *scores]
    rows = [{c: r.get(c) for c in columns} for r in records if r.get("status") == "ok"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype(dict.fromkeys(scores, "float64"))


def _paired(frame, model: str, column: str):
    """``coin, window, cutoff_date, windows_used, <column>, <column>_naive`` where both have a value."""
    keys = ["coin", "window"]
    mine = frame[frame["model"] == model][[*keys, "cutoff_date", "windows_used", column]].dropna(subset=[column])
    naive = frame[frame["model"] == BENCHMARK][[*keys, column]].dropna(subset=[column])
    return mine.merge(naive, on=keys, suffixes=("", "_naive"))


def _ratio(paired, column: str) -> float:
    """The model's sum over naive's, on the same pairs; NaN without pairs or when naive's sum is 0."""
    total = float(paired[f"{column}_naive"].sum())
    return float(paired[column].sum()) / total if len(paired) and total > 0 else float("nan")


def interval_summary(records: list[dict[str, Any]], models: Sequence[str], levels: Sequence[int | float]):
    """Per model and level: coverage, mean log width, mean log Winkler score and CRPS, each also against naive.

    Args:
        records: A run's records.
        models: The models, in the order rows should come.
        levels: The reported interval levels.

    Returns:
        A DataFrame with ``model, level, nominal, windows, coverage,
        naive_coverage, mean_width, width_vs_naive, mean_winkler,
        winkler_vs_naive, mean_crps, crps_vs_naive``. Coverage is pooled over
        every step of every window; ``naive_coverage`` is naive's on the same
        pairs. The CRPS does not depend on the level and repeats on each level's row.
    """
    import pandas as pd

    frame = _frame(records, levels)
    rows = []
    for model in models:
        part = frame[frame["model"] == model]
        crps_pairs = _paired(frame, model, "crps")
        for level in levels:
            label = level_label(level)
            covered = _paired(frame, model, f"coverage_{label}")
            rows.append(
                {
                    "model": model,
                    "level": level,
                    "nominal": float(level) / 100.0,
                    "windows": int(part[f"coverage_{label}"].notna().sum()),
                    "coverage": part[f"coverage_{label}"].mean(),
                    "naive_coverage": covered[f"coverage_{label}_naive"].mean() if len(covered) else float("nan"),
                    "mean_width": part[f"width_{label}"].mean(),
                    "width_vs_naive": _ratio(_paired(frame, model, f"width_{label}"), f"width_{label}"),
                    "mean_winkler": part[f"winkler_{label}"].mean(),
                    "winkler_vs_naive": _ratio(_paired(frame, model, f"winkler_{label}"), f"winkler_{label}"),
                    "mean_crps": part["crps"].mean(),
                    "crps_vs_naive": _ratio(crps_pairs, "crps"),
                }
            )
    columns = [
        "model",
        "level",
        "nominal",
        "windows",
        "coverage",
        "naive_coverage",
        "mean_width",
        "width_vs_naive",
        "mean_winkler",
        "winkler_vs_naive",
        "mean_crps",
        "crps_vs_naive",
    ]
    return pd.DataFrame(rows, columns=columns)


def by_regime(records: list[dict[str, Any]], models: Sequence[str], levels: Sequence[int | float]):
    """Coverage per model, level and volatility regime at the origin.

    The regimes are the terciles of ``origin_volatility`` (the std of the 30
    daily log returns before each cutoff) over naive's records, pooled over
    every coin and window; naive runs on every window any model does, so all
    models are split at the same cut points.

    Returns:
        A DataFrame with ``model, level, regime, volatility_from,
        volatility_to, windows, nominal, coverage``; empty when no record has
        a volatility.
    """
    import pandas as pd

    frame = _frame(records, levels)
    columns = ["model", "level", "regime", "volatility_from", "volatility_to", "windows", "nominal", "coverage"]
    volatility = frame.loc[frame["model"] == BENCHMARK, "origin_volatility"].dropna().to_numpy()
    if not volatility.size:
        return pd.DataFrame([], columns=columns)
    low_cut, high_cut = np.quantile(volatility, [1 / 3, 2 / 3])
    edges = {
        "low": (float(volatility.min()), float(low_cut)),
        "mid": (float(low_cut), float(high_cut)),
        "high": (float(high_cut), float(volatility.max())),
    }
    # A window at a cut point belongs to the calmer regime: the cut is that tercile's upper edge.
    regime = np.select(
        [
            frame["origin_volatility"] <= low_cut,
            frame["origin_volatility"] <= high_cut,
            frame["origin_volatility"] > high_cut,
        ],
        list(REGIMES),
        default="",
    )
    frame = frame.assign(regime=regime)
    rows = []
    for model in models:
        for level in levels:
            column = f"coverage_{level_label(level)}"
            for name in REGIMES:
                part = frame[(frame["model"] == model) & (frame["regime"] == name)][column].dropna()
                rows.append(
                    {
                        "model": model,
                        "level": level,
                        "regime": name,
                        "volatility_from": edges[name][0],
                        "volatility_to": edges[name][1],
                        "windows": len(part),
                        "nominal": float(level) / 100.0,
                        "coverage": part.mean() if len(part) else float("nan"),
                    }
                )
    return pd.DataFrame(rows, columns=columns)


def _origins(paired) -> list[Any]:
    """Each pair's origin: its cutoff date, or, when any pair lacks one, its window counted back from the last.

    Coins of one run mostly end on the same day, so counting back from the
    last window lines their origins up when there are no dates to do it.
    """
    if paired["cutoff_date"].notna().all():
        return paired["cutoff_date"].tolist()
    return (paired["window"].astype(int) - paired["windows_used"].astype(int)).tolist()


def significance(
    records: list[dict[str, Any]], models: Sequence[str], levels: Sequence[int | float], horizon: int, step: int
):
    """Diebold-Mariano (HLN) tests and sign tests of each model against naive, per loss.

    For each loss (the window's MASE, the log Winkler score per level, the
    CRPS) the differential d = loss_model - loss_naive of each (coin, window)
    is averaged over the coins at each origin (its cutoff date), and the
    series of origin means is tested with ``diebold_mariano`` with
    ceil(horizon / step) - 1 lags. The MASE stands in for the MAE because it
    is scale-free, so coins at 3e-8 and at 4,000 weigh alike. The sign test
    counts the coins whose mean loss over their common windows is below
    naive's; its p-value is optimistic, because coins move together.

    Returns:
        A DataFrame with ``model, loss, origins, mean_differential, ratio,
        statistic, p_value, coins_better, coins_compared, share_better,
        sign_p_optimistic, note``; one row per model other than naive and loss.
    """
    import pandas as pd

    frame = _frame(records, levels)
    lags = overlap_lags(horizon, step)
    rows = []
    for model in models:
        if model == BENCHMARK:
            continue
        for loss in loss_names(levels):
            paired = _paired(frame, model, loss)
            result = diebold_mariano(
                pool_by_origin(zip(_origins(paired), paired[loss] - paired[f"{loss}_naive"], strict=True))[1], lags
            )
            by_coin = paired.groupby("coin")[[loss, f"{loss}_naive"]].mean()
            better = int((by_coin[loss] < by_coin[f"{loss}_naive"]).sum())
            compared = len(by_coin)
            rows.append(
                {
                    "model": model,
                    "loss": loss,
                    "origins": result.origins,
                    "mean_differential": result.mean_differential,
                    "ratio": _ratio(paired, loss),
                    "statistic": result.statistic,
                    "p_value": result.p_value,
                    "coins_better": better,
                    "coins_compared": compared,
                    "share_better": better / compared if compared else float("nan"),
                    "sign_p_optimistic": sign_test(better, compared),
                    "note": result.note,
                }
            )
    columns = [
        "model",
        "loss",
        "origins",
        "mean_differential",
        "ratio",
        "statistic",
        "p_value",
        "coins_better",
        "coins_compared",
        "share_better",
        "sign_p_optimistic",
        "note",
    ]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.astype(
        dict.fromkeys(("mean_differential", "ratio", "statistic", "p_value", "sign_p_optimistic"), "float64")
    )


def calibration(records: list[dict[str, Any]], models: Sequence[str]):
    """Nominal against observed coverage per model, at every level the windows were scored on.

    The levels are the reported ones and the CRPS grid's (``coverage_grid`` of
    each record); a calibrated model's points lie on the diagonal.

    Returns:
        A DataFrame with ``model, level, nominal, observed, windows``, levels ascending.
    """
    import pandas as pd

    rows = []
    for model in models:
        grids = [
            r["coverage_grid"]
            for r in records
            if r.get("status") == "ok" and r.get("model") == model and r.get("coverage_grid")
        ]
        labels = sorted({label for grid in grids for label in grid}, key=float)
        for label in labels:
            values = [grid[label] for grid in grids if grid.get(label) is not None]
            level = float(label)
            rows.append(
                {
                    "model": model,
                    "level": int(level) if level.is_integer() else level,
                    "nominal": level / 100.0,
                    "observed": float(np.mean(values)),
                    "windows": len(values),
                }
            )
    return pd.DataFrame(rows, columns=["model", "level", "nominal", "observed", "windows"])


def _p(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _x(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}x"


def _significant(row: dict[str, Any]) -> bool:
    p = row.get("p_value")
    return p is not None and not math.isnan(p) and p < SIGNIFICANCE


def _interval_verdict(model: str, summary: list[dict[str, Any]], tests: dict[str, dict[str, Any]]) -> str:
    if not summary or all(math.isnan(row["coverage"]) for row in summary):
        return "no interval scores"
    coverages = ", ".join(f"{level_label(row['level'])}% covers {row['coverage']:.2f}" for row in summary)
    if model == BENCHMARK:
        return f"benchmark ({coverages})"
    worse, miscalibrated, not_sharper = [], [], []
    for row in summary:
        label = level_label(row["level"])
        test = tests.get(f"winkler_{label}", {})
        ratio = row["winkler_vs_naive"]
        where = f"{label}% Winkler {_x(ratio)} naive, p={_p(test.get('p_value'))}"
        if ratio > 1 and _significant(test):
            worse.append(where)
        if math.isnan(row["coverage"]) or abs(row["coverage"] - row["nominal"]) > CALIBRATION_TOLERANCE:
            miscalibrated.append(f"{label}% covers {row['coverage']:.2f}")
        if not (ratio < 1 and _significant(test)):
            not_sharper.append(where)
    if worse:
        return f"worse than naive ({'; '.join(worse)})"
    if not miscalibrated and not not_sharper:
        return f"calibrated and sharper than naive, significant ({coverages})"
    reasons = []
    if miscalibrated:
        reasons.append(f"not calibrated within {CALIBRATION_TOLERANCE * 100:g} points: {', '.join(miscalibrated)}")
    else:
        reasons.append(f"calibrated ({coverages})")
    if not_sharper:
        reasons.append(f"not significantly sharper: {'; '.join(not_sharper)}")
    return f"not distinguishable from naive ({'; '.join(reasons)})"


def _point_verdict(model: str, test: dict[str, Any] | None) -> str:
    if model == BENCHMARK:
        return "benchmark"
    if not test or test.get("p_value") is None or math.isnan(test["p_value"]):
        note = (test or {}).get("note") or "no windows in common with naive"
        return f"not testable ({note})"
    where = f"MASE {_x(test['ratio'])} naive, p={_p(test['p_value'])}"
    if _significant(test):
        better = test["mean_differential"] < 0
        return f"{'better' if better else 'worse'} than naive, significant ({where})"
    return f"not distinguishable from naive ({where})"


def verdicts(
    records: list[dict[str, Any]], models: Sequence[str], levels: Sequence[int | float], horizon: int, step: int
):
    """Each model's verdict in words, for its intervals and its point forecast (the rules in the module docstring).

    Returns:
        A DataFrame with ``model, intervals, point``, one row per model, naive marked as the benchmark.
    """
    import pandas as pd

    summary = interval_summary(records, models, levels).to_dict("records")
    tests = significance(records, models, levels, horizon, step).to_dict("records")
    rows = []
    for model in models:
        mine = {row["loss"]: row for row in tests if row["model"] == model}
        rows.append(
            {
                "model": model,
                "intervals": _interval_verdict(model, [r for r in summary if r["model"] == model], mine),
                "point": _point_verdict(model, mine.get("mase")),
            }
        )
    return pd.DataFrame(rows, columns=["model", "intervals", "point"])
