"""What a run reports is what happened, whatever bytes a migration holds and whatever stops it (issue 18).

Each test tries what a hostile or careless user would: a NUL byte, a non-ASCII dollar-quote tag, an unterminated
quote, COPY to the client, DISCARD ALL, Ctrl-C or SIGTERM mid-statement, a failure inside a single transaction of
several migrations. Every test ends with the invariant: a migration's row exists exactly when its effects do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from lambda_db_setup import cli, interrupts, testing
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import LockContentionError, MigrationFailedError, MigrationFileError, RunInterrupted
from lambda_db_setup.options import EngineOptions
from lambda_db_setup.progress import Progress
from tests import safety
from tests.helpers import applied_names, create_table_migration, table_exists, write_py, write_sql
from tests.safety import cli_command, cli_env
from tests.test_crash import query, wait_until
from tests.test_hardening_engine import lock_is_free, tables

module_database_url = safety.module_database_url
database_url = safety.database_url
NO_TX = "-- pgm:no-transaction\n"
SINGLE = EngineOptions(single_transaction=True)


def refused(conn, migrations_dir, options: EngineOptions | None = None) -> MigrationFileError:
    """The MigrationFileError ``up`` is refused with; nothing of any migration ran."""
    with pytest.raises(MigrationFileError) as caught:
        Engine(conn, migrations_dir, options or EngineOptions()).up()
    assert applied_names(conn) == [] and tables(conn) == set()
    return caught.value


# -- 1. NUL bytes --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body", "where"),
    [
        ("sql", "CREATE TABLE a (id int); -- a NUL \x00 in a comment\nCREATE TABLE b (id int);", "line 2, column 35"),
        ("sql", "CREATE TABLE a (id int);\nINSERT INTO a VALUES (length('x\x00y'));", "line 3, column 32"),
        ("py", 'pgm.sql("CREATE TABLE a (id int)")\npgm.sql("SELECT 1 -- \\x00")', "statement 2"),
        ("py", "pgm.sql(\"CREATE TABLE a (id int); SELECT '\\x00'\")", "statement 1"),
    ],
    ids=["sql-comment", "sql-literal", "py-comment", "py-literal"],
)
@pytest.mark.parametrize("options", [EngineOptions(), SINGLE], ids=["per-migration", "single-transaction"])
def test_a_nul_byte_is_refused_before_anything_runs(conn, migrations_dir, kind, body, where, options) -> None:
    create_table_migration(migrations_dir, "1000_first", "first")
    (write_sql if kind == "sql" else write_py)(migrations_dir, "2000_nul", body)
    error = refused(conn, migrations_dir, options)
    assert str(error).startswith(f"2000_nul.{kind}: ") and where in str(error)
    assert "a NUL byte (0x00): PostgreSQL cannot receive it" in str(error) and error.migration == "2000_nul"


def test_a_nul_in_the_down_section_is_refused_too(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_a", "CREATE TABLE a (id int);", "DROP TABLE a; -- \x00")
    assert "line 5, column 18: a NUL byte" in str(refused(conn, migrations_dir))


# -- 2. Dollar quotes with non-ASCII tags --------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["ж", "ü", "tagé", "€", "_ж1", "日本"])
def test_a_non_ascii_dollar_quote_keeps_its_body_whole(conn, database_url, migrations_dir, tag) -> None:
    """The body, with its semicolons and quotes, is what the table and the function get: no engine statement
    lands inside it, and the function works in every other session."""
    body = "a;b'c -- d /* e"
    write_sql(
        migrations_dir,
        "1000_tags",
        f"CREATE TABLE t (v text);\nINSERT INTO t VALUES (${tag}${body}${tag}$);\n"
        f"CREATE FUNCTION f() RETURNS text LANGUAGE sql AS ${tag}$ SELECT 'x;y' ${tag}$;",
    )
    Engine(conn, migrations_dir, SINGLE).up()
    create_table_migration(migrations_dir, "2000_after", "after")  # the next batch starts cleanly
    Engine(conn, migrations_dir).up()
    assert query(conn, "SELECT v FROM t") == [(body,)]
    other = psycopg2.connect(database_url)
    try:
        assert query(other, "SELECT f()") == [("x;y",)]
    finally:
        other.close()
    assert applied_names(conn) == ["1000_tags", "2000_after"] and lock_is_free(conn)


def test_an_identifier_ending_in_dollars_is_not_a_dollar_quote(conn, migrations_dir) -> None:
    """``ж$`` continues an identifier (as in scan.l), so the ``$$`` after it opens nothing."""
    write_sql(migrations_dir, "1000_a", 'CREATE TABLE "t" (ж$$ int);\nCREATE TABLE u (id int);')
    Engine(conn, migrations_dir).up()
    assert tables(conn) == {"public.t", "public.u"} and applied_names(conn) == ["1000_a"]


# -- 3. Unterminated quotes and comments, in both modes -------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "what"),
    [
        ("CREATE TABLE a (id int);\nSELECT $ж$ never closed;", "a dollar-quoted string ($ж$)"),
        ("CREATE TABLE a (id int);\nSELECT 'never closed;", "a quoted string"),
        ("CREATE TABLE a (id int);\nSELECT E'escaped \\' never closed;", "an E'' string"),
        ('CREATE TABLE a (id int);\nSELECT 1 AS "never closed;', "a quoted identifier"),
        ("CREATE TABLE a (id int);\n/* /* nested */ never closed;", "a /* comment"),
        (
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1;",
            "a BEGIN ATOMIC body (or a CASE in it)",
        ),
    ],
    ids=["dollar", "quote", "e-string", "identifier", "comment", "atomic"],
)
@pytest.mark.parametrize("options", [EngineOptions(), SINGLE], ids=["per-migration", "single-transaction"])
def test_an_unterminated_file_is_refused_with_its_line(conn, migrations_dir, body, what, options) -> None:
    """The next file would close it, and the first file's row would land inside a comment: refused first."""
    write_sql(migrations_dir, "1000_open", body)
    write_sql(migrations_dir, "2000_closes", "SELECT 1; -- $ж$ ' */ \" END;\nCREATE TABLE b (id int);")
    error = refused(conn, migrations_dir, options)
    assert str(error).startswith("1000_open.sql: line ") and f"{what} starts here and never ends" in str(error)


