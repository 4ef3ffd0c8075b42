"""Datasets the benchmarks run on: generated once into the cache, or the real top-100 dataset."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from crypto_ml.synthetic import generate_dataset

from .harness import REPO_ROOT, Options

__all__ = ["synthetic_dataset", "real_dataset", "describe", "SERIES_SEED", "MIN_POINTS", "MAX_POINTS"]

#: Root seed of every generated benchmark dataset: the same series in every run.
SERIES_SEED = 0
#: Series lengths are uniform in [MIN_POINTS, MAX_POINTS]: about 1,000 points, as the issue asks.
MIN_POINTS, MAX_POINTS = 900, 1100


def synthetic_dataset(
    options: Options, n_series: int, *, min_points: int = MIN_POINTS, max_points: int = MAX_POINTS
) -> Path:
    """A long-format Parquet file of ``n_series`` generated coins, made on first use and then reused.

    Series ``i`` depends only on the seed and ``i`` (see ``generate_dataset``),
    so the first 1,000 series of the 10,000-series file are the 1,000-series file.

    Returns:
        The file's path in ``options.cache``.
    """
    path = options.cache / f"synthetic-n{n_series}-seed{SERIES_SEED}-points{min_points}-{max_points}.parquet"
    if not path.exists():  # generate_dataset renames into place, so an existing file is complete
        options.console.print(f"generating {n_series:,} series into {path} (once; cached for later runs)")
        generate_dataset(n_series, path, seed=SERIES_SEED, min_points=min_points, max_points=max_points)
    return path


def describe(path: Path, **extra: Any) -> dict[str, Any]:
    """What a report records about its dataset."""
    size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    return {"path": str(path), "megabytes": round(size / 1e6, 1), **extra}


def real_dataset() -> Path | None:
    """The real top-100 dataset (``CRYPTO_ML_REAL_DATA`` or ``../shared/data/top100-2017``), if present."""
    folder = Path(os.environ.get("CRYPTO_ML_REAL_DATA") or REPO_ROOT.parent / "shared" / "data" / "top100-2017")
    return folder if (folder / "Bitcoin.csv").is_file() else None
