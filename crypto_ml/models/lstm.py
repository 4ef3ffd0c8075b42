"""The seed's LSTM, trained properly and forecasting recursively.

Architecture (the seed's): LSTM(50, return_sequences) -> Dropout(0.2) ->
LSTM(100) -> Dropout(0.2) -> Dense(1, linear), mse loss, rmsprop, windows of
50 prices normalised as ``p / p0 - 1`` against each window's first price,
batch 512. What changed: it trains for many epochs with early stopping on a
validation split (the seed trained one epoch per request), and its multi-step
forecast rolls forward (the seed discarded ``np.append``'s result, so every
step reused the same frame).

TensorFlow is imported in ``fit``, never at module import.

A worker fits many coins with the same architecture. Building and compiling a
new Keras model per fit leaks about 20 MB in TensorFlow (every new model
traces new functions that are never freed) and costs half a second, so each
process keeps one compiled network per architecture and seed, and resets it
to its seeded initial state (weights, dropout seeds, optimizer slots) before
every fit: the same numbers as a fresh model, without the leak. A fitted
model keeps its own weights and puts them back into the shared network before
it predicts or is saved.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from typing import Any

import numpy as np

from ..exceptions import DataFormatError, InvalidParameterError
from .base import Forecaster

__all__ = ["LSTMModel", "make_windows"]

# (window, units, dropout, seed) -> (compiled network, its initial variables, its optimizer's initial variables)
_NETWORKS: OrderedDict[tuple[Any, ...], tuple[Any, list[Any], list[Any]]] = OrderedDict()
_MAX_NETWORKS = 4
# Which fitted model's weights each shared network holds now.
_HOLDER: dict[tuple[Any, ...], int] = {}
_TOKENS = itertools.count(1)


def make_windows(y: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs: each window normalised by its first price, and the next price on the same base.

    Returns:
        ``X`` of shape ``(len(y) - window, window, 1)`` and ``target`` of shape ``(len(y) - window,)``.
    """
    frames = np.lib.stride_tricks.sliding_window_view(y, window + 1)
    base = frames[:, :1]
    normalised = frames / base - 1.0  # ratios: as safe for a 3e-8 coin as for bitcoin
    return normalised[:, :window, None].astype(np.float32), normalised[:, window].astype(np.float32)


