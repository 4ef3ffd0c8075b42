"""The ``crypto-ml`` command line.

Exit codes: 0 when every coin succeeded, 1 when any coin or file failed (each
is printed with its reason), 2 when the request itself is wrong (unknown
model, bad horizon or levels, missing data path, engine unavailable, a model
whose optional extra is not installed here).
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from .config import get_settings
from .engines import ENGINE_NAMES

EXIT_OK, EXIT_FAILURES, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("crypto_ml")


def _setup_logging(level: str | None, log_file: Path | None) -> None:
    settings = get_settings()
    handler: logging.Handler
    target = log_file or settings.log_file
    handler = logging.FileHandler(target, encoding="utf-8") if target else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel((level or settings.log_level).upper())
    log.propagate = False


def _console(stderr: bool = False):
    from rich.console import Console

    # Wide enough that piped output (CI logs, files) does not wrap coin rows.
    return Console(stderr=stderr, width=None if sys.stdout.isatty() else 160)


def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``("C=100", "window=30", "gamma=scale")`` -> ``{"C": 100, "window": 30, "gamma": "scale"}``."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE, e.g. --param window=30", param_hint="--param")
        try:
            params[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            params[key.strip()] = raw
    return params


def _split_coins(value: str | None) -> list[str] | None:
    if value is None:
        return None
    coins = [c.strip() for c in value.split(",") if c.strip()]
    if not coins:
        raise click.BadParameter("give at least one coin name, e.g. --coins bitcoin,ethereum", param_hint="--coins")
    return coins


class _Group(click.Group):
    """Turns crypto_ml's own errors into a one-line message and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from .exceptions import CryptoMLError

        try:
            return super().invoke(ctx)
        except CryptoMLError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(EXIT_USAGE)


data_option = click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of per-coin CSVs, a long-format .csv/.parquet file, or a price store "
    "[env CRYPTO_ML_DATA_DIR; default: bundled sample].",
)


def _compose(*decorators):
    """Several click options as one decorator, so commands that share them declare them once."""

    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


engine_option = click.option(
    "--engine",
    "-e",
    type=click.Choice(ENGINE_NAMES, case_sensitive=False),
    default=None,
    help="Where tasks run [env CRYPTO_ML_ENGINE; default auto: celery if a worker answers, else local].",
)
dispatch_options = _compose(
    click.option(
        "--workers", type=click.IntRange(min=1), default=None, help="Local engine processes [default: cores]."
    ),
    click.option(
        "--batch-size",
        type=click.IntRange(min=1),
        default=None,
        help="Series per task [env CRYPTO_ML_BATCH_SIZE; default: about four tasks per process, "
        "one coin per task for deep models].",
    ),
    click.option(
        "--transfer",
        type=click.Choice(["auto", "inline", "reference"], case_sensitive=False),
        default=None,
        help="Send prices inside tasks, or let workers read the dataset by path and hash "
        "[env CRYPTO_ML_TRANSFER; default auto].",
    ),
    click.option(
        "--progress/--no-progress", default=None, help="Progress bar on stderr [default: when it is a terminal]."
    ),
)
max_points_option = click.option(
    "--max-points", type=click.IntRange(min=1), default=None, help="Use only the last N prices of each coin."
)
date_options = _compose(
    max_points_option,
    click.option("--from-date", default=None, help="Ignore prices before this date (YYYY-MM-DD)."),
    click.option("--to-date", default=None, help="Ignore prices after this date (YYYY-MM-DD)."),
)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crypto-ml")
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Library log level [env CRYPTO_ML_LOG_LEVEL; default WARNING].",
)
@click.option(
    "--log-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Write logs to this file instead of stderr [env CRYPTO_ML_LOG_FILE].",
)
def cli(log_level: str | None, log_file: Path | None) -> None:
    """Horizontally scalable cryptocurrency price forecasting."""
    _setup_logging(log_level, log_file)


