"""crypto_ml.pipeline.steps: what cycles and replays share; here, how a report groups failures."""

from __future__ import annotations

import json

from crypto_ml.pipeline.steps import PipelineReport


def test_one_kind_of_failure_over_many_days_is_one_entry_with_the_latest_message():
    report = PipelineReport(kind="replay")
    for day, points in (("2017-09-12", 1), ("2017-09-13", 2), ("2017-09-14", 3)):
        message = f"ewma needs at least 20 points, the series has {points}"
        report.add_failure("forecast", "neblio", "ewma", "SeriesTooShortError", message, day=day)
    report.add_failure("forecast", "neblio", "drift", "SeriesTooShortError", "drift needs 2", day="2017-09-12")
    report.add_failure("fetch", "BTC/USDT", None, "ExchangeError", "418 until 10:00")

    assert [(f.stage, f.coin, f.model, f.days) for f in report.failures] == [
        ("forecast", "neblio", "ewma", ["2017-09-12", "2017-09-13", "2017-09-14"]),
        ("forecast", "neblio", "drift", ["2017-09-12"]),
        ("fetch", "BTC/USDT", None, []),
    ]
    assert report.failures[0].error.endswith("the series has 3")
    assert report.failed_coins == ["neblio", "BTC/USDT"]
    summary = report.to_dict()  # the run's JSON summary: the index behind the grouping is not in it
    assert json.loads(json.dumps(summary)) == summary and len(summary["failures"]) == 3
