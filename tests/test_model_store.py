"""The model store: exact round trips, idempotent saves, and refusing anything that is not ours."""

from __future__ import annotations

import json
import os
import pickle
import re

import numpy as np
import pytest

from crypto_ml.exceptions import IncompatibleModelError, ModelStoreError
from crypto_ml.model_store import ModelStore
from crypto_ml.models import available_models, get_model
from crypto_ml.models.registry import HEAVY_MODELS

FAST = {"lstm": {"epochs": 2, "window": 8, "units": [4, 4], "min_windows": 3}}
STORABLE = [name for name in available_models() if get_model(name).storable]
MODELS = [pytest.param(n, marks=pytest.mark.deep) if n in HEAVY_MODELS else n for n in STORABLE]


def prices(n: int = 300, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 50.0 * np.exp(np.cumsum(rng.normal(0, 0.03, n)))


def save(store: ModelStore, name: str, y: np.ndarray | None = None, coin: str = "bitcoin") -> tuple[str, object]:
    y = prices() if y is None else y
    model = get_model(name, **FAST.get(name, {})).fit(y)
    model_id = store.save(
        model, coin=coin, data={"n_obs": y.size, "series_sha256": str(hash(y.tobytes()))}, metrics={"fit_seconds": 0.1}
    )
    return model_id, model


@pytest.mark.parametrize("name", ["ets", "linear+conformal"])
def test_models_whose_state_is_not_plain_data_are_refused_with_the_reason(tmp_path, name):
    pytest.importorskip("statsforecast")
    with pytest.raises(ModelStoreError, match=rf"{re.escape(name)} cannot be stored: .* never pickles"):
        save(ModelStore(tmp_path), name)
    assert not list(tmp_path.rglob("*"))  # nothing half-written


@pytest.mark.parametrize("name", MODELS)
def test_save_then_load_predicts_identically(tmp_path, name):
    store = ModelStore(tmp_path)
    model_id, model = save(store, name)
    loaded, metadata = store.load(model_id)
    np.testing.assert_array_equal(loaded.predict(10), model.predict(10))
    assert metadata["model"] == name and metadata["coin"] == "bitcoin"
    assert metadata["params"] == model.get_params()
    assert {"python", "numpy", "scikit-learn", "keras", "crypto_ml"} <= set(metadata["versions"])
    assert metadata["created_at"] and metadata["metrics"]["fit_seconds"] == 0.1
    files = {p.name for p in (tmp_path / model_id).iterdir()}
    assert not any(f.endswith((".pkl", ".pickle", ".joblib")) for f in files)


def test_the_same_training_overwrites_rather_than_duplicates(tmp_path):
    store = ModelStore(tmp_path)
    first, _ = save(store, "linear")
    second, _ = save(store, "linear")
    assert first == second
    assert len(store.list(model="linear", coin="bitcoin")) == 1
    other, _ = save(store, "linear", prices(seed=1))
    assert other != first and store.latest("linear", "bitcoin") == other


def test_missing_model_says_how_to_train_one(tmp_path):
    with pytest.raises(ModelStoreError, match="train one with `crypto-ml train --model lstm --coins neblio`"):
        ModelStore(tmp_path).latest("lstm", "neblio")
    with pytest.raises(ModelStoreError, match="is not a model id"):
        ModelStore(tmp_path).load("../../etc/passwd")


def test_coin_names_that_are_not_path_safe(tmp_path):
    model_id, _ = save(ModelStore(tmp_path), "naive", coin="BTC/USD")
    assert model_id.startswith("naive/BTC%2FUSD/")
    assert ModelStore(tmp_path).latest("naive", "BTC/USD") == model_id


def test_an_altered_file_is_refused(tmp_path):
    store = ModelStore(tmp_path)
    model_id, _ = save(store, "svr_rbf")
    path = tmp_path / model_id / "regressor_.skops"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ModelStoreError, match="does not match the sha256 recorded at training"):
        store.load(model_id)


class Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plant(store_dir, model_id, filename, payload: bytes) -> None:
    """An attacker with write access replaces a model file and fixes up the recorded hash."""
    import hashlib

    directory = store_dir / model_id
    (directory / filename).write_bytes(payload)
    metadata = json.loads((directory / "metadata.json").read_text())
    for entry in metadata["files"].values():
        if entry["file"] == filename:
            entry["sha256"] = hashlib.sha256(payload).hexdigest()
    (directory / "metadata.json").write_text(json.dumps(metadata))


def test_a_pickle_planted_as_a_skops_file_never_runs(tmp_path):
    store = ModelStore(tmp_path)
    model_id, _ = save(store, "linear")
    marker = tmp_path / "pwned"
    plant(tmp_path, model_id, "regressor_.skops", pickle.dumps(Exploit(marker)))
    with pytest.raises(ModelStoreError, match=r"refusing .*regressor_.skops"):
        store.load(model_id)
    assert not marker.exists()


@pytest.mark.deep
def test_a_pickle_planted_as_a_keras_file_never_runs(tmp_path):
    store = ModelStore(tmp_path)
    model_id, _ = save(store, "lstm")
    marker = tmp_path / "pwned"
    plant(tmp_path, model_id, "model_.keras", pickle.dumps(Exploit(marker)))
    with pytest.raises(ModelStoreError, match=r"not a loadable .keras file"):
        store.load(model_id)
    assert not marker.exists()


def test_files_the_metadata_does_not_list_are_never_opened(tmp_path):
    store = ModelStore(tmp_path)
    model_id, model = save(store, "svr_linear")
    marker = tmp_path / "pwned"
    (tmp_path / model_id / "model.pkl").write_bytes(pickle.dumps(Exploit(marker)))
    loaded, _ = store.load(model_id)
    np.testing.assert_array_equal(loaded.predict(3), model.predict(3))
    assert not marker.exists()


def test_skops_files_with_unexpected_types_are_refused(tmp_path):
    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    store = ModelStore(tmp_path)
    model_id, _ = save(store, "linear")
    path = tmp_path / "other.skops"
    sio.dump(make_pipeline(StandardScaler()), path)
    plant(tmp_path, model_id, "regressor_.skops", path.read_bytes())
    with pytest.raises(ModelStoreError, match=r"holds types we do not load: sklearn.pipeline.Pipeline"):
        store.load(model_id)


@pytest.mark.parametrize("library", ["numpy", "scikit-learn"])
def test_another_major_library_version_is_incompatible(tmp_path, library):
    store = ModelStore(tmp_path)
    model_id, _ = save(store, "linear")
    path = tmp_path / model_id / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata["versions"][library] = "0.1.0"
    path.write_text(json.dumps(metadata))
    with pytest.raises(IncompatibleModelError, match=f"trained with {library} 0.1.0.*retrain it"):
        store.load(model_id)


def test_another_store_format_is_incompatible(tmp_path):
    store = ModelStore(tmp_path)
    model_id, _ = save(store, "naive")
    path = tmp_path / model_id / "metadata.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format": 99}))
    with pytest.raises(IncompatibleModelError, match="store format 99"):
        store.load(model_id)


def test_unfitted_models_are_not_stored(tmp_path):
    with pytest.raises(ModelStoreError, match="unfitted"):
        ModelStore(tmp_path).save(get_model("naive"), coin="x", data={}, metrics={})


def test_default_root_comes_from_settings(monkeypatch, tmp_path):
    from crypto_ml.config import get_settings

    monkeypatch.setenv("CRYPTO_ML_MODEL_STORE", str(tmp_path / "models"))
    get_settings.cache_clear()
    assert ModelStore().root == tmp_path / "models"
