"""crypto_ml.api.fan_chart: the dashboard's SVG fan chart, parsed back as XML and checked by its geometry."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from crypto_ml.api.fan_chart import fan_chart_svg, nice_ticks, to_day

SVG = "{http://www.w3.org/2000/svg}"
START = dt.date(2024, 3, 1)


def _dates(first: dt.date, count: int) -> list[str]:
    return [(first + dt.timedelta(days=offset)).isoformat() for offset in range(count)]


def _chart(history: int = 30, horizon: int = 7, levels=(80, 95), actual: int = 0, **options) -> str:
    """A chart of a rising price, a flat forecast from its last value and bands widening with the step."""
    history_dates = _dates(START, history)
    history_prices = [100.0 + day for day in range(history)]
    forecast_dates = _dates(START + dt.timedelta(days=history), horizon)
    last = history_prices[-1] if history_prices else 100.0
    point = [last] * horizon
    bands = {
        level: (
            [last - level * (s + 1) / 20 for s in range(horizon)],
            [last + level * (s + 1) / 20 for s in range(horizon)],
        )
        for level in levels
    }
    actual_prices = [last + 1.0 + step for step in range(actual)]
    return fan_chart_svg(
        history_dates, history_prices, forecast_dates, point, bands, forecast_dates[:actual], actual_prices, **options
    )


def _series(svg: str) -> list[ET.Element]:
    root = ET.fromstring(svg)
    return [group for group in root.iter(f"{SVG}g") if group.get("class") == "series"]


def _names(svg: str) -> list[str]:
    return [group.get("data-series") for group in _series(svg)]


def _coordinates(element: ET.Element) -> list[tuple[float, float]]:
    """Every (x, y) a series draws: its path vertices and its circles' centres."""
    points = []
    for path in element.iter(f"{SVG}path"):
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.get("d"))]
        points += list(zip(numbers[0::2], numbers[1::2], strict=True))
    points += [(float(c.get("cx")), float(c.get("cy"))) for c in element.iter(f"{SVG}circle")]
    return points


def test_one_series_per_line_and_level_with_actuals_when_present():
    assert _names(_chart()) == ["band-95", "band-80", "history", "forecast"]
    assert _names(_chart(levels=(50, 80, 95), actual=3)) == [
        "band-95",
        "band-80",
        "band-50",
        "history",
        "forecast",
        "actual",
    ]
    assert _names(_chart(levels=())) == ["history", "forecast"]


def test_bands_are_drawn_widest_first_whatever_order_they_come_in():
    horizon = 5
    svg = fan_chart_svg(
        _dates(START, 3),
        [1.0, 2.0, 3.0],
        _dates(START + dt.timedelta(days=3), horizon),
        [3.0] * horizon,
        {
            80: ([2.5] * horizon, [3.5] * horizon),
            97.5: ([1.0] * horizon, [5.0] * horizon),
            95: ([2.0] * horizon, [4.0] * horizon),
        },
    )
    assert _names(svg)[:3] == ["band-97.5", "band-95", "band-80"]
    # The widest band really is the tallest shape: its path spans more of the height.
    heights = [max(y for _, y in _coordinates(g)) - min(y for _, y in _coordinates(g)) for g in _series(svg)[:3]]
    assert heights == sorted(heights, reverse=True)


@pytest.mark.parametrize("width, height", [(720, 320), (360, 300)])
def test_every_value_lands_inside_the_view_box(width, height):
    svg = _chart(history=90, horizon=14, actual=5, width=width, height=height)
    root = ET.fromstring(svg)
    assert root.get("viewBox") == f"0 0 {width} {height}"
    assert root.get("role") == "img"
    for group in _series(svg):
        for x, y in _coordinates(group):
            assert 0 <= x <= width and 0 <= y <= height, (group.get("data-series"), x, y)


def test_higher_prices_are_drawn_higher_and_later_dates_further_right():
    svg = _chart(history=10, horizon=3, levels=())
    history = _coordinates(next(g for g in _series(svg) if g.get("data-series") == "history"))
    xs = [x for x, _ in history]
    ys = [y for _, y in history]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    assert ys == sorted(ys, reverse=True)  # the price rises, so y (downwards in SVG) falls


def test_the_forecast_and_bands_start_from_the_last_price():
    svg = _chart(history=10, horizon=4)
    groups = {g.get("data-series"): _coordinates(g) for g in _series(svg)}
    last_price = groups["history"][-1]
    assert groups["forecast"][0] == last_price
    assert last_price in groups["band-80"]


def test_text_is_escaped():
    svg = _chart(title='<script>alert("x")</script> & co')
    root = ET.fromstring(svg)  # still well-formed XML
    assert root.find(f"{SVG}title").text == '<script>alert("x")</script> & co'
    assert "<script>" not in svg


def test_axis_labels_name_dates_and_prices():
    svg = _chart(history=60, horizon=10)
    labels = [t.text for t in ET.fromstring(svg).iter(f"{SVG}text")]
    assert any(label.endswith("2024") and "Mar" in label for label in labels), labels
    assert any(re.fullmatch(r"1\d\d(\.\d+)?", label.replace(",", "")) for label in labels), labels


def test_no_finite_value_draws_an_empty_frame_that_says_so():
    for svg in (
        fan_chart_svg([], [], [], [], {}),
        fan_chart_svg(["2024-01-01"], [float("nan")], [], [], {}),
    ):
        root = ET.fromstring(svg)
        assert _series(svg) == []
        assert "no prices to draw" in "".join(root.itertext())


def test_a_single_point_is_drawn_in_the_middle_without_dividing_by_zero():
    svg = fan_chart_svg(["2024-01-01"], [42.0], [], [], {})
    assert _names(svg) == ["history"]
    [(x, y)] = _coordinates(_series(svg)[0])
    assert 0 < x < 720 and 0 < y < 320
    assert abs(x - (64 + (720 - 16 - 64) / 2)) < 1  # centred between the margins


def test_missing_values_break_the_line_instead_of_dropping_to_zero():
    svg = fan_chart_svg(_dates(START, 5), [1.0, 2.0, None, 4.0, 5.0], [], [], {})
    path = next(ET.fromstring(svg).iter(f"{SVG}path")).get("d")
    assert path.count("M") == 2
    assert len(_coordinates(_series(svg)[0])) == 4


def test_dates_of_every_kind_are_accepted():
    day = dt.date(2024, 1, 2)
    expected = day.toordinal()
    assert {
        to_day("2024-01-02"),
        to_day("2024-01-02T00:00:00"),
        to_day(day),
        to_day(dt.datetime(2024, 1, 2, 15)),
        to_day(np.datetime64("2024-01-02T00:00:00.000000000")),
    } == {expected}


def test_ticks_are_round_and_cover_the_range():
    ticks = nice_ticks(0.0123, 0.0871)
    assert ticks[0] >= 0.0123 and ticks[-1] <= 0.0871
    steps = {round(b - a, 12) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1 and steps.pop() in (0.01, 0.02, 0.025, 0.05)
    assert nice_ticks(5.0, 5.0) == [5.0]
