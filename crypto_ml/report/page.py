"""The report's Markdown page, and ``write_report``, which writes it next to its plots.

The page holds the tables (from :mod:`crypto_ml.report.rows`), the verdicts and
the manifest, and links the figures drawn by :mod:`crypto_ml.report.plots`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..evaluation import BENCHMARK, CALIBRATION_TOLERANCE, QUICK_WINDOWS, SIGNIFICANCE, BacktestRun
from ..models.base import level_label
from .plots import (
    CALIBRATION_PNG,
    FANS_PNG,
    FORECASTS_PNG,
    MASE_PNG,
    MAX_FAN_MODELS,
    PIT_PNG,
    _history,
    _plot_calibration,
    _plot_coins,
    _plot_fans,
    _plot_forecasts,
    _plot_mase,
    _plot_pit,
)
from .rows import _number, interval_rows, significance_rows, summary_rows, verdict_lines

__all__ = ["write_report"]

log = logging.getLogger(__name__)

REPORT_MD = "report.md"


def write_report(run: BacktestRun, directory: str | Path, plot_coins: list[str] | None = None) -> Path:
    """Write ``report.md`` and its PNG plots for a backtest into ``directory``.

    Plots: ``forecasts.png``, the last prices of each chosen coin with every
    window's forecast per model; ``mase_by_model.png``, each model's mean MASE
    per coin, with a line at MASE = 1; ``fan_charts.png``, each window's
    intervals as shaded bands against the actual prices, one row per chosen
    coin and one column per model (the first ``MAX_FAN_MODELS``);
    ``calibration.png``, nominal against observed coverage per model;
    ``pit_histograms.png``, each model's PIT histogram. The page holds the
    aggregate table, the share of coins where each model beats the random walk,
    the interval table, coverage by volatility regime, the significance table,
    the verdicts, the error by forecast step, the failures and the run's manifest.

    Args:
        run: A finished backtest.
        directory: Where to write; created if missing. Existing files of the
            same names are replaced.
        plot_coins: Coins to plot; None plots the ``DEFAULT_PLOT_COINS`` longest
            coins that have successful windows.

    Returns:
        The path of ``report.md``.

    Raises:
        InvalidParameterError: a coin in ``plot_coins`` is not part of the run.
    """
    directory = Path(directory)
    coins, skipped = _plot_coins(run, plot_coins)
    directory.mkdir(parents=True, exist_ok=True)
    loader = _history(run) if coins else None
    _plot_forecasts(run, coins, directory / FORECASTS_PNG, loader)
    _plot_mase(run, directory / MASE_PNG)
    _plot_fans(run, coins, directory / FANS_PNG, loader)
    _plot_calibration(run, directory / CALIBRATION_PNG)
    _plot_pit(run, directory / PIT_PNG)
    path = directory / REPORT_MD
    path.write_text(_markdown(run, coins, skipped), encoding="utf-8")
    log.info("backtest report written to %s", path)
    return path


def _regime_table(run: BacktestRun) -> str | None:
    """Coverage by volatility tercile as Markdown: one row per model and level, one column per regime."""
    import pandas as pd

    table = run.by_regime()
    if table.empty:
        return None
    rows = []
    for (model, level), part in table.groupby(["model", "level"], sort=False):
        row = {"model": model, "level": f"{level_label(level)}%"}
        for record in part.to_dict("records"):
            row[f"{record['regime']} vol."] = f"{_number(record['coverage'], 2)} ({record['windows']})"
        rows.append(row)
    edges = table.drop_duplicates("regime")
    cuts = ", ".join(
        f"{r['regime']} {r['volatility_from']:.4f}-{r['volatility_to']:.4f}" for r in edges.to_dict("records")
    )
    return pd.DataFrame(rows).to_markdown(index=False) + f"\n\nDaily log-return volatility ranges: {cuts}."


def _interval_sections(run: BacktestRun) -> list[str]:
    import pandas as pd

    levels = ", ".join(f"{level_label(level)}%" for level in run.levels)
    lines = [
        "## Prediction intervals",
        "",
        f"Central {levels} intervals, scored on log prices so every coin weighs alike. Coverage is the share "
        "of actual prices inside the interval (it should match the level); the width is the mean log "
        "width (0.10 is about 10 % of the price); the Winkler score is the width plus a penalty of "
        "2/alpha times any miss; the CRPS is estimated as twice the mean pinball loss over a fixed grid of "
        "quantiles. \"vs naive\" is the model's total over naive's on the same coins and windows: below 1 "
        "is better. Naive's interval is the last price times the empirical quantiles of all past k-day "
        "log returns.",
        "",
        pd.DataFrame(interval_rows(run)).to_markdown(index=False, disable_numparse=True),
        "",
    ]
    regimes = _regime_table(run)
    if regimes:
        lines += [
            "## Coverage by volatility regime",
            "",
            "Origins split into terciles of the realised volatility of the 30 daily log returns before them "
            "(cut points from naive's windows, so every model is split alike). Coverage, with the number of "
            "windows in brackets:",
            "",
            regimes,
            "",
        ]
    lines += [
        "## Skill or luck",
        "",
        "For each loss, the difference from naive is averaged over the coins at each origin, and the "
        "series of origin means is tested with Diebold-Mariano (HAC variance for overlapping forecasts, "
        "Harvey-Leybourne-Newbold small-sample correction, Student-t). The MASE stands in for the MAE, "
        'being scale-free. "coins better" counts coins whose mean loss is below naive\'s; its sign-test '
        "p-value is optimistic, because coins move together and are not independent.",
        "",
    ]
    rows = significance_rows(run)
    lines += [
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "Only the benchmark ran.",
        "",
    ]
    lines += [
        "## Verdicts",
        "",
        f"Calibrated means every level's coverage within {CALIBRATION_TOLERANCE * 100:g} points of nominal; "
        "sharper "
        f"means a Winkler score below naive's with p < {SIGNIFICANCE} at every level; worse means a Winkler "
        f"score above naive's with p < {SIGNIFICANCE} at some level.",
        "",
    ]
    lines += [f"- {line}" for line in verdict_lines(run)]
    return [*lines, ""]


def _markdown(run: BacktestRun, coins: list[str], skipped: list[str]) -> str:
    import pandas as pd

    manifest = run.manifest()
    seeds = manifest["seeds"]
    n_coins = len(run.coins) or len({r["coin"] for r in run.records})
    lines = [
        f"# Backtest: {', '.join(run.models)} on {n_coins} coins",
        "",
        *(
            [
                f"**Quick mode: {QUICK_WINDOWS} windows, indicative only.** Too few origins to tell skill from luck; "
                "run without --quick (30 windows) before judging a model.",
                "",
            ]
            if run.quick
            else []
        ),
        f"{run.horizon}-day forecasts from up to {run.windows} rolling origins {run.step} days apart per coin "
        f"(short coins use the windows that fit), each model fitted only on the prices before its origin. "
        f"Ran on the {run.engine} engine in {_number(run.seconds, 1)} s, started {run.started_at or '-'}.",
        "",
        "## Summary",
        "",
        pd.DataFrame(summary_rows(run)).to_markdown(index=False),
        "",
        "Medians and means are over every successful (coin, window). MASE is the forecast's mean absolute "
        "error divided by the mean absolute one-day change of the training prices: below 1, the forecast "
        "erred less than a typical day's move. sMAPE is on a 0-200 scale. Directional accuracy is the share "
        "of steps forecast on the right side of the last training price; naive forecasts no move, so it scores 0.",
        "",
        "The MASE scale is averaged over each coin's whole training history. Where prices grew many-fold, recent "
        "moves dwarf that average and every model's MASE, naive's included, runs high: compare models with naive "
        "rather than with 1.",
        "",
        "## Against the random walk",
        "",
    ]
    summary = run.summary()
    for row in summary.to_dict("records"):
        if row["model"] == BENCHMARK:
            continue
        if row["compared_coins"]:
            verdict = "beats" if row["beats_naive_share"] > 0.5 else "does not beat"
            lines.append(
                f"- **{row['model']}** has a lower mean MASE than naive on {row['beats_naive_coins']} of "
                f"{row['compared_coins']} coins ({row['beats_naive_share']:.0%}): it {verdict} the random "
                "walk on most coins."
            )
        else:
            lines.append(f"- **{row['model']}** could not be compared with naive on any coin.")
    if len(summary) == 1:
        lines.append("- Only the benchmark ran.")
    lines += [
        "",
        "A coin counts when the model's mean MASE over the windows both succeeded on is lower than "
        "naive's over the same windows.",
        "",
    ]
    lines += _interval_sections(run)
    lines += ["## Error by forecast step", ""]
    by_step = run.by_horizon()
    if not by_step.empty:
        table = by_step.pivot(index="step", columns="model", values="mean_scaled_error")
        table = table[[m for m in run.models if m in table.columns]]
        table.index = table.index.astype(str)  # so floatfmt leaves the step numbers alone
        lines += [
            "Mean absolute error at each step after the origin, in units of the coin's typical one-day "
            "move (the MASE scale), over every coin and window:",
            "",
            table.reset_index().to_markdown(index=False, floatfmt=".3f"),
            "",
        ]
    else:
        lines += ["No successful windows.", ""]
    lines += [
        "## Plots",
        "",
        f"![Forecasts and actual prices]({FORECASTS_PNG})",
        "",
        f"Forecasts per window and model for {', '.join(coins) or 'no coin'}; the black line is the actual "
        "price, dotted lines mark the origins.",
        "",
    ]
    if skipped:
        lines += [f"Not plotted (no successful window): {', '.join(skipped)}.", ""]
    lines += [
        f"![Mean MASE per coin by model]({MASE_PNG})",
        "",
        "Each dot is one coin's mean MASE; the dashed line is MASE = 1. The random walk's own multi-day "
        "forecasts usually sit above it, so compare each model with the naive box.",
        "",
        f"![Fan charts of the forecast intervals]({FANS_PNG})",
        "",
        "Every window's intervals as shaded bands (the widest palest) with the point forecast, against the "
        f"actual price in black; one row per plotted coin, one column per model (at most {MAX_FAN_MODELS}).",
        "",
        f"![Calibration: nominal against observed coverage]({CALIBRATION_PNG})",
        "",
        "Observed coverage at every level of the grid, pooled over coins and windows; a calibrated model "
        "follows the dashed diagonal.",
        "",
        f"![PIT histograms]({PIT_PNG})",
        "",
        "The forecast distribution's CDF at each actual price, interpolated from the quantile grid: flat "
        "bars are calibrated, a U shape means intervals too narrow, a hump too wide, a slope a biased "
        "point.",
        "",
    ]
    if run.failed:
        lines += ["## Failures", "", f"{len(run.failed)} of {len(run.records)} records failed.", ""]
        failures = pd.DataFrame(
            [
                {
                    "coin": r["coin"],
                    "model": r["model"],
                    "window": "all" if r.get("window") is None else str(r["window"]),
                    "error": f"{r['error_type']}: {r['error']}",
                }
                for r in run.failed
            ]
        )
        lines += [failures.to_markdown(index=False), ""]
    lines += [
        "## Manifest",
        "",
        f"- command: `{run.command or 'CryptoManager.backtest (Python API)'}`",
        f"- data: `{run.data_path}`, sha256 `{run.data_hash or '-'}`",
        f"- seeds: {json.dumps(seeds) if seeds else 'none (every model is deterministic)'}",
        f"- versions: {', '.join(f'{k} {v}' for k, v in manifest['versions'].items() if v)}",
        "",
        "```json",
        json.dumps(manifest, indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
