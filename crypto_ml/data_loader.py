"""Compatibility shim: the loader now lives in the :mod:`crypto_ml.data` package.

``from crypto_ml.data_loader import CryptoLoader``, the 2017 seed's interface,
keeps working and gives the same objects as ``from crypto_ml.data import ...``.
New code should import from :mod:`crypto_ml.data`.
"""

from __future__ import annotations

from .data import COLUMNS, CoinReport, CryptoLoader, DataReport, normalize_name

__all__ = ["CryptoLoader", "CoinReport", "DataReport", "normalize_name", "COLUMNS"]
