"""Every error crypto_ml raises on purpose.

The tree::

    CryptoMLError
     ├── DataFormatError(ValueError)        a file or series cannot be read as prices
     │    ├── SeriesTooShortError           too few points for the model and horizon
     │    └── PriceStoreError               a price store's manifest or files disagree, or are not ours
     ├── UnknownCoinError(KeyError)         no such coin in the dataset
     │    └── UnknownSymbolError            no such trading pair on the exchange (unknown or delisted)
     ├── ExchangeError(RuntimeError)        an exchange could not give us prices
     │    ├── ExchangeResponseError         it answered with something that is not its documented format
     │    └── ExchangeUnavailableError      it did not answer in time, after bounded retries, or banned us
     ├── UnknownModelError(KeyError)        no such model in the registry
     ├── InvalidParameterError(ValueError)  a bad argument: horizon <= 0, unknown model param, ...
     ├── NotFittedError(ValueError, AttributeError)  predict() before fit()
     ├── NonPositiveForecastError(ValueError)  a model's fit implies a price at or below zero
     ├── MissingDependencyError(ImportError)  a model's optional extra is not installed
     ├── EngineError(RuntimeError)          an execution engine cannot run the batch
     ├── ModelStoreError                    a stored model is missing, unreadable or not ours
     │    └── IncompatibleModelError        a stored model does not fit the request or this install
     ├── LedgerError(RuntimeError)          the forecast ledger's database cannot be reached or written
     ├── PipelineBusyError(RuntimeError)    another pipeline cycle holds the lock; the message says who and until when
     ├── UnknownJobError(KeyError)          no such API job for this API key
     └── TooManyJobsError(RuntimeError)     an API key has as many jobs running as it may; carries retry_after

Messages name the bad value and say what to do. Every exception takes a single
string argument, so that it survives being serialised across the broker and
re-raised on the other side.
"""

from __future__ import annotations

__all__ = [
    "CryptoMLError",
    "DataFormatError",
    "SeriesTooShortError",
    "UnknownCoinError",
    "UnknownModelError",
    "PriceStoreError",
    "UnknownSymbolError",
    "ExchangeError",
    "ExchangeResponseError",
    "ExchangeUnavailableError",
    "InvalidParameterError",
    "NotFittedError",
    "NonPositiveForecastError",
    "MissingDependencyError",
    "EngineError",
    "ModelStoreError",
    "IncompatibleModelError",
    "LedgerError",
    "PipelineBusyError",
    "UnknownJobError",
    "TooManyJobsError",
]


class CryptoMLError(Exception):
    """Base class of every error raised by crypto_ml."""


class DataFormatError(ValueError, CryptoMLError):
    """A file, row set or series cannot be used as a price history."""


class SeriesTooShortError(DataFormatError):
    """A series has fewer points than a model needs."""


class UnknownCoinError(KeyError, CryptoMLError):
    """A coin name that is not in the dataset."""

    def __str__(self) -> str:
        # KeyError.__str__ wraps its message in quotes; keep it readable.
        return str(self.args[0]) if self.args else ""


class PriceStoreError(DataFormatError):
    """A price store whose manifest and files disagree (a file changed or vanished), or a folder that is not a store."""


class UnknownSymbolError(UnknownCoinError):
    """A trading pair the exchange does not list (mistyped, or delisted)."""


class ExchangeError(RuntimeError, CryptoMLError):
    """An exchange could not give us prices; the message names the exchange, the symbol and the URL."""


class ExchangeResponseError(ExchangeError):
    """The exchange answered, but not in its documented format: an HTML page, malformed or partial JSON."""


class ExchangeUnavailableError(ExchangeError):
    """The exchange did not answer after bounded retries, or asked us to wait longer than we are allowed to."""


class UnknownModelError(KeyError, CryptoMLError):
    """A model name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidParameterError(ValueError, CryptoMLError):
    """An argument outside its valid range, or one a model does not accept."""


class NotFittedError(ValueError, AttributeError, CryptoMLError):
    """``predict`` was called on a model before ``fit``."""


class NonPositiveForecastError(ValueError, CryptoMLError):
    """A model's fit implies a price at or below zero for this series; it refuses rather than clip."""


class MissingDependencyError(ImportError, CryptoMLError):
    """A model needs an optional extra that is not installed; the message names the pip command."""


class EngineError(RuntimeError, CryptoMLError):
    """An execution engine is unavailable or failed as a whole."""


class ModelStoreError(CryptoMLError):
    """A stored model is missing, unreadable, tampered with, or in a format we refuse to load."""


class IncompatibleModelError(ModelStoreError):
    """A stored model cannot serve this request: other parameters, data or library versions."""


class LedgerError(RuntimeError, CryptoMLError):
    """The forecast ledger's database cannot be reached, upgraded or written; the message names the (masked) URL."""


class PipelineBusyError(RuntimeError, CryptoMLError):
    """Another pipeline cycle holds the cycle lock; the message names the holder and when its lock expires."""


class UnknownJobError(KeyError, CryptoMLError):
    """No API job with this id belongs to the caller's key (another key's job is reported the same way)."""

    def __str__(self) -> str:  # KeyError's own quotes the message
        return str(self.args[0]) if self.args else ""


class TooManyJobsError(RuntimeError, CryptoMLError):
    """An API key already has as many jobs queued or running as it may; the API answers 429.

    Args:
        message: What the limit is and what to do.
        retry_after: Seconds after which a retry may succeed (the ``Retry-After`` header).
    """

    def __init__(self, message: str, retry_after: float = 5.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self):  # the single-string rule: survives pickling with its retry_after
        return (type(self), (str(self), self.retry_after))