@cli.command()
@click.option(
    "--model", "-m", default=None, help="Model name; see `crypto-ml models` [env CRYPTO_ML_MODEL; default ewma]."
)
@click.option("--coins", "-c", default=None, help="Comma-separated coin names [default: every coin].")
@click.option("--horizon", "-H", type=int, default=10, show_default=True, help="Days to forecast.")
@click.option(
    "--levels",
    "-l",
    default=None,
    metavar="L1,L2,...",
    help="Prediction interval levels in percent, e.g. 50,80,95 [default: 80,95].",
)
@data_option
@engine_option
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Write results to FILE (.csv, .json or .parquet), with a manifest beside it.",
)
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Model parameter; repeatable.")
@date_options
@dispatch_options
@click.option("--quiet", "-q", is_flag=True, help="Print only failures and the summary.")
@click.option(
    "--from-store", is_flag=True, help="Forecast with stored models from `crypto-ml train` instead of fitting."
)
@click.option(
    "--store", type=click.Path(path_type=Path), default=None, help="Model store directory [env CRYPTO_ML_MODEL_STORE]."
)
def forecast(
    model,
    coins,
    horizon,
    levels,
    data_path,
    engine,
    out,
    params,
    workers,
    batch_size,
    transfer,
    max_points,
    from_date,
    to_date,
    progress,
    quiet,
    from_store,
    store,
) -> None:
    """Forecast every coin (or --coins) HORIZON days ahead, with prediction intervals."""
    from .data import CryptoLoader
    from .exceptions import InvalidParameterError
    from .manager import CryptoManager
    from .models.base import validate_levels
    from .models.registry import resolve_name
    from .results import OUTPUT_FORMATS

    if out is not None and out.suffix.lower() not in OUTPUT_FORMATS:
        raise InvalidParameterError(
            f"cannot write results to {out.name!r}: use a file ending in {', '.join(OUTPUT_FORMATS)}"
        )
    level_list = validate_levels(levels)
    model, why = _chosen_model(model)
    resolve_name(model)  # an unknown name is exit 2 before the model line is printed
    _console(stderr=True).print(f"model {model} ({why})", highlight=False, markup=False)
    loader = CryptoLoader(data_path, max_points=max_points, from_date=from_date, to_date=to_date)
    manager = CryptoManager(loader, engine=engine, batch_size=batch_size, workers=workers)
    run = manager.send_tasks(
        model,
        _split_coins(coins),
        horizon,
        _parse_params(params),
        levels=level_list,
        verbose=False,
        progress=progress,
        transfer=transfer,
        from_store=from_store,
        store=store,
    )
    if out is not None:
        run.data_hash = loader.data_hash()
        run.write(out)
    _print_run(run, quiet=quiet, out=out)
    sys.exit(EXIT_OK if not run.failed else EXIT_FAILURES)


#: Why the default model is the default, as `forecast` prints it.
DEFAULT_MODEL_REASON = "calibrated intervals in the README's backtest"


def _chosen_model(flag: str | None) -> tuple[str, str]:
    """The model to forecast with and where it came from: --model, CRYPTO_ML_MODEL, or the default."""
    if flag is not None:
        return flag, "--model"
    settings = get_settings()
    if "model" in settings.model_fields_set:
        return settings.model, "CRYPTO_ML_MODEL; choose another with --model"
    return settings.model, f"the default, CRYPTO_ML_MODEL: {DEFAULT_MODEL_REASON}; choose another with --model"


