"""Every command opens the same way and reads each thing once: files, ``pgmigrations``, each file's bytes."""

from __future__ import annotations

import pytest

from lambda_db_setup.cli import EXIT_OK, main
from lambda_db_setup.engine import Engine
from tests.helpers import count_reads, write_py, write_sql


@pytest.mark.parametrize(
    "argv",
    [["check"], ["status"], ["up"], ["up", "--dry-run"], ["down"], ["redo"], ["repair"], ["baseline", "--no-verify"]],
)
def test_each_command_discovers_and_reads_the_history_once(argv, conn, database_url, migrations_dir, monkeypatch):
    write_py(
        migrations_dir, "1000_people", 'pgm.sql("CREATE TABLE people (id bigint)")', 'pgm.sql("DROP TABLE people")'
    )
    Engine(conn, migrations_dir).up()
    write_sql(migrations_dir, "2000_notes", "CREATE TABLE IF NOT EXISTS notes (id bigint);", "DROP TABLE notes;")
    counts = count_reads(monkeypatch)
    code = main([*argv, "--database-url", database_url, "--migrations-dir", str(migrations_dir)])
    assert code == EXIT_OK
    assert (counts.discoveries, counts.history_reads) == (1, 1)
    assert all(reads == 1 for reads in counts.file_reads.values()), counts.file_reads