class LSTMModel(Forecaster):
    """Two stacked LSTMs on normalised windows, forecasting one step and feeding it back.

    Args:
        window: Prices per input window (the seed's 50).
        units: Units of the two LSTM layers.
        dropout: Dropout after each LSTM layer.
        epochs: Maximum training epochs; early stopping usually ends sooner.
        batch_size: Windows per gradient step (the seed's 512).
        validation_split: Share of the most recent windows held out to stop early.
        patience: Epochs without validation improvement before stopping.
        min_windows: Fewest training windows accepted; with the default window
            this asks for 60 prices, the window plus a 10-day horizon.
        seed: Seeds Python, NumPy and the backend, for repeatable training.
    """

    name = "lstm"
    description = "the seed's two-layer Keras LSTM on windows of 50 normalised prices, fed back step by step"
    extra = "deep"
    requires = ("keras", "tensorflow")

    def __init__(
        self,
        *,
        window: int = 50,
        units: tuple[int, int] | list[int] = (50, 100),
        dropout: float = 0.2,
        epochs: int = 50,
        batch_size: int = 512,
        validation_split: float = 0.1,
        patience: int = 5,
        min_windows: int = 10,
        seed: int = 0,
    ) -> None:
        self.window = window
        self.units = units
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.validation_split = validation_split
        self.patience = patience
        self.min_windows = min_windows
        self.seed = seed

    @property
    def min_points(self) -> int:  # type: ignore[override]
        return int(self.window) + int(self.min_windows)

    def _check_params(self) -> None:
        for name in ("window", "epochs", "batch_size", "patience", "min_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"lstm: {name} must be an integer >= 1, got {value!r}")
        if len(self.units) != 2 or not all(isinstance(u, int) and u >= 1 for u in self.units):
            raise InvalidParameterError(f"lstm: units must be two positive integers, got {self.units!r}")
        if not 0 <= self.dropout < 1 or not 0 <= self.validation_split < 1:
            raise InvalidParameterError("lstm: dropout and validation_split must be in [0, 1)")

    def build(self) -> Any:
        """The untrained Keras model (seeded)."""
        from ..deep import keras_module

        keras = keras_module()
        keras.utils.set_random_seed(self.seed)
        model = keras.Sequential(
            [
                keras.Input(shape=(self.window, 1)),
                keras.layers.LSTM(self.units[0], return_sequences=True),
                keras.layers.Dropout(self.dropout),
                keras.layers.LSTM(self.units[1]),
                keras.layers.Dropout(self.dropout),
                keras.layers.Dense(1, activation="linear"),
            ]
        )
        model.compile(loss="mse", optimizer="rmsprop")
        return model

    def _fit(self, y: np.ndarray) -> None:
        self._check_params()
        if np.any(y <= 0):
            raise DataFormatError("lstm needs positive prices: each window is normalised by its first price")
        from ..deep import keras_module

        keras = keras_module()
        X, target = make_windows(y, self.window)
        # Keras holds out the *last* windows, so validation is always later than training.
        held_out = int(len(X) * self.validation_split)
        monitor = "val_loss" if held_out >= 1 else "loss"
        model = self._reset_network()
        keras.utils.set_random_seed(self.seed)  # the same shuffles on every fit
        history = model.fit(
            X,
            target,
            epochs=self.epochs,
            batch_size=self.batch_size,
            validation_split=self.validation_split if held_out >= 1 else 0.0,
            callbacks=[
                keras.callbacks.EarlyStopping(monitor=monitor, patience=self.patience, restore_best_weights=True)
            ],
            shuffle=True,
            verbose=0,
        )
        self.model_ = model
        self.history_ = {key: [float(v) for v in values] for key, values in history.history.items()}
        self.epochs_run_ = len(history.history["loss"])
        self.last_window_ = y[-self.window :].copy()
        # Private (no trailing underscore): the store saves model_ itself, in .keras format.
        self._token = next(_TOKENS)
        self._weights = [v.numpy() for v in model.variables]
        _HOLDER[self._network_key] = self._token

    def _reset_network(self) -> Any:
        """This process's compiled network for this architecture, back in its seeded initial state."""
        self._network_key = (self.window, tuple(self.units), self.dropout, self.seed)
        entry = _NETWORKS.get(self._network_key)
        if entry is None:
            model = self.build()
            model.optimizer.build(model.trainable_variables)
            entry = (model, [v.numpy() for v in model.variables], [v.numpy() for v in model.optimizer.variables])
            _NETWORKS[self._network_key] = entry
            while len(_NETWORKS) > _MAX_NETWORKS:
                _HOLDER.pop(_NETWORKS.popitem(last=False)[0], None)
        model, initial, optimizer_initial = entry
        for variable, value in zip(model.variables, initial, strict=True):
            variable.assign(value)
        for variable, value in zip(model.optimizer.variables, optimizer_initial, strict=True):
            variable.assign(value)
        _HOLDER.pop(self._network_key, None)
        return model

    def prepare_state(self) -> None:
        """Put this model's weights back into the network it shares with later fits in this process."""
        key = getattr(self, "_network_key", None)
        if key is not None and _HOLDER.get(key) != self._token:
            for variable, value in zip(self.model_.variables, self._weights, strict=True):
                variable.assign(value)
            _HOLDER[key] = self._token

    def training_metrics(self) -> dict[str, Any]:
        metrics: dict[str, Any] = {"epochs_run": self.epochs_run_, "loss": self.history_["loss"][-1]}
        if "val_loss" in self.history_:
            metrics["best_val_loss"] = min(self.history_["val_loss"])
        return metrics

    def _predict(self, h: int) -> np.ndarray:
        return self.forecast_from(self.last_window_, h)

    def forecast_from(self, recent: np.ndarray, h: int) -> np.ndarray:
        """Forecast ``h`` steps after ``recent`` (at least ``window`` prices), feeding each step back.

        This is what lets a stored model forecast newer data without retraining.
        """
        self.prepare_state()
        recent = np.asarray(recent, dtype=np.float64)
        if recent.size < self.window:
            raise DataFormatError(f"lstm needs the last {self.window} prices to forecast, got {recent.size}")
        frame = recent[-self.window :].copy()
        forecast = np.empty(h)
        for step in range(h):
            base = frame[0]
            x = (frame / base - 1.0).astype(np.float32).reshape(1, self.window, 1)
            # predict_on_batch runs the compiled graph: ~3 ms a step here, against
            # ~40 ms for predict() (dataset setup) and ~130 ms for an eager call.
            next_normalised = float(np.asarray(self.model_.predict_on_batch(x))[0, 0])
            forecast[step] = base * (next_normalised + 1.0)  # de-normalised against this frame's own base
            frame = np.append(frame[1:], forecast[step])
        return forecast
