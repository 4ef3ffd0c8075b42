"""A backtest report for people: PNG plots and a Markdown page with the tables and the manifest.

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
from .evaluation import BENCHMARK, BacktestRun
from .exceptions import CryptoMLError, InvalidParameterError

__all__ = ["write_report", "summary_rows", "DEFAULT_PLOT_COINS"]

log = logging.getLogger(__name__)

#: Coins plotted when none are chosen: the longest ones, which have the most history to show.
DEFAULT_PLOT_COINS = 3

FORECASTS_PNG = "forecasts.png"
MASE_PNG = "mase_by_model.png"
REPORT_MD = "report.md"

# Use a log scale for MASE once values spread over more than this factor, so
# one coin with MASE 300 does not flatten every box at the bottom of the plot.
_LOG_SCALE_SPREAD = 30.0


def _number(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


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
    per coin, with a line at MASE = 1. The page holds the aggregate table, the
    share of coins where each model beats the random walk, the error by
    forecast step, the failures and the run's manifest.

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
    _plot_forecasts(run, coins, directory / FORECASTS_PNG)
    _plot_mase(run, directory / MASE_PNG)
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


def _plot_forecasts(run: BacktestRun, coins: list[str], path: Path) -> None:
    from matplotlib.figure import Figure

    rows = max(len(coins), 1)
    figure = Figure(figsize=(11, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, 1, squeeze=False)[:, 0]
    if not coins:
        axes[0].text(0.5, 0.5, "no coin has a successful backtest window", ha="center", va="center")
        axes[0].set_axis_off()
        figure.savefig(path, dpi=110)
        return
    loader = _history(run)
    colors = _model_colors(run.models)
    mean_mase = {(r["coin"], r["model"]): r["mean_mase"] for r in run.per_coin().to_dict("records")}
    tail = max(3 * run.horizon, 30)
    for ax, coin in zip(axes, coins, strict=True):
        records = [r for r in run.ok if r["coin"] == coin]
        dates, prices = _coin_prices(loader, coin)
        first = min(r["cutoff"] for r in records)
        end = max(r["cutoff"] + len(r["actual"]) for r in records)
        if prices is not None and len(prices) >= end:
            start = max(0, first - tail)
            ax.plot(dates[start:end], prices[start:end], color="black", linewidth=1.4, label="actual")
        else:
            # No data to read: draw the actual prices the records carry, on a day-index axis.
            dates = None
            seen: dict[int, float] = {}
            for r in records:
                seen[r["cutoff"] - 1] = r["last_value"]
                seen.update({r["cutoff"] + i: value for i, value in enumerate(r["actual"])})
            days = sorted(seen)
            ax.plot(days, [seen[d] for d in days], color="black", linewidth=1.4, label="actual")
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


def _markdown(run: BacktestRun, coins: list[str], skipped: list[str]) -> str:
    import pandas as pd

    manifest = run.manifest()
    seeds = manifest["seeds"]
    n_coins = len(run.coins) or len({r["coin"] for r in run.records})
    lines = [
        f"# Backtest: {', '.join(run.models)} on {n_coins} coins",
        "",
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
              "naive's over the same windows.", "", "## Error by forecast step", ""]
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
              "forecasts usually sit above it, so compare each model with the naive box.", ""]
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
