"""A local stand-in of the Fragment Tasks API (FastAPI + SQLite)."""
