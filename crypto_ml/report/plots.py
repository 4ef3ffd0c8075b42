"""The report's PNG figures: forecasts, MASE per model, fan charts, calibration and PIT histograms.

matplotlib is imported inside the plotting functions only, so neither ``import
crypto_ml`` nor a worker pays for it. Figures are drawn on
``matplotlib.figure.Figure`` with the Agg renderer, without pyplot, so writing a
report never changes the backend of a notebook or GUI that called it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..data import normalize_name
from ..evaluation import BENCHMARK, BacktestRun
from ..exceptions import CryptoMLError, InvalidParameterError
from ..models.base import level_label
from .rows import _number

__all__ = ["DEFAULT_PLOT_COINS", "MAX_FAN_MODELS"]

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

#: Bins of the PIT histograms: ten, so each bar should hold 10 % of the steps.
PIT_BINS = 10

# Use a log scale for MASE once values spread over more than this factor, so
# one coin with MASE 300 does not flatten every box at the bottom of the plot.
_LOG_SCALE_SPREAD = 30.0


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
            f"cannot plot {', '.join(map(repr, unknown))}: not in this backtest; choose from: {listed}"
        )
    skipped = [coin for coin in wanted if coin not in lengths]
    for coin in skipped:
        log.warning("not plotting %s: none of its backtest windows succeeded", coin)
    return [coin for coin in wanted if coin in lengths], skipped


def _history(run: BacktestRun) -> Any:
    """A loader over the run's data, or None when it is gone or differs from what the run read."""
    from ..data import CryptoLoader

    try:
        loader = CryptoLoader(run.data_path, **run.data_filters)
        if run.data_hash and loader.data_hash() != run.data_hash:
            log.warning("the data at %s changed since the backtest; plotting without the price history", run.data_path)
            return None
    except (CryptoMLError, OSError) as exc:
        log.warning("cannot read the backtest's data for the plots (%s); plotting without the price history", exc)
        return None
    return loader


def _coin_prices(loader: Any, coin: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The coin's dates and prices, or None if it cannot be read."""
    if loader is None:
        return None
    try:
        frame = loader.get_df(coin)
    except (CryptoMLError, OSError) as exc:
        log.warning("cannot read %s for its plot: %s", coin, exc)
        return None
    return frame["Date"].to_numpy(), frame["Close"].to_numpy(dtype=np.float64)


def _model_colors(models: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    # The benchmark is always grey, so it reads the same in every report; tab10's own grey (index 7) is left out
    # so that no other model is drawn in the benchmark's colour.
    hues = [palette(index) for index in range(10) if index != 7]
    others = [m for m in models if m != BENCHMARK]
    colors = {model: hues[index % len(hues)] for index, model in enumerate(others)}
    colors[BENCHMARK] = (0.45, 0.45, 0.45, 1.0)
    return colors


def _x(dates: np.ndarray | None, index: int) -> Any:
    """Where day ``index`` of a coin goes on the x axis: its date, or the index itself without dates."""
    return dates[index] if dates is not None else index


def _actual_line(
    records: list[dict[str, Any]], loader: Any, coin: str, tail: int
) -> tuple[np.ndarray | None, list[Any], list[float]]:
    """The coin's actual prices to draw: ``(dates or None, xs, prices)``.

    From the data when it can be read (with ``tail`` days before the first
    origin), else from the prices the records carry, on a day-index axis.
    """
    data = _coin_prices(loader, coin)
    first = min(r["cutoff"] for r in records)
    end = max(r["cutoff"] + len(r["actual"]) for r in records)
    if data is not None and len(data[1]) >= end:
        dates, prices = data
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
            ax.plot(
                xs,
                [r["last_value"], *r["forecast"]],
                color=colors.get(model),
                linewidth=1.1,
                linestyle="--" if model == BENCHMARK else "-",
                label=label,
            )
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
                        ax.fill_between(steps, lower, upper, color=colors.get(model), alpha=shades[level], linewidth=0)
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
        ax.plot(
            part["nominal"],
            part["observed"],
            marker="o",
            markersize=4,
            color=colors.get(model),
            linestyle="--" if model == BENCHMARK else "-",
            label=model,
        )
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
        ax.hist(
            values[model],
            bins=PIT_BINS,
            range=(0, 1),
            density=True,
            color=colors.get(model),
            alpha=0.8,
            edgecolor="white",
        )
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_title(f"{model} ({len(values[model])} steps)", fontsize="medium")
        ax.set_xlabel("PIT")
    figure.suptitle("PIT histograms: flat is calibrated, U-shaped too narrow, hump-shaped too wide")
    figure.savefig(path, dpi=110)
