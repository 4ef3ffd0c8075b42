"""The ledger report as Prometheus metrics: a text file for node_exporter, or a collector for an exporter.

Gauges, each over the report's rolling window:

* ``crypto_ml_ledger_scored_forecasts{model}``, ``crypto_ml_ledger_relative_mae{model}``;
* ``crypto_ml_ledger_coverage{model,level}`` (a fraction), ``crypto_ml_ledger_interval_score{model,level}``;
* ``crypto_ml_ledger_drift{model,reason}``: 1 when the alert fired, 0 when checked and fine;
* ``crypto_ml_ledger_window_days``, ``crypto_ml_ledger_as_of_timestamp_seconds`` (staleness: the last scored day);
* ``crypto_ml_ledger_up``: 0 when an exporter could not read the ledger at a scrape.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..exceptions import CryptoMLError
from ..models.base import level_label

if TYPE_CHECKING:
    from .report import LedgerReport

__all__ = ["METRIC_PREFIX", "report_collector", "metric_families", "exposition"]

log = logging.getLogger(__name__)

#: The prefix of every Prometheus metric the report exports.
METRIC_PREFIX = "crypto_ml_ledger"


def exposition(report: LedgerReport) -> str:
    """``report`` in Prometheus's text exposition format."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(report_collector(lambda: report))
    return generate_latest(registry).decode()


class _Collector:
    """A prometheus_client collector of a report, made fresh by ``make_report`` on each collection."""

    def __init__(self, make_report: Callable[[], LedgerReport]) -> None:
        self.make_report = make_report

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(f"{METRIC_PREFIX}_up", "1 when the ledger could be read for these metrics, else 0")
        try:
            report = self.make_report()
        except CryptoMLError as exc:
            # An exporter outlives a database restart: say so in a metric Grafana can alert on, not a 500.
            log.warning("cannot read the ledger for its metrics: %s", exc)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from metric_families(report)


def report_collector(make_report: Callable[[], LedgerReport]) -> Any:
    """A prometheus_client collector whose every scrape exports ``make_report()`` (an exporter's live numbers)."""
    return _Collector(make_report)


def metric_families(report: LedgerReport) -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    window = f"over the last {report.days} days of target dates"

    def gauge(name: str, documentation: str, labels: Sequence[str]) -> Any:
        return GaugeMetricFamily(f"{METRIC_PREFIX}_{name}", documentation, labels=list(labels))

    scored = gauge("scored_forecasts", f"Forecast steps scored {window}", ["model"])
    relative = gauge("relative_mae", f"MAE relative to naive on the same forecasts, {window}", ["model"])
    coverage = gauge("coverage", f"Share of actual prices inside the interval, {window}", ["model", "level"])
    interval = gauge("interval_score", f"Mean interval (Winkler) score on log prices, {window}", ["model", "level"])
    drift = gauge("drift", "1 when the model's rolling number left its bounds, else 0", ["model", "reason"])
    for row in report.table.to_dict("records"):
        model = str(row["model"])
        scored.add_metric([model], float(row["scored"]))
        if not _missing(row.get("relative_mae")):
            relative.add_metric([model], float(row["relative_mae"]))
        for level in report.levels:
            label = level_label(level)
            if not _missing(row.get(f"coverage_{label}")):
                coverage.add_metric([model, label], float(row[f"coverage_{label}"]))
                interval.add_metric([model, label], float(row[f"interval_score_{label}"]))
    flagged = {(alert.model, alert.reason) for alert in report.alerts}
    for model, reason in report.checked:
        drift.add_metric([model, reason], 1.0 if (model, reason) in flagged else 0.0)
    days = gauge("window_days", "Length of the rolling window, days", [])
    days.add_metric([], float(report.days))
    families = [scored, relative, coverage, interval, drift, days]
    if report.as_of is not None:
        as_of = gauge("as_of_timestamp_seconds", "The window's last target date (midnight UTC), Unix time", [])
        as_of.add_metric([], dt.datetime.combine(report.as_of, dt.time(), dt.UTC).timestamp())
        families.append(as_of)
    return iter(families)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
