"""TensorFlow inside workers: imported once per process, configured for N processes on N cores."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from crypto_ml.data_loader import CryptoLoader
from crypto_ml.manager import CryptoManager

FAST_LSTM = {"epochs": 2, "window": 8, "units": [4, 4], "min_windows": 3}


def test_import_crypto_ml_and_the_model_registry_never_import_tensorflow():
    code = (
        "import sys, crypto_ml.manager, crypto_ml.tasks; from crypto_ml.models import get_model; "
        "get_model('lstm'); print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["False", "False"], done.stderr


@pytest.mark.deep
def test_a_pool_process_uses_one_thread_and_the_main_process_the_default():
    code = (
        "from crypto_ml import deep; {mark}k = deep.keras_module(); import tensorflow as tf; "
        "print(tf.config.threading.get_intra_op_parallelism_threads())"
    )
    pool = subprocess.run(
        [sys.executable, "-c", code.format(mark="deep.mark_pool_process(); ")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    main = subprocess.run([sys.executable, "-c", code.format(mark="")], capture_output=True, text=True, timeout=120)
    assert pool.stdout.strip() == "1", pool.stderr
    assert main.stdout.strip() == "0", main.stderr  # 0: TensorFlow picks, i.e. every core


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def pool_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.broker
@pytest.mark.deep
@pytest.mark.slow
def test_heavy_worker_imports_tensorflow_once_and_stays_bounded(start_worker, synth_dir, tmp_path):
    from crypto_ml.engines.celery import CeleryEngine

    worker = start_worker("heavy", queues="crypto_ml.heavy", concurrency=1)
    manager = CryptoManager(CryptoLoader(synth_dir), engine=CeleryEngine(workers=1))
    trained = manager.train("lstm", params=FAST_LSTM, store=tmp_path / "store")
    assert len(trained.ok) == 12, trained.failed
    (child,) = pool_children(worker.process.pid)
    after_training = rss_kib(child)
    for _ in range(8):  # 96 more tasks: forecasts from the store, one coin per task
        run = manager.send_tasks("lstm", from_store=True, store=tmp_path / "store", verbose=False)
        assert len(run.ok) == 12
    assert pool_children(worker.process.pid) == [child]  # the same process served every task
    growth = rss_kib(child) / after_training - 1
    assert growth < 0.10, f"RSS grew {growth:.1%} over 96 tasks"
    imports = re.findall(r"keras \S+ on tensorflow, threads=1", worker.log())
    assert len(imports) == 1, worker.log()[-2000:]


# The start-up lines TensorFlow writes past Python's logging, on CPU-only machines and everywhere.
TF_NOISE = re.compile(r"cuInit|cudart_stub|^E0000 |^W0000 |^I0000 |oneDNN|absl::InitializeLog", re.M)
TF_LOG_LINE = re.compile(r"^[IWE]\d{4} \d\d:\d\d:\d\d", re.M)


def lstm_cli(env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run(
        [
            sys.executable,
            "-m",
            "crypto_ml",
            "forecast",
            "--model",
            "lstm",
            "--coins",
            "rivencoin",
            "-p",
            "epochs=1",
            "--engine",
            "local",
            "-H",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.deep
def test_lstm_forecast_prints_no_tensorflow_start_up_noise(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    done = lstm_cli()
    assert done.returncode == 0, done.stderr
    assert not TF_NOISE.search(done.stderr), done.stderr
    assert "1 of 1 coins forecast with lstm" in done.stderr  # our own output is still there


@pytest.mark.deep
def test_a_tf_log_level_the_user_set_is_respected():
    done = lstm_cli({"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert done.returncode == 0, done.stderr
    assert TF_LOG_LINE.search(done.stderr), done.stderr  # TensorFlow's own log lines, unfiltered
    code = "import os; from crypto_ml import deep; deep.keras_module(); print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    import os

    kept = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1"},
    )
    assert kept.stdout.strip() == "1", kept.stderr


def test_the_stderr_filter_drops_only_the_noise_and_keeps_real_errors(capfd):
    import os

    from crypto_ml.deep import filtered_stderr, tensorflow_noise

    with pytest.raises(RuntimeError, match="real failure"), filtered_stderr(tensorflow_noise()):
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1.5 12 cpu_feature_guard.cc:210] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:1.5 12 kernel.cc:1] a real C++ error\n")
        sys.stderr.write("UserWarning: a Python warning\n")
        raise RuntimeError("real failure")
    err = capfd.readouterr().err
    assert "a real C++ error" in err and "a Python warning" in err
    assert "oneDNN" not in err and "absl::InitializeLog" not in err
