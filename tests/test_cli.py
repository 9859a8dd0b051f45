"""The CLI: commands, exit codes, one-line errors, no passwords in output."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2
import pytest

from lambda_db_setup import embedded, lock
from lambda_db_setup.cli import EXIT_CONNECT, EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from lambda_db_setup.urls import describe_target
from tests.helpers import applied_names, create_table_migration, table_exists, write_py

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run(capsys, database_url: str, migrations_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--database-url", database_url, "--migrations-dir", str(migrations_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_create_writes_timestamped_files_after_the_newest(migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "99999999999999_far_future", "x")
    assert main(["create", "Add user preferences", "--migrations-dir", str(migrations_dir)]) == EXIT_OK
    assert main(["create", "index", "on", "users", "--sql", "--migrations-dir", str(migrations_dir)]) == EXIT_OK
    created = sorted(path.name for path in migrations_dir.iterdir() if "far_future" not in path.name)
    assert created == ["100000000000000_add_user_preferences.py", "100000000000001_index_on_users.sql"]
    text = (migrations_dir / created[0]).read_text()
    assert "def up(pgm: MigrationBuilder)" in text and "def down(pgm: MigrationBuilder)" in text
    assert "-- Up Migration" in (migrations_dir / created[1]).read_text()


def test_created_templates_refuse_to_apply_until_written(database_url, migrations_dir, capsys) -> None:
    main(["create", "todo", "--migrations-dir", str(migrations_dir)])
    main(["create", "todo sql", "--sql", "--migrations-dir", str(migrations_dir)])
    code, _, err = run(capsys, database_url, migrations_dir, "up")
    assert code == EXIT_FAILED
    assert "_todo.py: up(pgm) raised NotImplementedError" in err


def test_up_status_down_redo_round_trip(database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    code, out, _err = run(capsys, database_url, migrations_dir, "up", "1")
    assert code == EXIT_OK
    assert "applied 1000_a" in out and "2000_b" not in out
    code, out, _ = run(capsys, database_url, migrations_dir, "status")
    assert code == EXIT_OK
    assert "applied (1):" in out and "1000_a" in out and "pending (1):\n  2000_b" in out
    assert run(capsys, database_url, migrations_dir, "up")[0] == EXIT_OK
    code, out, _ = run(capsys, database_url, migrations_dir, "down")
    assert code == EXIT_OK and "reverted 2000_b" in out
    code, out, _ = run(capsys, database_url, migrations_dir, "redo")
    assert code == EXIT_OK and "reverted 1000_a" in out and "applied 1000_a" in out
    conn = psycopg2.connect(database_url)
    try:
        assert applied_names(conn) == ["1000_a"]
    finally:
        conn.close()


def test_dry_run_prints_sql_and_changes_nothing(database_url, migrations_dir, capsys) -> None:
    write_py(migrations_dir, "1000_a", "pgm.create_table('dry', {'id': 'int'})")
    code, out, _ = run(capsys, database_url, migrations_dir, "up", "--dry-run")
    assert code == EXIT_OK
    assert '-- up: 1000_a\nCREATE TABLE "dry" (\n  "id" int\n);' in out
    assert "nothing was changed" in out
    conn = psycopg2.connect(database_url)
    try:
        assert not table_exists(conn, "dry") and not table_exists(conn, "pgmigrations")
    finally:
        conn.close()


def test_failure_is_one_line_on_stderr_with_exit_1(database_url, migrations_dir, capsys) -> None:
    write_py(migrations_dir, "1000_bad", 'pgm.sql("CREATE TABLE t (id nosuchtype)")')
    code, _out, err = run(capsys, database_url, migrations_dir, "up")
    assert code == EXIT_FAILED
    banner, error_line = err.splitlines()
    assert banner.startswith("using postgres@")
    assert error_line.startswith('error: 1000_bad.py: type "nosuchtype" does not exist (SQLSTATE 42704)')
    assert "Traceback" not in err


def test_verbose_shows_the_traceback(database_url, migrations_dir, capsys) -> None:
    write_py(migrations_dir, "1000_bad", 'pgm.sql("SELEC 1")')
    code, _, err = run(capsys, database_url, migrations_dir, "up", "--verbose")
    assert code == EXIT_FAILED and "Traceback" in err


def test_unreachable_database_exits_3_without_password(migrations_dir, capsys) -> None:
    url = "postgresql://admin:s3cret-pass@127.0.0.1:1/app?connect_timeout=2"
    code = main(["status", "--database-url", url, "--migrations-dir", str(migrations_dir)])
    captured = capsys.readouterr()
    assert code == EXIT_CONNECT
    assert "error: cannot connect" in captured.err
    assert "s3cret-pass" not in captured.err + captured.out
    assert describe_target(url) == "admin@127.0.0.1:1/app"


def test_repair_and_baseline(database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    code, _, err = run(capsys, database_url, migrations_dir, "baseline", "--to", "1000_a")
    assert code == EXIT_FAILED and "baseline refused: the schema does not match" in err
    assert "table a does not exist" in err
    code, out, _ = run(capsys, database_url, migrations_dir, "baseline", "--to", "1000_a", "--no-verify")
    assert code == EXIT_OK and "recorded 1 migration(s)" in out and "1000_a" in out
    conn = psycopg2.connect(database_url)
    try:
        assert applied_names(conn) == ["1000_a"] and not table_exists(conn, "a")
        path = migrations_dir / "1000_a.py"
        path.write_text(path.read_text() + "# reviewed\n")
        code, _, err = run(capsys, database_url, migrations_dir, "up")
        assert code == EXIT_FAILED and "changed since they ran: 1000_a" in err
        code, out, _ = run(capsys, database_url, migrations_dir, "repair")
        assert code == EXIT_OK and "1000_a" in out
        assert run(capsys, database_url, migrations_dir, "up")[0] == EXIT_OK
        assert applied_names(conn) == ["1000_a", "2000_b"]
    finally:
        conn.close()


def test_unlock_shows_holder_and_terminates_only_runners(database_url, migrations_dir, capsys) -> None:
    code, out, _ = run(capsys, database_url, migrations_dir, "unlock")
    assert code == EXIT_OK and "the migration lock is free" in out
    holder = psycopg2.connect(database_url, application_name="lambda_db_setup-stale")
    holder.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s), pg_backend_pid()", (lock.LOCK_ID,))
            pid = cursor.fetchone()[1]
        code, out, _ = run(capsys, database_url, migrations_dir, "unlock")
        assert code == EXIT_OK and f"held by pid {pid} (lambda_db_setup-stale" in out
        code, _, err = run(capsys, database_url, migrations_dir, "unlock", "--terminate")
        assert code == EXIT_FAILED and "it has been idle for less than 30 s" in err  # may be between statements
        code, out, _ = run(capsys, database_url, migrations_dir, "unlock", "--terminate", "--force")
        assert code == EXIT_OK and f"terminated pid {pid}" in out
        code, out, _ = run(capsys, database_url, migrations_dir, "unlock")
        assert "the migration lock is free" in out
    finally:
        holder.close()


def test_module_entry_point_runs(database_url, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    completed = subprocess.run(
        [sys.executable, "-m", "lambda_db_setup", "up", "--migrations-dir", str(migrations_dir)],
        env={**os.environ, "DATABASE_URL": database_url},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "applied 1000_a" in completed.stdout


@pytest.mark.parametrize("argv", [["up", "--to"], ["frobnicate"], []])
def test_bad_usage_exits_2(argv) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_without_database_url_the_embedded_server_is_started_and_reused(migrations_dir) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="lambda-db-setup-cli-")) / "pgdata"
    create_table_migration(migrations_dir, "1000_a", "a")
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    command = [sys.executable, "-m", "lambda_db_setup"]
    options = ["--migrations-dir", str(migrations_dir), "--embedded-dir", str(data_dir)]
    try:
        first = subprocess.run([*command, "up", *options], env=env, capture_output=True, text=True, timeout=120)
        second = subprocess.run([*command, "status", *options], env=env, capture_output=True, text=True, timeout=60)
    finally:
        embedded.start(data_dir, keep_running=False)
        embedded.stop(data_dir)
    assert first.returncode == 0, first.stderr
    assert f"using the embedded PostgreSQL 16 (data in {data_dir})" in first.stderr
    assert "applied 1000_a" in first.stdout
    assert second.returncode == 0 and "applied (1):" in second.stdout


def test_check_lints_pending_migrations_and_fails_on_findings(database_url, migrations_dir, capsys) -> None:
    write_py(migrations_dir, "1000_table", "pgm.create_table('items', {'id': {'type': 'bigint', 'primary_key': True}})")
    assert run(capsys, database_url, migrations_dir, "up")[0] == EXIT_OK
    write_py(migrations_dir, "2000_index", 'pgm.sql("CREATE INDEX items_id_idx ON items (id)")')
    code, out, _ = run(capsys, database_url, migrations_dir, "check")
    assert code == EXIT_FAILED
    assert "2000_index.py" in out and "require-concurrent-index-creation" in out
    assert out.rstrip().splitlines()[-1].startswith("check: failed")


def test_check_passes_on_the_project_migrations(database_url, capsys) -> None:
    code, out, _ = run(capsys, database_url, PROJECT_ROOT / "migrations", "check")
    assert code == EXIT_OK, out
    assert out.rstrip().splitlines()[-1].startswith("check: ok")


def test_malformed_url_is_refused_without_echoing_it(migrations_dir, capsys) -> None:
    code = main(["status", "--database-url", "postgresql://admin:s3cr%zzet@localhost/app"])
    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert "error: --database-url: not a valid PostgreSQL URL" in captured.err
    assert "s3cr" not in captured.err + captured.out


def test_unlock_refuses_to_terminate_a_runner_that_is_running_a_statement(database_url, migrations_dir, capsys) -> None:
    busy = psycopg2.connect(database_url, application_name="lambda_db_setup-busy")
    busy.autocommit = True
    with busy.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", (lock.LOCK_ID,))
    outcome: list[Exception] = []

    def long_statement() -> None:
        try:
            with busy.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(30)")
        except psycopg2.Error as error:
            outcome.append(error)

    worker = threading.Thread(target=long_statement)
    worker.start()
    try:
        watcher = psycopg2.connect(database_url)
        watcher.autocommit = True
        with watcher.cursor() as cursor:
            for _ in range(200):
                cursor.execute("SELECT state FROM pg_stat_activity WHERE application_name = 'lambda_db_setup-busy'")
                if cursor.fetchone() == ("active",):
                    break
                time.sleep(0.05)
        watcher.close()
        code, _, err = run(capsys, database_url, migrations_dir, "unlock", "--terminate")
        assert code == EXIT_FAILED and "it is running a statement now" in err
        code, out, _ = run(capsys, database_url, migrations_dir, "unlock", "--terminate", "--force")
        assert code == EXIT_OK and "terminated pid" in out
    finally:
        worker.join(timeout=35)
        busy.close()
    assert outcome and isinstance(outcome[0], psycopg2.OperationalError)


def test_the_cli_honours_the_lambdas_environment_variables_and_flags_win(
    conn, database_url, migrations_dir, capsys, monkeypatch
) -> None:
    write_py(migrations_dir, "1000_slow", 'pgm.sql("SELECT pg_sleep(1)")')
    monkeypatch.setenv("STATEMENT_TIMEOUT_MS", "300")
    code, _, err = run(capsys, database_url, migrations_dir, "up")
    assert code == EXIT_FAILED
    assert "1000_slow.py: canceling statement due to statement timeout (SQLSTATE 57014)" in err
    assert applied_names(conn) == []
    code, out, _ = run(capsys, database_url, migrations_dir, "up", "--statement-timeout-ms", "0")
    assert code == EXIT_OK and "applied 1000_slow" in out


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LOCK_TIMEOUT_MS", "5s", "error: LOCK_TIMEOUT_MS must be a whole number; got '5s'"),
        ("ADOPT_EXISTING_SCHEMA", "yes", "error: ADOPT_EXISTING_SCHEMA must be one of true, false; got 'yes'"),
        ("LOCK_WAIT_SECONDS", "nan", "error: LOCK_WAIT_SECONDS must be a finite number; got 'nan'"),
    ],
)
def test_a_bad_environment_variable_is_a_usage_error_naming_it(
    database_url, migrations_dir, capsys, monkeypatch, variable, value, message
) -> None:
    monkeypatch.setenv(variable, value)
    code, _, err = run(capsys, database_url, migrations_dir, "status")
    assert (code, err.strip()) == (EXIT_USAGE, message)


@pytest.mark.parametrize("flag", [["--lock-wait", "nan"], ["--lock-timeout-ms", "-5"], ["--lock-wait", "soon"]])
def test_a_bad_flag_value_is_a_usage_error_naming_the_flag(migrations_dir, capsys, flag) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", *flag])
    assert exited.value.code == EXIT_USAGE
    assert f"{flag[0]} must be" in capsys.readouterr().err
