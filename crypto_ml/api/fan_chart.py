"""A forecast's fan chart as plain SVG, drawn on the server.

``fan_chart_svg`` draws recent prices, the point forecast, one shaded band per
interval level (the widest first, so the narrower ones lie on top and the
centre looks darker) and, once they arrive, the actual prices after the
forecast's origin. The result is a self-contained ``<svg>`` element: colours
are presentation attributes, so it looks the same pasted into a file as in the
dashboard, and its ``viewBox`` lets CSS scale it to any width.

Each series is a ``<g class="series" data-series="...">`` (``history``,
``forecast``, ``band-95``, ``band-80``, ``actual``): tests and scripts count
and find them without parsing paths. A series with no finite value is left
out. No JavaScript and no charting library: a dozen paths and labels do not
need one, and the page stays usable with scripts off.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["fan_chart_svg", "nice_ticks", "to_day"]

#: Space (in viewBox units) around the plot: the price labels on the left (at least), dates below, the legend above.
MARGIN_LEFT = 64
MARGIN_RIGHT = 16
MARGIN_TOP = 34
MARGIN_BOTTOM = 30

HISTORY_COLOUR = "#334155"
FORECAST_COLOUR = "#2563eb"
ACTUAL_COLOUR = "#ea580c"
GRID_COLOUR = "#e2e8f0"
LABEL_COLOUR = "#64748b"

#: Each band's opacity: the bands overlap, so the narrower the interval, the darker (the fan's centre).
BAND_OPACITY = 0.16

#: The legend's layout: the first row's baseline, the row height, the space between keys, and the
#: width of a character of the 12-unit font (an estimate: the server cannot measure text).
LEGEND_FIRST_ROW = 16
LEGEND_ROW = 18
LEGEND_GAP = 18
CHAR_WIDTH = 7.2

FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"

DateLike = Any  # str (ISO), datetime.date/datetime, numpy.datetime64 or pandas.Timestamp


def to_day(value: DateLike) -> int:
    """A date as its proleptic Gregorian ordinal (days), the chart's x unit.

    Raises:
        ValueError: a string that is not an ISO date.
        TypeError: a value that is no kind of date.
    """
    if isinstance(value, dt.datetime):
        return value.date().toordinal()
    if isinstance(value, dt.date):
        return value.toordinal()
    if isinstance(value, str):
        return dt.date.fromisoformat(value[:10]).toordinal()
    if hasattr(value, "astype"):  # numpy.datetime64: its day as an ISO string
        return dt.date.fromisoformat(str(value.astype("datetime64[D]"))).toordinal()
    if hasattr(value, "date"):  # pandas.Timestamp and friends
        return int(value.date().toordinal())
    raise TypeError(f"not a date: {value!r}")


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round values (1, 2, 2.5 or 5 times a power of ten apart) inside ``[low, high]``, as close to ``count`` as
    such steps allow (never fewer than 3 when a finer step gives them)."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    power = 10 ** math.floor(math.log10((high - low) / max(count - 1, 1)))
    best: list[float] = []
    for multiple in (0.5, 1, 2, 2.5, 5, 10):
        step = multiple * power
        first = math.ceil(low / step - 1e-9)
        last = math.floor(high / step + 1e-9)
        ticks = [round(index * step, 12) for index in range(first, last + 1)]
        if not best or abs(len(ticks) - count) < abs(len(best) - count):
            best = ticks
    return best


def _price_label(value: float, step: float) -> str:
    """A tick's price with as many decimals as the tick step needs (prices span 1e-6 to 1e5)."""
    decimals = 2
    if step > 0:
        decimals = max(0, -math.floor(math.log10(step) + 1e-9))
        # A step of 2.5 needs one more decimal; the tolerance absorbs the float error of tick differences.
        while decimals < 12 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
            decimals += 1
    return f"{value:,.{decimals}f}"


