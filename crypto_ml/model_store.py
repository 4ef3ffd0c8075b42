"""A directory of trained models: train once, predict many.

Layout: ``<root>/<model>/<coin>/<version>/`` holding ``metadata.json`` and one
file per learned object that is not plain data: ``<attr>.keras`` (Keras's
native format) or ``<attr>.skops`` (scikit-learn estimators, in skops's
format). Plain learned values (floats, arrays) live in the metadata as JSON.
Nothing is ever pickled, and nothing is unpickled: Keras loads in safe mode,
skops loads only an allow-list of types, every file's sha256 is checked
against the metadata before it is opened, and files the metadata does not
list are never opened at all.

The version is a hash of (model, parameters, training data), so training the
same thing twice, e.g. when a task is redelivered after a worker crash,
overwrites one version instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from .exceptions import IncompatibleModelError, ModelStoreError
from .models import Forecaster, get_model_class
from .results import library_versions

__all__ = ["ModelStore", "STORE_FORMAT"]

log = logging.getLogger(__name__)

#: Bumped when the layout or metadata changes incompatibly. 2: every model keeps ``log_prices_``
#: for its prediction intervals, which format-1 models lack, so they are refused with "retrain it".
STORE_FORMAT = 2

# The estimators a .skops file may hold; anything else is refused.
_SKOPS_ALLOWED = frozenset(
    {
        "sklearn.svm._classes.SVR",
        "sklearn.linear_model._base.LinearRegression",
    }
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _major(version: str | None) -> str | None:
    return version.split(".")[0] if version else None


class ModelStore:
    """Trained models on disk, by id ``<model>/<coin>/<version>``.

    Args:
        root: The store directory; None uses ``CRYPTO_ML_MODEL_STORE``.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            from .config import get_settings

            root = get_settings().model_store
        self.root = Path(os.path.expanduser(root))

    def __repr__(self) -> str:
        return f"ModelStore({str(self.root)!r})"

    # --- writing ------------------------------------------------------------

    def save(self, model: Forecaster, *, coin: str, data: dict[str, Any], metrics: dict[str, Any]) -> str:
        """Store a fitted model; return its id.

        Args:
            model: A fitted model.
            coin: The coin it was trained on.
            data: What it was trained on: ``n_obs``, ``last_date``, ``series_sha256``, ...
            metrics: Training metrics (loss, epochs, seconds, ...).

        Raises:
            ModelStoreError: the model is not fitted or holds something we cannot store safely.
        """
        if not hasattr(model, "n_obs_"):
            raise ModelStoreError(f"cannot store an unfitted {model.name} model; call fit(y) first")
        if not model.storable:
            raise ModelStoreError(
                f"{model.name} cannot be stored: its fitted state is not plain data and the store never pickles; "
                "forecast it without --from-store (it refits in milliseconds to seconds)"
            )
        params = model.get_params()
        identity = json.dumps(
            {"model": model.name, "params": params, "data": data.get("series_sha256")}, sort_keys=True, default=str
        )
        version = hashlib.sha256(identity.encode()).hexdigest()[:16]
        model_id = f"{model.name}/{quote(coin, safe='')}/{version}"
        final = self.root / model_id
        staging = final.parent / f".tmp-{uuid.uuid4().hex}"
        staging.mkdir(parents=True)
        try:
            state, files = self._write_state(model, staging)
            metadata = {
                "format": STORE_FORMAT,
                "id": model_id,
                "model": model.name,
                "params": params,
                "coin": coin,
                "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "data": data,
                "metrics": metrics,
                "versions": library_versions(),
                "state": state,
                "files": files,
            }
            (staging / "metadata.json").write_text(json.dumps(metadata, indent=2, default=str) + "\n")
            self._swap_in(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("stored %s", model_id)
        return model_id

    @staticmethod
    def _write_state(model: Forecaster, directory: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        state: dict[str, Any] = {}
        files: dict[str, Any] = {}
        model.prepare_state()
        for attr, value in vars(model).items():
            if not attr.endswith("_"):
                continue
            if hasattr(value, "save") and type(value).__module__.startswith("keras"):
                path = directory / f"{attr}.keras"
                value.save(path)
                files[attr] = {"file": path.name, "kind": "keras", "sha256": _sha256(path)}
            elif type(value).__module__.startswith("sklearn"):
                import skops.io as sio

                path = directory / f"{attr}.skops"
                sio.dump(value, path)
                files[attr] = {"file": path.name, "kind": "skops", "sha256": _sha256(path)}
            elif isinstance(value, np.ndarray):
                state[attr] = {"ndarray": value.tolist(), "dtype": str(value.dtype)}
            elif isinstance(value, (np.generic,)):
                state[attr] = value.item()
            elif value is None or isinstance(value, (bool, int, float, str, list, dict)):
                state[attr] = value
            else:
                raise ModelStoreError(f"cannot store {model.name}.{attr} of type {type(value).__name__} safely")
        return state, files

    @staticmethod
    def _swap_in(staging: Path, final: Path) -> None:
        """Put a finished version in place; a same-id version (same model, params and data) is replaced."""
        if final.exists():
            old = final.parent / f".old-{uuid.uuid4().hex}"
            os.replace(final, old)
            os.replace(staging, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, final)

    # --- reading ------------------------------------------------------------

    def metadata(self, model_id: str) -> dict[str, Any]:
        """The metadata of a stored model.

        Raises:
            ModelStoreError: no such model, or its metadata is unreadable.
        """
        path = self._directory(model_id) / "metadata.json"
        if not path.is_file():
            raise ModelStoreError(f"no stored model {model_id!r} in {self.root}; see `crypto-ml train`")
        try:
            metadata = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelStoreError(f"the metadata of {model_id!r} is not valid JSON ({exc}); retrain it") from None
        if metadata.get("format") != STORE_FORMAT:
            raise IncompatibleModelError(
                f"{model_id!r} uses store format {metadata.get('format')!r}, "
                f"this version reads {STORE_FORMAT}; retrain it"
            )
        return metadata

    def latest(self, model: str, coin: str) -> str:
        """The id of the most recently trained ``model`` for ``coin``.

        Raises:
            ModelStoreError: none is stored.
        """
        candidates = self.list(model=model, coin=coin)
        if not candidates:
            raise ModelStoreError(
                f"no stored {model} model for {coin} in {self.root}; "
                f"train one with `crypto-ml train --model {model} --coins {coin}`"
            )
        return max(candidates, key=lambda m: m["created_at"])["id"]

    def list(self, model: str | None = None, coin: str | None = None) -> list[dict[str, Any]]:
        """Metadata of stored models, optionally for one model name and/or coin."""
        pattern = f"{model or '*'}/{quote(coin, safe='') if coin else '*'}/*/metadata.json"
        found = []
        for path in sorted(self.root.glob(pattern)):
            if path.parent.name.startswith("."):
                continue
            try:
                found.append(self.metadata(str(path.parent.relative_to(self.root))))
            except ModelStoreError as exc:
                log.warning("skipping unreadable stored model %s: %s", path.parent, exc)
        return found

    def load(self, model_id: str) -> tuple[Forecaster, dict[str, Any]]:
        """Rebuild a stored model, refusing anything that is not exactly what we wrote.

        Raises:
            ModelStoreError: missing, tampered with, or in a format we do not load.
            IncompatibleModelError: trained with another major version of a library.
        """
        metadata = self.metadata(model_id)
        self._check_versions(model_id, metadata)
        directory = self._directory(model_id)
        model = get_model_class(metadata["model"])(**metadata["params"])
        for attr, value in metadata["state"].items():
            if isinstance(value, dict) and "ndarray" in value:
                value = np.asarray(value["ndarray"], dtype=value["dtype"])
            setattr(model, attr, value)
        for attr, entry in metadata["files"].items():
            setattr(model, attr, self._load_file(model_id, directory, entry))
        return model, metadata

    def _load_file(self, model_id: str, directory: Path, entry: dict[str, Any]) -> Any:
        path = directory / Path(entry["file"]).name  # never follow a path out of the version directory
        if not path.is_file():
            raise ModelStoreError(f"{model_id!r} is missing {path.name}; retrain it")
        if _sha256(path) != entry.get("sha256"):
            raise ModelStoreError(f"{path} does not match the sha256 recorded at training; it was altered — retrain")
        if entry["kind"] == "keras" and path.suffix == ".keras":
            from .deep import keras_module

            try:
                return keras_module().saving.load_model(path, compile=False, safe_mode=True)
            except Exception as exc:  # noqa: BLE001 - whatever Keras rejects, we refuse
                raise ModelStoreError(f"refusing {path}: not a loadable .keras file ({exc})") from None
        if entry["kind"] == "skops" and path.suffix == ".skops":
            import skops.io as sio

            try:
                # skops itself only builds types it trusts (numpy, scikit-learn) and never unpickles;
                # anything beyond those is refused before loading, and the result must be one we store.
                untrusted = sio.get_untrusted_types(file=path)
                if untrusted:
                    raise ModelStoreError(f"refusing {path}: it holds types we do not load: {', '.join(untrusted)}")
                value = sio.load(path)
            except ModelStoreError:
                raise
            except Exception as exc:  # noqa: BLE001 - a file skops cannot read is refused, whatever it is
                raise ModelStoreError(f"refusing {path}: not a readable .skops file ({exc})") from None
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            if kind not in _SKOPS_ALLOWED:
                raise ModelStoreError(f"refusing {path}: it holds types we do not load: {kind}")
            return value
        raise ModelStoreError(f"refusing {path}: unknown kind {entry['kind']!r}")

    @staticmethod
    def _check_versions(model_id: str, metadata: dict[str, Any]) -> None:
        """Refuse a model whose files were written by another major version of the library that reads them."""
        kinds = {entry["kind"] for entry in metadata.get("files", {}).values()}
        needed = (
            {"numpy"}
            | ({"keras", "tensorflow"} if "keras" in kinds else set())
            | ({"scikit-learn", "skops"} if "skops" in kinds else set())
        )
        current = library_versions()
        for name in sorted(needed):
            trained = metadata.get("versions", {}).get(name)
            if trained is None:
                continue
            if _major(trained) != _major(current.get(name)):
                raise IncompatibleModelError(
                    f"{model_id!r} was trained with {name} {trained}, this install has {current.get(name)}; "
                    "retrain it with `crypto-ml train`"
                )

    def _directory(self, model_id: str) -> Path:
        parts = model_id.strip("/").split("/")
        if len(parts) != 3 or any(part in ("", ".", "..") for part in parts):
            raise ModelStoreError(f"{model_id!r} is not a model id; ids look like lstm/bitcoin/0123abcd4567ef89")
        return self.root.joinpath(*parts)
