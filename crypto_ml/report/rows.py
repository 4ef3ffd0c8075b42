"""The backtest's tables and verdicts formatted for display, as rows of strings.

The row formatters (``summary_rows``, ``interval_rows``, ``significance_rows``,
``verdict_lines``) are shared with ``crypto-ml backtest``, so the terminal and
the page show the same numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..evaluation import BENCHMARK, QUICK_WINDOWS, BacktestRun
from ..models.base import level_label

__all__ = ["summary_rows", "interval_rows", "significance_rows", "verdict_lines", "run_title"]


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _ratio(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.2f}"


def _p(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.3f}" if value >= 0.001 else f"{value:.1e}"


def run_title(run: BacktestRun) -> str:
    """What a run is, in a line: horizon and windows, flagged when it is a quick run."""
    title = f"backtest: {run.horizon}-day forecasts, up to {run.windows} windows per coin"
    if run.quick:
        title += f" (quick mode: {QUICK_WINDOWS} windows, indicative only)"
    return title


def interval_rows(run: BacktestRun) -> list[dict[str, str]]:
    """The interval summary formatted for display, one dict per model and level.

    Returns:
        Rows with ``model, level, windows, coverage`` (observed), ``naive cov.``,
        ``log width``, ``width vs naive``, ``Winkler vs naive`` and ``CRPS vs naive``, as strings.
    """
    rows = []
    for row in run.interval_summary().to_dict("records"):
        rows.append(
            {
                "model": row["model"],
                "level": f"{level_label(row['level'])}%",
                "windows": str(row["windows"]),
                "coverage": _number(row["coverage"], 2),
                "naive cov.": _number(row["naive_coverage"], 2),
                "log width": _number(row["mean_width"], 3),
                "width vs naive": _ratio(row["width_vs_naive"]),
                "Winkler vs naive": _ratio(row["winkler_vs_naive"]),
                "CRPS vs naive": _ratio(row["crps_vs_naive"]),
            }
        )
    return rows


def significance_rows(run: BacktestRun) -> list[dict[str, str]]:
    """The significance table formatted for display, one dict per model other than naive and loss.

    Returns:
        Rows with ``model, loss, origins, vs naive`` (ratio), ``DM-HLN``
        (statistic), ``p``, ``coins better``, ``sign p (optimistic)`` and ``note``, as strings.
    """
    rows = []
    for row in run.significance().to_dict("records"):
        compared = row["coins_compared"]
        better = f"{row['coins_better']}/{compared} ({row['share_better']:.0%})" if compared else "-"
        rows.append(
            {
                "model": row["model"],
                "loss": row["loss"],
                "origins": str(row["origins"]),
                "vs naive": _ratio(row["ratio"]),
                "DM-HLN": _number(row["statistic"], 2),
                "p": _p(row["p_value"]),
                "coins better": better,
                "sign p (optimistic)": _p(row["sign_p_optimistic"]),
                "note": row["note"] or "",
            }
        )
    return rows


def verdict_lines(run: BacktestRun) -> list[str]:
    """Each model's verdict in words: ``<model>: intervals <verdict>; point forecast <verdict>``."""
    lines = []
    for row in run.verdicts().to_dict("records"):
        if row["model"] == BENCHMARK:
            lines.append(f"{row['model']}: {row['intervals']}")
        else:
            lines.append(f"{row['model']}: intervals {row['intervals']}; point forecast {row['point']}")
    return lines


def summary_rows(run: BacktestRun) -> list[dict[str, str]]:
    """The aggregate summary formatted for display, one dict per model (used by the CLI table and the report).

    Returns:
        Rows with ``model, coins, windows, failed, median MASE, mean MASE,
        median sMAPE, dir. accuracy`` (mean) and ``beats naive`` (coins, share) as strings.
    """
    rows = []
    for row in run.summary().to_dict("records"):
        if row["model"] == BENCHMARK:
            beats = "benchmark"
        elif row["compared_coins"]:
            beats = f"{row['beats_naive_coins']}/{row['compared_coins']} ({row['beats_naive_share']:.0%})"
        else:
            beats = "-"
        rows.append(
            {
                "model": row["model"],
                "coins": str(row["coins"]),
                "windows": str(row["windows"]),
                "failed": str(row["failed"]),
                "median MASE": _number(row["median_mase"]),
                "mean MASE": _number(row["mean_mase"]),
                "median sMAPE": _number(row["median_smape"], 2),
                "dir. accuracy": _number(row["mean_directional_accuracy"], 2),
                "beats naive": beats,
            }
        )
    return rows