def test_an_e_string_continued_on_the_next_line_keeps_its_escapes(conn, migrations_dir) -> None:
    """scan.l continues an E'' string into a quote that only a newline separates from it, with its backslash
    escapes: the semicolon after ``\\'`` is inside the string, not the end of a statement."""
    write_sql(migrations_dir, "1000_a", "CREATE TABLE t (v text);\nINSERT INTO t VALUES (E'a'\n'\\'; b');")
    Engine(conn, migrations_dir).up()
    assert query(conn, "SELECT v FROM t") == [("a'; b",)]


def test_a_line_comment_ends_at_a_carriage_return(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_a", "CREATE TABLE a (id int); -- old Mac line end\rCREATE TABLE b (id int);")
    Engine(conn, migrations_dir).up()
    assert tables(conn) == {"public.a", "public.b"}


# -- 7, 8. COPY to or from the client, DISCARD ALL ------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "COPY t FROM STDIN",
        "copy t (id) from stdin with (format csv)",
        "COPY t TO STDOUT",
        "COPY (SELECT id FROM t) TO STDOUT WITH (FORMAT csv)",
    ],
)
@pytest.mark.parametrize("header", ["", NO_TX], ids=["transaction", "no-transaction"])
def test_copy_with_the_client_is_refused_naming_the_file(conn, migrations_dir, statement, header) -> None:
    write_sql(migrations_dir, "1000_copy", f"CREATE TABLE t (id int);\n{statement};", header=header)
    error = refused(conn, migrations_dir)
    assert str(error).startswith("1000_copy.sql: statement 2 (") and "COPY FROM STDIN / TO STDOUT" in str(error)


