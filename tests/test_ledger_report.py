"""crypto_ml.ledger.report and ``crypto-ml ledger``: rolling scores, trend, drift alerts, and their outputs.

Every ledger here is built through the real API (open_ledger, start_run,
record_forecasts, score_matured) on SQLite and PostgreSQL, with numbers that
can be checked by hand: every actual price is 100; naive forecasts 102 (abs
error 2), "good" 101 (abs error 1, so MAE / naive = 0.5) and "drifting" 101
in the first window and 103 in the last (MAE / naive 0.5, then 1.5). Of 20
coins, the intervals of the first 16 hold the price at 80 % and of the first
19 at 95 %: coverage exactly 80 % and 95 %, except that in the last window the
drifting model's 80 % intervals hold it for the first 12 coins only (60 %).
"""

from __future__ import annotations

import datetime as dt
import struct

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from crypto_ml.evaluation.metrics import winkler_scores
from crypto_ml.exceptions import InvalidParameterError
from crypto_ml.ledger import finish_run, open_ledger, record_forecasts, score_matured, start_run
from crypto_ml.ledger.report import LedgerReport, ledger_report

pytest.importorskip("sqlalchemy")

COINS = [f"coin-{index:02d}" for index in range(20)]
PRICE = 100.0
DAYS = 10
FIRST_TARGET = dt.date(2024, 1, 2)
#: Two windows of DAYS target dates: 2024-01-02..01-11 (previous) and 01-12..01-21 (current).
TARGETS = [FIRST_TARGET + dt.timedelta(days=offset) for offset in range(2 * DAYS)]
AS_OF = TARGETS[-1]
CURRENT_START = AS_OF - dt.timedelta(days=DAYS - 1)
INSIDE_80 = 16
INSIDE_95 = 19
DRIFTING_INSIDE_80 = 12
# An interval that holds 100, and one that misses it (above), at each level.
HOLDS = {80: (95.0, 105.0), 95: (90.0, 110.0)}
MISSES = {80: (100.5, 106.0), 95: (100.5, 112.0)}


def _record(coin: str, model: str, target: dt.date, point: float, holds: dict[int, bool]) -> dict:
    record = {
        "coin": coin,
        "model": model,
        "status": "ok",
        "forecast": [point],
        "dates": [target.isoformat()],
        "last_date": (target - dt.timedelta(days=1)).isoformat(),
        "levels": [80, 95],
    }
    for level, inside in holds.items():
        lower, upper = HOLDS[level] if inside else MISSES[level]
        record[f"lo_{level}"], record[f"hi_{level}"] = [lower], [upper]
    return record


def _records() -> list[dict]:
    records = []
    for target in TARGETS:
        latest = target >= CURRENT_START
        for index, coin in enumerate(COINS):
            calibrated = {80: index < INSIDE_80, 95: index < INSIDE_95}
            records.append(_record(coin, "naive", target, 102.0, calibrated))
            records.append(_record(coin, "good", target, 101.0, calibrated))
            drifting = {80: index < (DRIFTING_INSIDE_80 if latest else INSIDE_80), 95: index < INSIDE_95}
            records.append(_record(coin, "drifting", target, 103.0 if latest else 101.0, drifting))
    return records


def _prices(coin: str) -> tuple[np.ndarray, np.ndarray]:
    dates = np.arange(np.datetime64("2024-01-01"), np.datetime64(AS_OF) + 1)
    return dates, np.full(dates.size, PRICE)


def _fill(url: str) -> None:
    with open_ledger(url) as ledger:
        run = start_run(ledger, "test", {"models": ["naive", "good", "drifting"]})
        record_forecasts(ledger, run, _records(), {})
        counts = score_matured(ledger, _prices)
        finish_run(ledger, run, "ok")
    assert counts.scored == len(TARGETS) * len(COINS) * 3


@pytest.fixture
def filled_url(ledger_url):
    _fill(ledger_url)
    return ledger_url


def _report(url: str, **options) -> LedgerReport:
    with open_ledger(url) as ledger:
        return ledger_report(ledger, days=DAYS, **options)


def _row(report: LedgerReport, model: str) -> dict:
    rows = report.table[report.table["model"] == model].to_dict("records")
    assert len(rows) == 1, report.table
    return rows[0]


