"""The benchmarks run and write well-formed JSON: their in-process pieces, in a tiny mode, with no timing asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console

# benchmarks/ sits next to crypto_ml/ but is not installed with it: import it from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import BENCHMARKS
from benchmarks.__main__ import main, parse_args
from benchmarks.harness import Options, Report, percentile
from benchmarks.workers import rss_kib


@pytest.fixture
def options(tmp_path) -> Options:
    return Options(quick=True, out=tmp_path / "results", cache=tmp_path / "cache", console=Console(width=160))


def load_strict(path: Path) -> dict:
    """Parse JSON as a strict reader would: NaN or Infinity is an error, not a number."""

    def refuse(token: str) -> None:
        raise ValueError(f"{path.name} holds {token}, which is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def check_document(document: dict, name: str) -> None:
    assert document["benchmark"] == name
    assert document["error"] is None
    machine = document["machine"]
    for key in ("cpu", "cores", "memory_gib", "python", "libraries", "load_average", "broker_url"):
        assert key in machine, key
    assert machine["libraries"]["crypto-ml"]
    assert "guest:guest" not in machine["broker_url"], "the broker password is redacted"
    assert document["rows"], "a benchmark that ran has rows"
    keys = {column["key"] for column in document["columns"]}
    assert keys and all(keys & set(row) for row in document["rows"])
    for target in document["targets"]:
        assert {"name", "value", "op", "threshold", "met", "gap"} <= set(target)


def test_every_benchmark_module_has_the_runner_contract():
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        assert name == module.NAME
        assert module.TITLE and callable(module.run)
        assert module.__doc__, f"{module_name} explains what it measures"


def test_payload_tiny(options):
    from benchmarks import payload

    report = payload.run(options, points=1000, number=3)
    document = load_strict(report.write())
    check_document(document, "payload")
    rows = {row["format"]: row for row in document["rows"]}
    assert set(rows) == {"json", "json_message", "pickle_hex", "raw"}
    assert rows["json"]["size_vs_json"] == 1.0
    assert rows["raw"]["bytes"] == 8000  # 1,000 float64
    assert rows["pickle_hex"]["bytes"] > 2 * 8000  # hex doubles the pickle
    assert all(row["lossless"] for row in rows.values())


def test_peer_tiny(options):
    from benchmarks import peer

    report = peer.run(options, n_series=50, repeats=1)
    document = load_strict(report.write())
    check_document(document, "peer")
    rows = {row["model"]: row for row in document["rows"]}
    assert set(rows) == {"naive", "drift", "linear"}
    assert all(rows[model]["ours_ok"] == 50 and rows[model]["local_ok"] == 50 for model in ("naive", "drift"))
    # The seed's line refuses a coin it would forecast at or below zero, the same coins on both sides.
    assert rows["linear"]["ours_ok"] == rows["linear"]["local_ok"] >= 45
    if importlib.util.find_spec("statsforecast") is None:
        assert "statsforecast" in document["skipped"]
    else:
        # The cross-check: our naive and drift forecasts are statsforecast's.
        for model in ("naive", "drift"):
            assert rows[model]["compared"] == 50
            assert rows[model]["max_rel_diff"] < 1e-9
        assert len(document["targets"]) == 4


def test_intervals_tiny(options):
    from benchmarks import intervals

    report = intervals.run(options, n_series=3, repeats=1)
    document = load_strict(report.write())
    check_document(document, "intervals")
    rows = {row["model"]: row for row in document["rows"]}
    assert set(rows) == set(intervals.MODELS)
    for model, row in rows.items():
        # A model that cannot be built here is an error row; every other one forecast all three series.
        assert row.get("error") or (row["ours_sps"] > 0 and row["failed"] == 0), model
    if importlib.util.find_spec("statsforecast") is None:
        assert "stats" in rows["ets"]["error"]
    else:
        # Our wrappers give statsforecast's own forecast, bit for bit.
        for model in ("ets", "theta"):
            assert rows[model]["compared"] == 3 and rows[model]["max_rel_diff"] == 0.0
            assert rows[model]["ratio"] > 0
        assert {target["name"].split(":")[0] for target in document["targets"]} == {"ets", "theta", "naive"}


def test_generated_datasets_are_cached(options):
    from benchmarks.data import synthetic_dataset

    first = synthetic_dataset(options, 3, min_points=60, max_points=80)
    stamp = first.stat().st_mtime_ns
    assert synthetic_dataset(options, 3, min_points=60, max_points=80) == first
    assert first.stat().st_mtime_ns == stamp, "a cached dataset is reused, not regenerated"


def test_targets_record_the_gap(options):
    report = Report("x", "title", options)
    met = report.target("ratio", 0.8, ">=", 0.7)
    missed = report.target("ratio", 0.5, ">=", 0.7)
    below = report.target("growth", 12.0, "<", 10.0, unit="%")
    unmeasured = report.target("ratio", math.nan, ">=", 1.0)
    assert met["met"] is True and missed["met"] is False and below["met"] is False
    assert missed["gap"] == pytest.approx(0.2) and missed["gap_percent"] == pytest.approx(100 * 0.2 / 0.7)
    assert below["gap"] == pytest.approx(2.0)
    assert unmeasured["met"] is None
    report.add_row(value=math.inf)
    document = load_strict(report.write())
    assert document["rows"] == [{"value": None}]
    assert document["targets"][3]["value"] is None


def test_main_runs_a_selection_and_writes_json(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--quick", "--only", "payload", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    document = load_strict(out / "payload.json")
    assert document["quick"] is True
    assert "payload" in capsys.readouterr().out


def test_command_line_rejects_an_unknown_benchmark():
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--only", "payload,nope"])
    assert exit_info.value.code == 2
    assert parse_args(["--only", "peer, payload"]).names == ["peer", "payload"]


def test_helpers():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([5.0], 95) == 5.0
    memory = rss_kib(os.getpid())
    assert memory["rss"] > 0 and memory["peak"] >= memory["rss"]


def test_api_load_summarises_a_phase_without_a_server():
    """api_load's arithmetic on a made-up phase: the load itself needs a server, workers and a broker."""
    from benchmarks import api_load

    parts = ("api", "workers", "postgresql", "rabbitmq", "redis", "client", "machine")
    record = api_load.PhaseRecord(users=2, start=0.0, end=10.0)
    # (started at, seconds, outcome); the submit at 11.0 s is in the drain, after the loaded window.
    record.submits = [(1.0, 0.010, "202"), (2.0, 0.020, "202"), (3.0, 0.5, "429"), (11.0, 0.03, "202")]
    record.statuses = [(1.5, 0.005, "200"), (2.5, 0.007, "200"), (4.0, 1.0, "ReadTimeout")]
    record.accepted = ["a", "b", "c"]
    record.finished = {"a": ("succeeded", 0.6, 0.4), "b": ("failed", 0.8, 0.7)}
    record.unfinished = ["c"]
    record.loop_lag = [0.001, 0.002]
    record.cpu_start = api_load.CpuSnapshot(0.0, dict.fromkeys(parts, 100.0))
    record.cpu_end = api_load.CpuSnapshot(
        10.0,
        {"api": 106.0, "workers": 101.0, "postgresql": 101.0, "rabbitmq": 100.5, "redis": 100.5}
        | {"client": 101.0, "machine": 119.0},
    )
    checked = {"missing": 0, "unfinished": 1, "without_result": 0, "duplicated": 0}
    row = api_load.phase_row(record, checked, server_workers=2, idle_cores=0.3)

    assert row["requests"] == 6 and row["requests_in_drain"] == 1
    assert row["requests_per_s"] == pytest.approx(0.6)
    assert row["submit_p50_ms"] == pytest.approx(15.0), "only accepted submits are timed"
    assert row["errors_by_status"] == {"429": 1, "ReadTimeout": 1}
    assert (row["jobs_submitted"], row["jobs_completed"], row["jobs_failed"]) == (3, 1, 1)
    assert row["jobs_lost"] == 1 and row["jobs_duplicated"] == 0
    assert row["api_cpu_ms_per_request"] == pytest.approx(1000.0)
    assert row["api_marginal_cpu_ms_per_request"] == pytest.approx(1000 * (0.6 - 0.3) / 0.6)
    assert row["broker_cores"] == pytest.approx(0.1) and row["other_cores"] == pytest.approx(0.9)

    table = api_load.markdown_table([row]).splitlines()
    assert len(table) == 3 and all(line.count("|") == table[0].count("|") for line in table)
    assert "429×1" in table[2]
    assert "CPU is the limit and other processes" in api_load.bottleneck(row, cores=1)
    assert api_load.tree_cpu_seconds(os.getpid()) > 0 and api_load.machine_busy_seconds() > 0