def test_copy_from_a_server_file_is_left_to_the_server(conn, migrations_dir) -> None:
    """Not refused: the server itself says what is wrong with it, and nothing is recorded."""
    write_sql(migrations_dir, "1000_copy", "CREATE TABLE t (id int);\nCOPY t FROM '/nonexistent/stdin.csv';")
    with pytest.raises(MigrationFailedError, match=r"could not open file .* in: COPY t FROM") as caught:
        Engine(conn, migrations_dir).up()
    assert caught.value.statement.startswith("COPY t FROM") and applied_names(conn) == []


@pytest.mark.parametrize("header", ["", NO_TX], ids=["transaction", "no-transaction"])
def test_discard_all_is_refused(conn, migrations_dir, header) -> None:
    write_sql(migrations_dir, "1000_discard", "CREATE TABLE t (id int);\nDISCARD ALL;", header=header)
    assert "DISCARD ALL would release the migration lock" in str(refused(conn, migrations_dir))


def test_discard_temp_no_longer_breaks_the_runs_that_follow(conn, migrations_dir) -> None:
    """The engine keeps no temporary object: after DISCARD TEMP a later failure still names its statement."""
    write_sql(migrations_dir, "1000_discard", "DISCARD TEMP;", header=NO_TX)
    write_sql(migrations_dir, "2000_bad", "CREATE TABLE b (id int);\nSELECT 1 / 0;\nCREATE TABLE c (id int);")
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir).up()
    assert caught.value.migration == "2000_bad" and caught.value.statement == "SELECT 1 / 0"
    assert applied_names(conn) == ["1000_discard"] and not table_exists(conn, "b") and lock_is_free(conn)


# -- 9. Attribution inside a single transaction of several migrations ----------------------------------------


def group_of_three(migrations_dir, second: str) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_b", second)
    create_table_migration(migrations_dir, "3000_c", "c")


def test_the_failing_statement_is_named_in_a_group_for_a_role_without_temp(database_url, conn, migrations_dir) -> None:
    role = f"notemp_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        cursor.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(conn.info.dbname)))
        cursor.execute(sql.SQL("GRANT ALL ON SCHEMA public TO {}").format(sql.Identifier(role)))
    runner = psycopg2.connect(**psycopg2.extensions.parse_dsn(database_url) | {"user": role})
    try:
        group_of_three(migrations_dir, "CREATE TABLE b (id int);\nSELECT 1 / 0;\nCREATE TABLE b2 (id int);")
        with pytest.raises(MigrationFailedError) as caught:
            Engine(runner, migrations_dir, SINGLE).up()
    finally:
        runner.close()
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO PUBLIC").format(sql.Identifier(conn.info.dbname)))
            cursor.execute(sql.SQL("DROP OWNED BY {}; DROP ROLE {}").format(sql.Identifier(role), sql.Identifier(role)))
    assert caught.value.migration == "2000_b" and caught.value.statement == "SELECT 1 / 0"
    assert "these are not applied either: 1000_a" in str(caught.value)
    assert applied_names(conn) == [] and tables(conn) == set()


@pytest.mark.parametrize("unlock", ["SELECT pg_advisory_unlock_all()", "SELECT pg_advisory_unlock(7241865325823964)"])
def test_a_lock_released_in_a_group_is_blamed_on_its_file(conn, migrations_dir, unlock) -> None:
    group_of_three(migrations_dir, f"CREATE TABLE b (id int);\n{unlock};")
    with pytest.raises(MigrationFailedError, match="the migration lock is no longer held") as caught:
        Engine(conn, migrations_dir, SINGLE).up()
    assert caught.value.migration == "2000_b" and caught.value.statement == unlock
    assert applied_names(conn) == [] and tables(conn) == set() and lock_is_free(conn)


