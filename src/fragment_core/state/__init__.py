"""The sync state store (SQLAlchemy Core): SQLite by default, Postgres for fleets."""
