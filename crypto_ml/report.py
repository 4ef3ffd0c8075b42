"""A backtest report for people: PNG plots and a Markdown page with the tables, the verdicts and the manifest.

The row formatters (``summary_rows``, ``interval_rows``, ``significance_rows``,
``verdict_lines``) are shared with ``crypto-ml backtest``, so the terminal and
the page show the same numbers.

matplotlib is imported inside ``write_report`` only, so neither ``import
crypto_ml`` nor a worker pays for it. Figures are drawn on
``matplotlib.figure.Figure`` with the Agg renderer, without pyplot, so writing a
report never changes the backend of a notebook or GUI that called it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .data_loader import normalize_name
from .evaluation import BENCHMARK, CALIBRATION_TOLERANCE, QUICK_WINDOWS, SIGNIFICANCE, BacktestRun
from .exceptions import CryptoMLError, InvalidParameterError
from .models.base import level_label

__all__ = ["write_report", "summary_rows", "interval_rows", "significance_rows", "verdict_lines", "run_title",
           "DEFAULT_PLOT_COINS", "MAX_FAN_MODELS"]

log = logging.getLogger(__name__)

#: Coins plotted when none are chosen: the longest ones, which have the most history to show.
DEFAULT_PLOT_COINS = 3

#: Models drawn side by side in the fan charts; more would make each panel too narrow to read.
MAX_FAN_MODELS = 6

FORECASTS_PNG = "forecasts.png"
MASE_PNG = "mase_by_model.png"
FANS_PNG = "fan_charts.png"
CALIBRATION_PNG = "calibration.png"
PIT_PNG = "pit_histograms.png"
REPORT_MD = "report.md"

#: Bins of the PIT histograms: ten, so each bar should hold 10 % of the steps.
PIT_BINS = 10

# Use a log scale for MASE once values spread over more than this factor, so
# one coin with MASE 300 does not flatten every box at the bottom of the plot.
_LOG_SCALE_SPREAD = 30.0


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
        rows.append({
            "model": row["model"],
            "level": f"{level_label(row['level'])}%",
            "windows": str(row["windows"]),
            "coverage": _number(row["coverage"], 2),
            "naive cov.": _number(row["naive_coverage"], 2),
            "log width": _number(row["mean_width"], 3),
            "width vs naive": _ratio(row["width_vs_naive"]),
            "Winkler vs naive": _ratio(row["winkler_vs_naive"]),
            "CRPS vs naive": _ratio(row["crps_vs_naive"]),
        })
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
        rows.append({
            "model": row["model"],
            "loss": row["loss"],
            "origins": str(row["origins"]),
            "vs naive": _ratio(row["ratio"]),
            "DM-HLN": _number(row["statistic"], 2),
            "p": _p(row["p_value"]),
            "coins better": better,
            "sign p (optimistic)": _p(row["sign_p_optimistic"]),
            "note": row["note"] or "",
        })
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
        rows.append({
            "model": row["model"],
            "coins": str(row["coins"]),
            "windows": str(row["windows"]),
            "failed": str(row["failed"]),
            "median MASE": _number(row["median_mase"]),
            "mean MASE": _number(row["mean_mase"]),
            "median sMAPE": _number(row["median_smape"], 2),
            "dir. accuracy": _number(row["mean_directional_accuracy"], 2),
            "beats naive": beats,
        })
    return rows


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


def _plot_coins(run: BacktestRun, requested: list[str] | None) -> tuple[list[str], list[str]]:
    """The coins to plot, and the requested ones left out because none of their windows succeeded."""
    lengths: dict[str, int] = {}
    for record in run.ok:
        lengths[record["coin"]] = record.get("n_points") or 0
    if requested is None:
        ranked = sorted(lengths, key=lambda coin: -lengths[coin])  # stable: ties keep run order
        return ranked[:DEFAULT_PLOT_COINS], []
    known = list(dict.fromkeys([*run.coins, *(r["coin"] for r in run.records)]))
    wanted = list(dict.fromkeys(normalize_name(coin) for coin in requested))
    unknown = [coin for coin in wanted if coin not in known]
    if unknown:
        listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
        raise InvalidParameterError(
            f"cannot plot {', '.join(map(repr, unknown))}: not in this backtest; choose from: {listed}")
    skipped = [coin for coin in wanted if coin not in lengths]
    for coin in skipped:
        log.warning("not plotting %s: none of its backtest windows succeeded", coin)
    return [coin for coin in wanted if coin in lengths], skipped


def _history(run: BacktestRun) -> Any:
    """A loader over the run's data, or None when it is gone or differs from what the run read."""
    from .data_loader import CryptoLoader

    try:
        loader = CryptoLoader(run.data_path, **run.data_filters)
        if run.data_hash and loader.data_hash() != run.data_hash:
            log.warning("the data at %s changed since the backtest; plotting without the price history",
                        run.data_path)
            return None
    except (CryptoMLError, OSError) as exc:
        log.warning("cannot read the backtest's data for the plots (%s); plotting without the price history", exc)
        return None
    return loader


