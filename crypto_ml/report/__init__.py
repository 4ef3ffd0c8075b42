"""A backtest report for people: PNG plots and a Markdown page with the tables, the verdicts and the manifest.

One module per part:

- :mod:`~crypto_ml.report.rows`: the tables formatted for display, shared with
  ``crypto-ml backtest`` so the terminal and the page show the same numbers;
- :mod:`~crypto_ml.report.plots`: the PNG figures;
- :mod:`~crypto_ml.report.page`: the Markdown page and ``write_report``.

matplotlib is imported inside the plotting functions only, so neither ``import
crypto_ml`` nor a worker pays for it.
"""

# The file names and PIT_BINS stay importable from here, where they lived
# before the split, though they are not part of __all__.
from .page import REPORT_MD, write_report  # noqa: F401
from .plots import (  # noqa: F401
    CALIBRATION_PNG,
    DEFAULT_PLOT_COINS,
    FANS_PNG,
    FORECASTS_PNG,
    MASE_PNG,
    MAX_FAN_MODELS,
    PIT_BINS,
    PIT_PNG,
)
from .rows import interval_rows, run_title, significance_rows, summary_rows, verdict_lines

__all__ = [
    "write_report",
    "summary_rows",
    "interval_rows",
    "significance_rows",
    "verdict_lines",
    "run_title",
    "DEFAULT_PLOT_COINS",
    "MAX_FAN_MODELS",
]
