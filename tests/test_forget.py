"""``forget``: the CLI's way out of a history that names files no longer here, instead of hand-written SQL.

A database "ahead" of the files (or missing a deliberately deleted one) is refused with the command that
removes those rows; ``forget`` shows them, asks (or takes ``--yes``), and removes exactly them under the
migration lock, never a row whose file is here.
"""

from __future__ import annotations

import io
import json
import shlex
import sys
import threading
from contextlib import closing

import psycopg2
import pytest

from lambda_db_setup import handler, lock, operator
from lambda_db_setup.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import EventError, MigrationError, OrderError
from tests.cfn_events import LambdaContext
from tests.helpers import applied_names, create_table_migration, table_exists
from tests.test_handler import Deployment, deployment  # noqa: F401 (fixture)
from tests.test_operator import FakeLambda, fake_lambda, remote  # noqa: F401 (fixture)


class Terminal(io.StringIO):
    """Standard input that is a terminal, holding what the person types."""

    def isatty(self) -> bool:
        return True


def run(capsys, database_url, migrations_dir, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--database-url", database_url, "--migrations-dir", str(migrations_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def gone(conn, migrations_dir):
    """Four migrations applied, then 2000_b (now missing) and 4000_d (now ahead) deleted from the directory."""
    for name, table in (("1000_a", "a"), ("2000_b", "b"), ("3000_c", "c"), ("4000_d", "d")):
        create_table_migration(migrations_dir, name, table)
    Engine(conn, migrations_dir).up()
    (migrations_dir / "2000_b.py").unlink()
    (migrations_dir / "4000_d.py").unlink()
    return migrations_dir


def insert_row(conn, name: str) -> None:
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO pgmigrations (name, run_on) VALUES (%s, now())", (name,))


def test_refusals_name_the_command_and_the_command_they_name_works(
    conn, database_url, gone, capsys, monkeypatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    insert_row(conn, "0500_it's gone")  # a name a shell would split: the hint quotes it
    for expected in (
        "applied migration 2000_b has no file any more (nor 0500_it's gone); restore the file, or if it was"
        " deliberately deleted remove their rows: `lambda-db-setup forget 2000_b '0500_it'\"'\"'s gone'`",
        "the database is ahead of these files: 4000_d applied but not found here; use the newer files, or if"
        " those migrations are abandoned remove their rows: `lambda-db-setup forget 4000_d`",
    ):
        with pytest.raises(OrderError) as refused:
            Engine(conn, gone).up()
        assert str(refused.value) == expected
        hint = expected.rsplit(": `", 1)[1].rstrip("`")
        code, out, _ = run(capsys, database_url, gone, *shlex.split(hint)[1:], "--yes")
        assert code == EXIT_OK and "row(s) from public.pgmigrations:" in out
    assert applied_names(conn) == ["1000_a", "3000_c"]
    assert [outcome.name for outcome in Engine(conn, gone).up().ran] == []
    assert table_exists(conn, "b") and table_exists(conn, "d")  # forget removes history, never the schema


def test_dry_run_lists_every_gone_row_and_changes_nothing(conn, database_url, gone, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO())  # no terminal: a dry run needs no confirmation
    code, out, _ = run(capsys, database_url, gone, "forget", "--all-gone", "--dry-run")
    assert code == EXIT_OK
    lines = out.splitlines()
    assert lines[0] == "would remove 2 row(s) from public.pgmigrations:"
    assert [line.split()[-1] for line in lines[1:3]] == ["2000_b", "4000_d"]
    assert lines[3] == "dry run: nothing was changed"
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c", "4000_d"]


def test_json_document_holds_the_removed_rows(conn, database_url, gone, capsys) -> None:
    code, out, _ = run(capsys, database_url, gone, "forget", "--all-gone", "--yes", "--json")
    assert code == EXIT_OK
    document = json.loads(out)
    assert (document["command"], document["ok"], document["dry_run"]) == ("forget", True, False)
    assert [row["name"] for row in document["forgotten"]] == ["2000_b", "4000_d"]
    assert all(isinstance(row["id"], int) and row["run_on"].startswith("20") for row in document["forgotten"])
    assert applied_names(conn) == ["1000_a", "3000_c"]
    code, out, _ = run(capsys, database_url, gone, "forget", "--all-gone", "--dry-run", "--json")
    assert code == EXIT_OK and json.loads(out)["forgotten"] == [] and json.loads(out)["dry_run"] is True
    code, out, _ = run(capsys, database_url, gone, "status", "--json")
    assert code == EXIT_OK and json.loads(out)["ok"] is True


def test_without_a_terminal_it_needs_yes(conn, database_url, gone, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # piped input is not a confirmation
    code, out, err = run(capsys, database_url, gone, "forget", "2000_b")
    assert code == EXIT_USAGE and out == ""
    assert err.splitlines()[-1] == "error: no terminal to confirm on: pass --yes to go ahead; nothing was changed"
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c", "4000_d"]


@pytest.mark.parametrize("answer", ["n\n", "\n", "yes please\n", ""])
def test_anything_but_yes_at_the_prompt_changes_nothing(conn, database_url, gone, capsys, monkeypatch, answer) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    code, out, err = run(capsys, database_url, gone, "forget", "--all-gone")
    assert code == EXIT_FAILED and out == ""
    assert "would remove 2 row(s) from public.pgmigrations:" in err and "remove these 2 row(s)? [y/N]" in err
    assert err.splitlines()[-1].endswith("error: not confirmed; nothing was changed")
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c", "4000_d"]


@pytest.mark.parametrize("answer", ["y\n", "YES\n", " Yes \n"])
def test_yes_at_the_prompt_removes_the_rows_shown(conn, database_url, gone, capsys, monkeypatch, answer) -> None:
    monkeypatch.setattr(sys, "stdin", Terminal(answer))
    code, out, err = run(capsys, database_url, gone, "forget", "4000_d", "--json")
    assert code == EXIT_OK and "remove these 1 row(s)? [y/N]" in err  # the question on stderr, under --json too
    assert [row["name"] for row in json.loads(out)["forgotten"]] == ["4000_d"]
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c"]


def test_a_row_whose_file_is_here_is_never_removed(conn, database_url, gone, capsys) -> None:
    code, _, err = run(capsys, database_url, gone, "forget", "2000_b", "3000_c", "--yes")
    assert code == EXIT_FAILED
    assert err.splitlines()[-1] == (
        "error: forget 3000_c: its file 3000_c.py is here, and forget removes only rows whose file is gone"
        " (to undo the migration, use `down`); nothing was changed"
    )
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c", "4000_d"]


@pytest.mark.parametrize("entry", ["4000_d.SQL", "4000_d.js", "4000_d"])
def test_a_file_discovery_skips_still_counts_as_here(conn, gone, entry) -> None:
    """An upper-case extension, node-pg-migrate's .js, a directory: a file to fix, not history to drop."""
    path = gone / entry
    path.mkdir() if "." not in entry else path.write_text("-- Up Migration\nSELECT 1;\n")
    for names in (["4000_d"], None):
        with pytest.raises(MigrationError, match=f"forget 4000_d: its file {entry} is here"):
            Engine(conn, gone).forget(names)
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c", "4000_d"]


def test_unknown_names_are_refused_before_anything_changes(conn, gone) -> None:
    with pytest.raises(MigrationError) as caught:
        Engine(conn, gone).forget(["2000_b", "9000_nope", "9001_nope"])
    assert str(caught.value) == (
        "forget 9000_nope: no row in public.pgmigrations has that name (nor 9001_nope); nothing was changed"
    )
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c", "4000_d"]


def test_no_history_at_all(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    assert Engine(conn, migrations_dir).forget(None) == []
    with pytest.raises(MigrationError, match=r"forget 1000_a: no row in public\.pgmigrations has that name"):
        Engine(conn, migrations_dir).forget(["1000_a"])
    assert not table_exists(conn, "pgmigrations")


def test_every_row_of_a_duplicated_name_goes_and_odd_names_work(conn, database_url, gone, capsys) -> None:
    insert_row(conn, "2000_b")
    insert_row(conn, "-5000_dash ü")  # would read as a flag without the "--"
    flags = ["--database-url", database_url, "--migrations-dir", str(gone)]
    code = main(["forget", *flags, "--yes", "--", "2000_b", "-5000_dash ü", "2000_b"])
    assert code == EXIT_OK and "removed 3 row(s)" in capsys.readouterr().out
    assert applied_names(conn) == ["1000_a", "3000_c", "4000_d"]


def test_nothing_to_forget_asks_nothing(conn, database_url, migrations_dir, capsys, monkeypatch) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    Engine(conn, migrations_dir).up()
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    code, out, _ = run(capsys, database_url, migrations_dir, "forget", "--all-gone")
    assert code == EXIT_OK and out == "nothing to forget: every row in public.pgmigrations has its file\n"


@pytest.mark.parametrize("args", [["forget"], ["forget", "2000_b", "--all-gone"]])
def test_names_or_all_gone_not_both(database_url, gone, capsys, args) -> None:
    code, _, err = run(capsys, database_url, gone, *args, "--yes")
    assert code == EXIT_USAGE
    assert "forget: name the migrations whose rows to remove, or pass --all-gone (not both)" in err


def test_it_waits_for_the_migration_lock_and_a_dry_run_does_not(conn, database_url, gone, capsys) -> None:
    holder = psycopg2.connect(database_url, application_name="lambda_db_setup (another runner)")
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (lock.LOCK_ID,))
        code, _, err = run(capsys, database_url, gone, "forget", "--all-gone", "--yes", "--lock-wait", "0.3")
        assert code == EXIT_FAILED
        assert "migration lock not obtained within 0.3s: held by pid" in err and "another runner" in err
        assert applied_names(conn) == ["1000_a", "2000_b", "3000_c", "4000_d"]
        code, out, _ = run(capsys, database_url, gone, "forget", "--all-gone", "--dry-run", "--lock-wait", "0")
        assert code == EXIT_OK and "would remove 2 row(s)" in out
    finally:
        holder.close()
    assert run(capsys, database_url, gone, "forget", "--all-gone", "--yes")[0] == EXIT_OK
    assert applied_names(conn) == ["1000_a", "3000_c"]


def test_through_the_lambda_with_confirm(
    fake_lambda: FakeLambda,  # noqa: F811
    deployment: Deployment,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    dog = "1700000004000_create_dog"
    (deployment.migrations_dir / f"{dog}.py").unlink()  # an older deploy's code: the database is ahead of it
    code, _, err = remote(["forget", dog], capsys)
    assert code == EXIT_USAGE and "forget removes rows from the migration history: run it with --confirm" in err
    assert fake_lambda.calls == []
    code, out, _ = remote(["forget", "--all-gone", "--dry-run"], capsys)
    assert code == EXIT_OK and "would remove 1 row(s) from public.pgmigrations:" in out and dog in out
    assert applied_names(deployment.conn) == ["1700000003000_create_cat", dog]
    code, out, _ = remote(["forget", dog, "--confirm"], capsys)
    assert code == EXIT_OK and "removed 1 row(s)" in out
    assert fake_lambda.calls[-1][operator.KEY]["args"] == {"names": [dog], "confirm": True}
    assert applied_names(deployment.conn) == ["1700000003000_create_cat"] and table_exists(deployment.conn, "dog")
    with pytest.raises(EventError, match="operator forget refused: forget removes rows from the migration history"):
        handler.on_event({operator.KEY: {"version": 1, "command": "forget", "args": {"names": [dog]}}}, LambdaContext())
    with pytest.raises(EventError, match="names must be a flag, a number, a name or names"):
        handler.on_event(
            {operator.KEY: {"version": 1, "command": "forget", "args": {"names": [1], "confirm": True}}},
            LambdaContext(),
        )


def test_status_shows_the_command(conn, database_url, gone, capsys) -> None:
    code, out, err = run(capsys, database_url, gone, "status")
    assert code == EXIT_FAILED and "needs attention: 1 missing, 1 ahead" in err
    assert "rows whose file is gone are removed with: lambda-db-setup forget 2000_b 4000_d\n" in out


def test_twice_at_once_removes_once_and_the_second_finds_no_row(database_url, conn, gone) -> None:
    """Two operators at the same moment: the lock orders them, the second re-checks and changes nothing."""
    barrier, outcomes = threading.Barrier(2), []

    def forget() -> None:
        with closing(psycopg2.connect(database_url)) as own:
            barrier.wait()
            try:
                outcomes.append([row.name for row in Engine(own, gone).forget(["2000_b", "4000_d"])])
            except MigrationError as error:
                outcomes.append(str(error))

    threads = [threading.Thread(target=forget) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes, key=str) == sorted(
        [
            ["2000_b", "4000_d"],
            "forget 2000_b: no row in public.pgmigrations has that name (nor 4000_d); nothing was changed",
        ],
        key=str,
    )
    assert applied_names(conn) == ["1000_a", "3000_c"]
