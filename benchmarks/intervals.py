"""intervals: our interval models, fit + 10-step interval forecast, against the libraries they wrap, called bare.

Every model forecasts ``horizon`` steps with 80 % and 95 % intervals for the
same in-memory series (generated, about 1,000 points; loading is not timed),
one series after another in this process: the figure is series per second,
fit and predict included. Ours goes through the public path,
``get_model(name).fit(prices).predict_interval(horizon)``, with its
validation, log transform, ``exp`` and nesting check. The bare side is the
library itself on the log prices (taken before the clock starts), with
``level=[80, 95]``. The two sides alternate series by series and each
series counts its fastest of ``repeats`` runs, so a change in the machine's
load slows both alike.

* ``ets`` / ``theta`` against statsforecast's ``AutoETS`` / ``AutoTheta``
  built with our defaults (our constructor arguments are theirs: ``ets``
  defaults to ``model="AZZ"``, see ``crypto_ml.models.statistical``): our
  wrappers over them, so ours ÷ bare is the wrapper's overhead (target at
  most 1.10). Their forecasts must agree exactly (``max rel Δ``).
* ``naive`` against statsforecast's ``Naive`` with ``level``: the same point,
  different intervals (ours are empirical k-day quantiles, theirs normal), so
  the ratio says what our intervals cost next to theirs (same target).
* ``garch`` against ``arch`` itself, fitting the same model on the same
  returns in percent and forecasting by simulation (2,000 paths): shown for
  information, no target; ours simulates its own paths from the fitted
  parameters.
* ``ewma`` has no bare twin; its speed is shown for scale.

A model that cannot be imported or built here (a missing extra, a module not
written yet) is an error row, not a failed benchmark.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np

from .data import describe, synthetic_dataset
from .harness import Options, Report, rate

NAME = "intervals"
TITLE = "ewma/garch/ets/theta/naive interval forecasts, series/s, vs statsforecast/arch called bare, same series"

#: Our model -> the bare library model timed against it.
PEERS = {"ets": "AutoETS", "theta": "AutoTheta", "naive": "Naive", "garch": "arch"}
MODELS = ("ewma", "garch", "ets", "theta", "naive")
#: Peers whose ratio is a target: ours may take at most 10 % longer than the bare library.
TARGETED = ("ets", "theta", "naive")
TARGET_RATIO = 1.10
LEVELS = (80, 95)
#: Paths of arch's simulated forecast: as many as our garch's default.
ARCH_SIMULATIONS = 2000


def _load(path) -> list[np.ndarray]:
    """Every series' closing prices, oldest first."""
    import pandas as pd

    frame = pd.read_parquet(path, columns=["symbol", "close"])
    # generate_dataset writes rows grouped by coin, oldest first.
    symbols = frame["symbol"].to_numpy()
    starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]])
    ends = np.r_[starts[1:], len(frame)]
    closes = frame["close"].to_numpy(dtype=np.float64)
    return [closes[s:e] for s, e in zip(starts, ends, strict=True)]


def _ours_one(model: str, prices: np.ndarray, horizon: int) -> np.ndarray | None:
    """Our point forecast through the public path, or None where the series failed."""
    from crypto_ml.exceptions import CryptoMLError
    from crypto_ml.models import get_model

    try:
        return get_model(model).fit(prices).predict_interval(horizon, LEVELS).point
    except CryptoMLError:  # one series' failure is a failure record in a real batch, not the run's end
        return None


def _bare_statsforecast(peer: str, params: dict[str, Any], log_y: np.ndarray, horizon: int) -> np.ndarray:
    """statsforecast's own model on one log series with ``level=``; its point, exp'ed."""
    import statsforecast.models

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mean = getattr(statsforecast.models, peer)(**params).fit(log_y).predict(horizon, level=list(LEVELS))["mean"]
    return np.exp(np.asarray(mean, dtype=np.float64))


def _bare_arch(log_y: np.ndarray, horizon: int) -> np.ndarray:
    """arch's GARCH(1,1)-t fit and simulated forecast on one series' returns in percent; the point price."""
    from arch import arch_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = arch_model(100.0 * np.diff(log_y), mean="Zero", vol="GARCH", p=1, q=1, dist="t").fit(
            disp="off", show_warning=False
        )
        forecast = result.forecast(horizon=horizon, method="simulation", simulations=ARCH_SIMULATIONS, reindex=False)
    # The simulated paths give the intervals; the zero-mean point is the last price.
    paths = forecast.simulations.values[-1]
    np.quantile(paths.cumsum(axis=1), [0.025, 0.1, 0.9, 0.975], axis=0)
    return np.exp(log_y[-1] + forecast.mean.values[-1] / 100.0)


