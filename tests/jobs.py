"""Importable task functions and models for tests, so real pool processes and workers can run them."""

from __future__ import annotations

import glob
import os
import tempfile
from typing import ClassVar

import numpy as np

from crypto_ml.models.base import Forecaster


def square(payload: dict) -> dict:
    """Square ``x``; raise when asked to; kill the whole process when asked to."""
    if payload.get("die"):
        os._exit(17)  # what a segfault or the OOM killer looks like to the pool
    if payload.get("fail"):
        raise ValueError(f"asked to fail on {payload['x']}")
    return {"x": payload["x"], "square": payload["x"] ** 2, "pid": os.getpid()}


def where(payload: dict) -> list[dict]:
    """One record per series naming the process that ran it.

    Its payloads name a ``model`` (and may carry ``windows``), so the local engine
    estimates their cost as it does a forecast's, without forecasting anything.
    Raises for a batch holding a coin listed in ``fail_on``; with ``scribble``,
    overwrites the prices it was sent, as a careless model might.
    """
    coins = [item["coin"] for item in payload["series"]]
    failing = sorted(set(coins) & set(payload.get("fail_on") or []))
    if failing:
        raise ValueError(f"asked to fail on {failing[0]}")
    if payload.get("scribble"):
        for item in payload["series"]:
            item["prices"][:] = -1.0
    return [{"coin": coin, "pid": os.getpid()} for coin in coins]


def shared_prices_files() -> list[str]:
    """The local engine's shared price files that exist right now, in /dev/shm and the temporary directory."""
    return sorted(
        path for folder in ("/dev/shm", tempfile.gettempdir()) for path in glob.glob(f"{folder}/crypto_ml-prices-*")
    )


def price_sums(payload: dict) -> list[dict]:
    """Each series' price sum, with the shared price files seen while running; ``scribble`` as in ``where``."""
    records = [
        {"coin": item["coin"], "sum": float(np.sum(item["prices"])), "files": shared_prices_files()}
        for item in payload["series"]
    ]
    if payload.get("scribble"):
        for item in payload["series"]:
            item["prices"][:] = -1.0
    return records


# --- models for backtest leakage tests (registered by tests through MODEL_REGISTRY as "jobs:Class") ---


class SpyModel(Forecaster):
    """The random walk, recording a copy of every series it is fitted on (in this process)."""

    name = "spy"
    min_points = 1
    fitted: ClassVar[list[np.ndarray]] = []

    def __init__(self) -> None:
        pass

    def _fit(self, y: np.ndarray) -> None:
        SpyModel.fitted.append(y.copy())
        self.last_ = float(y[-1])

    def _predict(self, h: int) -> np.ndarray:
        return np.full(h, self.last_)


class PeekingModel(Forecaster):
    """A cheat: if the array it is fitted on is a view into a longer series, it forecasts that series' future.

    Handed ``prices[:cutoff]`` as a slice, ``y.base`` is the whole series and
    this model scores perfectly; handed a copy, it can only repeat the last price.
    """

    name = "peeking"
    min_points = 1
    peeked: ClassVar[list[int]] = []

    def __init__(self) -> None:
        pass

    def _fit(self, y: np.ndarray) -> None:
        root = y
        while isinstance(root.base, np.ndarray):
            root = root.base
        self.future_ = None
        if root is not y and root.size > y.size and np.array_equal(root[: y.size], y):
            self.future_ = np.array(root[y.size :])
            PeekingModel.peeked.append(int(y.size))
        self.last_ = float(y[-1])

    def _predict(self, h: int) -> np.ndarray:
        if self.future_ is not None and self.future_.size >= h:
            return self.future_[:h]
        return np.full(h, self.last_)


class MutatingModel(Forecaster):
    """A vandal: overwrites the array it was fitted on, which would corrupt any window or model sharing it."""

    name = "mutating"
    min_points = 1

    def __init__(self) -> None:
        pass

    def _fit(self, y: np.ndarray) -> None:
        self.last_ = float(y[-1])
        y[:] = -1.0

    def _predict(self, h: int) -> np.ndarray:
        return np.full(h, self.last_)


class FussyModel(Forecaster):
    """The random walk, except that fitting raises RuntimeError when the last training price exceeds ``fail_above``."""

    name = "fussy"
    min_points = 1

    def __init__(self, *, fail_above: float = float("inf")) -> None:
        self.fail_above = fail_above

    def _fit(self, y: np.ndarray) -> None:
        if y[-1] > self.fail_above:
            raise RuntimeError(f"last price {y[-1]} is above {self.fail_above}")
        self.last_ = float(y[-1])

    def _predict(self, h: int) -> np.ndarray:
        return np.full(h, self.last_)


# --- a model whose optional extra is never installed (registered by tests as "jobs:PhantomModel") ---


class PhantomModel(Forecaster):
    """The random walk, declaring a dependency no environment has: the missing-extra paths, for real."""

    name = "phantom"
    min_points = 2
    description = "a test model whose extra is never installed"
    extra = "phantom"
    requires = ("crypto_ml_no_such_module",)

    def __init__(self) -> None:
        pass

    def _fit(self, y: np.ndarray) -> None:
        self.last_ = float(y[-1])

    def _predict(self, h: int) -> np.ndarray:
        return np.full(h, self.last_)
