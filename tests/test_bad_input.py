"""Bad migration files and bad history: each is refused with an error naming the file, and nothing is applied.

Every pending file is loaded (imported / parsed / built) before the first one runs, so a broken file
anywhere in the run fails it with nothing applied. The `catalog` snapshot is compared before and after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import (
    DataLossError,
    DriftError,
    MigrationFailedError,
    MigrationFileError,
    TrackingTableError,
)
from tests import safety
from tests.helpers import applied_names, create_table_migration, table_exists, write_py, write_sql
from tests.safety import catalog, run_cli

# One database per module, emptied before each test (see tests/safety.py): conftest's `conn` uses it.
module_database_url = safety.module_database_url
database_url = safety.database_url


def refused(conn, migrations_dir: Path, error_type: type[Exception], *, direction: str = "up") -> Exception:
    """Run up (or down), expect ``error_type``, and check that nothing changed in the database."""
    before = catalog(conn)
    engine = Engine(conn, migrations_dir)
    with pytest.raises(error_type) as caught:
        engine.up() if direction == "up" else engine.down()
    assert catalog(conn) == before
    return caught.value


def two_good_migrations(directory: Path) -> None:
    create_table_migration(directory, "1000_first", "first")
    write_sql(directory, "2000_second", "CREATE TABLE second (id int);", "DROP TABLE second;")


# -- Python files ----------------------------------------------------------------------------------


def test_syntax_error_in_a_later_file_fails_the_run_before_anything_is_applied(conn, migrations_dir) -> None:
    two_good_migrations(migrations_dir)
    (migrations_dir / "3000_broken.py").write_text("def up(pgm):\n    pgm.sql('SELECT 1'\n")
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error).startswith("3000_broken.py: line 2: ")
    assert "never closed" in str(error)
    assert error.migration == "3000_broken"
    assert not table_exists(conn, "first")


def test_up_with_a_count_only_loads_the_migrations_it_will_run(conn, migrations_dir) -> None:
    two_good_migrations(migrations_dir)
    (migrations_dir / "3000_work_in_progress.py").write_text("def up(pgm):\n    pgm.sql(\n")
    assert [o.name for o in Engine(conn, migrations_dir).up(2).ran] == ["1000_first", "2000_second"]
    with pytest.raises(MigrationFileError, match=r"^3000_work_in_progress\.py: line 2"):
        Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_first", "2000_second"]


def test_import_error_names_the_file_and_the_missing_module(conn, migrations_dir) -> None:
    two_good_migrations(migrations_dir)
    (migrations_dir / "3000_imports.py").write_text("import no_such_module_xyz\n\n\ndef up(pgm):\n    pass\n")
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error) == ("3000_imports.py: import failed: ModuleNotFoundError: No module named 'no_such_module_xyz'")


def test_file_without_up_function(conn, migrations_dir) -> None:
    two_good_migrations(migrations_dir)
    (migrations_dir / "3000_no_up.py").write_text("def upgrade(pgm):\n    pgm.sql('CREATE TABLE x (id int)')\n")
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error) == "3000_no_up.py: no up(pgm) function"


def test_up_raising_names_the_file_and_the_exception(conn, migrations_dir) -> None:
    two_good_migrations(migrations_dir)
    write_py(migrations_dir, "3000_raises", 'pgm.create_table("x", {})\nraise ValueError("forgot the columns")')
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error) == "3000_raises.py: up(pgm) raised ValueError: forgot the columns"


def test_builder_misuse_is_reported_as_the_migration_raising(conn, migrations_dir) -> None:
    write_py(migrations_dir, "1000_bad_option", 'pgm.create_table("x", {"id": {"type": "int", "nullable": False}})')
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error).startswith("1000_bad_option.py: up(pgm) raised ValueError: ")
    assert "nullable" in str(error)


def test_python_file_that_is_not_utf8(conn, migrations_dir) -> None:
    two_good_migrations(migrations_dir)
    latin1 = "def up(pgm):\n    pgm.sql(\"COMMENT ON TABLE first IS 'café'\")\n".encode("latin-1")
    (migrations_dir / "3000_latin1.py").write_bytes(latin1)
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error).startswith("3000_latin1.py: not valid UTF-8 (line 2: ")
    assert str(error).endswith("save it as UTF-8")


# -- SQL files -------------------------------------------------------------------------------------


def test_sql_file_without_up_marker(conn, migrations_dir) -> None:
    two_good_migrations(migrations_dir)
    (migrations_dir / "3000_no_marker.sql").write_text("CREATE TABLE x (id int);\n")
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error) == "3000_no_marker.sql: no '-- Up Migration' marker line"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-- Up Migration\n-- a comment\n-- Down Migration\nDROP TABLE x;\n", "the up section has no SQL statement"),
        ("-- Down Migration\nDROP TABLE x;\n-- Up Migration\nCREATE TABLE x (id int);\n", "comes before"),
        ("-- Up Migration\nSELECT 1;\n-- Up Migration\nSELECT 2;\n", "more than one"),
    ],
    ids=["empty-up", "down-first", "two-up-markers"],
)
def test_sql_file_with_bad_sections(conn, migrations_dir, text: str, message: str) -> None:
    (migrations_dir / "1000_sections.sql").write_text(text)
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error).startswith("1000_sections.sql: ")
    assert message in str(error)


def test_sql_file_that_is_not_utf8(conn, migrations_dir) -> None:
    two_good_migrations(migrations_dir)
    (migrations_dir / "3000_latin1.sql").write_bytes(b"-- Up Migration\nCOMMENT ON TABLE first IS 'caf\xe9';\n")
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error) == "3000_latin1.sql: not valid UTF-8 (line 2: byte 0xe9 at offset 46); save it as UTF-8"


# -- names and directories -------------------------------------------------------------------------


def test_two_files_with_the_same_timestamp(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_one", "one")
    create_table_migration(migrations_dir, "1000_other", "other")
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error) == ("1000_one.py and 1000_other.py have the same timestamp 1000; give one a new timestamp")


def test_py_and_sql_file_for_the_same_migration(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_one", "one")
    write_sql(migrations_dir, "1000_one", "CREATE TABLE one (id int);")
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error) == "1000_one.py and 1000_one.sql: two files for migration 1000_one"


@pytest.mark.parametrize("file_name", ["create_users.py", "1000-create-users.sql", "1000_CreateUsers.py", "1000_.sql"])
def test_file_name_that_does_not_match_the_pattern(conn, migrations_dir, file_name: str) -> None:
    create_table_migration(migrations_dir, "1000_one", "one")
    (migrations_dir / file_name).write_text("-- Up Migration\nSELECT 1;\n")
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error) == (
        f"{file_name}: not a migration file name; expected {{unix-ms-timestamp}}_{{snake_case_name}}.py or .sql"
    )


def test_empty_directory_is_nothing_to_do(conn, migrations_dir) -> None:
    result = Engine(conn, migrations_dir).up()
    assert result.ran == [] and result.pending == [] and result.already_applied == []
    assert catalog(conn) == {"relations": [], "functions": [], "pgmigrations": []}


def test_missing_directory_is_an_error(conn, tmp_path: Path) -> None:
    missing = tmp_path / "migratoins"
    with pytest.raises(MigrationFileError) as caught:
        Engine(conn, missing).up()
    assert str(caught.value) == f"migrations directory {missing} does not exist (looked for {missing.resolve()})"
    assert not table_exists(conn, "pgmigrations")


def test_cli_reports_empty_and_missing_directories(database_url, migrations_dir, tmp_path: Path) -> None:
    def cli(directory: Path):
        return run_cli(["up", "--database-url", database_url, "--migrations-dir", str(directory)], cwd=tmp_path)

    empty = cli(migrations_dir)
    assert (empty.returncode, empty.stdout) == (0, "nothing to do: no pending migrations\n")
    missing = cli(Path("nowhere"))
    assert missing.returncode == 1
    assert missing.stderr.splitlines()[-1] == (
        f"error: migrations directory nowhere does not exist (looked for {tmp_path / 'nowhere'})"
    )


# -- migrations that fail or fight the engine's transaction ------------------------------------------


def test_down_missing_when_down_is_asked_for_changes_nothing(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_reversible", "CREATE TABLE r (id int);", "DROP TABLE r;")
    write_py(migrations_dir, "2000_one_way", 'pgm.sql("CREATE TABLE one_way (id int)")')
    Engine(conn, migrations_dir).up()
    before = catalog(conn)
    with pytest.raises(MigrationFileError) as caught:
        Engine(conn, migrations_dir).down(2)
    assert str(caught.value) == "2000_one_way.py: no down(pgm) function; down refused, nothing was changed"
    assert catalog(conn) == before  # 1000_reversible's down did not run either


def test_sql_error_in_the_middle_rolls_back_the_whole_migration(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_first", "first")
    write_sql(
        migrations_dir,
        "2000_multi",
        "CREATE TABLE m1 (id int);\nINSERT INTO m1 VALUES (1);\nINSERT INTO m1 VALUES ('one');\n"
        "CREATE TABLE m2 (id int);",
    )
    create_table_migration(migrations_dir, "3000_after", "after")
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir).up()
    assert str(caught.value) == (
        '2000_multi.sql: invalid input syntax for type integer: "one" (SQLSTATE 22P02) in:'
        " INSERT INTO m1 VALUES ('one')"
    )
    assert applied_names(conn) == ["1000_first"]
    assert catalog(conn)["relations"] == [("first", "r", "id integer")]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("sql", "CREATE TABLE c1 (id int);\nCOMMIT;\nCREATE TABLE c2 (id int);"),
        ("sql", "CREATE TABLE c1 (id int);\n/* undo */ ROLLBACK;"),
        ("sql", "BEGIN;\nCREATE TABLE c1 (id int);\nEND;"),
        ("sql", "CREATE TABLE c1 (id int);\nPREPARE TRANSACTION 'x';"),
        ("py", 'pgm.sql("CREATE TABLE c1 (id int); COMMIT; CREATE TABLE c2 (id int)")'),
        ("py", 'pgm.sql("CREATE TABLE c1 (id int)")\npgm.sql("  -- done\\n  commit")'),
    ],
    ids=["sql-commit", "sql-rollback", "sql-begin-end", "sql-prepare", "py-commit-inside-one-sql", "py-commit"],
)
def test_transaction_control_is_refused_before_running(conn, migrations_dir, kind: str, body: str) -> None:
    create_table_migration(migrations_dir, "1000_first", "first")
    if kind == "sql":
        write_sql(migrations_dir, "2000_commits", body)
    else:
        write_py(migrations_dir, "2000_commits", body)
    error = refused(conn, migrations_dir, MigrationFileError)
    assert str(error).startswith(f"2000_commits.{kind}: ends or opens a transaction itself (")
    assert "pgm.no_transaction()" in str(error)


def test_savepoints_stay_inside_the_migration_transaction(conn, migrations_dir) -> None:
    write_sql(
        migrations_dir,
        "1000_savepoint",
        "CREATE TABLE s (id int);\nSAVEPOINT before_rows;\nINSERT INTO s VALUES (1);\n"
        "ROLLBACK TO SAVEPOINT before_rows;",
    )
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_savepoint"]
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM s")
        assert cursor.fetchone() == (0,)


def test_do_block_that_commits_rolls_back_with_a_clear_message(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_first", "first")
    write_sql(
        migrations_dir,
        "2000_do_commit",
        "CREATE TABLE d1 (id int);\nDO $$ BEGIN INSERT INTO d1 VALUES (1); COMMIT; END $$;",
    )
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir).up()
    message = str(caught.value)
    assert message.startswith("2000_do_commit.sql: invalid transaction termination (SQLSTATE 2D000) in: DO $$")
    assert "a DO block or procedure tried to end the migration's transaction" in message
    assert applied_names(conn) == ["1000_first"]
    assert not table_exists(conn, "d1")


def test_procedure_that_commits_rolls_back_with_a_clear_message(conn, migrations_dir) -> None:
    write_sql(
        migrations_dir,
        "1000_procedure",
        "CREATE PROCEDURE tidy() LANGUAGE plpgsql AS $$ BEGIN COMMIT; END $$;",
    )
    Engine(conn, migrations_dir).up()
    write_sql(migrations_dir, "2000_calls_it", "CREATE TABLE p1 (id int);\nCALL tidy();")
    error = refused(conn, migrations_dir, MigrationFailedError)
    assert str(error).startswith("2000_calls_it.sql: invalid transaction termination (SQLSTATE 2D000) in: CALL tidy()")
    assert "DO block or procedure" in str(error)


# -- history that does not match -------------------------------------------------------------------


def test_edited_applied_file_is_drift(conn, migrations_dir) -> None:
    path = create_table_migration(migrations_dir, "1000_first", "first")
    Engine(conn, migrations_dir).up()
    path.write_text(path.read_text().replace("(id int)", "(id bigint)"))
    create_table_migration(migrations_dir, "2000_second", "second")
    error = refused(conn, migrations_dir, DriftError)
    assert str(error) == (
        "applied migration file(s) changed since they ran: 1000_first;"
        " review the change, then run `repair` to accept it"
    )


def test_tracking_table_with_an_unexpected_shape(conn, migrations_dir) -> None:
    two_good_migrations(migrations_dir)
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE pgmigrations (id serial PRIMARY KEY, migration text, applied_at timestamptz)")
    error = refused(conn, migrations_dir, TrackingTableError)
    assert str(error) == (
        "table public.pgmigrations has an unexpected shape: missing column(s) name, run_on"
        " (found: id, migration, applied_at); expected node-pg-migrate's id, name, run_on"
    )
    with conn.cursor() as cursor:
        cursor.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'pgmigrations'")
        assert sorted(row[0] for row in cursor.fetchall()) == ["applied_at", "id", "migration"]


# -- down that would lose data -----------------------------------------------------------------------


def tables_with_rows(conn, migrations_dir: Path) -> None:
    write_py(
        migrations_dir,
        "1000_people",
        'pgm.create_table("people", {"id": "int"})',
        'pgm.drop_table("people", if_exists=True, cascade=True)',
    )
    write_sql(
        migrations_dir,
        "2000_notes",
        'CREATE TABLE "Notes" (id int);\nCREATE TABLE empty_one (id int);',
        'DROP TABLE IF EXISTS empty_one, "Notes";',
    )
    Engine(conn, migrations_dir).up()


def test_down_dropping_a_table_with_rows_is_refused_naming_table_and_count(conn, migrations_dir) -> None:
    tables_with_rows(conn, migrations_dir)
    with conn.cursor() as cursor:
        cursor.execute('INSERT INTO "Notes" SELECT generate_series(1, 1234)')
    before = catalog(conn)
    with pytest.raises(DataLossError) as caught:
        Engine(conn, migrations_dir).down()
    assert str(caught.value) == (
        "2000_notes.sql: down would drop public.Notes (1,234 rows); pass --force to drop them anyway"
    )
    assert catalog(conn) == before


def test_down_of_several_checks_them_all_before_reverting_any(conn, migrations_dir) -> None:
    tables_with_rows(conn, migrations_dir)
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO people VALUES (1), (2)")
    before = catalog(conn)
    with pytest.raises(DataLossError, match=r"^1000_people\.py: down would drop public\.people \(2 rows\);"):
        Engine(conn, migrations_dir).down(2)
    assert catalog(conn) == before  # 2000_notes (empty tables) was not reverted either


def test_down_dropping_empty_tables_just_runs(conn, migrations_dir) -> None:
    tables_with_rows(conn, migrations_dir)
    assert [o.name for o in Engine(conn, migrations_dir).down(2).reverted] == ["2000_notes", "1000_people"]
    assert catalog(conn)["relations"] == []


def test_forced_down_drops_tables_with_rows(conn, database_url, migrations_dir) -> None:
    tables_with_rows(conn, migrations_dir)
    with conn.cursor() as cursor:
        cursor.execute('INSERT INTO people VALUES (1); INSERT INTO "Notes" VALUES (1)')
    args = ["down", "--database-url", database_url, "--migrations-dir", str(migrations_dir)]
    refused_run = run_cli(args)
    assert refused_run.returncode == 1
    assert refused_run.stderr.splitlines()[-1] == (
        "error: 2000_notes.sql: down would drop public.Notes (1 row); pass --force to drop them anyway"
    )
    assert table_exists(conn, '"Notes"')
    forced = run_cli([*args, "--force"])
    assert forced.returncode == 0, forced.stderr
    assert not table_exists(conn, '"Notes"')
    Engine(conn, migrations_dir).down(force=True)
    assert catalog(conn) == {"relations": [], "functions": [], "pgmigrations": []}
