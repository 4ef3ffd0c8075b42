"""Keras/TensorFlow, imported on first use and configured once per process.

Nothing here runs at ``import crypto_ml``: the producer, the CLI and the light
workers never pay the TensorFlow import (seconds, and about 850 MB). A worker
process imports it on its first deep task and keeps it for every later one.

TensorFlow's C++ side writes straight to file descriptor 2, past Python's
logging: on a machine without an NVIDIA GPU, ``import tensorflow`` prints
absl's "All log messages before absl::InitializeLog()" banner and
"cudart_stub.cc: Could not find cuda drivers" twice, whatever
``TF_CPP_MIN_LOG_LEVEL`` says (absl has not read it yet), and its first
device lookup logs ``E0000 ... failed call to cuInit`` at ERROR level.
``keras_module`` therefore imports TensorFlow and enumerates its devices with
descriptor 2 routed through a filter that drops exactly those lines and
writes every other one back. Python warnings, exceptions and our logging are
untouched. A user who sets ``TF_CPP_MIN_LOG_LEVEL`` gets TensorFlow's output
unfiltered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

__all__ = ["keras_module", "mark_pool_process", "filtered_stderr", "tensorflow_noise"]

log = logging.getLogger(__name__)

_pool_process = False
_keras: ModuleType | None = None

# Start-up lines TensorFlow prints on every machine: absl's banner, the CPU
# instruction and oneDNN notices, and CUDA plugins registering twice.
_STARTUP_NOISE = (
    r"All log messages before absl::InitializeLog\(\) is called",
    r"oneDNN custom operations are on",
    r"This TensorFlow binary is optimized to use available CPU instructions",
    r"To enable the following instructions: .* rebuild TensorFlow",
    r"Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
)
# Lines that only say "there is no GPU": noise where no NVIDIA device exists, a real problem where one does.
_NO_GPU_NOISE = (
    r"cudart_stub\.cc.*Could not find cuda drivers",
    r"failed call to cuInit",
)


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
    quiet = "TF_CPP_MIN_LOG_LEVEL" not in os.environ  # a user who set it wants TensorFlow's own logs
    if quiet:
        # 2 hides INFO and WARNING (the thread-pool and XLA chatter of every fit); ERROR stays.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    threads = get_settings().tf_threads or (1 if _pool_process else None)
    with filtered_stderr(tensorflow_noise()) if quiet else contextlib.nullcontext():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            if threads:
                tf.config.threading.set_intra_op_parallelism_threads(threads)
                tf.config.threading.set_inter_op_parallelism_threads(threads)
            # The first device lookup calls cuInit; doing it here keeps its log line inside the filter.
            tf.config.list_physical_devices()
    log.info("keras %s on %s, threads=%s", keras.__version__, keras.backend.backend(), threads or "default")
    _keras = keras
    return keras


def _has_nvidia_device() -> bool:
    """Whether this machine has an NVIDIA driver loaded (Linux exposes it under /proc and /dev)."""
    return Path("/proc/driver/nvidia").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def tensorflow_noise() -> re.Pattern[str]:
    """The start-up lines ``keras_module`` drops: always ``_STARTUP_NOISE``, plus the failed CUDA
    lookups where no NVIDIA device exists (on a GPU machine a failed cuInit is a real error)."""
    patterns = _STARTUP_NOISE + (() if _has_nvidia_device() else _NO_GPU_NOISE)
    return re.compile("|".join(patterns))


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[str]) -> Iterator[None]:
    """Route file descriptor 2 into a temporary file while the block runs, then write back every line
    that ``noise`` does not match.

    C++ libraries write to the descriptor, not to ``sys.stderr``, so only this
    catches them. Lines are delayed until the block ends, never lost: an
    exception raised inside still propagates after the kept lines are written.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not noise.search(line))
            if kept:
                sys.stderr.write(kept)
                sys.stderr.flush()
