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
from crypto_ml.models import MODEL_REGISTRY, available_models, get_model, get_model_class, resolve_name

ALL_MODELS = available_models()
HORIZON = 10


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
    model = get_model(name)
    assert model.fit(random_walk()) is model
    learned = [attr for attr in vars(model) if attr.endswith("_")]
    assert "n_obs_" in learned and len(learned) >= 2


@pytest.mark.parametrize("name", ALL_MODELS)
def test_predict_has_shape_h_and_is_finite(name):
    forecast = get_model(name).fit(random_walk()).predict(HORIZON)
    assert forecast.shape == (HORIZON,)
    assert forecast.dtype == np.float64
    assert np.all(np.isfinite(forecast))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_predict_before_fit_raises_not_fitted(name):
    with pytest.raises(NotFittedError, match="call fit"):
        get_model(name).predict(HORIZON)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_too_short_series_raises_clear_error(name):
    model = get_model(name)
    too_short = random_walk()[: get_model_class(name).min_points - 1]
    with pytest.raises(SeriesTooShortError, match=f"needs at least {model.min_points} points") as info:
        model.fit(too_short)
    assert isinstance(info.value, DataFormatError) and isinstance(info.value, CryptoMLError)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_accepts_its_minimum_length(name):
    cls = get_model_class(name)
    forecast = get_model(name).fit(random_walk()[: cls.min_points]).predict(3)
    assert np.all(np.isfinite(forecast))


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("bad_h", [0, -1, 2.5, "10", True])
def test_bad_horizon_raises(name, bad_h):
    model = get_model(name).fit(random_walk())
    with pytest.raises(InvalidParameterError, match="horizon must be an integer >= 1"):
        model.predict(bad_h)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_non_finite_or_2d_input_raises_data_format_error(name):
    y = random_walk()
    y[10] = np.nan
    with pytest.raises(DataFormatError, match="NaN or infinite"):
        get_model(name).fit(y)
    with pytest.raises(DataFormatError, match="1-D"):
        get_model(name).fit(random_walk().reshape(-1, 2))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_deterministic(name):
    y = random_walk(seed=3)
    np.testing.assert_array_equal(get_model(name).fit(y).predict(HORIZON), get_model(name).fit(y).predict(HORIZON))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_constant_series_forecasts_the_constant(name):
    forecast = get_model(name).fit(np.full(200, 7.25)).predict(HORIZON)
    np.testing.assert_allclose(forecast, 7.25, rtol=1e-6)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_tiny_prices_keep_their_scale(name):
    # Real coins trade at 3e-8; a model must not flatten them to 0 or blow them up.
    y = random_walk() * 3e-10
    forecast = get_model(name).fit(y).predict(HORIZON)
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
    assert all(name in message for name in ALL_MODELS)
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