def _mean_winkler(level: int, inside: int) -> float:
    lower = np.array([HOLDS[level][0]] * inside + [MISSES[level][0]] * (len(COINS) - inside))
    upper = np.array([HOLDS[level][1]] * inside + [MISSES[level][1]] * (len(COINS) - inside))
    return float(np.mean(winkler_scores(np.full(len(COINS), PRICE), lower, upper, level)))


def test_rolling_numbers_trend_and_alerts(filled_url):
    report = _report(filled_url)

    assert report.as_of == AS_OF and report.window == (CURRENT_START, AS_OF)
    assert report.levels == (80.0, 95.0)
    assert report.models == ["naive", "drifting", "good"]  # naive first: the benchmark
    steps = DAYS * len(COINS)
    for model in report.models:
        row = _row(report, model)
        assert (row["scored"], row["scored_previous"], row["scored_change"]) == (steps, steps, 0)
        assert row["paired"] == steps
    naive, good, drifting = (_row(report, model) for model in ("naive", "good", "drifting"))
    assert naive["relative_mae"] == pytest.approx(1.0) and naive["mae"] == pytest.approx(2.0)
    assert good["relative_mae"] == pytest.approx(0.5) and good["relative_mae_previous"] == pytest.approx(0.5)
    assert good["relative_mae_change"] == pytest.approx(0.0)
    assert drifting["relative_mae"] == pytest.approx(1.5)
    assert drifting["relative_mae_previous"] == pytest.approx(0.5)
    assert drifting["relative_mae_change"] == pytest.approx(1.0)
    assert drifting["mae"] == pytest.approx(3.0) and drifting["mae_previous"] == pytest.approx(1.0)
    for row in (naive, good):
        assert row["coverage_80"] == pytest.approx(0.80) and row["coverage_95"] == pytest.approx(0.95)
        assert row["interval_score_80"] == pytest.approx(_mean_winkler(80, INSIDE_80))
        assert row["interval_score_95"] == pytest.approx(_mean_winkler(95, INSIDE_95))
    assert drifting["coverage_80"] == pytest.approx(0.60)
    assert drifting["coverage_80_previous"] == pytest.approx(0.80)
    assert drifting["coverage_80_change"] == pytest.approx(-0.20)
    assert drifting["interval_score_80"] == pytest.approx(_mean_winkler(80, DRIFTING_INSIDE_80))
    assert drifting["interval_score_80_previous"] == pytest.approx(_mean_winkler(80, INSIDE_80))
    assert drifting["coverage_95"] == pytest.approx(0.95)

    assert {(alert.model, alert.reason) for alert in report.alerts} == {
        ("drifting", "coverage_80"),
        ("drifting", "relative_mae"),
    }
    messages = {alert.reason: alert.message for alert in report.alerts}
    assert messages["coverage_80"].startswith("drifting: 80 % coverage 60.0 % over 10 days, below 75 %")
    assert messages["relative_mae"].startswith("drifting: MAE 1.50 x naive's over 10 days, above 1.1")
    # naive's MAE is never checked against itself; every model's coverage is.
    assert ("naive", "relative_mae") not in report.checked
    assert {("naive", "coverage_80"), ("good", "coverage_95"), ("good", "relative_mae")} <= set(report.checked)


def test_band_threshold_window_and_model_choice(filled_url):
    # A wide band and a high threshold flag nothing.
    assert _report(filled_url, coverage_band=25, mae_threshold=2.0).alerts == ()
    # Too few scored steps to judge: nothing is checked.
    sparse = _report(filled_url, min_scored=DAYS * len(COINS) + 1)
    assert sparse.alerts == () and sparse.checked == ()
    # The window ending where the previous one did: the drift has not happened yet, and nothing came before.
    earlier = _report(filled_url, as_of=(CURRENT_START - dt.timedelta(days=1)).isoformat())
    assert earlier.alerts == ()
    drifting = _row(earlier, "drifting")
    assert drifting["relative_mae"] == pytest.approx(0.5)
    assert drifting["scored_previous"] == 0 and np.isnan(drifting["relative_mae_previous"])
    # Only the chosen models are reported; naive is still their benchmark.
    chosen = _report(filled_url, models=["good"])
    assert chosen.models == ["good"] and _row(chosen, "good")["relative_mae"] == pytest.approx(0.5)
    with pytest.raises(InvalidParameterError, match=r"no forecasts of 'phantom'.*it has: drifting, good, naive"):
        _report(filled_url, models=["phantom"])


