"""The CLI under hostile input: no password printed, honest exit codes and JSON, safe templates, no tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg2
import pytest

from lambda_db_setup import __version__, cli, execute, lock
from lambda_db_setup.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from lambda_db_setup.discovery import Migration, parse_file_name
from lambda_db_setup.errors import ConfigurationError, MigrationFileError
from lambda_db_setup.reports import outcome_line
from lambda_db_setup.results import Action, MigrationOutcome
from lambda_db_setup.settings import Settings, find_project_root
from lambda_db_setup.sqltext import DOWN_MARKER, NO_TRANSACTION_DIRECTIVE, UP_MARKER, parse_sections
from tests.helpers import applied_names, create_table_migration, write_py


def run(capsys, database_url: str, migrations_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--database-url", database_url, "--migrations-dir", str(migrations_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# 1. passwords --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "pieces"),
    [
        ("postgresql://postgres:hun/ter2@localhost:5432/app", ["hun", "ter2"]),
        ("postgresql://u:p@ss-w0rd@127.0.0.1:1/db", ["p@ss", "ss-w0rd"]),
        ("postgres://admin:a/bcd@cfg@127.0.0.1:1/db", ["a/bcd", "bcd", "cfg"]),
        ("postgresql://admin:12/secret@127.0.0.1/app", ["12/", "secret"]),
    ],
)
def test_a_raw_slash_or_at_in_the_password_is_a_usage_error_that_never_prints_it(
    migrations_dir, capsys, url, pieces
) -> None:
    code = main(["status", "--verbose", "--database-url", url, "--migrations-dir", str(migrations_dir)])
    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert "--database-url: the password or user name holds a raw '@' or '/'" in captured.err
    assert "percent-encode" in captured.err
    for piece in pieces:
        assert piece not in captured.out + captured.err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://admin:s3cret-pass@127.0.0.1:1/app?connect_timeout=2",
        "postgresql://admin:s3cret%2Fpass@127.0.0.1:1/app?connect_timeout=2",
        "postgresql://admin@127.0.0.1:1/app?password=s3cret/pass&connect_timeout=2",
        "host=127.0.0.1 port=1 user=admin password=s3cret/pass dbname=app connect_timeout=2",
        "host=127.0.0.1 port=1 user=admin password='s3cret pass' dbname=app connect_timeout=2",
    ],
)
def test_no_form_of_the_password_appears_even_with_verbose_tracebacks(migrations_dir, capsys, monkeypatch, url):
    monkeypatch.setenv("DATABASE_URL", url)
    code = main(["status", "--verbose", "--migrations-dir", str(migrations_dir)])
    captured = capsys.readouterr()
    assert code == cli.EXIT_CONNECT
    assert "Traceback" in captured.err and "using admin@127.0.0.1:1/app" in captured.err
    for piece in ("s3cret", "pass@", "%2F"):
        assert piece not in captured.out + captured.err


def test_a_password_in_an_error_message_is_scrubbed(database_url, migrations_dir, capsys, monkeypatch) -> None:
    """Defence in depth: whatever the driver says, the password text is replaced before printing."""
    url = "postgresql://admin:Hunter2Secret@127.0.0.1:1/app"

    def refuse(*args, **kwargs):
        raise psycopg2.OperationalError("FATAL: password Hunter2Secret rejected")

    monkeypatch.setattr(psycopg2, "connect", refuse)
    code = main(["up", "--verbose", "--json", "--database-url", url, "--migrations-dir", str(migrations_dir)])
    captured = capsys.readouterr()
    assert code == cli.EXIT_CONNECT
    assert "Hunter2Secret" not in captured.out + captured.err
    assert json.loads(captured.out)["error"] == "FATAL: password *** rejected"


@pytest.mark.parametrize(
    "url",
    ["postgresql://admin:s3cr%zzet@localhost/app", "host=x password=unterminated' dbname", "postgresql://h:xx/db"],
)
def test_a_malformed_url_is_a_usage_error_naming_its_source(migrations_dir, capsys, monkeypatch, url) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    code = main(["status", "--migrations-dir", str(migrations_dir)])
    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert captured.err.startswith("error: DATABASE_URL: not a valid PostgreSQL URL or key=value string")
    assert url not in captured.err and "s3cr" not in captured.err and "unterminated" not in captured.err


# 2. status and up for CI ---------------------------------------------------------------------------------


def test_status_exits_1_when_a_person_is_needed_and_with_check_when_pending(
    database_url, migrations_dir, capsys
) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    assert run(capsys, database_url, migrations_dir, "up", "1")[0] == EXIT_OK
    assert run(capsys, database_url, migrations_dir, "status")[0] == EXIT_OK
    code, _, err = run(capsys, database_url, migrations_dir, "status", "--check")
    assert (code, err.splitlines()[-1]) == (EXIT_FAILED, "status: needs attention: 1 pending")
    path = migrations_dir / "1000_a.py"
    path.write_text(path.read_text() + "# edited\n")
    code, out, err = run(capsys, database_url, migrations_dir, "status")
    assert code == EXIT_FAILED and "DRIFTED" in out and "needs attention: 1 drifted" in err
    path.unlink()
    code, _, err = run(capsys, database_url, migrations_dir, "status")
    assert code == EXIT_FAILED and "needs attention: 1 missing" in err


def test_status_json_is_one_document_and_nothing_else_on_stdout(database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "3000_c", "c")
    assert run(capsys, database_url, migrations_dir, "up", "--to", "1000_a")[0] == EXIT_OK
    create_table_migration(migrations_dir, "2000_b", "b")
    assert run(capsys, database_url, migrations_dir, "up", "--to", "2000_b")[0] == EXIT_OK
    (migrations_dir / "2000_b.py").unlink()
    code, out, err = run(capsys, database_url, migrations_dir, "status", "--json")
    document = json.loads(out)
    assert code == EXIT_FAILED and "using" in err
    assert document["ok"] is False and document["needs_attention"] == ["1 missing"]
    assert [row["name"] for row in document["applied"]] == ["1000_a", "2000_b"]
    assert document["applied"][0]["run_on"].startswith("20")
    assert (document["pending"], document["missing"], document["ahead"]) == (["3000_c"], ["2000_b"], [])
    assert document["out_of_order"] is None and document["drifted"] == []


def test_up_json_reports_each_outcome_and_progress_goes_to_stderr(database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    code, out, err = run(capsys, database_url, migrations_dir, "up", "--json")
    document = json.loads(out)
    assert code == EXIT_OK and "applied 1000_a" in err
    assert document["ok"] is True and document["already_applied"] == []
    [migration] = document["migrations"]
    assert (migration["name"], migration["action"], migration["attempts"]) == ("1000_a", "ran", 1)
    assert migration["duration_ms"] >= 0


def test_a_failed_up_json_still_prints_one_document_with_what_ran(database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_py(migrations_dir, "2000_bad", 'pgm.sql("CREATE TABLE t (id nosuchtype)")')
    code, out, err = run(capsys, database_url, migrations_dir, "up", "--json")
    document = json.loads(out)
    assert code == EXIT_FAILED and err.splitlines()[-1].startswith("error: 2000_bad.py:")
    assert (document["ok"], document["exit_code"]) == (False, EXIT_FAILED)
    assert [migration["name"] for migration in document["migrations"]] == ["1000_a"]


# 3. create -----------------------------------------------------------------------------------------------

HOSTILE = [
    'quote """ end',
    "back\\slash \\N{x} \\",
    "new\nline\n-- Up Migration\nDROP TABLE users;",
    "-- Down Migration --pgm: no-transaction",
    "tab\tcr\r\x00nul \u202eevil \u2028sep",
    'trailing quote"',
]


