"""Walk-forward backtests: every model's forecasts and intervals scored against what happened, and against naive.

One module per concern:

* ``metrics``: per-window scores, point (MAE, RMSE, sMAPE, MASE, directional
  accuracy) and interval (coverage, width, Winkler, pinball, CRPS, PIT, on log
  prices), and the realised volatility at an origin.
* ``significance``: Diebold-Mariano with the Harvey-Leybourne-Newbold
  correction across origins, and the (optimistic) sign test across coins.
* ``backtest``: rolling-origin windows, the plain task functions
  ``backtest_series`` and ``backtest_batch``, and checking a request.
* ``comparison``: each model against the benchmark: interval summary,
  coverage by volatility regime, significance table, calibration, verdicts.
* ``run``: ``BacktestRun``, its point summaries, manifest and files.

Everything public is importable from ``crypto_ml.evaluation`` itself.
"""

from __future__ import annotations

from ..results import library_versions
from .backtest import (
    BENCHMARK,
    CRPS_LEVELS,
    METRICS,
    MIN_TRAIN_POINTS,
    backtest_batch,
    backtest_series,
    coin_failures,
    date_windows,
    interval_metrics,
    rolling_origin_cutoffs,
    validate_request,
    with_benchmark,
)
from .comparison import CALIBRATION_TOLERANCE, SIGNIFICANCE, loss_names
from .metrics import (
    coverage,
    crps_from_quantiles,
    directional_accuracy,
    interval_width,
    mae,
    mase,
    naive_scale,
    origin_volatility,
    pinball_loss,
    pit_values,
    rmse,
    smape,
    winkler_score,
)
from .run import QUICK_WINDOWS, RECORD_COLUMNS, BacktestRun, check_output_path, record_columns
from .significance import DMResult, diebold_mariano, overlap_lags, pool_by_origin, sign_test

__all__ = [
    "BENCHMARK",
    "CALIBRATION_TOLERANCE",
    "CRPS_LEVELS",
    "METRICS",
    "MIN_TRAIN_POINTS",
    "QUICK_WINDOWS",
    "RECORD_COLUMNS",
    "SIGNIFICANCE",
    "BacktestRun",
    "DMResult",
    "backtest_batch",
    "backtest_series",
    "check_output_path",
    "coin_failures",
    "coverage",
    "crps_from_quantiles",
    "date_windows",
    "diebold_mariano",
    "directional_accuracy",
    "interval_metrics",
    "interval_width",
    "library_versions",
    "loss_names",
    "mae",
    "mase",
    "naive_scale",
    "origin_volatility",
    "overlap_lags",
    "pinball_loss",
    "pit_values",
    "pool_by_origin",
    "record_columns",
    "rmse",
    "rolling_origin_cutoffs",
    "sign_test",
    "smape",
    "validate_request",
    "winkler_score",
    "with_benchmark",
]
