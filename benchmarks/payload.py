"""payload: what one series costs on the wire, in the format Celery sends against the seed's.

Celery sends our tasks as JSON (kombu's ``json`` serializer; pickle is refused
by ``accept_content``). The seed sent ``pickle.dumps(np.array(prices)).hex()``.
For one 1,000-point series this measures the encoded size and the time to
encode and decode it in each format, and how each compares with JSON. Raw
float64 bytes are shown as the floor no text format can beat.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np

from .harness import Options, Report, best_of

NAME = "payload"
TITLE = "bytes and encode/decode time per 1,000-point series: JSON (Celery) vs pickle→hex (seed)"


def _formats(prices: np.ndarray) -> dict[str, dict[str, Any]]:
    """Each format's encoder and decoder, applied to ``prices``."""
    from kombu.serialization import dumps, loads

    from crypto_ml.engines.celery import to_json_safe

    def json_encode() -> bytes | str:
        # What CeleryEngine does to a payload before send_task, then kombu's json serializer.
        return dumps(to_json_safe(prices), serializer="json")[2]

    def json_decode(data: str) -> np.ndarray:
        return np.asarray(loads(data, "application/json", "utf-8"), dtype=np.float64)

    # The body Celery publishes for a one-series forecast task: (args, kwargs, embed).
    message = {
        "model": "linear",
        "horizon": 10,
        "params": {},
        "series": [{"coin": "bitcoin", "prices": prices, "last_date": "2017-09-22"}],
    }

    def message_encode() -> bytes | str:
        body = ([to_json_safe(message)], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})
        return dumps(body, serializer="json")[2]

    def message_decode(data: str) -> np.ndarray:
        args, _, _ = loads(data, "application/json", "utf-8")
        return np.asarray(args[0]["series"][0]["prices"], dtype=np.float64)

    return {
        "json": {"label": "JSON list (Celery)", "encode": json_encode, "decode": json_decode},
        "json_message": {"label": "JSON task body", "encode": message_encode, "decode": message_decode},
        "pickle_hex": {
            "label": "pickle→hex (seed)",
            "encode": lambda: pickle.dumps(prices).hex(),
            "decode": lambda data: pickle.loads(bytes.fromhex(data)),
        },  # our own bytes, never a message
        "raw": {
            "label": "raw float64 (floor)",
            "encode": prices.tobytes,
            "decode": lambda data: np.frombuffer(data, dtype=np.float64),
        },
    }


def run(options: Options, *, points: int = 1000, number: int | None = None) -> Report:
    """Measure every format on one generated series.

    Args:
        options: The run's options.
        points: Prices in the series.
        number: Encodes (and decodes) per timing round; None: 2,000, or 200 with ``--quick``.
    """
    from crypto_ml.synthetic import generate_series

    number = number or (200 if options.quick else 2000)
    report = Report(
        NAME,
        TITLE,
        options,
        {"points": points, "calls_per_round": number, "rounds": 5, "timing": "best of 5 rounds, per call"},
    )
    prices = generate_series(points, seed=0)["Close"].to_numpy(dtype=np.float64)
    report.set_columns(
        ("label", "format"),
        ("bytes", "bytes"),
        ("bytes_per_point", "bytes/point"),
        ("encode_us", "encode µs"),
        ("decode_us", "decode µs"),
        ("size_vs_json", "size ÷ JSON"),
        ("encode_vs_json", "encode ÷ JSON"),
        ("decode_vs_json", "decode ÷ JSON"),
        ("lossless", "lossless"),
    )
    measured: dict[str, dict[str, Any]] = {}
    for key, spec in _formats(prices).items():
        data = spec["encode"]()
        decoded = spec["decode"](data)
        measured[key] = {
            "format": key,
            "label": spec["label"],
            "bytes": len(data.encode() if isinstance(data, str) else data),
            "encode_us": 1e6 * best_of(spec["encode"], number),
            "decode_us": 1e6 * best_of(lambda decode=spec["decode"], data=data: decode(data), number),
            "lossless": bool(np.array_equal(decoded, prices)),
        }
    base = measured["json"]
    for row in measured.values():
        row["bytes_per_point"] = row["bytes"] / points
        row["size_vs_json"] = row["bytes"] / base["bytes"]
        row["encode_vs_json"] = row["encode_us"] / base["encode_us"]
        row["decode_vs_json"] = row["decode_us"] / base["decode_us"]
        report.add_row(**row)
    seed = measured["pickle_hex"]
    report.note(
        "JSON list: the prices as kombu's json serializer encodes them; JSON task body: the whole "
        "(args, kwargs, embed) body of a one-series forecast task; raw float64: the floor, not sendable as JSON"
    )
    report.note(
        f"JSON is {base['bytes'] / seed['bytes']:.2f}× the seed's bytes, "
        f"{base['encode_us'] / seed['encode_us']:.1f}× its encode time and "
        f"{base['decode_us'] / seed['decode_us']:.1f}× its decode time; it is what the broker accepts "
        "(a pickle in a message would run code on the worker)"
    )
    report.note(
        f"inline, 10,000 such series cost about {10_000 * (base['encode_us'] + base['decode_us']) / 1e6:.1f} "
        f"s of encode+decode CPU and {10_000 * base['bytes'] / 1e6:.0f} MB on the wire: "
        "why big datasets go by reference"
    )
    return report