def _price(value: float) -> str:
    """A price for the terminal: thousands separated and whole above 1,000, four significant digits below
    (files keep full precision)."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _print_run(run, *, quiet: bool, out: Path | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from .models.base import level_label

    console = _console()
    if not quiet:
        last_day = f"day {run.horizon}"
        # One range column per level, for the last day: where the uncertainty is widest and matters most.
        ranges = [f"{level_label(level)}% range" for level in run.levels]
        table = Table(
            title=f"{run.model} forecast, {run.horizon} days ahead; ranges are {last_day}'s central "
            "prediction intervals",
            title_justify="left",
        )
        for header in ("coin", "status", "last date", "last price", "day 1", last_day, *ranges, "reason"):
            table.add_column(
                header, justify="right" if header.startswith(("last p", "day")) or header.endswith("range") else "left"
            )
        for r in run:
            if r.ok:
                bounds = []
                for level in run.levels:
                    try:
                        lower, upper = r.interval(level)
                        bounds.append(f"{_price(lower[-1])}–{_price(upper[-1])}")
                    except KeyError:
                        bounds.append("")
                table.add_row(
                    r.coin,
                    "ok",
                    r.last_date or "",
                    _price(r.last_price),
                    _price(r.forecast[0]),
                    _price(r.forecast[-1]),
                    *bounds,
                    "",
                )
            else:
                table.add_row(
                    r.coin,
                    "[red]failed[/red]",
                    r.last_date or "",
                    "",
                    "",
                    "",
                    *[""] * len(ranges),
                    escape(f"{r.error_type}: {r.error}"),
                )  # errors may hold [brackets]: crypto-ml[deep]
        console.print(table)
    err = _console(stderr=True)
    for r in run.failed:
        err.print(f"[red]failed[/red] {escape(f'{r.coin}: {r.error_type}: {r.error}')}", highlight=False, markup=True)
    summary = (
        f"{len(run.ok)} of {len(run)} coins forecast with {run.model} on the {run.engine} engine "
        f"in {run.seconds:.2f} s ({run.engine_reason})"
    )
    if run.failed:
        summary += f"; {len(run.failed)} failed"
    if out is not None:
        summary += f"; results in {out}"
    err.print(summary, highlight=False, markup=False)


@cli.command()
@click.option("--model", "-m", default="lstm", show_default=True, help="Model name; see `crypto-ml models`.")
@click.option("--coins", "-c", default=None, help="Comma-separated coin names [default: every coin].")
@data_option
@engine_option
@click.option("--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Model parameter; repeatable.")
@click.option(
    "--store", type=click.Path(path_type=Path), default=None, help="Model store directory [env CRYPTO_ML_MODEL_STORE]."
)
@max_points_option
@dispatch_options
def train(model, coins, data_path, engine, params, store, workers, batch_size, transfer, max_points, progress) -> None:
    """Train a model per coin and save it to the model store, for `forecast --from-store`."""
    from rich.markup import escape
    from rich.table import Table

    from .data import CryptoLoader
    from .manager import CryptoManager

    loader = CryptoLoader(data_path, max_points=max_points)
    manager = CryptoManager(loader, engine=engine, batch_size=batch_size, workers=workers)
    run = manager.train(
        model, _split_coins(coins), _parse_params(params), store=store, progress=progress, transfer=transfer
    )
    table = Table(title=f"{run.model} models stored in {run.store}", title_justify="left")
    for header in ("coin", "status", "model id", "rows", "fit s", "metrics / reason"):
        table.add_column(header, justify="right" if header in ("rows", "fit s") else "left")
    for record in run.records:
        if record["status"] == "ok":
            metrics = dict(record["metrics"])
            seconds = metrics.pop("fit_seconds", None)
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
            table.add_row(
                record["coin"],
                "ok",
                record["model_id"],
                str(record["n_obs"]),
                f"{seconds:.2f}" if seconds is not None else "",
                shown,
            )
        else:
            table.add_row(
                record["coin"], "[red]failed[/red]", "", "", "", escape(f"{record['error_type']}: {record['error']}")
            )
    _console().print(table)
    err = _console(stderr=True)
    for record in run.failed:
        reason = escape(f"{record['coin']}: {record['error_type']}: {record['error']}")
        err.print(f"[red]failed[/red] {reason}", highlight=False)
    err.print(
        f"{len(run.ok)} of {len(run.records)} {run.model} models trained on the {run.engine} engine in "
        f"{run.seconds:.1f} s ({run.engine_reason})",
        highlight=False,
        markup=False,
    )
    sys.exit(EXIT_OK if not run.failed else EXIT_FAILURES)


@cli.command()
@click.option(
    "--models",
    "-m",
    default="naive,drift,ewma",
    show_default=True,
    help="Comma-separated model names; naive is always added, as the benchmark.",
)
@click.option("--horizon", "-H", type=int, default=10, show_default=True, help="Days each window forecasts.")
@click.option(
    "--windows",
    "-w",
    type=int,
    default=30,
    show_default=True,
    help="Rolling origins per coin; a short coin uses the ones that fit. About 30 are needed for the "
    "significance tests to mean anything.",
)
@click.option(
    "--quick", is_flag=True, help="Quick mode: 5 windows per coin, to check that a run works; indicative only."
)
@click.option(
    "--levels",
    default="80,95",
    show_default=True,
    help="Comma-separated interval levels (percent) to score; naive's empirical interval is the benchmark.",
)
@click.option(
    "--step",
    type=int,
    default=None,
    help="Days between origins [default: the horizon, so test periods do not overlap].",
)
@click.option("--coins", "-c", default=None, help="Comma-separated coin names [default: every coin].")
@data_option
@engine_option
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="MODEL.KEY=VALUE",
    help="Model parameter, e.g. svr_rbf.C=10; repeatable.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write one row per coin, model and window to FILE (.csv, .json or .parquet), with a manifest beside it.",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write report.md with PNG plots into this folder.",
)
@click.option(
    "--plot-coins", default=None, help="Comma-separated coins to plot in the report [default: the 3 longest]."
)
@date_options
@dispatch_options
@click.pass_context
def backtest(
    ctx,
    models,
    horizon,
    windows,
    quick,
    levels,
    step,
    coins,
    data_path,
    engine,
    params,
    out,
    report_dir,
    plot_coins,
    workers,
    batch_size,
    transfer,
    max_points,
    from_date,
    to_date,
    progress,
) -> None:
    """Walk-forward backtest: score each model's forecasts and intervals on every coin (or --coins) against naive."""
    from .data import CryptoLoader, normalize_name
    from .evaluation import QUICK_WINDOWS, check_output_path, validate_request
    from .exceptions import InvalidParameterError
    from .manager import CryptoManager
    from .models.base import validate_levels

    if quick:
        if ctx.get_parameter_source("windows") is not click.core.ParameterSource.DEFAULT and windows != QUICK_WINDOWS:
            raise click.BadParameter(
                f"--quick runs {QUICK_WINDOWS} windows; drop --windows {windows} or --quick", param_hint="--windows"
            )
        windows = QUICK_WINDOWS
    if out is not None:
        check_output_path(out)
    model_params = _parse_model_params(params)
    validate_request(models, horizon, windows, step, model_params)  # every bad value is exit 2 before any work
    level_list = validate_levels(levels)
    coin_list = _split_coins(coins)
    plot = _split_coins(plot_coins)
    if plot is not None and report_dir is None:
        raise click.BadParameter(
            "--plot-coins chooses the coins of a report; add --report DIR", param_hint="--plot-coins"
        )
    loader = CryptoLoader(data_path, max_points=max_points, from_date=from_date, to_date=to_date)
    if plot is not None:
        candidates = [normalize_name(c) for c in coin_list] if coin_list else loader.get_crypto_names()
        unknown = [c for c in plot if normalize_name(c) not in candidates]
        if unknown:
            raise InvalidParameterError(
                f"--plot-coins {', '.join(unknown)}: not among the coins backtested; "
                "pick coins from --coins or `crypto-ml data list`"
            )
    manager = CryptoManager(loader, engine=engine, batch_size=batch_size, workers=workers)
    run = manager.backtest(
        models, horizon, windows, step, coin_list, model_params, progress=progress, transfer=transfer, levels=level_list
    )
    run.command = _command_line(ctx)
    run.quick = quick
    if out is not None:
        run.write(out)
    report_path = None
    if report_dir is not None:
        from .report import write_report

        report_path = write_report(run, report_dir, plot_coins=plot)
    _print_backtest(run, out=out, report=report_path)
    sys.exit(EXIT_OK if not run.failed else EXIT_FAILURES)


