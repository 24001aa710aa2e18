"""Alembic migration scripts for the results store, run programmatically by `engine.store.db`."""