@pytest.mark.parametrize("description", HOSTILE)
def test_created_files_parse_whatever_the_description(migrations_dir, capsys, description) -> None:
    assert main(["create", description, "--migrations-dir", str(migrations_dir)]) == EXIT_OK
    assert main(["create", description, "--sql", "--migrations-dir", str(migrations_dir)]) == EXIT_OK
    py, sql = sorted(migrations_dir.iterdir())
    with pytest.raises(Exception, match=r"NotImplementedError: .*write up\(\) before applying it"):
        parse_file_name(py).build("up")
    text = sql.read_text()
    assert len(UP_MARKER.findall(text)) == 1 and len(DOWN_MARKER.findall(text)) == 1
    assert NO_TRANSACTION_DIRECTIVE.search(text) is None
    with pytest.raises(MigrationFileError, match=r"the up section has no SQL statement$"):  # as today's template
        parse_sections(text, sql.name)
    assert isinstance(parse_file_name(sql), Migration)


def test_create_transliterates_and_refuses_names_without_letters(migrations_dir, capsys) -> None:
    assert main(["create", "añadir preferencias", "--migrations-dir", str(migrations_dir)]) == EXIT_OK
    assert capsys.readouterr().out.strip().endswith("_anadir_preferencias.py")
    assert main(["create", "x" * 400, "--migrations-dir", str(migrations_dir)]) == EXIT_OK
    assert len(capsys.readouterr().out.strip().rsplit("/", 1)[1]) <= 255
    assert main(["create", "日本語", "--migrations-dir", str(migrations_dir)]) == EXIT_USAGE
    assert "migration name '日本語' has no ASCII letter or digit" in capsys.readouterr().err


