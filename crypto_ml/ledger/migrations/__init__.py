"""The ledger's Alembic migrations, run by ``database.upgrade_schema`` (no alembic.ini needed)."""
