"""The PostgreSQL test fixture itself: a real server with pgvector, one empty database per call."""

import pytest

pytestmark = pytest.mark.postgres


def test_server_has_pgvector_and_fresh_databases_are_empty_and_separate(postgres_url, fresh_database):
    import psycopg

    assert postgres_url.startswith("postgresql://") and fresh_database.startswith("postgresql://")
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        assert conn.execute("SELECT '[1,2,3]'::vector <#> '[1,0,0]'::vector").fetchone()[0] == -1.0
        conn.execute("CREATE TABLE t (x int)")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone()[0] is None
