"""The Alembic environment of the statistics database, run by `store.migrate`."""
