"""Backtest reports: real PNGs with something drawn in them, and a page with the tables and the manifest."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from crypto_ml.data_loader import CryptoLoader
from crypto_ml.evaluation import BacktestRun
from crypto_ml.exceptions import InvalidParameterError
from crypto_ml.manager import CryptoManager
from crypto_ml.report import interval_rows, run_title, significance_rows, summary_rows, verdict_lines, write_report


@pytest.fixture(scope="module")
def coins_dir(synth_dir, tmp_path_factory):
    """The synthetic coins plus a 6-day coin that no 5-day backtest window fits."""
    folder = tmp_path_factory.mktemp("report") / "coins"
    shutil.copytree(synth_dir, folder)
    source = sorted(folder.glob("*.csv"))[0].read_text().splitlines()
    (folder / "Shortcoin.csv").write_text("\n".join(source[:7]) + "\n")
    return folder


@pytest.fixture(scope="module")
def run(coins_dir) -> BacktestRun:
    return CryptoManager(CryptoLoader(coins_dir), engine="local", workers=2).backtest(
        ["drift", "linear"], horizon=5, windows=3
    )


def assert_real_png(path):
    from matplotlib.image import imread

    assert path.stat().st_size > 10_000, path
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


def test_report_writes_plots_and_a_page_with_tables_and_manifest(run, tmp_path):
    path = write_report(run, tmp_path / "report")
    assert path == tmp_path / "report" / "report.md"
    assert_real_png(tmp_path / "report" / "forecasts.png")
    assert_real_png(tmp_path / "report" / "mase_by_model.png")
    text = path.read_text()
    assert "| model" in text and "median MASE" in text and "beats naive" in text
    for row in summary_rows(run):
        assert f"| {row['model']}" in text
    assert "## Against the random walk" in text and "**drift** has a lower mean MASE than naive on" in text
    assert "## Error by forecast step" in text and "|      5 |" in text
    assert "](forecasts.png)" in text and "](mase_by_model.png)" in text
    assert run.data_hash in text and '"kind": "backtest"' in text and "numpy" in text
    assert "shortcoin" in text and "SeriesTooShortError" in text  # the failures section
    for name in ("fan_charts.png", "calibration.png", "pit_histograms.png"):
        assert_real_png(tmp_path / "report" / name)
        assert f"]({name})" in text
    for section in ("## Prediction intervals", "## Coverage by volatility regime", "## Skill or luck", "## Verdicts"):
        assert section in text
    assert "Winkler vs naive" in text and "sign p (optimistic)" in text and "- naive: benchmark (80% covers" in text
    for line in verdict_lines(run):
        assert f"- {line}" in text
    assert "Quick mode" not in text


def test_a_quick_run_says_so(run, tmp_path):
    quick = BacktestRun(**{**run.__dict__, "quick": True})
    assert "quick mode: 5 windows, indicative only" in run_title(quick)
    assert "**Quick mode: 5 windows, indicative only.**" in write_report(quick, tmp_path).read_text()


def test_display_rows_format_the_tables(run):
    intervals = interval_rows(run)
    assert [(r["model"], r["level"]) for r in intervals][:2] == [("naive", "80%"), ("naive", "95%")]
    assert intervals[0]["Winkler vs naive"] == "1.00"
    tests = significance_rows(run)
    assert {r["loss"] for r in tests} == {"mase", "winkler_80", "winkler_95", "crps"}
    assert all(r["origins"] == "3" for r in tests)


def test_default_plots_are_the_three_longest_coins(run, tmp_path):
    lengths = {r["coin"]: r["n_points"] for r in run.ok}
    longest = sorted(lengths, key=lambda coin: -lengths[coin])[:3]
    text = write_report(run, tmp_path).read_text()
    assert f"Forecasts per window and model for {', '.join(longest)};" in text


def test_chosen_plot_coins(run, tmp_path):
    coin = run.coins[0]
    text = write_report(run, tmp_path, plot_coins=[coin, "Shortcoin"]).read_text()
    assert f"Forecasts per window and model for {coin};" in text
    assert "Not plotted (no successful window): shortcoin." in text
    with pytest.raises(InvalidParameterError, match="cannot plot 'nosuchcoin': not in this backtest"):
        write_report(run, tmp_path, plot_coins=["nosuchcoin"])


def test_report_without_the_data_still_plots_the_actuals_it_has(run, tmp_path, caplog):
    copy = BacktestRun(**{**run.__dict__, "data_path": str(tmp_path / "gone")})
    write_report(copy, tmp_path / "report")
    assert "plotting without the price history" in caplog.text
    assert_real_png(tmp_path / "report" / "forecasts.png")


def test_importing_the_library_does_not_import_matplotlib():
    code = (
        "import sys, crypto_ml, crypto_ml.report, crypto_ml.evaluation, crypto_ml.manager, crypto_ml.cli; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
