"""The column layout of every coin frame, and the names of coins and columns.

:data:`COLUMNS` is the contract of :meth:`~crypto_ml.data.CryptoLoader.get_df`;
:func:`normalize_name` turns a file stem or symbol into a coin's name, and
:func:`_header_key` a CSV or Parquet header into the key that maps it onto
:data:`COLUMNS`.
"""

from __future__ import annotations

import logging
import re
import unicodedata

from ..exceptions import InvalidParameterError

logger = logging.getLogger(__name__)

#: The columns of every frame :meth:`CryptoLoader.get_df` returns, in this order.
COLUMNS = ("Date", "Open", "High", "Low", "Close", "Volume", "Market Cap")
NUMERIC_COLUMNS = COLUMNS[1:]
REQUIRED_COLUMNS = ("Date", "Close")

#: Suffixes that make ``data_path`` a single long-format file.
LONG_SUFFIXES = (".csv.gz", ".csv", ".parquet")

# Canonical (lower-case, single-spaced) header -> output column; "market_cap" and
# "Market Cap" both canonicalise to "market cap".
_COLUMN_BY_KEY = {name.lower(): name for name in COLUMNS}


def normalize_name(raw: str) -> str:
    """The canonical name of a coin: NFKC-normalised, stripped, lower-case, ``_`` for spaces.

    Args:
        raw: A file stem or symbol such as ``"Bitcoin Cash"``.

    Returns:
        The normalised name, e.g. ``"bitcoin_cash"``; ``"I-O Coin"`` gives
        ``"i-o_coin"``. Non-ASCII letters are kept (``"déjà_coin"``).

    Raises:
        InvalidParameterError: ``raw`` is not a string.
    """
    if not isinstance(raw, str):
        raise InvalidParameterError(f"a coin name must be a string, got {raw!r}")
    # NFKC first so that full-width letters and non-breaking spaces fold to their
    # plain forms before lower-casing and whitespace collapsing.
    return re.sub(r"\s+", "_", unicodedata.normalize("NFKC", raw).strip().lower())


def _header_key(column: object) -> str:
    return re.sub(r"[\s_]+", " ", str(column).strip().lower())
