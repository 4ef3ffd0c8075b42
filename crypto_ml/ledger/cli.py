"""``crypto-ml ledger report`` and ``crypto-ml ledger serve-metrics``.

Exit codes: 0 when the report was made, drift alerts or not (a report that
finds drift did its job, and a cron job writing the Prometheus textfile must
not fail because of it: alert on ``crypto_ml_ledger_drift`` instead); 4 when
``--fail-on-drift`` is given and any alert fires, for a CI or cron check that
should stop on drift (4, not the pipeline's 3, which means "another cycle is
running"); 2 when the request is wrong (bad date, unknown model, a database URL
that cannot be used, an output file of another kind).

Light to import: ``crypto-ml`` attaches these commands on every start, so the
report (pandas, SQLAlchemy queries) loads only when a command runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .report import LedgerReport

#: ``--fail-on-drift`` and a drift alert fired.
EXIT_DRIFT = 4

#: The exporter's port: 9464 is the one OpenTelemetry's Prometheus exporter registered, unused by node_exporter (9100).
DEFAULT_METRICS_PORT = 9464

database_option = click.option(
    "--database",
    "database_url",
    default=None,
    metavar="URL",
    help="The ledger's SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db "
    "[env CRYPTO_ML_DATABASE_URL; default: ledger.sqlite beside the model store].",
)
days_option = click.option(
    "--days",
    type=click.IntRange(min=1),
    default=30,
    show_default=True,
    help="The rolling window, in days of target dates; the trend compares it with the window before.",
)
models_option = click.option(
    "--models", "-m", default=None, help="Comma-separated models to report [default: every model in the ledger]."
)
band_option = click.option(
    "--coverage-band",
    type=click.FloatRange(min=0, max=100, min_open=True, max_open=True),
    default=None,
    help="Flag a coverage outside nominal ± this many points [env CRYPTO_ML_LEDGER_COVERAGE_BAND; default 5].",
)
threshold_option = click.option(
    "--mae-threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Flag an MAE relative to naive above this [env CRYPTO_ML_LEDGER_MAE_THRESHOLD; default 1.10].",
)


def _models(value: str | None) -> list[str] | None:
    if value is None:
        return None
    models = [m.strip() for m in value.split(",") if m.strip()]
    if not models:
        raise click.BadParameter("give at least one model name, e.g. --models ewma,naive", param_hint="--models")
    return models


# Declared, not decorated: crypto_ml.cli imports this module while it is itself being imported.
ledger: click.Group = click.Group("ledger", help="The forecast ledger: how the recorded forecasts scored.")


@ledger.command("report")
@days_option
@click.option("--as-of", default=None, metavar="YYYY-MM-DD", help="The window's last day [default: latest scored].")
@database_option
@models_option
@band_option
@threshold_option
@click.option(
    "--min-scored",
    type=click.IntRange(min=1),
    default=None,
    help="Scored steps a window needs before it can raise an alert [default 30].",
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write the table: .csv or .parquet.")
@click.option("--plot", type=click.Path(path_type=Path), default=None, help="Draw the rolling numbers: a .png.")
@click.option(
    "--prometheus",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the numbers as Prometheus metrics, atomically (for node_exporter's textfile collector: "
    "name it *.prom in its folder).",
)
@click.option("--fail-on-drift", is_flag=True, help=f"Exit {EXIT_DRIFT} when any drift alert fires.")
def ledger_report_command(
    days, as_of, database_url, models, coverage_band, mae_threshold, min_scored, out, plot, prometheus, fail_on_drift
) -> None:
    """Per model over the last --days days: scored forecasts, MAE relative to naive, coverage and
    interval score per level, the change from the window before, and drift alerts."""
    from ..data.files import write_atomic
    from .database import open_ledger
    from .report import MIN_SCORED, ledger_report

    if plot is not None and plot.suffix.lower() != ".png":
        raise click.BadParameter(f"{plot.name!r}: the plot is a PNG; name a .png file", param_hint="--plot")
    with open_ledger(database_url) as opened:
        report = ledger_report(
            opened,
            days=days,
            as_of=as_of,
            models=_models(models),
            coverage_band=coverage_band,
            mae_threshold=mae_threshold,
            min_scored=MIN_SCORED if min_scored is None else min_scored,
        )
    _print_report(report)
    written = []
    if out is not None:
        written.append(report.write(out))
    if plot is not None:
        written.append(report.plot(plot))
    if prometheus is not None:
        prometheus.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(prometheus, report.prometheus().encode())
        written.append(prometheus)
    for path in written:
        click.echo(f"wrote {path}")
    sys.exit(EXIT_DRIFT if fail_on_drift and report.alerts else 0)


@ledger.command("serve-metrics")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_METRICS_PORT, show_default=True)
@click.option("--address", default="0.0.0.0", show_default=True, help="The interface to listen on.")
@days_option
@database_option
@models_option
@band_option
@threshold_option
def serve_metrics(port, address, days, database_url, models, coverage_band, mae_threshold) -> None:
    """Serve the report's numbers as Prometheus metrics on http://ADDRESS:PORT/metrics, computed at each scrape."""
    from prometheus_client import CollectorRegistry, start_http_server

    from .database import open_ledger
    from .prometheus import report_collector
    from .report import ledger_report

    opened = open_ledger(database_url)
    chosen = _models(models)

    def make_report() -> LedgerReport:
        return ledger_report(opened, days=days, models=chosen, coverage_band=coverage_band, mae_threshold=mae_threshold)

    make_report()  # a bad --models or an unreachable database fails now, not at the first scrape
    registry = CollectorRegistry()
    registry.register(report_collector(make_report))
    start_http_server(port, addr=address, registry=registry)
    click.echo(f"serving the ledger's metrics of {opened.url} on http://{address}:{port}/metrics", err=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        opened.close()


def _print_report(report: LedgerReport) -> None:
    import math

    from rich.markup import escape
    from rich.table import Table

    from ..cli import _console
    from ..models.base import level_label

    console = _console()
    if report.as_of is None:
        console.print(
            f"no scored forecasts in the ledger at {report.database}: run `crypto-ml pipeline run` (or replay) "
            "and wait for target dates to pass",
            highlight=False,
            markup=False,
        )
        return
    start, end = report.window or (report.as_of, report.as_of)

    def number(value: float, change: float, digits: int, scale: float = 1.0) -> str:
        if math.isnan(value):
            return "-"
        text = f"{scale * value:.{digits}f}"
        return text if math.isnan(change) else f"{text} ({scale * change:+.{digits}f})"

    table = Table(
        title=f"the ledger over {report.days} days of target dates, {start}..{end} (change from the {report.days} "
        "days before)",
        title_justify="left",
    )
    table.add_column("model")
    table.add_column("scored", justify="right")
    table.add_column("MAE / naive", justify="right")
    for level in report.levels:
        table.add_column(f"{level_label(level)} % coverage", justify="right")
        table.add_column(f"{level_label(level)} % score", justify="right")
    for row in report.table.to_dict("records"):
        cells = [
            escape(str(row["model"])),
            f"{row['scored']} ({row['scored_change']:+d})",
            number(row["relative_mae"], row["relative_mae_change"], 3),
        ]
        for level in report.levels:
            label = level_label(level)
            coverage = row.get(f"coverage_{label}", math.nan)
            cells.append(number(coverage, row.get(f"coverage_{label}_change", math.nan), 1, 100.0))
            score = row.get(f"interval_score_{label}", math.nan)
            cells.append(number(score, row.get(f"interval_score_{label}_change", math.nan), 3))
        table.add_row(*cells)
    console.print(table)
    if report.alerts:
        for alert in report.alerts:
            console.print(f"[bold red]drift alert[/]: {escape(alert.message)}", highlight=False)
    else:
        console.print(
            f"no drift alerts (coverage within nominal ± {report.coverage_band:g} points, "
            f"MAE / naive at most {report.mae_threshold:g})",
            highlight=False,
            markup=False,
        )
