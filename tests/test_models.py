"""The model contract, run over every registered model, and each model on a series whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from crypto_ml.exceptions import (
    CryptoMLError,
    DataFormatError,
    InvalidParameterError,
    NonPositiveForecastError,
    NotFittedError,
    SeriesTooShortError,
    UnknownModelError,
)
from crypto_ml.models import MODEL_REGISTRY, available_models, get_model, resolve_name
from crypto_ml.models.base import validate_levels
from crypto_ml.models.registry import HEAVY_MODELS, base_name, check_installed, missing_extra

from conftest import skip_or_fail

# Every registered model, plus the calibration layer around a cheap and a seed model.
CALIBRATED = ["naive+conformal", "linear+conformal"]
ALL_MODELS = [
    pytest.param(name, marks=pytest.mark.deep) if name in HEAVY_MODELS else name
    for name in [*available_models(), *CALIBRATED]
]
HORIZON = 10

# Deep models fit with small settings in the contract tests; their real
# behaviour is checked on known series below.
FAST = {"lstm": {"epochs": 2, "window": 8, "units": [4, 4], "min_windows": 3}, "garch": {"simulations": 500}}


def build(name: str, **params):
    extra = missing_extra(name)
    if extra is not None:
        skip_or_fail(f"{name} needs the '{extra}' extra: pip install -e '.[{extra}]'")
    return get_model(name, **{**FAST.get(base_name(name), {}), **params})


def random_walk(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.03))


# --- the common contract (scikit-learn's "check_estimator" idea) -------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_builds_with_defaults_and_reports_its_name(name):
    model = get_model(name)
    assert model.name == name
    assert model.description and model.interval_method
    assert set(model.get_params()) == set(type(model).param_names())


@pytest.mark.parametrize("name", ALL_MODELS)
def test_fit_returns_self_and_sets_learned_attributes(name):
    model = build(name)
    assert model.fit(random_walk()) is model
    learned = [attr for attr in vars(model) if attr.endswith("_")]
    assert "n_obs_" in learned and len(learned) >= 2


@pytest.mark.parametrize("name", ALL_MODELS)
def test_predict_has_shape_h_and_is_finite(name):
    forecast = build(name).fit(random_walk()).predict(HORIZON)
    assert forecast.shape == (HORIZON,)
    assert forecast.dtype == np.float64
    assert np.all(np.isfinite(forecast))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_predict_before_fit_raises_not_fitted(name):
    with pytest.raises(NotFittedError, match="call fit"):
        build(name).predict(HORIZON)
    with pytest.raises(NotFittedError, match="call fit"):
        build(name).predict_interval(HORIZON)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_intervals_are_positive_and_nest_around_the_point(name):
    model = build(name).fit(random_walk())
    forecast = model.predict_interval(HORIZON, levels=(50, 80, 95))
    np.testing.assert_array_equal(forecast.point, model.predict(HORIZON))
    assert forecast.levels == (50, 80, 95)
    inner_lo = inner_hi = forecast.point
    for level in (50, 80, 95):
        lo, hi = forecast.interval(level)
        assert lo.shape == hi.shape == (HORIZON,)
        assert np.all(lo > 0) and np.all(np.isfinite(hi))
        assert np.all(lo <= inner_lo) and np.all(hi >= inner_hi), level
        inner_lo, inner_hi = lo, hi
    # Some uncertainty is priced: the 95 % interval of a noisy series has width at every step.
    assert np.all(forecast.upper[95] > forecast.lower[95])
    record = forecast.to_record()
    assert set(record) == {"forecast", "lo_50", "hi_50", "lo_80", "hi_80", "lo_95", "hi_95"}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_default_levels_are_80_and_95(name):
    forecast = build(name).fit(random_walk()).predict_interval(3)
    assert forecast.levels == (80, 95)


@pytest.mark.parametrize("bad", [0, 100, -5, "abc", [], "80,,x"])
def test_bad_levels_are_named(bad):
    model = get_model("naive").fit(random_walk())
    with pytest.raises(InvalidParameterError, match="level"):
        model.predict_interval(HORIZON, levels=bad)


def test_levels_parse_sort_and_dedupe():
    assert validate_levels("95, 80,80") == (80, 95)
    assert validate_levels([97.5, 50]) == (50, 97.5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_too_short_series_raises_clear_error(name):
    model = build(name)
    too_short = random_walk()[: model.min_points - 1]
    with pytest.raises(SeriesTooShortError, match=f"needs at least {model.min_points} points") as info:
        model.fit(too_short)
    assert isinstance(info.value, DataFormatError) and isinstance(info.value, CryptoMLError)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_accepts_its_minimum_length(name):
    model = build(name)
    forecast = model.fit(random_walk()[: model.min_points]).predict(3)
    assert np.all(np.isfinite(forecast))


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("bad_h", [0, -1, 2.5, "10", True])
def test_bad_horizon_raises(name, bad_h):
    model = build(name).fit(random_walk())
    with pytest.raises(InvalidParameterError, match="horizon must be an integer >= 1"):
        model.predict(bad_h)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_non_finite_or_2d_input_raises_data_format_error(name):
    y = random_walk()
    y[10] = np.nan
    with pytest.raises(DataFormatError, match="NaN or infinite"):
        build(name).fit(y)
    with pytest.raises(DataFormatError, match="1-D"):
        build(name).fit(random_walk().reshape(-1, 2))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_deterministic(name):
    def outcome(y):
        try:
            return build(name).fit(y).predict_interval(HORIZON).to_record()
        except NonPositiveForecastError as exc:  # a seed trend that crosses zero must refuse the same way twice
            return str(exc)

    for seed in (3, 4):
        y = random_walk(seed=seed)
        assert outcome(y) == outcome(y)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_constant_series_forecasts_the_constant(name):
    model = build(name).fit(np.full(200, 7.25))
    np.testing.assert_allclose(model.predict(HORIZON), 7.25, rtol=1e-6)
    forecast = model.predict_interval(HORIZON)
    np.testing.assert_allclose(forecast.lower[95], 7.25, rtol=1e-6)  # nothing ever moved: no spread to price
    np.testing.assert_allclose(forecast.upper[95], 7.25, rtol=1e-6)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_non_positive_prices_are_refused(name):
    y = random_walk()
    y[50] = 0.0
    with pytest.raises(DataFormatError, match="at or below zero"):
        build(name).fit(y)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_tiny_prices_keep_their_scale(name):
    # Real coins trade at 3e-8; a model must not flatten them to 0 or blow them up.
    y = random_walk() * 3e-10
    model = build(name).fit(y)
    forecast = model.predict(HORIZON)
    assert np.all(np.abs(forecast) < 100 * y.max())
    assert np.all(np.abs(forecast - y[-1]) < 10 * (y.max() - y.min()))
    intervals = model.predict_interval(HORIZON)
    assert np.all(intervals.lower[95] > 0) and np.all(intervals.upper[95] < 100 * y.max())


# --- known answers ------------------------------------------------------------

T = np.arange(500, dtype=np.float64)
T_FUTURE = np.arange(500, 500 + HORIZON, dtype=np.float64)


def test_naive_repeats_the_last_value():
    np.testing.assert_array_equal(get_model("naive").fit([5.0, 3.0, 4.5]).predict(4), [4.5, 4.5, 4.5, 4.5])


def test_naive_interval_is_the_empirical_quantiles_of_past_k_day_returns():
    # Log prices 0, 0.1, 0.3, 0.2, 0.4: one-day returns 0.1, 0.2, -0.1, 0.2; two-day returns 0.3, 0.1, 0.1.
    y = np.exp([0.0, 0.1, 0.3, 0.2, 0.4])
    forecast = get_model("naive").fit(y).predict_interval(2, levels=(50,))
    one_day = np.quantile([0.1, 0.2, -0.1, 0.2], [0.25, 0.75])  # linear interpolation: 0.05, 0.2
    two_day = np.quantile([0.3, 0.1, 0.1], [0.25, 0.75])  # 0.1, 0.2: both above 0, so lo stays at the point
    np.testing.assert_allclose(forecast.lower[50], y[-1] * np.exp([min(one_day[0], 0), min(two_day[0], 0)]))
    np.testing.assert_allclose(forecast.upper[50], y[-1] * np.exp([one_day[1], two_day[1]]))


def test_drift_carries_the_mean_daily_log_return_forward():
    y = np.array([10.0, 30.0, 11.0, 16.0])  # log slope: log(16 / 10) / 3 a day
    slope = np.log(1.6) / 3
    np.testing.assert_allclose(get_model("drift").fit(y).predict(3), 16.0 * np.exp(slope * np.arange(1, 4)))


def test_drift_never_forecasts_below_zero_for_a_collapsing_coin():
    y = np.array([100.0, 50.0, 10.0, 1.0])  # the additive line through first and last reaches -32 in one day
    assert np.all(get_model("drift").fit(y).predict(10) > 0)


def test_linear_recovers_an_exact_exponential_trend():
    y = 3.0 * np.exp(0.01 * T)
    np.testing.assert_allclose(
        get_model("linear", log_prices=True).fit(y).predict(HORIZON), 3.0 * np.exp(0.01 * T_FUTURE), rtol=1e-10
    )


def test_linear_by_default_is_the_seeds_line_on_raw_prices():
    np.testing.assert_allclose(get_model("linear").fit(3 + 2 * T).predict(HORIZON), 3 + 2 * T_FUTURE, rtol=1e-12)


def test_linear_on_raw_prices_refuses_a_line_through_zero():
    falling = 1000.0 - 2.5 * T  # reaches 0 at t = 400 and stays positive in the data until then
    with pytest.raises(NonPositiveForecastError, match=r"linear forecasts -1.5 at step 2"):
        get_model("linear").fit(falling[:400] + 1.0).predict(HORIZON)
    assert np.all(get_model("linear", log_prices=True).fit(falling[:400] + 1.0).predict(HORIZON) > 0)  # never


def test_linear_window_fits_only_the_recent_trend():
    y = np.concatenate([np.full(100, 50.0), 50.0 * np.exp(0.03 * np.arange(1, 51))])  # flat, then +3 % a day
    forecast = get_model("linear", window=50, log_prices=True).fit(y).predict(2)
    np.testing.assert_allclose(forecast, 50.0 * np.exp(0.03 * np.array([51, 52])), rtol=1e-10)


@pytest.mark.parametrize("name", ["svr_linear", "svr_rbf", "svr_poly"])
def test_svr_follows_a_linear_trend(name):
    # A tight tube: the default epsilon (0.05 std) tolerates that much misfit on purpose.
    forecast = get_model(name, epsilon=0.001).fit(3 + 2 * T).predict(HORIZON)
    np.testing.assert_allclose(forecast, 3 + 2 * T_FUTURE, rtol=0.02)


@pytest.mark.parametrize("name", ["svr_linear", "svr_rbf", "svr_poly"])
def test_svr_follows_an_exponential_trend_on_log_prices(name):
    forecast = get_model(name, epsilon=0.001, log_prices=True).fit(3.0 * np.exp(0.004 * T)).predict(HORIZON)
    np.testing.assert_allclose(forecast, 3.0 * np.exp(0.004 * T_FUTURE), rtol=0.02)


def test_svr_poly_recovers_a_quadratic_trend():
    def curve(t):
        return 5 + 0.1 * t + 0.01 * t**2

    forecast = get_model("svr_poly", epsilon=0.001).fit(curve(T)).predict(HORIZON)
    np.testing.assert_allclose(forecast, curve(T_FUTURE), rtol=0.01)


def test_svr_reports_convergence():
    model = get_model("svr_rbf").fit(3 + 2 * T)
    assert model.converged_ is True


# --- the registry ---------------------------------------------------------------


def test_registry_has_the_seed_models():
    assert {"naive", "drift", "linear", "svr_linear", "svr_rbf", "svr_poly"} <= set(MODEL_REGISTRY)


def test_registry_has_the_interval_models_and_the_calibration_layer():
    assert {"ewma", "garch", "ets", "theta", "arima"} <= set(MODEL_REGISTRY)
    assert resolve_name("Linear+Conformal") == "linear+conformal"
    assert resolve_name("deep_predict+conformal") == "lstm+conformal"
    assert base_name("svr_rbf+conformal") == "svr_rbf"


def test_calibration_parameters_and_base_parameters_are_routed():
    model = get_model("linear+conformal", window=30, origins=12)
    assert model.origins == 12 and model.base_params == {"window": 30}
    with pytest.raises(InvalidParameterError, match="'linear' does not accept C"):
        get_model("linear+conformal", C=1.0)
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        get_model("nope+conformal")


def test_every_model_says_which_extra_it_needs():
    for name in available_models():
        model_class = type(get_model(name))
        if model_class.requires:
            assert model_class.extra in {"deep", "stats"}, name
    assert get_model("naive").requires == () and missing_extra("naive") is None
    check_installed("ewma")  # numpy only: always runs


def test_unknown_model_lists_valid_names_and_suggests():
    with pytest.raises(UnknownModelError) as info:
        get_model("linaer")
    message = str(info.value)
    assert "unknown model 'linaer'" in message
    assert all(name in message for name in available_models())
    assert "Did you mean: linear" in message
    assert isinstance(info.value, KeyError) and isinstance(info.value, CryptoMLError)


def test_names_are_case_insensitive():
    assert resolve_name(" Linear ") == "linear"


def test_unknown_parameter_names_what_is_accepted():
    with pytest.raises(InvalidParameterError, match=r"'linear' does not accept C; it accepts: window, log_prices"):
        get_model("linear", C=10)
    with pytest.raises(InvalidParameterError, match="accepts: no parameters"):
        get_model("naive", window=3)


def test_invalid_parameter_value_is_a_clear_error():
    with pytest.raises(InvalidParameterError, match="window must be an int >= 2"):
        get_model("linear", window=1).fit(random_walk())


# --- the LSTM ---------------------------------------------------------------------

from crypto_ml.models.lstm import make_windows  # noqa: E402


def test_windows_are_normalised_by_their_first_price():
    X, target = make_windows(np.array([2.0, 4.0, 3.0, 6.0]), window=2)
    np.testing.assert_allclose(X[:, :, 0], [[0.0, 1.0], [0.0, -0.25]])
    np.testing.assert_allclose(target, [0.5, 0.5])  # 3/2 - 1 and 6/4 - 1


def test_lstm_is_the_seeds_deep_predict():
    assert resolve_name("deep_predict") == "lstm"
    assert get_model("lstm").get_params()["window"] == 50


def test_lstm_series_shorter_than_window_plus_horizon_fails_clearly():
    with pytest.raises(SeriesTooShortError, match="lstm needs at least 60 points, the series has 11"):
        get_model("lstm").fit(random_walk(11))


@pytest.mark.deep
def test_lstm_refuses_non_positive_prices():
    y = random_walk()
    y[5] = 0.0
    with pytest.raises(DataFormatError, match="at or below zero"):
        build("lstm").fit(y)


@pytest.mark.deep
def test_lstm_bad_params_are_named():
    with pytest.raises(InvalidParameterError, match="lstm: window must be an integer >= 1, got 0"):
        get_model("lstm", window=0).fit(random_walk())


@pytest.mark.deep
def test_lstm_normalisation_is_scale_free():
    # The same series at bitcoin's and at Sprouts' scale (3e-8) gives the same forecast, scaled.
    y = random_walk(200)
    big = build("lstm", seed=1).fit(y).predict(5)
    tiny = build("lstm", seed=1).fit(y * 1e-10).predict(5)
    np.testing.assert_allclose(tiny, big * 1e-10, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.deep
def test_lstm_beats_naive_on_a_sine_wave_by_a_wide_margin():
    """A recursion that does not roll forward forecasts the same value ten times and fails this."""
    t = np.arange(700)
    y = 10 + 3 * np.sin(2 * np.pi * t / 25)
    truth = 10 + 3 * np.sin(2 * np.pi * np.arange(700, 710) / 25)
    forecast = get_model("lstm", epochs=100, patience=10).fit(y).predict(HORIZON)
    lstm_mae = np.abs(forecast - truth).mean()
    naive_mae = np.abs(y[-1] - truth).mean()
    assert lstm_mae < 0.1 * naive_mae, (lstm_mae, naive_mae)
    assert np.ptp(forecast) > 1.0  # it follows the wave instead of repeating one value


@pytest.mark.deep
def test_lstm_fits_in_one_process_do_not_interfere():
    """Fits share one compiled network per architecture; each must still behave like a fresh model."""
    a, b = random_walk(150, seed=1), random_walk(150, seed=2)
    first = build("lstm").fit(a)
    first_forecast = first.predict(5)
    other = build("lstm").fit(b)
    np.testing.assert_array_equal(first.predict(5), first_forecast)  # b's fit did not overwrite a's weights
    np.testing.assert_array_equal(build("lstm").fit(a).predict(5), first_forecast)  # reset to the seeded start
    assert not np.array_equal(other.predict(5), first_forecast)


# --- every model over every coin: never a price at or below zero ----------------------------------


def _forecast_every_coin(name: str, loader) -> list[dict]:
    from crypto_ml.forecasting import forecast_series

    build(name)  # skips (or fails in CI) when the model's extra is missing
    params = FAST.get(base_name(name), {})
    records = []
    for coin in loader.get_crypto_names():
        try:
            prices = loader.get_prices(coin)
        except CryptoMLError:  # a broken file is the loader's business, tested there
            continue
        records.append(forecast_series(coin, prices, name, HORIZON, params, levels=(80, 95)))
    return records


def _assert_positive_or_refused(name: str, records: list[dict]) -> None:
    assert records
    for record in records:
        if record["status"] == "ok":
            values = [*record["forecast"], *record["lo_95"], *record["lo_80"], *record["hi_80"], *record["hi_95"]]
            assert min(values) > 0 and np.all(np.isfinite(values)), (name, record["coin"])
        else:  # the only acceptable refusals: too little history, or a fit that would cross zero (said so)
            assert record["error_type"] in {"SeriesTooShortError", "NonPositiveForecastError"}, record
            if record["error_type"] == "NonPositiveForecastError":
                assert "a price must be positive" in record["error"]


@pytest.mark.parametrize("name", ALL_MODELS)
def test_no_model_forecasts_a_non_positive_price_on_the_bundled_sample(name):
    from crypto_ml.data_loader import CryptoLoader

    records = _forecast_every_coin(name, CryptoLoader())
    _assert_positive_or_refused(name, records)
    # Every bundled coin is long enough for every model; only a seed trend crossing zero may refuse one.
    assert sum(r["status"] == "ok" for r in records) >= len(records) - 1, name


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_MODELS)
def test_no_model_forecasts_a_non_positive_price_on_the_real_coins(name, real_data_dir):
    from crypto_ml.data_loader import CryptoLoader

    records = _forecast_every_coin(name, CryptoLoader(real_data_dir))
    _assert_positive_or_refused(name, records)
    assert sum(r["status"] == "ok" for r in records) >= 90, name  # only the shortest coins may be refused