def _coin_prices(loader: Any, coin: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The coin's dates and prices, or ``(None, None)`` if it cannot be read."""
    if loader is None:
        return None, None
    try:
        frame = loader.get_df(coin)
    except (CryptoMLError, OSError) as exc:
        log.warning("cannot read %s for its plot: %s", coin, exc)
        return None, None
    return frame["Date"].to_numpy(), frame["Close"].to_numpy(dtype=np.float64)


def _model_colors(models: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    # The benchmark is always grey, so it reads the same in every report.
    others = [m for m in models if m != BENCHMARK]
    colors = {model: palette(index % 10) for index, model in enumerate(others)}
    colors[BENCHMARK] = (0.45, 0.45, 0.45, 1.0)
    return colors


def _x(dates: np.ndarray | None, index: int) -> Any:
    """Where day ``index`` of a coin goes on the x axis: its date, or the index itself without dates."""
    return dates[index] if dates is not None else index


def _actual_line(records: list[dict[str, Any]], loader: Any, coin: str, tail: int
                 ) -> tuple[np.ndarray | None, list[Any], list[float]]:
    """The coin's actual prices to draw: ``(dates or None, xs, prices)``.

    From the data when it can be read (with ``tail`` days before the first
    origin), else from the prices the records carry, on a day-index axis.
    """
    dates, prices = _coin_prices(loader, coin)
    first = min(r["cutoff"] for r in records)
    end = max(r["cutoff"] + len(r["actual"]) for r in records)
    if prices is not None and len(prices) >= end:
        start = max(0, first - tail)
        return dates, list(dates[start:end]), prices[start:end].tolist()
    seen: dict[int, float] = {}
    for r in records:
        seen[r["cutoff"] - 1] = r["last_value"]
        seen.update({r["cutoff"] + i: value for i, value in enumerate(r["actual"])})
    days = sorted(seen)
    return None, days, [seen[d] for d in days]


def _plot_forecasts(run: BacktestRun, coins: list[str], path: Path, loader: Any = None) -> None:
    from matplotlib.figure import Figure

    rows = max(len(coins), 1)
    figure = Figure(figsize=(11, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, 1, squeeze=False)[:, 0]
    if not coins:
        axes[0].text(0.5, 0.5, "no coin has a successful backtest window", ha="center", va="center")
        axes[0].set_axis_off()
        figure.savefig(path, dpi=110)
        return
    colors = _model_colors(run.models)
    mean_mase = {(r["coin"], r["model"]): r["mean_mase"] for r in run.per_coin().to_dict("records")}
    tail = max(3 * run.horizon, 30)
    for ax, coin in zip(axes, coins, strict=True):
        records = [r for r in run.ok if r["coin"] == coin]
        dates, xs, actual = _actual_line(records, loader, coin, tail)
        ax.plot(xs, actual, color="black", linewidth=1.4, label="actual")
        if dates is None:
            ax.set_xlabel("day index")
        labelled: set[str] = set()
        for r in records:
            model = r["model"]
            xs = [_x(dates, r["cutoff"] - 1 + i) for i in range(len(r["forecast"]) + 1)]
            label = None
            if model not in labelled:
                labelled.add(model)
                label = f"{model} (MASE {_number(mean_mase.get((coin, model)), 2)})"
            ax.plot(xs, [r["last_value"], *r["forecast"]], color=colors.get(model), linewidth=1.1,
                    linestyle="--" if model == BENCHMARK else "-", label=label)
        for cutoff in sorted({r["cutoff"] for r in records}):
            ax.axvline(_x(dates, cutoff - 1), color="0.8", linewidth=0.8, linestyle=":")
        ax.set_title(f"{coin}: {len({r['window'] for r in records})} windows of {run.horizon} days")
        ax.set_ylabel("price")
        ax.legend(loc="upper left", fontsize="small", ncol=2)
        ax.grid(alpha=0.3)
    figure.savefig(path, dpi=110)


def _plot_mase(run: BacktestRun, path: Path) -> None:
    from matplotlib.figure import Figure

    per_coin = run.per_coin()
    models = [m for m in run.models if m in set(per_coin["model"])]
    values = [per_coin.loc[per_coin["model"] == m, "mean_mase"].dropna().to_numpy() for m in models]
    keep = [i for i, v in enumerate(values) if v.size]
    models, values = [models[i] for i in keep], [values[i] for i in keep]
    figure = Figure(figsize=(max(6.0, 1.4 * len(models) + 2), 5), layout="constrained")
    ax = figure.subplots()
    if not models:
        ax.text(0.5, 0.5, "no MASE values: no successful windows", ha="center", va="center")
        ax.set_axis_off()
        figure.savefig(path, dpi=110)
        return
    colors = _model_colors(run.models)
    positions = np.arange(1, len(models) + 1)
    ax.boxplot(values, positions=positions, widths=0.6, showfliers=False, medianprops={"color": "black"})
    rng = np.random.default_rng(0)  # fixed jitter: the same run draws the same picture
    for position, model, points in zip(positions, models, values, strict=True):
        jitter = rng.uniform(-0.18, 0.18, size=points.size)
        ax.scatter(position + jitter, points, s=12, alpha=0.6, color=colors.get(model), zorder=3)
    every = np.concatenate(values)
    if np.all(every > 0) and every.max() / every.min() > _LOG_SCALE_SPREAD:
        ax.set_yscale("log")
    ax.axhline(1.0, color="red", linestyle="--", linewidth=1, label="MASE = 1: a typical one-day move")
    ax.set_xticks(positions, [f"{m}\n({len(v)} coins)" for m, v in zip(models, values, strict=True)])
    ax.set_ylabel(f"mean MASE per coin, {run.horizon}-day forecasts")
    ax.set_title("Scaled error per coin (lower is better; compare with naive)")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(axis="y", alpha=0.3)
    figure.savefig(path, dpi=110)


def _plot_fans(run: BacktestRun, coins: list[str], path: Path, loader: Any) -> None:
    """One panel per (coin, model): every window's intervals as shaded bands, the widest palest, and the actual."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    models = [m for m in run.models if any(r["model"] == m for r in run.ok)][:MAX_FAN_MODELS]
    rows, columns = max(len(coins), 1), max(len(models), 1)
    figure = Figure(figsize=(max(6.0, 3.4 * columns), 3.0 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    if not coins or not models:
        axes[0][0].text(0.5, 0.5, "no coin has a successful backtest window", ha="center", va="center")
        for ax in axes.flat:
            ax.set_axis_off()
        figure.savefig(path, dpi=110)
        return
    colors = _model_colors(run.models)
    levels = sorted(run.levels, reverse=True)  # widest first, so narrower bands are drawn on top
    shades = {level: 0.18 + 0.5 * index / max(len(levels), 1) for index, level in enumerate(levels)}
    for row, coin in enumerate(coins):
        records = [r for r in run.ok if r["coin"] == coin]
        dates, xs, actual = _actual_line(records, loader, coin, tail=2 * run.horizon)
        for column, model in enumerate(models):
            ax = axes[row][column]
            for r in (r for r in records if r["model"] == model):
                steps = [_x(dates, r["cutoff"] + i) for i in range(len(r["forecast"]))]
                for level in levels:
                    label = level_label(level)
                    lower, upper = r.get(f"lo_{label}"), r.get(f"hi_{label}")
                    if lower and upper:
                        ax.fill_between(steps, lower, upper, color=colors.get(model), alpha=shades[level],
                                        linewidth=0)
                ax.plot(steps, r["forecast"], color=colors.get(model), linewidth=0.9)
            ax.plot(xs, actual, color="black", linewidth=1.0)
            if min(actual) > 0 and max(actual) / min(actual) > _LOG_SCALE_SPREAD:
                ax.set_yscale("log")  # bands are made on log prices, and years of crypto can span decades
            ax.set_title(f"{coin}: {model}", fontsize="medium")
            ax.tick_params(labelsize="small")
            if dates is not None:
                locator = AutoDateLocator(maxticks=4)
                ax.xaxis.set_major_locator(locator)
                ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
            ax.grid(alpha=0.3)
    bands = " and ".join(f"{level_label(level)}%" for level in sorted(run.levels))
    figure.suptitle(f"{bands} intervals of every window (shaded, widest palest) against the actual price (black)")
    figure.savefig(path, dpi=110)


def _plot_calibration(run: BacktestRun, path: Path) -> None:
    """Nominal against observed coverage for each model; a calibrated model follows the diagonal."""
    from matplotlib.figure import Figure

    table = run.calibration()
    figure = Figure(figsize=(6.5, 6), layout="constrained")
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=1, label="calibrated")
    colors = _model_colors(run.models)
    for model in [m for m in run.models if m in set(table["model"])]:
        part = table[table["model"] == model]
        ax.plot(part["nominal"], part["observed"], marker="o", markersize=4, color=colors.get(model),
                linestyle="--" if model == BENCHMARK else "-", label=model)
    if table.empty:
        ax.text(0.5, 0.5, "no interval scores: no successful windows", ha="center", va="center")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal coverage (interval level)")
    ax.set_ylabel("observed coverage (share of actual prices inside)")
    ax.set_title("Calibration: above the diagonal is too wide, below too narrow")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(alpha=0.3)
    figure.savefig(path, dpi=110)


def _plot_pit(run: BacktestRun, path: Path) -> None:
    """One PIT histogram per model; a calibrated model's bars are level at 1."""
    from matplotlib.figure import Figure

    values = {m: [v for r in run.ok if r["model"] == m for v in (r.get("pit") or [])] for m in run.models}
    models = [m for m in run.models if values[m]]
    columns = min(max(len(models), 1), 4)
    rows = max(1, -(-len(models) // columns))
    figure = Figure(figsize=(3.2 * columns + 0.5, 2.8 * rows), layout="constrained")
    axes = list(figure.subplots(rows, columns, squeeze=False).flat)
    colors = _model_colors(run.models)
    for ax in axes:
        ax.set_axis_off()
    if not models:
        axes[0].text(0.5, 0.5, "no PIT values: no successful windows", ha="center", va="center")
    for ax, model in zip(axes, models, strict=False):
        ax.set_axis_on()
        ax.hist(values[model], bins=PIT_BINS, range=(0, 1), density=True, color=colors.get(model), alpha=0.8,
                edgecolor="white")
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_title(f"{model} ({len(values[model])} steps)", fontsize="medium")
        ax.set_xlabel("PIT")
    figure.suptitle("PIT histograms: flat is calibrated, U-shaped too narrow, hump-shaped too wide")
    figure.savefig(path, dpi=110)


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
    cuts = ", ".join(f"{r['regime']} {r['volatility_from']:.4f}-{r['volatility_to']:.4f}"
                     for r in edges.to_dict("records"))
    return pd.DataFrame(rows).to_markdown(index=False) + f"\n\nDaily log-return volatility ranges: {cuts}."


def _interval_sections(run: BacktestRun) -> list[str]:
    import pandas as pd

    levels = ", ".join(f"{level_label(level)}%" for level in run.levels)
    lines = ["## Prediction intervals", "",
             f"Central {levels} intervals, scored on log prices so every coin weighs alike. Coverage is the share "
             "of actual prices inside the interval (it should match the level); the width is the mean log "
             "width (0.10 is about 10 % of the price); the Winkler score is the width plus a penalty of "
             "2/alpha times any miss; the CRPS is estimated as twice the mean pinball loss over a fixed grid of "
             "quantiles. \"vs naive\" is the model's total over naive's on the same coins and windows: below 1 "
             "is better. Naive's interval is the last price times the empirical quantiles of all past k-day "
             "log returns.", "", pd.DataFrame(interval_rows(run)).to_markdown(index=False, disable_numparse=True), ""]
    regimes = _regime_table(run)
    if regimes:
        lines += ["## Coverage by volatility regime", "",
                  "Origins split into terciles of the realised volatility of the 30 daily log returns before them "
                  "(cut points from naive's windows, so every model is split alike). Coverage, with the number of "
                  "windows in brackets:", "", regimes, ""]
    lines += ["## Skill or luck", "",
              "For each loss, the difference from naive is averaged over the coins at each origin, and the "
              "series of origin means is tested with Diebold-Mariano (HAC variance for overlapping forecasts, "
              "Harvey-Leybourne-Newbold small-sample correction, Student-t). The MASE stands in for the MAE, "
              "being scale-free. \"coins better\" counts coins whose mean loss is below naive's; its sign-test "
              "p-value is optimistic, because coins move together and are not independent.", ""]
    rows = significance_rows(run)
    lines += [pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) if rows else "Only the benchmark ran.",
              ""]
    lines += ["## Verdicts", "",
              f"Calibrated means every level's coverage within {CALIBRATION_TOLERANCE * 100:g} points of nominal; "
              "sharper "
              f"means a Winkler score below naive's with p < {SIGNIFICANCE} at every level; worse means a Winkler "
              f"score above naive's with p < {SIGNIFICANCE} at some level.", ""]
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
        *([f"**Quick mode: {QUICK_WINDOWS} windows, indicative only.** Too few origins to tell skill from luck; "
           "run without --quick (30 windows) before judging a model.", ""] if run.quick else []),
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
            lines.append(f"- **{row['model']}** has a lower mean MASE than naive on {row['beats_naive_coins']} of "
                         f"{row['compared_coins']} coins ({row['beats_naive_share']:.0%}): it {verdict} the random "
                         "walk on most coins.")
        else:
            lines.append(f"- **{row['model']}** could not be compared with naive on any coin.")
    if len(summary) == 1:
        lines.append("- Only the benchmark ran.")
    lines += ["", "A coin counts when the model's mean MASE over the windows both succeeded on is lower than "
              "naive's over the same windows.", ""]
    lines += _interval_sections(run)
    lines += ["## Error by forecast step", ""]
    by_step = run.by_horizon()
    if not by_step.empty:
        table = by_step.pivot(index="step", columns="model", values="mean_scaled_error")
        table = table[[m for m in run.models if m in table.columns]]
        table.index = table.index.astype(str)  # so floatfmt leaves the step numbers alone
        lines += ["Mean absolute error at each step after the origin, in units of the coin's typical one-day "
                  "move (the MASE scale), over every coin and window:", "",
                  table.reset_index().to_markdown(index=False, floatfmt=".3f"), ""]
    else:
        lines += ["No successful windows.", ""]
    lines += ["## Plots", "", f"![Forecasts and actual prices]({FORECASTS_PNG})", "",
              f"Forecasts per window and model for {', '.join(coins) or 'no coin'}; the black line is the actual "
              "price, dotted lines mark the origins.", ""]
    if skipped:
        lines += [f"Not plotted (no successful window): {', '.join(skipped)}.", ""]
    lines += [f"![Mean MASE per coin by model]({MASE_PNG})", "",
              "Each dot is one coin's mean MASE; the dashed line is MASE = 1. The random walk's own multi-day "
              "forecasts usually sit above it, so compare each model with the naive box.", "",
              f"![Fan charts of the forecast intervals]({FANS_PNG})", "",
              "Every window's intervals as shaded bands (the widest palest) with the point forecast, against the "
              f"actual price in black; one row per plotted coin, one column per model (at most {MAX_FAN_MODELS}).",
              "", f"![Calibration: nominal against observed coverage]({CALIBRATION_PNG})", "",
              "Observed coverage at every level of the grid, pooled over coins and windows; a calibrated model "
              "follows the dashed diagonal.", "", f"![PIT histograms]({PIT_PNG})", "",
              "The forecast distribution's CDF at each actual price, interpolated from the quantile grid: flat "
              "bars are calibrated, a U shape means intervals too narrow, a hump too wide, a slope a biased "
              "point.", ""]
    if run.failed:
        lines += ["## Failures", "", f"{len(run.failed)} of {len(run.records)} records failed.", ""]
        failures = pd.DataFrame([{"coin": r["coin"], "model": r["model"],
                                  "window": "all" if r.get("window") is None else str(r["window"]),
                                  "error": f"{r['error_type']}: {r['error']}"} for r in run.failed])
        lines += [failures.to_markdown(index=False), ""]
    lines += ["## Manifest", "",
              f"- command: `{run.command or 'CryptoManager.backtest (Python API)'}`",
              f"- data: `{run.data_path}`, sha256 `{run.data_hash or '-'}`",
              f"- seeds: {json.dumps(seeds) if seeds else 'none (every model is deterministic)'}",
              f"- versions: {', '.join(f'{k} {v}' for k, v in manifest['versions'].items() if v)}",
              "", "```json", json.dumps(manifest, indent=2), "```", ""]
    return "\n".join(lines)
