"""CryptoManager end to end on the local engine: real files, real processes."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from crypto_ml.config import get_settings
from crypto_ml.data_loader import CryptoLoader
from crypto_ml.exceptions import InvalidParameterError, MissingDependencyError, UnknownModelError
from crypto_ml.manager import CryptoManager
from crypto_ml.models import MODEL_REGISTRY, get_model

SEED_LINE = re.compile(r"^[\w.-]+ \[\[[-+0-9.e ]+\]\]$")


@pytest.fixture
def manager(synth_dir) -> CryptoManager:
    return CryptoManager(CryptoLoader(synth_dir), engine="local", workers=2)


def test_every_coin_gets_the_same_forecast_as_fitting_it_directly(manager):
    run = manager.send_tasks("drift", horizon=10, verbose=False)
    loader = manager.loader
    assert [r.coin for r in run] == loader.get_crypto_names()
    assert len(run) == 12 and not run.failed
    for result in run:
        expected = get_model("drift").fit(loader.get_prices(result.coin)).predict(10)
        np.testing.assert_array_equal(result.forecast, expected)
        frame = loader.get_df(result.coin)
        assert result.last_date == frame["Date"].iloc[-1].date().isoformat()
        assert len(result.dates) == 10 and result.dates[0] > result.last_date
    assert run.engine == "local" and run.engine_reason == "local engine requested"


def test_prints_one_line_per_coin_in_the_seed_shape(manager, capsys):
    run = manager.send_tasks("naive", horizon=3)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(run)
    assert all(SEED_LINE.match(line) for line in lines), lines
    first = run.results[0]
    assert lines[0].startswith(f"{first.coin} [[")


def test_coins_subset_keeps_the_requested_order(manager):
    names = manager.loader.get_crypto_names()
    wanted = [names[3], names[0]]
    run = manager.send_tasks("drift", coins=wanted, horizon=2, verbose=False)
    assert [r.coin for r in run] == wanted


def test_unknown_coin_fails_alone_with_a_suggestion(manager, capsys):
    name = manager.loader.get_crypto_names()[0]
    run = manager.send_tasks("naive", coins=[name, name[:-1] + "x"], horizon=2)
    assert run[name].ok
    missing = run.failed[0]
    assert missing.error_type == "UnknownCoinError"
    assert name in missing.error  # the close match is suggested
    assert f"{missing.coin} FAILED UnknownCoinError" in capsys.readouterr().out


def test_broken_files_fail_by_name_and_good_ones_are_forecast(synth_dir, tmp_path):
    folder = tmp_path / "mixed"
    shutil.copytree(synth_dir, folder)
    (folder / "Empty Coin.csv").write_text("")
    (folder / "Junk.csv").write_bytes(b"\x00\x01\x02\xff\xfe binary")
    (folder / "Wrong.csv").write_text("a,b,c\n1,2,3\n")
    (folder / "Tiny.csv").write_text('Date,Open,High,Low,Close,Volume,Market Cap\n"Sep 22, 2017",1,1,1,1.5,-,-\n')
    run = CryptoManager(CryptoLoader(folder), engine="local").send_tasks("drift", verbose=False)
    failed = {r.coin: r for r in run.failed}
    assert set(failed) == {"empty_coin", "junk", "wrong", "tiny"}
    assert failed["tiny"].error_type == "SeriesTooShortError"
    for coin in ("empty_coin", "junk", "wrong"):
        assert failed[coin].error_type == "DataFormatError" and failed[coin].error
    assert len(run.ok) == 12


def test_batch_size_does_not_change_results(synth_dir):
    loader = CryptoLoader(synth_dir)
    one = CryptoManager(loader, engine="local", batch_size=1).send_tasks("svr_rbf", horizon=4, verbose=False)
    big = CryptoManager(loader, engine="local", batch_size=100).send_tasks("svr_rbf", horizon=4, verbose=False)
    assert [r.forecast for r in one] == [r.forecast for r in big]


def test_params_reach_the_model(manager):
    coin = manager.loader.get_crypto_names()[0]
    run = manager.send_tasks("linear", coins=[coin], horizon=3, params={"window": 30}, verbose=False)
    expected = get_model("linear", window=30).fit(manager.loader.get_prices(coin)).predict(3)
    np.testing.assert_array_equal(run[coin].forecast, expected)
    assert run.params == {"window": 30}


@pytest.mark.parametrize("horizon", [0, -3])
def test_bad_horizon_is_refused_before_dispatch(manager, horizon):
    with pytest.raises(InvalidParameterError, match="horizon must be an integer >= 1"):
        manager.send_tasks("naive", horizon=horizon)


def test_unknown_model_and_bad_params_are_refused(manager):
    with pytest.raises(UnknownModelError, match="valid models are"):
        manager.send_tasks("prophet")
    with pytest.raises(InvalidParameterError, match="does not accept"):
        manager.send_tasks("linear", params={"depth": 3})


def test_default_manager_forecasts_the_bundled_sample(capsys):
    run = CryptoManager(engine="local").send_tasks()
    assert run.model == "ewma" and run.levels == [80, 95]
    assert len(run) == 8 and not run.failed
    assert all(min(r.intervals["lo_95"]) > 0 for r in run)
    assert len(capsys.readouterr().out.strip().splitlines()) == 8


def test_the_default_model_comes_from_the_settings(monkeypatch, manager):
    monkeypatch.setenv("CRYPTO_ML_MODEL", "drift")
    get_settings.cache_clear()
    run = manager.send_tasks(coins=manager.loader.get_crypto_names()[:2], horizon=2, verbose=False)
    assert run.model == "drift" and [r.model for r in run] == ["drift", "drift"]


def test_every_result_carries_intervals_at_the_requested_levels(manager):
    coin = manager.loader.get_crypto_names()[0]
    run = manager.send_tasks("drift", coins=[coin], horizon=4, levels="50,95", verbose=False)
    assert run.levels == [50, 95] and run[coin].levels == [50, 95]
    y = manager.loader.get_prices(coin)
    expected = get_model("drift").fit(y).predict_interval(4, (50, 95))
    lower, upper = run[coin].interval(95)
    np.testing.assert_allclose(lower, expected.lower[95])
    np.testing.assert_allclose(upper, expected.upper[95])
    assert sorted(run[coin].intervals) == ["hi_50", "hi_95", "lo_50", "lo_95"]
    with pytest.raises(InvalidParameterError, match="outside"):
        manager.send_tasks("drift", levels=[100])


def test_a_missing_extra_is_refused_before_dispatch_on_the_local_engine(monkeypatch, manager):
    monkeypatch.setitem(MODEL_REGISTRY, "phantom", "jobs:PhantomModel")
    with pytest.raises(
        MissingDependencyError, match=r"install the 'phantom' extra: pip install 'crypto-ml\[phantom\]'"
    ):
        manager.send_tasks("phantom")
    with pytest.raises(MissingDependencyError, match="phantom"):
        manager.train("phantom")


def test_calibrated_deep_models_are_sent_one_coin_per_task(manager):
    series = [{"coin": str(i)} for i in range(40)]
    assert {len(b["series"]) for b in manager._batches(series, 2, {"model": "lstm+conformal"})} == {1}
    assert len(manager._batches(series, 2, {"model": "linear"})) == 8  # light: about four per slot


@pytest.mark.realdata
def test_all_100_real_coins_are_forecast_or_reported(real_data_dir):
    run = CryptoManager(CryptoLoader(real_data_dir), engine="local").send_tasks("linear", verbose=False)
    assert len(run) == 100
    assert all(r.ok or (r.error_type and r.error) for r in run)
    assert run["bitcoin"].last_date == "2017-09-22" and run["bitcoin"].n_obs == 1609
    assert run["neblio"].n_obs == 11


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("model", ["drift", "svr_linear", "svr_rbf", "svr_poly"])
def test_every_model_runs_on_the_real_coins(real_data_dir, model):
    run = CryptoManager(CryptoLoader(real_data_dir, max_points=365), engine="local").send_tasks(model, verbose=False)
    assert len(run) == 100
    # The seed's regressions refuse the few coins whose fit would cross zero, each with the reason; nothing else fails.
    assert all(r.error_type == "NonPositiveForecastError" and "must be positive" in r.error for r in run.failed)
    assert len(run.failed) <= 5, [(r.coin, r.error) for r in run.failed]
    assert all(np.all(np.isfinite(r.forecast)) and min(r.forecast) > 0 for r in run.ok)


def test_by_reference_gives_the_same_results_as_inline(synth_dir):
    loader = CryptoLoader(synth_dir)
    inline = CryptoManager(loader, engine="local").send_tasks("linear", verbose=False, transfer="inline")
    by_ref = CryptoManager(loader, engine="local").send_tasks("linear", verbose=False, transfer="reference")
    assert by_ref.transfer == "reference" and inline.transfer == "inline"
    assert [(r.coin, r.forecast, r.last_date) for r in by_ref] == [(r.coin, r.forecast, r.last_date) for r in inline]


def test_auto_transfer_sends_a_big_file_by_reference_to_the_local_engine_too(synth_dir, monkeypatch):
    import pandas as pd

    from crypto_ml.config import get_settings

    loader = CryptoLoader(synth_dir)
    small = CryptoManager(loader, engine="local").send_tasks("linear", verbose=False, transfer="auto")
    assert small.transfer == "inline"  # the sample is far under the 20 MB threshold
    monkeypatch.setenv("CRYPTO_ML_REFERENCE_THRESHOLD_MB", str(loader.size_bytes() / 2e6))
    get_settings.cache_clear()
    big = CryptoManager(loader, engine="local").send_tasks("linear", verbose=False, transfer="auto")
    assert big.transfer == "reference"
    assert [(r.coin, r.forecast) for r in big] == [(r.coin, r.forecast) for r in small]
    # Prices that exist only in memory stay inline: writing them out would cost more than the pool's pipe.
    coin = loader.get_crypto_names()[0]
    dates, prices = loader.get_dated_prices(coin)
    frame = pd.DataFrame({"symbol": coin, "date": dates, "close": prices})
    in_memory = CryptoManager(CryptoLoader.from_frame(frame), engine="local")
    assert in_memory.send_tasks("linear", verbose=False, transfer="auto").transfer == "inline"


def test_unknown_transfer_mode_is_refused(manager):
    with pytest.raises(InvalidParameterError, match="unknown transfer 'carrier-pigeon'"):
        manager.send_tasks("naive", transfer="carrier-pigeon")


@pytest.mark.broker
@pytest.mark.realdata
def test_send_tasks_on_celery_covers_the_real_coins(start_worker, real_data_dir, monkeypatch):
    start_worker("mgr1")
    start_worker("mgr2")
    monkeypatch.setenv("CRYPTO_ML_DATA_DIR", str(real_data_dir))
    get_settings.cache_clear()  # settings are read once per process; starting workers read them already
    run = CryptoManager(engine="celery").send_tasks(verbose=False)
    assert run.engine == "celery" and len(run) == 100
    assert all(r.ok or r.error for r in run)
