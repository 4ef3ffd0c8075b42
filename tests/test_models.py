"""The model contract, run over every registered model, and each model on a series whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from crypto_ml.exceptions import (
    CryptoMLError,
    DataFormatError,
    InvalidParameterError,
    NotFittedError,
    SeriesTooShortError,
    UnknownModelError,
)
from crypto_ml.models import MODEL_REGISTRY, available_models, get_model, resolve_name
from crypto_ml.models.registry import HEAVY_MODELS

ALL_MODELS = [pytest.param(name, marks=pytest.mark.deep) if name in HEAVY_MODELS else name
              for name in available_models()]
HORIZON = 10

# Deep models fit with small settings in the contract tests; their real
# behaviour is checked on known series below.
FAST = {"lstm": {"epochs": 2, "window": 8, "units": [4, 4], "min_windows": 3}}


def build(name: str, **params):
    return get_model(name, **{**FAST.get(name, {}), **params})


def random_walk(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.03))


# --- the common contract (scikit-learn's "check_estimator" idea) -------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_builds_with_defaults_and_reports_its_name(name):
    model = get_model(name)
    assert model.name == name
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
    y = random_walk(seed=3)
    np.testing.assert_array_equal(build(name).fit(y).predict(HORIZON), build(name).fit(y).predict(HORIZON))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_constant_series_forecasts_the_constant(name):
    forecast = build(name).fit(np.full(200, 7.25)).predict(HORIZON)
    np.testing.assert_allclose(forecast, 7.25, rtol=1e-6)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_tiny_prices_keep_their_scale(name):
    # Real coins trade at 3e-8; a model must not flatten them to 0 or blow them up.
    y = random_walk() * 3e-10
    forecast = build(name).fit(y).predict(HORIZON)
    assert np.all(np.abs(forecast) < 100 * y.max())
    assert np.all(np.abs(forecast - y[-1]) < 10 * (y.max() - y.min()))


# --- known answers ------------------------------------------------------------

T = np.arange(500, dtype=np.float64)
T_FUTURE = np.arange(500, 500 + HORIZON, dtype=np.float64)


def test_naive_repeats_the_last_value():
    np.testing.assert_array_equal(get_model("naive").fit([5.0, 3.0, 4.5]).predict(4), [4.5, 4.5, 4.5, 4.5])


def test_drift_extends_the_line_through_first_and_last():
    y = np.array([10.0, 30.0, 11.0, 16.0])  # slope (16 - 10) / 3 = 2
    np.testing.assert_allclose(get_model("drift").fit(y).predict(3), [18.0, 20.0, 22.0])


def test_linear_recovers_an_exact_trend():
    np.testing.assert_allclose(get_model("linear").fit(3 + 2 * T).predict(HORIZON), 3 + 2 * T_FUTURE, rtol=1e-12)


def test_linear_window_fits_only_the_recent_trend():
    y = np.concatenate([np.full(100, 50.0), 50.0 + 3 * np.arange(1, 51)])  # flat, then +3 a day
    forecast = get_model("linear", window=50).fit(y).predict(2)
    np.testing.assert_allclose(forecast, [50.0 + 3 * 51, 50.0 + 3 * 52], rtol=1e-10)


@pytest.mark.parametrize("name", ["svr_linear", "svr_rbf", "svr_poly"])
def test_svr_follows_a_linear_trend(name):
    # A tight tube: the default epsilon (0.05 std) tolerates that much misfit on purpose.
    forecast = get_model(name, epsilon=0.001).fit(3 + 2 * T).predict(HORIZON)
    np.testing.assert_allclose(forecast, 3 + 2 * T_FUTURE, rtol=0.02)


def test_svr_poly_recovers_a_quadratic_trend():
    def curve(t):
        return 5 + 0.1 * t + 0.01 * t**2

    np.testing.assert_allclose(get_model("svr_poly", epsilon=0.001).fit(curve(T)).predict(HORIZON), curve(T_FUTURE), rtol=0.01)


def test_svr_reports_convergence():
    model = get_model("svr_rbf").fit(3 + 2 * T)
    assert model.converged_ is True


# --- the registry ---------------------------------------------------------------


def test_registry_has_the_seed_models():
    assert {"naive", "drift", "linear", "svr_linear", "svr_rbf", "svr_poly"} <= set(MODEL_REGISTRY)


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
    with pytest.raises(InvalidParameterError, match=r"'linear' does not accept C; it accepts: window"):
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
    with pytest.raises(DataFormatError, match="positive prices"):
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