def test_a_deferred_violation_in_a_group_is_blamed_on_its_file(conn, migrations_dir) -> None:
    """Each migration's deferred constraints are checked at its end, as its own COMMIT would."""
    write_sql(
        migrations_dir,
        "1000_schema",
        "CREATE TABLE parent (id int PRIMARY KEY);\n"
        "CREATE TABLE child (p int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);",
    )
    write_sql(migrations_dir, "2000_bad_row", "INSERT INTO child VALUES (1);")
    create_table_migration(migrations_dir, "3000_c", "c")
    with pytest.raises(MigrationFailedError, match="violates foreign key") as caught:
        Engine(conn, migrations_dir, SINGLE).up()
    assert caught.value.migration == "2000_bad_row" and " when committing it" in str(caught.value)
    assert "these are not applied either: 1000_schema" in str(caught.value)
    assert applied_names(conn) == [] and tables(conn) == set()


def test_deferral_still_holds_inside_each_migration_of_a_group(conn, migrations_dir) -> None:
    """Checking at each migration's end must not make an INITIALLY DEFERRED constraint immediate for the next:
    a child row before its parent, in one migration, still works."""
    write_sql(
        migrations_dir,
        "1000_schema",
        "CREATE TABLE parent (id int PRIMARY KEY);\n"
        "CREATE TABLE child (p int REFERENCES parent DEFERRABLE INITIALLY DEFERRED);",
    )
    write_sql(migrations_dir, "2000_rows", "INSERT INTO child VALUES (1);\nINSERT INTO parent VALUES (1);")
    write_sql(migrations_dir, "3000_more", "INSERT INTO child VALUES (2);\nINSERT INTO parent VALUES (2);")
    Engine(conn, migrations_dir, SINGLE).up()
    assert applied_names(conn) == ["1000_schema", "2000_rows", "3000_more"]
    assert query(conn, "SELECT count(*) FROM child") == [(2,)]


class Retries(Progress):
    def __init__(self) -> None:
        self.retried: list[str] = []

    def retrying(self, migration, attempt, backoff_seconds) -> None:
        self.retried.append(migration.name)


def test_a_retry_line_names_the_migration_that_waited(conn, database_url, migrations_dir) -> None:
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE busy (id int)")
    group_of_three(migrations_dir, "ALTER TABLE busy ADD COLUMN note text;")
    holder = psycopg2.connect(database_url)
    progress = Retries()
    try:
        with holder.cursor() as cursor:
            cursor.execute("BEGIN; LOCK TABLE busy IN ACCESS SHARE MODE")
        options = EngineOptions(
            single_transaction=True, lock_timeout_ms=100, lock_retries=2, lock_retry_backoff_seconds=0.01
        )
        with pytest.raises(LockContentionError):
            Engine(conn, migrations_dir, options, progress=progress).up()
    finally:
        holder.close()
    assert progress.retried == ["2000_b", "2000_b"]
    assert applied_names(conn) == []


# -- 10. Tracebacks: values that cannot be sent ---------------------------------------------------------------


def test_a_nul_in_a_parameter_names_the_file(conn, migrations_dir) -> None:
    write_py(
        migrations_dir, "1000_param", 'pgm.sql("CREATE TABLE t (v text); INSERT INTO t VALUES ({v})", {"v": "a\\x00b"})'
    )
    error = refused(conn, migrations_dir)
    assert str(error).startswith("1000_param.py: statement 1: a value cannot be sent: ") and "NUL" in str(error)


