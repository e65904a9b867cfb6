"""Alembic migrations for the platform's own tables (resource data tables are made at publish)."""
