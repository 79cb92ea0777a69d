"""Fleet mode: the same sync as Temporal workflows (a later issue)."""
