"""The Postgres fixture itself works (the state store's Postgres tests rely on it)."""

import sqlalchemy as sa


def test_postgres_fixture_answers(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("select 1 + 1")).scalar() == 2
    engine.dispose()
