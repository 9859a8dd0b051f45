"""The embedded server is PostgreSQL 16 with pgvector and the uuid-ossp stand-in."""

from __future__ import annotations

import uuid


def test_server_is_postgres_16_with_vector_and_uuid_ossp(conn) -> None:
    with conn.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        assert cursor.fetchone()[0].startswith("16")
        cursor.execute('CREATE EXTENSION "uuid-ossp"')
        cursor.execute("CREATE EXTENSION vector")
        cursor.execute("SELECT uuid_generate_v4(), uuid_generate_v4(), '[1,2,3]'::vector <-> '[1,2,4]'::vector")
        first, second, distance = cursor.fetchone()
    assert uuid.UUID(first).version == 4
    assert first != second
    assert distance == 1.0
