"""Load daily coin prices from CoinMarketCap-style CSV folders or long-format tables.

Two layouts are read:

* a **directory** with one CoinMarketCap export per coin (``Bitcoin Cash.csv``:
  ``Date,Open,High,Low,Close,Volume,Market Cap``, newest first); the file stem,
  normalised by :func:`normalize_name`, is the coin's name;
* a **long-format file** (``.csv``, ``.csv.gz`` or ``.parquet``) with columns
  ``symbol, date, close`` and optionally ``open, high, low, volume, market_cap``;
  each normalised symbol is one coin.

Real exports are messy, so the loader fixes the routine quirks (mixed date
formats, Excel serial dates, thousands separators, ``-`` for missing values,
either row order) and logs them at INFO. Anything it has to drop or cannot
explain (bad dates or prices, duplicated rows, shuffled order, byte-identical
files) is logged at WARNING with counts and the file, and is recorded in the
coin's :class:`CoinReport`. A coin it cannot load raises
:class:`~crypto_ml.exceptions.DataFormatError` for that coin only; the other
coins still load, and :meth:`CryptoLoader.report` lists every failure.

A long-format file is converted and checked as a whole, once, on the first coin
asked for (listing the coins reads only its symbol column). Coins with nothing
to clean are then slices of its sorted columns; the others are cleaned one by
one, with the same rules, warnings and errors as coin files.

The modules, each importing only those above it:

* :mod:`~crypto_ml.data.schema`: the output columns and :func:`normalize_name`;
* :mod:`~crypto_ml.data.parsing`: dates and numbers as exports write them;
* :mod:`~crypto_ml.data.quality`: cleaning one coin, and the report dataclasses;
* :mod:`~crypto_ml.data.coinmarketcap`: reading a CoinMarketCap CSV export;
* :mod:`~crypto_ml.data.long_table`: reading and grouping a long-format file;
* :mod:`~crypto_ml.data.loader`: the :class:`CryptoLoader` facade.

Every module logs under ``crypto_ml.data``. Importing the package stays cheap:
pyarrow is imported only where it is used.
"""

from __future__ import annotations

from .loader import CryptoLoader
from .quality import CoinReport, DataReport
from .schema import COLUMNS, normalize_name

__all__ = ["CryptoLoader", "CoinReport", "DataReport", "normalize_name", "COLUMNS"]