def test_non_ascii_on_a_sql_ascii_database_names_the_file(server_url, migrations_dir) -> None:
    name = f"ascii_{uuid.uuid4().hex[:8]}"
    with testing.autocommit_connection(server_url) as admin:
        query_none(admin, f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    url = psycopg2.extensions.make_dsn(server_url, dbname=name)
    runner = psycopg2.connect(url)
    try:
        write_sql(migrations_dir, "1000_text", "CREATE TABLE t (v text);\nINSERT INTO t VALUES ('жук');")
        with pytest.raises(MigrationFileError) as caught:
            Engine(runner, migrations_dir).up()
        assert str(caught.value).startswith("1000_text.sql: statement 2 (")
        assert "'ж' cannot be sent over a connection whose encoding is SQL_ASCII" in str(caught.value)
        assert applied_names(runner) == []
        write_py(migrations_dir, "2000_param", 'pgm.sql("SELECT {v}", {"v": "ü"})')
        (migrations_dir / "1000_text.sql").unlink()
        with pytest.raises(MigrationFileError, match=r"^2000_param\.py: statement 1: a value cannot be sent"):
            Engine(runner, migrations_dir).up()
    finally:
        runner.close()
        with testing.autocommit_connection(server_url) as admin:
            query_none(admin, f"DROP DATABASE {name}")


def query_none(conn, text: str) -> None:
    with conn.cursor() as cursor:
        cursor.execute(text)


def test_the_cli_prints_one_line_not_a_traceback(database_url, migrations_dir) -> None:
    write_py(migrations_dir, "1000_param", 'pgm.sql("SELECT {v}", {"v": "a\\x00b"})')
    result = subprocess.run(
        cli_command("up", "--database-url", database_url, "--migrations-dir", str(migrations_dir)),
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: 1000_param.py: statement 1: a value cannot be sent")


# -- 4, 5, 6. Ctrl-C and SIGTERM ------------------------------------------------------------------------------


@pytest.fixture
def cancelling() -> Iterator[None]:
    """The CLI's signal handling, in this process; restored afterwards."""
    with interrupts.installed():
        yield
    assert (
        psycopg2.extensions.get_wait_callback() is None
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )


@pytest.fixture
def signal_file() -> Iterator[Path]:
    """Where a migration's COPY TO (a server file) says 'signal now'; the server runs as another OS user."""
    directory = Path(tempfile.mkdtemp(prefix="lambda-db-setup-signal-"))
    directory.chmod(0o777)
    yield directory / "signal"
    shutil.rmtree(directory, ignore_errors=True)


def signalling_as_the_result_arrives(signal_file: Path) -> Callable[[psycopg2.extensions.connection], None]:
    """The wait callback, with a Ctrl-C that arrives just as the query that wrote ``signal_file`` returns: too
    late to cancel it."""

    def wait(conn) -> None:
        interrupts._wait(conn)
        if signal_file.exists():
            signal_file.unlink()
            interrupts._state.pending = KeyboardInterrupt()

    return wait


def three_with_a_signal(migrations_dir, signal_file: Path | None) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    signal = f"COPY (SELECT 1) TO '{signal_file}';" if signal_file else "SELECT 1;"
    write_sql(migrations_dir, "2000_b", f"CREATE TABLE b (id int);\n{signal}")
    create_table_migration(migrations_dir, "3000_c", "c")


@pytest.mark.parametrize(
    ("flags", "applied"),
    [([], ["1000_a", "2000_b"]), (["--single-transaction"], ["1000_a", "2000_b", "3000_c"])],
    ids=["per-migration", "single-transaction"],
)
def test_up_json_lists_what_committed_in_the_round_trip_a_signal_hit(
    cancelling, conn, database_url, migrations_dir, signal_file, capsys, flags, applied
) -> None:
    three_with_a_signal(migrations_dir, signal_file)
    psycopg2.extensions.set_wait_callback(signalling_as_the_result_arrives(signal_file))
    code = cli.main(["up", "--json", *flags, "--database-url", database_url, "--migrations-dir", str(migrations_dir)])
    document = json.loads(capsys.readouterr().out)
    assert code == 130 and document["ok"] is False
    assert [migration["name"] for migration in document["migrations"]] == applied
    assert document["error"].startswith(f"interrupted: {len(applied)} migration(s) applied")
    assert applied_names(conn) == applied and lock_is_free(conn)


def slow_runner(migrations_dir, database_url: str, *extra: str, header: str = "") -> subprocess.Popen[str]:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(60);", header=header)
    create_table_migration(migrations_dir, "3000_c", "c")
    args = cli_command("up", *extra, "--database-url", database_url, "--migrations-dir", str(migrations_dir))
    return subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sleeping(conn) -> bool:
    return bool(
        query(
            conn,
            "SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%%pg_sleep(60)%%'"
            " AND pid <> pg_backend_pid() AND datname = current_database()",
        )
    )


@pytest.mark.parametrize(
    ("signum", "code", "said"),
    [(signal.SIGINT, 130, "interrupted:"), (signal.SIGTERM, 143, "terminated (SIGTERM):")],
    ids=["sigint", "sigterm"],
)
@pytest.mark.parametrize("header", ["", NO_TX], ids=["transaction", "no-transaction"])
def test_a_signal_cancels_the_statement_running(conn, database_url, migrations_dir, signum, code, said, header) -> None:
    """The 60 s statement is cancelled on the server (the process ends well within the 30 s bound), its
    migration is not recorded, the lock and every marker are released, and the report says what was applied."""
    process = slow_runner(migrations_dir, database_url, header=header)
    try:
        wait_until(lambda: sleeping(conn), "the runner to reach pg_sleep")
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, stderr
    assert stderr.splitlines()[-1].startswith(f"{said} 1 migration(s) applied (1000_a); 2000_slow was not applied")
    assert "Traceback" not in stderr
    assert applied_names(conn) == ["1000_a"] and table_exists(conn, "slow") == bool(header)
    wait_until(lambda: lock_is_free(conn), "the runner's session to end")


def test_sigterm_while_waiting_for_the_lock_stops_at_once(conn, database_url, migrations_dir) -> None:
    holder = psycopg2.connect(database_url)
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(7241865325823964)")
        process = slow_runner(migrations_dir, database_url, "--lock-wait", "60")
        wait_until(
            lambda: query(conn, "SELECT 1 FROM pg_stat_activity WHERE application_name LIKE 'lambda_db_setup%%'"),
            "the runner to connect",
        )
        os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        holder.close()
    assert process.returncode == 143 and stderr.splitlines()[-1].startswith("terminated: stopped by SIGTERM"), stderr
    assert applied_names(conn) == []


def test_without_a_signal_the_wait_callback_changes_nothing(cancelling, conn, migrations_dir) -> None:
    three_with_a_signal(migrations_dir, None)
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c"] and lock_is_free(conn)


def test_a_statement_timeout_stays_a_failure_not_an_interrupt(cancelling, conn, migrations_dir) -> None:
    """SQLSTATE 57014 is also a statement_timeout: without a pending signal it is the migration's failure."""
    write_sql(migrations_dir, "1000_slow", "SELECT pg_sleep(5);")
    with pytest.raises(MigrationFailedError, match="statement timeout"):
        Engine(conn, migrations_dir, EngineOptions(statement_timeout_ms=200)).up()
    assert applied_names(conn) == []


def test_an_interrupt_that_arrives_with_the_result_stops_before_the_next(
    cancelling, conn, migrations_dir, signal_file
) -> None:
    three_with_a_signal(migrations_dir, signal_file)
    psycopg2.extensions.set_wait_callback(signalling_as_the_result_arrives(signal_file))
    seen: list[str] = []
    with pytest.raises(RunInterrupted) as caught:
        Engine(conn, migrations_dir, on_migration=lambda outcome: seen.append(outcome.name)).up()
    assert caught.value.applied == ["1000_a", "2000_b"] and caught.value.interrupted == "3000_c"
    assert seen == ["1000_a", "2000_b"] and applied_names(conn) == ["1000_a", "2000_b"]
    assert not table_exists(conn, "c") and lock_is_free(conn)
