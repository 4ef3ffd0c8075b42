"""Keras/TensorFlow, imported on first use and configured once per process.

Nothing here runs at ``import crypto_ml``: the producer, the CLI and the light
workers never pay the TensorFlow import (seconds, and about 850 MB). A worker
process imports it on its first deep task and keeps it for every later one.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

__all__ = ["keras_module", "mark_pool_process"]

log = logging.getLogger(__name__)

_pool_process = False
_keras: ModuleType | None = None


def mark_pool_process() -> None:
    """Called in each worker pool process: N such processes share N cores."""
    global _pool_process
    _pool_process = True


def keras_module() -> ModuleType:
    """The ``keras`` module, imported and configured on the first call in this process.

    ``KERAS_BACKEND`` picks the backend (TensorFlow by default). With the
    TensorFlow backend, ``CRYPTO_ML_TF_THREADS`` sets its thread pools; by
    default a pool process uses one thread, since its siblings use the other
    cores, and any other process leaves TensorFlow's default (every core).
    """
    global _keras
    if _keras is not None:
        return _keras
    from .config import get_settings

    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ banner is noise in worker logs
    import keras

    threads = get_settings().tf_threads or (1 if _pool_process else None)
    if threads and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    log.info("keras %s on %s, threads=%s", keras.__version__, keras.backend.backend(), threads or "default")
    _keras = keras
    return keras
