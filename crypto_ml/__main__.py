"""``python -m crypto_ml`` is the ``crypto-ml`` command."""

from .cli import main

if __name__ == "__main__":
    main()