def test_series_rolls_to_the_table(filled_url):
    report = _report(filled_url)
    series = report.series
    assert list(series.columns[:2]) == ["date", "model"]
    drifting = series[series["model"] == "drifting"].set_index("date")
    at_end = drifting.loc[pd.Timestamp(AS_OF)]
    assert at_end["coverage_80"] == pytest.approx(0.60) and at_end["relative_mae"] == pytest.approx(1.5)
    before = drifting.loc[pd.Timestamp(CURRENT_START - dt.timedelta(days=1))]
    assert before["coverage_80"] == pytest.approx(0.80) and before["relative_mae"] == pytest.approx(0.5)
    # Halfway, half of the window is drifted: (5 x 16 + 5 x 12) / 200 inside.
    halfway = drifting.loc[pd.Timestamp(CURRENT_START + dt.timedelta(days=DAYS // 2 - 1))]
    assert halfway["coverage_80"] == pytest.approx(0.70) and halfway["relative_mae"] == pytest.approx(1.0)
    # Two windows of days; on the ledger's first days a window holds the days so far.
    assert list(drifting.index) == list(pd.date_range(FIRST_TARGET, AS_OF))
    first = drifting.iloc[0]
    assert first["scored"] == len(COINS) and first["coverage_80"] == pytest.approx(0.80)
    assert drifting["scored"].max() == DAYS * len(COINS)


def test_outputs_round_trip_and_the_plot_is_a_png(filled_url, tmp_path):
    report = _report(filled_url)
    expected = report.to_frame()
    csv = pd.read_csv(report.write(tmp_path / "out" / "report.csv"))
    parquet = pd.read_parquet(report.write(tmp_path / "report.parquet"))
    for frame in (csv, parquet):
        assert list(frame.columns) == list(expected.columns)
        pd.testing.assert_frame_equal(frame, expected, check_dtype=False)
    with pytest.raises(InvalidParameterError, match=r"\.csv or \.parquet"):
        report.write(tmp_path / "report.xlsx")

    png = report.plot(tmp_path / "plot.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (1100, 825)  # 10 x 7.5 inches at 110 dpi


def test_prometheus_text_parses_with_the_numbers(filled_url):
    from prometheus_client.parser import text_string_to_metric_families

    report = _report(filled_url)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(report.prometheus())
        for sample in family.samples
    }
    assert samples[("crypto_ml_ledger_scored_forecasts", (("model", "good"),))] == DAYS * len(COINS)
    assert samples[("crypto_ml_ledger_relative_mae", (("model", "drifting"),))] == pytest.approx(1.5)
    assert samples[("crypto_ml_ledger_relative_mae", (("model", "naive"),))] == pytest.approx(1.0)
    assert samples[("crypto_ml_ledger_coverage", (("level", "80"), ("model", "drifting")))] == pytest.approx(0.6)
    assert samples[("crypto_ml_ledger_coverage", (("level", "95"), ("model", "good")))] == pytest.approx(0.95)
    assert samples[("crypto_ml_ledger_interval_score", (("level", "80"), ("model", "good")))] == pytest.approx(
        _mean_winkler(80, INSIDE_80)
    )
    assert samples[("crypto_ml_ledger_drift", (("model", "drifting"), ("reason", "coverage_80")))] == 1.0
    assert samples[("crypto_ml_ledger_drift", (("model", "drifting"), ("reason", "relative_mae")))] == 1.0
    assert samples[("crypto_ml_ledger_drift", (("model", "good"), ("reason", "coverage_80")))] == 0.0
    assert samples[("crypto_ml_ledger_window_days", ())] == DAYS
    as_of = dt.datetime.combine(AS_OF, dt.time(), dt.UTC).timestamp()
    assert samples[("crypto_ml_ledger_as_of_timestamp_seconds", ())] == as_of


def test_models_recorded_with_several_parameter_sets_are_told_apart(ledger):
    run = start_run(ledger, "test", {})
    target = TARGETS[0]
    naive = [_record(coin, "naive", target, 102.0, {80: True, 95: True}) for coin in COINS]
    good = [_record(coin, "good", target, 101.0, {80: True, 95: True}) for coin in COINS]
    record_forecasts(ledger, run, naive + good, {})
    record_forecasts(ledger, run, good, {"good": {"decay": 0.5}})
    score_matured(ledger, _prices)
    report = ledger_report(ledger, days=DAYS)
    labels = report.models
    assert labels[0] == "naive" and len(labels) == 3
    assert all(label.startswith("good@") for label in labels[1:])
    assert all(_row(report, label)["relative_mae"] == pytest.approx(0.5) for label in labels[1:])


def test_an_empty_ledger_reports_nothing(ledger, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    report = ledger_report(ledger)
    assert report.as_of is None and report.table.empty and report.alerts == ()
    names = {family.name for family in text_string_to_metric_families(report.prometheus())}
    assert "crypto_ml_ledger_window_days" in names
    assert report.plot(tmp_path / "empty.png").stat().st_size > 0
    with pytest.raises(InvalidParameterError, match="at least 1 day"):
        ledger_report(ledger, days=0)


def test_cli_report_end_to_end(filled_url, tmp_path):
    from crypto_ml.cli import cli

    out, plot, metrics = tmp_path / "report.csv", tmp_path / "report.png", tmp_path / "textfile" / "ledger.prom"
    arguments = ["ledger", "report", "--database", filled_url, "--days", str(DAYS)]
    outputs = ["--out", str(out), "--plot", str(plot), "--prometheus", str(metrics)]
    result = CliRunner().invoke(cli, arguments + outputs)
    assert result.exit_code == 0, result.output
    assert "drift alert: drifting: 80 % coverage 60.0 % over 10 days, below 75 %" in " ".join(result.output.split())
    assert "MAE / naive" in result.output
    assert pd.read_csv(out)["model"].tolist() == ["naive", "drifting", "good"]
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert "crypto_ml_ledger_drift{" in metrics.read_text()

    assert CliRunner().invoke(cli, [*arguments, "--fail-on-drift"]).exit_code == 4
    calm = CliRunner().invoke(cli, [*arguments, "--fail-on-drift", "--models", "good,naive"])
    assert calm.exit_code == 0 and "no drift alerts" in calm.output
    unknown = CliRunner().invoke(cli, [*arguments, "--models", "phantom"])
    assert unknown.exit_code == 2 and "no forecasts of 'phantom'" in unknown.output
    bad_plot = CliRunner().invoke(cli, [*arguments, "--plot", str(tmp_path / "plot.jpg")])
    assert bad_plot.exit_code == 2


def test_cli_reads_the_database_band_and_threshold_from_settings(filled_url, monkeypatch):
    from crypto_ml.cli import cli

    monkeypatch.setenv("CRYPTO_ML_DATABASE_URL", filled_url)
    monkeypatch.setenv("CRYPTO_ML_LEDGER_COVERAGE_BAND", "25")
    monkeypatch.setenv("CRYPTO_ML_LEDGER_MAE_THRESHOLD", "2")
    result = CliRunner().invoke(cli, ["ledger", "report", "--days", str(DAYS), "--fail-on-drift"])
    assert result.exit_code == 0, result.output
    assert "no drift alerts (coverage within nominal ± 25 points, MAE / naive at most 2)" in result.output


def test_serve_metrics_exports_the_report_at_each_scrape(filled_url):
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "crypto_ml", "ledger", "serve-metrics", "--address", "127.0.0.1"]
    server = subprocess.Popen(
        [*command, "--port", str(port), "--database", filled_url, "--days", str(DAYS)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    text = response.read().decode()
                break
            except OSError:
                assert server.poll() is None, server.communicate()[1].decode()
                assert time.monotonic() < deadline, "the exporter did not answer within 60 s"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("crypto_ml_ledger_up", ())] == 1.0
    assert samples[("crypto_ml_ledger_relative_mae", (("model", "good"),))] == pytest.approx(0.5)
    assert samples[("crypto_ml_ledger_drift", (("model", "drifting"), ("reason", "coverage_80")))] == 1.0