# 4. counts -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["up", "-1"], ["up", "0"], ["down", "0"], ["down", "-3"], ["redo", "0"], ["up", "x"]])
def test_counts_must_be_positive(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_USAGE
    assert "must be a positive whole number" in capsys.readouterr().err


def test_redo_counts_migrations_not_outcomes(database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    assert run(capsys, database_url, migrations_dir, "up")[0] == EXIT_OK
    code, out, _ = run(capsys, database_url, migrations_dir, "redo")
    assert code == EXIT_OK and out.splitlines()[-1] == "redo: 1 migration(s) redone"


# 5. skipped look-alikes ----------------------------------------------------------------------------------


SKIPPED_WARNINGS = [
    "2000_b.SQL: skipped: the extension .SQL is not lower-case; rename it to .sql to run it",
    "3000_dir.sql: skipped: is a directory",
]


@pytest.mark.parametrize("command", [["status"], ["up"], ["up", "--dry-run"], ["down", "--dry-run"]])
def test_skipped_look_alikes_are_warnings_on_stderr(database_url, migrations_dir, capsys, command) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    (migrations_dir / "2000_b.SQL").write_text("-- Up Migration\n")
    (migrations_dir / "3000_dir.sql").mkdir()
    code, out, err = run(capsys, database_url, migrations_dir, *command)
    assert code == EXIT_OK
    assert [line for line in err.splitlines() if line.startswith("warning:")] == [
        f"warning: {text}" for text in SKIPPED_WARNINGS
    ]
    assert "warning" not in out


def test_skipped_look_alikes_are_in_the_json_documents(database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    (migrations_dir / "2000_b.SQL").write_text("-- Up Migration\n")
    (migrations_dir / "3000_dir.sql").mkdir()
    for command in (["up", "--json"], ["status", "--json"]):
        code, out, _ = run(capsys, database_url, migrations_dir, *command)
        assert code == EXIT_OK and json.loads(out)["warnings"] == SKIPPED_WARNINGS


# 6. version, help, project root --------------------------------------------------------------------------


def test_version_and_help(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip().endswith(cli.package_version())
    assert __version__ == "0.1.0"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "130  interrupted" in text and "3    cannot connect" in text and "embedded PostgreSQL 16" in text


def test_run_is_the_console_script_entry(monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.argv", ["lambda-db-setup", "up", "0"])
    with pytest.raises(SystemExit) as exited:
        cli.run()
    assert exited.value.code == EXIT_USAGE


def project(tmp_path: Path, table: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[project]\nname = 'app'\n\n[tool.lambda_db_setup]\n{table}\n")
    (tmp_path / "src" / "deep").mkdir(parents=True)
    return tmp_path


def test_the_cli_works_from_any_directory_of_the_project(tmp_path, monkeypatch, capsys) -> None:
    root = project(tmp_path, 'migrations_dir = "db/migrations"')
    monkeypatch.chdir(root / "src" / "deep")
    monkeypatch.delenv("MIGRATIONS_DIR", raising=False)
    assert main(["create", "add users"]) == EXIT_OK
    [created] = (root / "db" / "migrations").iterdir()
    assert capsys.readouterr().out.strip() == str(created)
    assert find_project_root(root / "src" / "deep") == root.resolve()


def test_a_cdk_project_without_the_table_is_found_by_its_migrations(tmp_path, monkeypatch) -> None:
    (tmp_path / "cdk.json").write_text("{}")
    (tmp_path / "migrations").mkdir()
    (tmp_path / "infra").mkdir()
    assert find_project_root(tmp_path / "infra") == tmp_path.resolve()


def test_precedence_flag_then_environment_then_pyproject_then_default() -> None:
    project_table = {"lock_timeout_ms": 2000}
    assert Settings.load({}, project=project_table).lock_timeout_ms == 2000
    assert Settings.load({"LOCK_TIMEOUT_MS": "3000"}, project=project_table).lock_timeout_ms == 3000
    flags = {"lock_timeout_ms": 4000}
    assert Settings.load({"LOCK_TIMEOUT_MS": "3000"}, flags=flags, project=project_table).lock_timeout_ms == 4000
    assert Settings.load({}, project={}).lock_timeout_ms == 5000


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("lock_timeout_ms = -5", "lock_timeout_ms must be at least 0; got -5"),
        ("lock_timeout_ms = 2.5", "lock_timeout_ms must be a whole number; got '2.5'"),
        ('sslmode = "on"', "sslmode must be one of disable"),
        ("adopt_existing_schema = 1", "adopt_existing_schema must be one of true, false"),
        ('lock_wait_seconds = "nan"', "lock_wait_seconds must be a finite number"),
        ("migrations_dir = ['a']", "migrations_dir must be a string, number or boolean; got list"),
        ("migrations = 'x'", "migrations: no such setting"),
    ],
)
def test_a_bad_pyproject_setting_is_a_usage_error_naming_the_key(tmp_path, monkeypatch, capsys, table, message):
    monkeypatch.chdir(project(tmp_path, table))
    assert main(["create", "x"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip().startswith(f"error: pyproject.toml [tool.lambda_db_setup] {message}")


def test_a_broken_pyproject_is_named(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.lambda_db_setup\n")
    (tmp_path / "migrations").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["create", "x"]) == EXIT_USAGE
    assert f"error: {tmp_path.resolve() / 'pyproject.toml'}: cannot read it as TOML" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="no such setting"):
        Settings.load({}, project={"nope": 1})


# 7. progress ---------------------------------------------------------------------------------------------


def test_a_retried_migration_says_so(migrations_dir) -> None:
    migration = parse_file_name(create_table_migration(migrations_dir, "1000_a", "a"))
    assert outcome_line(MigrationOutcome(migration, Action.RAN, 12.4)) == "applied 1000_a (12 ms)"
    retried = MigrationOutcome(migration, Action.REVERTED, 1500, attempts=3)
    assert outcome_line(retried) == "reverted 1000_a (1500 ms, 3 attempts: lock contention)"


# 8. Ctrl-C -----------------------------------------------------------------------------------------------


def test_ctrl_c_is_one_line_and_exit_130(conn, database_url, migrations_dir, capsys, monkeypatch) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    real = execute.Executor._batch

    def interrupt_b(self, group, *args):
        if group[0][0].name == "2000_b":
            raise KeyboardInterrupt
        return real(self, group, *args)

    monkeypatch.setattr(execute.Executor, "_batch", interrupt_b)
    code, out, err = run(capsys, database_url, migrations_dir, "up")
    assert code == EXIT_INTERRUPTED and "applied 1000_a" in out
    assert err.splitlines()[-1] == "interrupted: 1 migration(s) applied (1000_a); 2000_b was not applied"
    assert "Traceback" not in err
    assert applied_names(conn) == ["1000_a"]
    monkeypatch.undo()
    code, out, _ = run(capsys, database_url, migrations_dir, "unlock")
    assert "the migration lock is free" in out


# wiring of the engine's down --to, redo --dry-run, dry-run marks, progress ---------------------------------


def test_down_to_and_redo_dry_run(conn, database_url, migrations_dir, capsys) -> None:
    for number, table in ((1000, "a"), (2000, "b"), (3000, "c")):
        create_table_migration(migrations_dir, f"{number}_{table}", table)
    assert run(capsys, database_url, migrations_dir, "up")[0] == EXIT_OK
    code, out, _ = run(capsys, database_url, migrations_dir, "redo", "2", "--dry-run")
    assert code == EXIT_OK and "-- down: 3000_c" in out and "-- up: 2000_b" in out
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c"]
    code, out, _ = run(capsys, database_url, migrations_dir, "down", "--to", "2000_b")
    assert code == EXIT_OK and "reverted 3000_c" in out and "reverted 2000_b" in out
    assert applied_names(conn) == ["1000_a"]
    code, _, err = run(capsys, database_url, migrations_dir, "down", "--to", "3000_c")
    assert code == EXIT_FAILED and "3000_c" in err and applied_names(conn) == ["1000_a"]


def test_dry_run_marks_no_transaction_and_irreversible_migrations(database_url, migrations_dir, capsys) -> None:
    (migrations_dir / "1000_index.sql").write_text(
        "-- pgm:no-transaction\n-- Up Migration\nCREATE TABLE t (id int);\n-- Down Migration\nDROP TABLE t;\n"
    )
    write_py(migrations_dir, "2000_forever", 'pgm.sql("CREATE TABLE forever (id int)")')
    code, out, _ = run(capsys, database_url, migrations_dir, "up", "--dry-run")
    assert code == EXIT_OK
    assert "-- up: 1000_index (runs outside a transaction: statement by statement)" in out
    assert "-- warning: 2000_forever has no down: a later `down` of it would be refused" in out
    assert "1000_index has no down" not in out


def test_verbose_shows_each_migration_starting(database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    code, _, err = run(capsys, database_url, migrations_dir, "up", "--verbose")
    assert code == EXIT_OK and "applying 1000_a ..." in err


def test_waiting_for_the_lock_says_who_holds_it(conn, database_url, migrations_dir, capsys) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    with conn.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", (lock.LOCK_ID,))
    code, _, err = run(capsys, database_url, migrations_dir, "up", "--lock-wait", "0.3")
    assert code == EXIT_FAILED
    assert f"waiting for the migration lock, held by pid {conn.info.backend_pid}" in err
