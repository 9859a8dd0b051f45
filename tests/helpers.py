"""Small helpers shared by the tests: writing migration files and reading the catalog."""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


def write_py(directory: Path, name: str, up: str, down: str | None = None) -> Path:
    """Write ``{name}.py`` whose up/down bodies are the given Python statements (indented for you)."""
    text = "def up(pgm):\n" + textwrap.indent(textwrap.dedent(up).strip() + "\n", "    ")
    if down is not None:
        text += "\n\ndef down(pgm):\n" + textwrap.indent(textwrap.dedent(down).strip() + "\n", "    ")
    path = directory / f"{name}.py"
    path.write_text(text)
    return path


def write_sql(directory: Path, name: str, up: str, down: str | None = None, *, header: str = "") -> Path:
    """Write ``{name}.sql`` with node-pg-migrate's section markers."""
    text = f"{header}-- Up Migration\n{up}\n"
    if down is not None:
        text += f"\n-- Down Migration\n{down}\n"
    path = directory / f"{name}.sql"
    path.write_text(text)
    return path


def create_table_migration(directory: Path, name: str, table: str) -> Path:
    """A reversible migration creating one small table."""
    return write_py(directory, name, f'pgm.sql("CREATE TABLE {table} (id int)")', f'pgm.sql("DROP TABLE {table}")')


def applied_names(conn) -> list[str]:
    """Names in pgmigrations, oldest first ([] when the table was never created: nothing applied)."""
    if not table_exists(conn, "pgmigrations"):
        return []
    with conn.cursor() as cursor:
        cursor.execute("SELECT name FROM pgmigrations ORDER BY run_on, id")
        return [row[0] for row in cursor.fetchall()]


def table_exists(conn, table: str) -> bool:
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        return cursor.fetchone()[0]


@dataclass
class ReadCounts:
    """How often one invocation discovered the files, read ``pgmigrations`` and read each file."""

    discoveries: int = 0
    history_reads: int = 0
    file_reads: Counter = field(default_factory=Counter)


def count_reads(monkeypatch) -> ReadCounts:
    """Count, from now on, every discovery, read of ``pgmigrations`` and read of a migration file."""
    from lambda_db_setup import engine, tracking

    counts = ReadCounts()
    scan, read_applied, read_bytes = engine.scan, tracking.read_applied, Path.read_bytes

    def counting_scan(*args, **kwargs):
        counts.discoveries += 1
        return scan(*args, **kwargs)

    def counting_read_applied(*args, **kwargs):
        counts.history_reads += 1
        return read_applied(*args, **kwargs)

    def counting_read_bytes(path: Path) -> bytes:
        counts.file_reads[path.name] += 1
        return read_bytes(path)

    monkeypatch.setattr(engine, "scan", counting_scan)
    monkeypatch.setattr(tracking, "read_applied", counting_read_applied)
    monkeypatch.setattr(Path, "read_bytes", counting_read_bytes)
    return counts