def _date_labels(first: int, last: int, width: float) -> list[tuple[int, str]]:
    """Dates to label on the x axis: evenly spaced, about one per 80 units, the year on the first of each year."""
    span = max(last - first, 1)
    count = max(2, min(7, int(width // 80)))
    step = max(1, span // (count - 1))  # rounded down, so the last date gets its label too
    labels = []
    day = first
    previous_year = None
    while day <= last:
        date = dt.date.fromordinal(day)
        text = f"{date.day} {date:%b}"
        if date.year != previous_year:
            text += f" {date.year}"
            previous_year = date.year
        labels.append((day, text))
        day += step
    return labels


def _points(dates: Sequence[DateLike] | None, values: Sequence[float] | None) -> list[tuple[int, float] | None]:
    """(day, value) pairs; None where a value is missing or not finite, which breaks the line there."""
    if not dates or values is None:
        return []
    pairs: list[tuple[int, float] | None] = []
    for date, value in zip(dates, values, strict=False):
        number = _number(value)
        pairs.append(None if number is None else (to_day(date), number))
    return pairs


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class _Frame:
    """Maps days and prices to viewBox coordinates."""

    def __init__(self, days: list[int], values: list[float], width: int, height: int, top: float) -> None:
        self.first, self.last = min(days), max(days)
        if self.first == self.last:  # one day: centre it
            self.first, self.last = self.first - 1, self.last + 1
        low, high = min(values), max(values)
        pad = (high - low) * 0.06 or abs(high) * 0.05 or 1.0
        self.ticks = nice_ticks(low - pad, high + pad)
        self.low = min([low - pad, *self.ticks])
        self.high = max([high + pad, *self.ticks])
        step = self.ticks[1] - self.ticks[0] if len(self.ticks) > 1 else 0.0
        self.labels = [_price_label(tick, step) for tick in self.ticks]
        # Wide enough for the longest price label (0.000065 is wider than 10,000).
        widest = max((len(label) for label in self.labels), default=0)
        self.left = max(MARGIN_LEFT, math.ceil(CHAR_WIDTH * widest) + 14)
        self.right = width - MARGIN_RIGHT
        self.top, self.bottom = top, height - MARGIN_BOTTOM

    def x(self, day: int) -> float:
        return self.left + (day - self.first) / (self.last - self.first) * (self.right - self.left)

    def y(self, value: float) -> float:
        return self.bottom - (value - self.low) / (self.high - self.low) * (self.bottom - self.top)

    def xy(self, day: int, value: float) -> str:
        return f"{self.x(day):.1f},{self.y(value):.1f}"


def _line_path(frame: _Frame, points: list[tuple[int, float] | None]) -> str:
    """An SVG path through the points; a missing point lifts the pen."""
    parts = []
    pen_down = False
    for point in points:
        if point is None:
            pen_down = False
            continue
        parts.append(("L" if pen_down else "M") + frame.xy(*point))
        pen_down = True
    return " ".join(parts)


def fan_chart_svg(
    history_dates: Sequence[DateLike],
    history_prices: Sequence[float],
    forecast_dates: Sequence[DateLike],
    point: Sequence[float],
    bands: Mapping[float, tuple[Sequence[float], Sequence[float]]],
    actual_dates: Sequence[DateLike] | None = None,
    actual_prices: Sequence[float] | None = None,
    *,
    width: int = 720,
    height: int = 320,
    title: str = "",
) -> str:
    """A fan chart: prices, the point forecast, its interval bands and the actual prices, as an ``<svg>`` element.

    The forecast line and the bands start from the last price (when the
    history ends before the forecast does), so the fan opens from where the
    prices stop.

    Args:
        history_dates, history_prices: The recent prices, oldest first.
        forecast_dates, point: The forecast's target dates and point values.
        bands: Interval level (percent) -> ``(lower, upper)`` bounds, one per forecast date.
        actual_dates, actual_prices: The prices on (some of) the target dates, once known.
        width, height: The viewBox's size; the element itself scales to its container's width.
        title: The chart's accessible name (its ``<title>``), escaped.

    Returns:
        The SVG markup. Without a single finite value it is a frame that says "no prices to draw".
    """
    history = _points(history_dates, history_prices)
    forecast = _points(forecast_dates, point)
    actual = _points(actual_dates, actual_prices)
    band_points = {
        float(level): (_points(forecast_dates, lower), _points(forecast_dates, upper))
        for level, (lower, upper) in bands.items()
    }
    every = [p for series in (history, forecast, actual) for p in series if p is not None]
    every += [p for lower, upper in band_points.values() for p in (*lower, *upper) if p is not None]

    name = escape(title or "Price forecast")
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="fan-chart" viewBox="0 0 {width} {height}" '
        f'role="img" aria-labelledby="fan-title" preserveAspectRatio="xMidYMid meet" '
        f'width="100%" font-family="{FONT}" font-size="12">'
        f"<title>{name}</title>"
    )
    if not every:
        return (
            f'{head}<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
            f'fill="{LABEL_COLOUR}">no prices to draw</text></svg>'
        )

    ordered = sorted(band_points.items(), key=lambda item: -item[0])
    has_actual = any(p is not None for p in actual)
    legend, legend_height = _legend(
        [level for level, _ in ordered], width, has_actual=has_actual, has_history=bool(history)
    )
    frame = _Frame([p[0] for p in every], [p[1] for p in every], width, height, MARGIN_TOP + legend_height)
    origin = next((p for p in reversed(history) if p is not None), None)
    first_forecast_day = min((p[0] for p in forecast if p is not None), default=None)
    joins = origin is not None and first_forecast_day is not None and origin[0] < first_forecast_day

    parts = [head, _axes(frame, width)]
    if joins and origin is not None:
        x = frame.x(origin[0])
        parts.append(
            f'<line class="origin" x1="{x:.1f}" y1="{frame.top}" x2="{x:.1f}" y2="{frame.bottom}" '
            f'stroke="{LABEL_COLOUR}" stroke-width="1" stroke-dasharray="3 3"/>'
        )

    # Widest first: each narrower band is drawn over the wider ones.
    for level, (lower, upper) in ordered:
        pairs = [(lo, hi) for lo, hi in zip(lower, upper, strict=False) if lo is not None and hi is not None]
        if not pairs:
            continue
        if joins and origin is not None:
            pairs.insert(0, (origin, origin))
        outline = [frame.xy(*lo) for lo, _ in pairs] + [frame.xy(*hi) for _, hi in reversed(pairs)]
        label = _level_text(level)
        parts.append(
            f'<g class="series" data-series="band-{label}"><title>{label} % interval</title>'
            f'<path d="M{" L".join(outline)} Z" fill="{FORECAST_COLOUR}" fill-opacity="{BAND_OPACITY}"/></g>'
        )

    if any(p is not None for p in history):
        parts.append(
            f'<g class="series" data-series="history"><path d="{_line_path(frame, history)}" fill="none" '
            f'stroke="{HISTORY_COLOUR}" stroke-width="1.6" stroke-linejoin="round" stroke-linecap="round"/></g>'
        )
    if any(p is not None for p in forecast):
        line = [origin, *forecast] if joins else forecast
        parts.append(
            f'<g class="series" data-series="forecast"><path d="{_line_path(frame, line)}" fill="none" '
            f'stroke="{FORECAST_COLOUR}" stroke-width="2" stroke-dasharray="6 4" stroke-linejoin="round"/></g>'
        )
    if has_actual:
        dots = "".join(
            f'<circle cx="{frame.x(p[0]):.1f}" cy="{frame.y(p[1]):.1f}" r="2.6"/>' for p in actual if p is not None
        )
        parts.append(
            f'<g class="series" data-series="actual"><path d="{_line_path(frame, actual)}" fill="none" '
            f'stroke="{ACTUAL_COLOUR}" stroke-width="1.6"/><g fill="{ACTUAL_COLOUR}">{dots}</g></g>'
        )
    parts.append(legend)
    parts.append("</svg>")
    return "".join(parts)


def _level_text(level: float) -> str:
    return f"{level:g}"


def _axes(frame: _Frame, width: int) -> str:
    """Horizontal grid lines with price labels, and date labels under the plot."""
    parts = ['<g class="axes">']
    for tick, label in zip(frame.ticks, frame.labels, strict=True):
        y = frame.y(tick)
        parts.append(
            f'<line x1="{frame.left}" y1="{y:.1f}" x2="{frame.right}" y2="{y:.1f}" stroke="{GRID_COLOUR}"/>'
            f'<text x="{frame.left - 8}" y="{y + 4:.1f}" text-anchor="end" fill="{LABEL_COLOUR}">'
            f"{escape(label)}</text>"
        )
    for day, text in _date_labels(frame.first, frame.last, frame.right - frame.left):
        x = frame.x(day)
        # A label centred on a tick near an edge would be cut off: it hangs inwards from the tick instead.
        half = CHAR_WIDTH * len(text) / 2
        anchor = "end" if x + half > width - 2 else "start" if x - half < 2 else "middle"
        parts.append(
            f'<line x1="{x:.1f}" y1="{frame.bottom}" x2="{x:.1f}" y2="{frame.bottom + 4}" stroke="{LABEL_COLOUR}"/>'
            f'<text x="{x:.1f}" y="{frame.bottom + 18}" text-anchor="{anchor}" fill="{LABEL_COLOUR}">'
            f"{escape(text)}</text>"
        )
    parts.append(
        f'<line x1="{frame.left}" y1="{frame.bottom}" x2="{frame.right}" y2="{frame.bottom}" stroke="{LABEL_COLOUR}"/>'
    )
    parts.append("</g>")
    return "".join(parts)


def _legend(levels: list[float], width: int, *, has_actual: bool, has_history: bool) -> tuple[str, float]:
    """The keys above the plot (prices, forecast, each band, actual), wrapped onto as many rows as the width needs.

    Returns:
        The markup, and the height of the rows beyond the first (the plot starts that much lower).
    """
    keys: list[tuple[str, str]] = []
    if has_history:
        keys.append((f'<line x1="0" y1="0" x2="18" y2="0" stroke="{HISTORY_COLOUR}" stroke-width="2"/>', "price"))
    keys.append(
        (
            f'<line x1="0" y1="0" x2="18" y2="0" stroke="{FORECAST_COLOUR}" stroke-width="2" stroke-dasharray="6 4"/>',
            "forecast",
        )
    )
    for index, level in enumerate(levels):
        # The shade where this band and every wider one overlap: what the reader sees inside it.
        opacity = 1 - (1 - BAND_OPACITY) ** (index + 1)
        mark = f'<rect x="0" y="-6" width="18" height="12" fill="{FORECAST_COLOUR}" fill-opacity="{opacity:.2f}"/>'
        keys.append((mark, f"{_level_text(level)} %"))
    if has_actual:
        keys.append((f'<circle cx="9" cy="0" r="3" fill="{ACTUAL_COLOUR}"/>', "actual"))
    parts = ['<g class="legend" fill="#0f172a">']
    x, y = float(MARGIN_LEFT), LEGEND_FIRST_ROW
    for mark, text in keys:
        key_width = 24 + CHAR_WIDTH * len(text)
        if x > MARGIN_LEFT and x + key_width > width - MARGIN_RIGHT:
            x, y = float(MARGIN_LEFT), y + LEGEND_ROW
        parts.append(f'<g transform="translate({x:.0f},{y:.0f})">{mark}<text x="24" y="4">{escape(text)}</text></g>')
        x += key_width + LEGEND_GAP
    parts.append("</g>")
    return "".join(parts), y - LEGEND_FIRST_ROW