def _parse_model_params(pairs: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``("svr_rbf.C=10", "linear.window=30")`` -> ``{"svr_rbf": {"C": 10}, "linear": {"window": 30}}``."""
    params: dict[str, dict[str, Any]] = {}
    for key, value in _parse_params(pairs).items():
        model, dot, name = key.partition(".")
        if not dot or not model or not name:
            raise click.BadParameter(
                f"{key!r} does not name its model; use MODEL.KEY=VALUE, e.g. --param svr_rbf.C=10", param_hint="--param"
            )
        params.setdefault(model, {})[name] = value
    return params


def _command_line(ctx: click.Context) -> str:
    """The command as it ran, every option spelled out (defaults included), for the manifest."""
    import shlex

    parts = ["crypto-ml", ctx.info_name or "backtest"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if not isinstance(param, click.Option) or value is None or value == ():
            continue
        if param.is_flag:
            if value is True:
                parts.append(param.opts[0])
            elif param.secondary_opts:
                parts.append(param.secondary_opts[0])
        elif param.multiple:
            for item in value:
                parts += [param.opts[0], str(item)]
        else:
            parts += [param.opts[0], str(value)]
    return shlex.join(parts)


def _print_backtest(run, *, out: Path | None, report: Path | None) -> None:
    from rich.markup import escape
    from rich.table import Table

    from .report import interval_rows, run_title, significance_rows, summary_rows, verdict_lines

    console = _console()
    for title, rows, left in (
        (
            f"{run_title(run)}: point forecasts against the random walk (naive)",
            summary_rows(run),
            ("model", "beats naive"),
        ),
        (
            "intervals: coverage against nominal, log width, Winkler score and CRPS relative to naive's empirical "
            "interval (below 1 is better)",
            interval_rows(run),
            ("model",),
        ),
        (
            "significance against naive: Diebold-Mariano (HLN) across origins, coins pooled per origin; "
            "the sign test across coins is optimistic (coins move together)",
            significance_rows(run),
            ("model", "loss", "note"),
        ),
    ):
        if not rows:
            continue
        table = Table(title=title, title_justify="left")
        for header in rows[0]:
            table.add_column(header, justify="left" if header in left else "right")
        for row in rows:
            table.add_row(*(escape(value) for value in row.values()))
        console.print(table)
    for line in verdict_lines(run):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    err = _console(stderr=True)
    # Identical failures of several models (a coin too short for any window) print once, naming the models.
    grouped: dict[tuple[Any, ...], list[str]] = {}
    for r in run.failed:
        grouped.setdefault((r["coin"], r.get("window"), r["error_type"], r["error"]), []).append(r["model"])
    for (coin, window, error_type, error), models in grouped.items():
        where = coin if window is None else f"{coin} window {window}"
        reason = escape(f"{where} ({', '.join(models)}): {error_type}: {error}")  # errors may hold [brackets]
        err.print(f"[red]failed[/red] {reason}", highlight=False, soft_wrap=True)
    coins = len({r["coin"] for r in run.records})
    summary = (
        f"{len(run.ok)} of {len(run.records)} windows backtested over {coins} coins and "
        f"{len(run.models)} models on the {run.engine} engine in {run.seconds:.2f} s ({run.engine_reason})"
    )
    if run.failed:
        summary += f"; {len(run.failed)} failed"
    if out is not None:
        summary += f"; results in {out}"
    if report is not None:
        summary += f"; report in {report}"
    err.print(summary, highlight=False, markup=False, soft_wrap=True)


@cli.command("models")
def list_models() -> None:
    """List the registered models: what each does, its intervals, its extra and its parameters."""
    from rich.markup import escape
    from rich.table import Table

    from .models import available_models, get_model_class
    from .models.registry import CONFORMAL_SUFFIX, missing_extra

    default = get_settings().model
    table = Table(title="models (every one gives 80%/95% prediction intervals, or --levels)", title_justify="left")
    for header in ("model", "what it is", "intervals", "extra", "parameters"):
        table.add_column(header, no_wrap=header == "extra")  # the pip command stays one line, to copy
    for name in available_models():
        try:
            cls = get_model_class(name)
            missing = missing_extra(name)
        except ImportError as exc:  # a broken install must not hide the other models
            table.add_row(name, f"[red]cannot be imported[/red]: {escape(str(exc))}", "", "", "")
            continue
        if cls.extra is None:
            extra = "built in"
        elif missing is None:
            extra = f"{cls.extra}: installed"
        else:
            extra = f"[red]{cls.extra}: missing[/red] — " + escape(f"pip install 'crypto-ml[{cls.extra}]'")
        params = ", ".join(f"{k}={v!r}" for k, v in cls().get_params().items()) or "-"
        label = f"{name} [bold](default)[/bold]" if name == default else name
        table.add_row(label, escape(cls.description), escape(cls.interval_method), extra, escape(params))
    console = _console()
    console.print(table)
    console.print(
        f"Any model{CONFORMAL_SUFFIX} (e.g. linear{CONFORMAL_SUFFIX}, lstm{CONFORMAL_SUFFIX}) keeps that "
        "model's point forecast and calibrates its intervals on its own rolling-origin forecast errors.",
        highlight=False,
        markup=False,
    )


@cli.group()
def data() -> None:
    """Inspect datasets and generate synthetic ones."""


@data.command("list")
@data_option
def data_list(data_path: Path | None) -> None:
    """List the coins of a dataset with their size, dates and problems."""
    from rich.table import Table

    from .data import CryptoLoader

    report = CryptoLoader(data_path).report()
    table = Table(title=f"coins in {report.path}", title_justify="left")
    for header in ("coin", "rows", "first", "last", "gaps", "status"):
        table.add_column(header, justify="right" if header in ("rows", "gaps") else "left")
    for coin in report.coins:
        if coin.ok:
            status = "; ".join(coin.warnings) if coin.warnings else "ok"
        else:
            status = f"[red]failed[/red] {coin.error_type}: {coin.error}"
        table.add_row(coin.name, str(coin.rows), coin.first_date or "", coin.last_date or "", str(coin.gaps), status)
    console = _console()
    console.print(table)
    for group in report.duplicates:
        console.print(
            f"duplicate files: {', '.join(group)} are byte-identical; one is probably mislabelled", highlight=False
        )
    for name, reason in report.skipped:
        console.print(f"skipped {name}: {reason}", highlight=False, markup=False)
    ok = sum(c.ok for c in report.coins)
    console.print(f"{ok} of {len(report.coins)} coins load; {sum(c.rows for c in report.coins)} rows", highlight=False)
    sys.exit(EXIT_OK if not report.failed else EXIT_FAILURES)


@data.command("show")
@click.argument("coin")
@data_option
@click.option("--rows", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="Newest rows to show.")
def data_show(coin: str, data_path: Path | None, rows: int) -> None:
    """Show a coin's newest prices and a summary."""
    from .data import CryptoLoader

    frame = CryptoLoader(data_path).get_df(coin)
    click.echo(frame.tail(rows).to_string(index=False))
    click.echo(
        f"{len(frame)} rows from {frame['Date'].iloc[0].date()} to {frame['Date'].iloc[-1].date()}; "
        f"Close min {frame['Close'].min():.6g}, max {frame['Close'].max():.6g}"
    )


@data.command("synth")
@click.argument("n_series", type=click.IntRange(min=1))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed; the same seed gives the same files.")
@click.option("--min-points", type=click.IntRange(min=2), default=60, show_default=True)
@click.option("--max-points", type=click.IntRange(min=2), default=1000, show_default=True)
def data_synth(n_series: int, out: Path, seed: int, min_points: int, max_points: int) -> None:
    """Generate N_SERIES synthetic coins into OUT (a folder of CSVs, or one .csv/.parquet long-format file)."""
    from .synthetic import generate_dataset

    path = generate_dataset(n_series, out, seed=seed, min_points=min_points, max_points=max_points)
    click.echo(f"wrote {n_series} synthetic series to {path}")


@data.command("fetch")
@click.option("--exchange", "-x", default="binance", show_default=True, help="A ccxt exchange id.")
@click.option("--symbols", "-s", default=None, metavar="PAIR,...", help="Pairs to fetch, e.g. BTC/USDT,ETH/USDT.")
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=None,
    help="Instead of --symbols: the exchange's N most traded pairs against --quote.",
)
@click.option("--quote", default="USDT", show_default=True, help="Quote currency for --top.")
@click.option(
    "--since",
    default=None,
    metavar="YYYY-MM-DD",
    help="First day of a new symbol's history [default: all the exchange has]; an earlier day backfills.",
)
@click.option(
    "--store",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="The price store folder [env CRYPTO_ML_PRICE_STORE; default ~/.cache/crypto_ml/prices].",
)
@click.option(
    "--api-url",
    default=None,
    metavar="URL",
    help="Replace the exchange's public REST base URL (mirror, proxy, test server) [env CRYPTO_ML_EXCHANGE_API_URL].",
)
@click.option("--full", is_flag=True, help="Re-read everything from --since, not only what is new.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds per request [env CRYPTO_ML_FETCH_TIMEOUT; default 30].",
)
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: when it is a terminal].")
def data_fetch(exchange, symbols, top, quote, since, store, api_url, full, timeout, progress) -> None:
    """Fetch closed daily candles from an exchange into a price store; later runs add only what is new.

    Exit codes: 0 every symbol fetched, 1 some symbol failed (each is printed with its reason),
    2 a bad request.
    """
    from .data.exchange import RetryPolicy
    from .data.fetch import fetch_prices
    from .exceptions import ExchangeError

    settings = get_settings()
    store = store or settings.price_store
    pairs = None if symbols is None else [s.strip() for s in symbols.split(",") if s.strip()]
    retry = RetryPolicy(
        attempts=settings.fetch_retries, backoff=settings.fetch_backoff, max_wait=settings.fetch_max_wait
    )
    show_progress = sys.stderr.isatty() if progress is None else progress
    with _fetch_progress(show_progress) as notify:
        try:
            report = fetch_prices(
                exchange,
                store,
                symbols=pairs,
                top=top,
                quote=quote,
                since=since,
                api_url=api_url or settings.exchange_api_url,
                timeout=timeout or settings.fetch_timeout,
                retry=retry,
                full=full,
                progress=notify,
            )
        except ExchangeError as exc:
            # The exchange could not be asked anything (its clock, its markets): nothing was fetched.
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_FAILURES)
    _print_fetch(report)
    sys.exit(EXIT_OK if not report.failed else EXIT_FAILURES)


