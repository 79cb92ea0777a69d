"""The Postgres test server works, from the system's binaries or from the pgserver wheel
(so a machine with only Python runs the Postgres tests too)."""

from pathlib import Path

import sqlalchemy as sa

from fragment_core.state import StateStore
from fragment_core.testing.postgres import find_server_binaries, running_postgres


def test_postgres_fixture_answers(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select 1 + 1")).scalar() == 2
    engine.dispose()


def test_without_system_binaries_the_pgserver_wheel_serves_the_state_store(
    tmp_path: Path,
) -> None:
    binaries = find_server_binaries("pgserver")
    assert binaries.origin == "pgserver" and Path(binaries.initdb).is_file()
    with running_postgres(tmp_path, source="pgserver") as server:
        assert server.binaries.origin == "pgserver"
        store = StateStore(server.url)
        try:
            with store.engine.connect() as conn:
                version = conn.execute(sa.text("show server_version")).scalar()
                tables = set(sa.inspect(conn).get_table_names())
        finally:
            store.close()
    assert version and {"fragment_leases", "fragment_outbox"} <= tables
