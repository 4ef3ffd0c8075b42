"""``crypto-ml pipeline run`` and ``crypto-ml pipeline replay``.

Exit codes: 0 when every coin was forecast (and, for a price store, fetched),
1 when any coin failed (each is printed with its step and reason), 2 when the
request itself is wrong (unknown model, bad horizon, levels or dates, missing
data, a database URL that cannot be used), 3 when another cycle over the same
data holds the cycle lock, so a scheduler can tell "already running" from a failure.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from ..cli import EXIT_FAILURES, EXIT_OK, _compose, _console, _parse_model_params, _split_coins, data_option
from ..cli import engine_option as _engine_option
from ..ledger.cli import database_option

if TYPE_CHECKING:
    from .steps import PipelineReport

#: Another cycle holds the lock: nothing ran, and nothing is wrong.
EXIT_BUSY = 3

pipeline_options = _compose(
    click.option(
        "--models",
        "-m",
        default=None,
        help="Comma-separated model names; naive is always added, as the benchmark "
        "[env CRYPTO_ML_PIPELINE_MODELS; default naive,drift,ewma].",
    ),
    click.option(
        "--horizon",
        "-H",
        type=int,
        default=None,
        help="Days to forecast [env CRYPTO_ML_PIPELINE_HORIZON; default 10].",
    ),
    click.option(
        "--levels",
        "-l",
        default=None,
        metavar="L1,L2,...",
        help="Prediction interval levels in percent [env CRYPTO_ML_PIPELINE_LEVELS; default 80,95].",
    ),
    click.option(
        "--param",
        "-p",
        "params",
        multiple=True,
        metavar="MODEL.KEY=VALUE",
        help="Model parameter, e.g. ewma.decay=0.9; repeatable.",
    ),
    click.option("--coins", "-c", default=None, help="Comma-separated coin names [default: every coin]."),
    data_option,
    _engine_option,
    database_option,
    click.option(
        "--workers", type=click.IntRange(min=1), default=None, help="Local engine processes [default: cores]."
    ),
    click.option(
        "--batch-size", type=click.IntRange(min=1), default=None, help="Series per task [env CRYPTO_ML_BATCH_SIZE]."
    ),
)


# Declared, not decorated: crypto_ml.cli imports this module while it is itself being imported.
pipeline: click.Group = click.Group(
    "pipeline", help="The daily cycle: fetch, forecast, record in the ledger, score what matured."
)


@pipeline.command("run")
@pipeline_options
@click.option(
    "--fetch/--no-fetch",
    default=None,
    help="Fetch new candles first [default: when the data is a price store].",
)
def pipeline_run(
    models, horizon, levels, params, coins, data_path, engine, database_url, workers, batch_size, fetch
) -> None:
    """Run one cycle now: fetch new candles, forecast every coin with every model, record, score."""
    from ..exceptions import PipelineBusyError
    from .cycle import run_cycle

    try:
        report = run_cycle(
            data_path,
            models=models,
            horizon=horizon,
            levels=levels,
            params=_parse_model_params(params),
            coins=_split_coins(coins),
            engine=engine,
            database_url=database_url,
            fetch=fetch,
            workers=workers,
            batch_size=batch_size,
        )
    except PipelineBusyError as exc:
        click.echo(f"busy: {exc}", err=True)
        sys.exit(EXIT_BUSY)
    _print_report(report)
    sys.exit(EXIT_OK if not report.failures else EXIT_FAILURES)


@pipeline.command("replay")
@click.option("--from", "from_date", required=True, metavar="YYYY-MM-DD", help="The first origin day.")
@click.option("--to", "to_date", required=True, metavar="YYYY-MM-DD", help="The last origin day (included).")
@pipeline_options
@click.option("--progress/--no-progress", default=None, help="Progress bar on stderr [default: when it is a terminal].")
def pipeline_replay(
    from_date,
    to_date,
    models,
    horizon,
    levels,
    params,
    coins,
    data_path,
    engine,
    database_url,
    workers,
    batch_size,
    progress,
) -> None:
    """Replay the daily cycles from --from to --to: each day forecasts and scores with only the prices up to it.

    Fills (or backfills) the ledger offline; its scores equal `crypto-ml backtest --step 1`'s on the same origins.
    Running it again adds nothing.
    """
    from .replay import replay, replay_days

    total = len(replay_days(from_date, to_date))  # a bad date is exit 2 before the bar
    show = sys.stderr.isatty() if progress is None else progress
    with _day_progress(show, total) as on_day:
        report = replay(
            data_path,
            from_date,
            to_date,
            models,
            horizon,
            levels,
            engine,
            params=_parse_model_params(params),
            coins=_split_coins(coins),
            database_url=database_url,
            workers=workers,
            batch_size=batch_size,
            on_day=on_day,
        )
    _print_report(report)
    sys.exit(EXIT_OK if not report.failures else EXIT_FAILURES)


@contextlib.contextmanager
def _day_progress(show: bool, total: int) -> Iterator[Any]:
    """A rich progress bar over the replay's days; None when hidden."""
    if not show:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("replaying {task.fields[day]}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=_console(stderr=True), transient=True) as bar:
        task = bar.add_task("days", total=total, day="")
        yield lambda day, done, days: bar.update(task, completed=done, day=str(day))


def _print_report(report: PipelineReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    if report.failures:
        table = Table(title=f"failures of {report.kind} run {report.run_id}", title_justify="left")
        for header in ("coin", "step", "model", "days", "reason"):
            table.add_column(header, justify="right" if header == "days" else "left")
        for failure in report.failures:
            when = ""
            if failure.days:
                when = failure.days[0] if len(failure.days) == 1 else f"{len(failure.days)} ({failure.days[0]}…)"
            table.add_row(
                escape(failure.coin),
                failure.stage,
                failure.model or "",
                when,
                escape(f"{failure.error_type}: {failure.error}"),  # errors may hold [brackets]
            )
        console.print(table)
    # A cycle lists the origins it forecast from; a replay, the days it replayed (a coin's origin is its last price).
    days = sorted(report.days)
    what = "days" if report.kind == "replay" else "origins"
    origins = f"{what} {days[0]}..{days[-1]}" if len(days) > 1 else f"{what[:-1]} {days[0]}" if days else "no origin"
    lines = [
        f"{report.kind} run {report.run_id} in {report.database}: {len(report.coins)} coins x "
        f"{len(report.models)} model(s) ({', '.join(report.models)}), h={report.horizon}, {origins}",
        f"forecast rows: {report.forecasts_inserted} new, {report.forecasts_existing} already recorded",
        f"scored {report.scored}; {report.waiting} waiting for their target day"
        + (f"; {report.missing_actual} without an actual price" if report.missing_actual else ""),
    ]
    if report.fetched_rows is not None:
        lines.append(f"fetched {report.fetched_rows} new candles")
    failed = report.failed_coins
    lines.append(
        f"{len(failed)} coin(s) failed: {', '.join(failed[:10])}{' …' if len(failed) > 10 else ''}"
        if failed
        else "no failures"
    )
    lines.append(f"took {report.seconds:.1f} s")
    for line in lines:
        console.print(line, highlight=False, markup=False, soft_wrap=True)
