"""Alembic's environment: runs the migrations on the connection ``database.upgrade_schema`` hands over.

There is no alembic.ini: the ledger upgrades itself whenever it is opened. A new
revision is a new module in ``versions/`` whose ``down_revision`` is the newest
one's ``revision``; ``script.py.mako`` is its template, and
``tests/test_ledger_database.py`` checks that the migrations and ``schema.py``
describe the same tables.
"""

from __future__ import annotations

from alembic import context

# The API's tables (jobs, keys, sessions) live in the ledger's database and on its metadata; importing their
# module registers them, so the schema check and table_counts know them wherever the migrations run.
import crypto_ml.api.schema  # noqa: F401
from crypto_ml.ledger.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite alters a table by copying it; batch mode does that for any later ALTER.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