@contextlib.contextmanager
def _fetch_progress(show: bool) -> Iterator[Any]:
    """A rich progress bar over symbols, with the current symbol's pages; None when hidden."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_console(stderr=True)) as bar:
        task = bar.add_task("symbols", total=None, detail="")
        pages = 0

        def notify(event: str, symbol: str, count: int) -> None:
            nonlocal pages
            if event == "symbols":
                bar.update(task, total=count)
            elif event == "start":
                pages = 0
                bar.update(task, detail=f"{symbol}: starting")
            elif event == "page":
                pages += 1
                bar.update(task, detail=f"{symbol}: page {pages} ({count} candles)")
            elif event == "done":
                bar.update(task, advance=1, detail=f"{symbol}: {count} new")

        yield notify


def _print_fetch(report) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"{report.exchange} -> {report.store} (exchange clock {report.server_time})", title_justify="left"
    )
    for header in ("symbol", "new rows", "replaced", "first", "last", "gaps", "status"):
        table.add_column(header, justify="right" if header in ("new rows", "replaced", "gaps") else "left")
    for entry in report.symbols:
        status = "ok" if entry.status == "ok" else f"[red]failed[/red] {entry.error_type}"
        gaps = f"{entry.gaps} ({entry.missing_days} d)" if entry.gaps else "0"
        table.add_row(
            escape(entry.symbol),
            str(entry.new_rows),
            str(entry.replaced_rows),
            entry.first or "",
            entry.last or "",
            gaps,
            status,
        )
    console = _console()
    console.print(table)
    for entry in report.failed:
        console.print(f"failed {entry.symbol}: {entry.error_type}: {entry.error}", highlight=False, markup=False)
    new = sum(entry.new_rows for entry in report.symbols)
    console.print(
        f"{len(report.symbols) - len(report.failed)} of {len(report.symbols)} symbols ok; {new} new rows",
        highlight=False,
    )


# Last: the pipeline commands reuse the options defined above.
from .api import cli as api_cli  # noqa: E402
from .ledger import cli as ledger_cli  # noqa: E402
from .pipeline import cli as pipeline_cli  # noqa: E402

cli.add_command(pipeline_cli.pipeline)
cli.add_command(ledger_cli.ledger)
cli.add_command(api_cli.serve)
cli.add_command(api_cli.apikey)


def main() -> None:
    """Entry point of the ``crypto-ml`` script."""
    cli(prog_name="crypto-ml")