def _timed(function: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def _time_both(
    model: str, peer: str | None, series: list[np.ndarray], log_series: list[np.ndarray], horizon: int, repeats: int
) -> dict[str, Any]:
    """Seconds for every series on each side, and the points.

    The two sides alternate series by series, and each series counts its
    fastest of ``repeats`` runs: a machine whose load changes during the
    run (other processes, frequency scaling) then slows both sides alike,
    instead of whichever happened to run during the busy spell.
    """
    from crypto_ml.models import get_model

    if peer == "arch":
        bare = lambda log_y: _bare_arch(log_y, horizon)  # noqa: E731
    elif peer is not None:
        # The same configuration as ours: our constructor parameters are the statsforecast model's.
        params = get_model(model).get_params()
        bare = lambda log_y: _bare_statsforecast(peer, params, log_y, horizon)  # noqa: E731
    ours_best = np.full(len(series), np.inf)
    bare_best = np.full(len(series), np.inf)
    ours_points: list[np.ndarray | None] = []
    bare_points: list[np.ndarray] = []
    for _ in range(max(repeats, 1)):
        ours_points, bare_points = [], []
        for i, (prices, log_y) in enumerate(zip(series, log_series, strict=True)):
            seconds, point = _timed(_ours_one, model, prices, horizon)
            ours_best[i] = min(ours_best[i], seconds)
            ours_points.append(point)
            if peer is not None:
                seconds, point = _timed(bare, log_y)
                bare_best[i] = min(bare_best[i], seconds)
                bare_points.append(point)
    return {
        "ours_seconds": float(ours_best.sum()),
        "ours_points": ours_points,
        "peer_seconds": float(bare_best.sum()) if peer is not None else math.nan,
        "peer_points": bare_points,
    }


def _max_rel_diff(ours: list[np.ndarray | None], theirs: list[np.ndarray]) -> tuple[float, int]:
    pairs = [(a, b) for a, b in zip(ours, theirs, strict=True) if a is not None]
    if not pairs:
        return math.nan, 0
    return max(float(np.max(np.abs(a - b) / np.abs(b))) for a, b in pairs), len(pairs)


def _missing(model: str) -> str | None:
    """Why ``model`` cannot run here (not importable, its extra missing), or None."""
    from crypto_ml.models.registry import missing_extra

    try:
        extra = missing_extra(model)
    except Exception as exc:  # noqa: BLE001 - a module that does not import is this model's error row
        return f"{type(exc).__name__}: {exc}"
    return f"the '{extra}' extra is not installed (pip install -e '.[{extra}]')" if extra else None


def _peer_missing(peer: str) -> str | None:
    import importlib.util

    module = "arch" if peer == "arch" else "statsforecast"
    return None if importlib.util.find_spec(module) else f"{module} is not installed (pip install -e '.[stats]')"


def run(options: Options, *, n_series: int | None = None, horizon: int = 10, repeats: int | None = None) -> Report:
    """Time each model and its bare peer on the same series, and cross-check their point forecasts.

    Args:
        options: The run's options.
        n_series: Series; None: 100, or 10 with ``--quick``.
        horizon: Steps forecast.
        repeats: Each series counts its fastest of this many runs, on both sides; None: 3, or 1 with ``--quick``.
    """
    n_series = n_series or (10 if options.quick else 100)
    repeats = repeats or (1 if options.quick else 3)
    path = synthetic_dataset(options, n_series)
    report = Report(
        NAME,
        TITLE,
        options,
        {
            "n_series": n_series,
            "horizon": horizon,
            "levels": list(LEVELS),
            "repeats": repeats,
            "timing": (
                "per series the fastest of repeats, the sides alternating series by series; single thread, "
                "fit + predict with intervals"
            ),
            "target_ratio": TARGET_RATIO,
            "arch_simulations": ARCH_SIMULATIONS,
            "dataset": describe(path),
        },
    )
    report.set_columns(
        ("model", "model"),
        ("ours_sps", "ours series/s"),
        ("peer", "bare peer"),
        ("peer_sps", "bare series/s"),
        ("ratio", "ours ÷ bare (time)"),
        ("max_rel_diff", "max rel Δ point"),
        ("failed", "failed"),
        ("error", "error"),
    )
    series = _load(path)
    log_series = [np.log(prices) for prices in series]
    for model in MODELS:
        row = report.add_row(model=model)  # filled in below: the report keeps this very dict
        error = _missing(model)
        if error:
            row["error"] = error
            continue
        peer = PEERS.get(model)
        if peer is not None:
            row["peer"] = peer if peer != "arch" else f"arch ({ARCH_SIMULATIONS} paths)"
            row["peer_error"] = _peer_missing(peer)
            if row["peer_error"]:
                peer = None
        # Warm both sides on a few series: imports and first-call set-up are not forecasting.
        _time_both(model, peer, series[:3], log_series[:3], horizon, 1)
        timed = _time_both(model, peer, series, log_series, horizon, repeats)
        seconds = timed["ours_seconds"]
        row.update(
            ours_sps=rate(len(series), seconds),
            ours_seconds=seconds,
            failed=sum(point is None for point in timed["ours_points"]),
        )
        if peer is None:
            continue
        peer_seconds = timed["peer_seconds"]
        row.update(
            peer_sps=rate(len(series), peer_seconds),
            peer_seconds=peer_seconds,
            ratio=seconds / peer_seconds if peer_seconds > 0 else math.nan,
        )
        row["max_rel_diff"], row["compared"] = _max_rel_diff(timed["ours_points"], timed["peer_points"])
        if model in TARGETED:
            report.target(f"{model}: ours ÷ bare {peer} (time per series)", row["ratio"], "<=", TARGET_RATIO)
    for row in report.rows:
        if row["model"] in ("ets", "theta") and row.get("max_rel_diff") is not None and row["max_rel_diff"] != 0.0:
            report.note(
                f"[red]{row['model']} disagrees with statsforecast[/]: max relative difference "
                f"{row['max_rel_diff']:.2e} over {row.get('compared')} series"
            )
        if row.get("peer_error"):
            report.note(f"{row['model']}: bare peer not timed: {row['peer_error']}")
    report.note(
        "ours: get_model(name).fit(prices).predict_interval(h) (validation, log, exp, nesting check "
        "included); bare: the library on log prices computed before the clock starts"
    )
    report.note(
        "naive vs Naive: the same point, different intervals (ours: empirical k-day quantiles; "
        "statsforecast: normal); garch vs arch: information only, no target"
    )
    if any(row.get("error") for row in report.rows):
        report.note("error rows: the model could not be built here; the others ran")
    return report
