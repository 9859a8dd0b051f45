"""Single-transaction mode (node-pg-migrate's --single-transaction, Flyway's group): consecutive transactional
migrations commit together; a no-transaction migration ends a group and starts the next; a failure rolls its
group back and says which migrations that undid. After every run ``pgmigrations`` and the schema agree.
"""

from __future__ import annotations

import psycopg2
import psycopg2.extensions
import pytest

from lambda_db_setup.cli import main
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import DataLossError, MigrationFailedError
from lambda_db_setup.options import EngineOptions
from lambda_db_setup.settings import Settings
from tests import safety
from tests.helpers import applied_names, create_table_migration, table_exists, write_sql
from tests.test_round_trips import CountingCursor, assert_agree

module_database_url = safety.module_database_url
database_url = safety.database_url
SINGLE = EngineOptions(single_transaction=True)
NO_TX = "-- pgm:no-transaction\n"


def tables_migrations(migrations_dir, count: int, start: int = 1000) -> dict[str, str]:
    names = {f"{start + index}_t{start + index}": f"t{start + index}" for index in range(count)}
    for name, table in names.items():
        create_table_migration(migrations_dir, name, table)
    return names


def run_on_values(conn) -> list:
    with conn.cursor() as cursor:
        cursor.execute("SELECT run_on FROM pgmigrations ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def test_all_pending_migrations_commit_together_in_one_round_trip(database_url, conn, migrations_dir) -> None:
    names = tables_migrations(migrations_dir, 20)
    CountingCursor.sent = []
    counted = psycopg2.connect(database_url, cursor_factory=CountingCursor)
    try:
        result = Engine(counted, migrations_dir, SINGLE).up()
    finally:
        counted.close()
    assert [query.startswith("BEGIN") for query in CountingCursor.sent].count(True) == 1
    assert [outcome.group_size for outcome in result.ran] == [20] * 20
    assert applied_names(conn) == list(names)
    assert len(set(run_on_values(conn))) == 1  # one transaction: one now(); the id keeps their order
    assert_agree(conn, names)


def test_a_failure_rolls_back_the_group_and_names_what_it_undid(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    write_sql(migrations_dir, "3000_bad", "CREATE TABLE c (id int);\nINSERT INTO missing_table VALUES (1);")
    create_table_migration(migrations_dir, "4000_d", "d")
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir, SINGLE).up()
    message = str(caught.value)
    assert message.startswith('3000_bad.sql: relation "missing_table" does not exist (SQLSTATE 42P01) in: INSERT')
    assert message.endswith("; its single transaction was rolled back, so these are not applied either: 1000_a, 2000_b")
    assert caught.value.migration == "3000_bad"
    assert applied_names(conn) == []
    assert not any(table_exists(conn, table) for table in ("a", "b", "c", "d"))


def test_the_first_migration_failing_undoes_nothing_else(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_bad", "INSERT INTO missing_table VALUES (1);")
    create_table_migration(migrations_dir, "2000_b", "b")
    with pytest.raises(MigrationFailedError) as caught:
        Engine(conn, migrations_dir, SINGLE).up()
    assert "rolled back, so these" not in str(caught.value)
    assert applied_names(conn) == [] and not table_exists(conn, "b")


def test_a_no_transaction_migration_ends_one_group_and_starts_the_next(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    create_table_migration(migrations_dir, "2000_b", "b")
    write_sql(migrations_dir, "3000_index", "CREATE INDEX CONCURRENTLY a_id ON a (id);", header=NO_TX)
    create_table_migration(migrations_dir, "4000_d", "d")
    write_sql(migrations_dir, "5000_bad", "INSERT INTO missing_table VALUES (1);")
    with pytest.raises(MigrationFailedError, match=r"not applied either: 4000_d$"):
        Engine(conn, migrations_dir, SINGLE).up()
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_index"]
    assert table_exists(conn, "b") and not table_exists(conn, "d")
    with conn.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'a_id'::regclass")
        assert cursor.fetchone() == (True,)


def test_groups_of_a_mixed_run_and_their_sizes(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_index", "CREATE INDEX CONCURRENTLY a_id ON a (id);", header=NO_TX)
    write_sql(migrations_dir, "3000_index2", "CREATE INDEX CONCURRENTLY a_id2 ON a (id);", header=NO_TX)
    names = tables_migrations(migrations_dir, 3, start=4000)
    result = Engine(conn, migrations_dir, SINGLE).up()
    assert [(outcome.name, outcome.group_size) for outcome in result.ran] == [
        ("1000_a", 1),
        ("2000_index", 1),
        ("3000_index2", 1),
        *((name, 3) for name in names),
    ]
    assert_agree(conn, {"1000_a": "a", **names})


def test_down_in_one_transaction_reverts_all_or_none(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_b", "CREATE TABLE b (id int);", "DROP TABLE b; SELECT 1 / 0;")
    create_table_migration(migrations_dir, "3000_c", "c")
    Engine(conn, migrations_dir).up()
    with pytest.raises(MigrationFailedError, match=r"division by zero.*not applied either: 3000_c$"):
        Engine(conn, migrations_dir, SINGLE).down(3)
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c"]
    assert all(table_exists(conn, table) for table in ("a", "b", "c"))


def test_the_data_loss_guard_still_checks_each_down_of_a_group(conn, migrations_dir) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_b", "CREATE TABLE b (id int);", "DROP TABLE b;\nDELETE FROM a;")
    create_table_migration(migrations_dir, "3000_c", "c")
    Engine(conn, migrations_dir).up()
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO a VALUES (1)")
    with pytest.raises(DataLossError, match=r"^2000_b.sql: down would empty public.a \(1 row\)") as caught:
        Engine(conn, migrations_dir, SINGLE).down(2)
    assert str(caught.value).endswith("not applied either: 3000_c")
    assert applied_names(conn) == ["1000_a", "2000_b", "3000_c"]
    assert all(table_exists(conn, table) for table in ("a", "b", "c"))


def row_ids(conn) -> list[int]:
    with conn.cursor() as cursor:
        cursor.execute("SELECT id FROM pgmigrations ORDER BY id")
        return [row[0] for row in cursor.fetchall()]


def test_redo_reverts_in_one_transaction_then_applies_in_another(conn, migrations_dir) -> None:
    """Downs and ups are separate groups: which of them committed is what the rows say (after a Ctrl-C)."""
    names = tables_migrations(migrations_dir, 3)
    Engine(conn, migrations_dir).up()
    before = row_ids(conn)
    result = Engine(conn, migrations_dir, SINGLE).redo(2)
    assert [(outcome.action.value, outcome.group_size) for outcome in result.outcomes] == [("reverted", 2)] * 2 + [
        ("ran", 2)
    ] * 2
    assert applied_names(conn) == list(names)
    assert row_ids(conn)[0] == before[0] and row_ids(conn)[1:] > before[1:]  # the two redone got new rows
    assert_agree(conn, names)


def test_the_setting_reaches_the_engine_from_flag_environment_and_project(migrations_dir, capsys) -> None:
    assert Settings.load({}).single_transaction is False
    assert Settings.load({"SINGLE_TRANSACTION": "true"}).single_transaction is True
    assert Settings.load({"SINGLE_TRANSACTION": "true"}, {"single_transaction": False}).single_transaction is False
    assert Settings.load({}, project={"single_transaction": True}).single_transaction is True
    assert EngineOptions.from_settings(Settings.load({"SINGLE_TRANSACTION": "TRUE"})).single_transaction is True


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_cli_runs_one_transaction(database_url, conn, migrations_dir, capsys, monkeypatch, how) -> None:
    create_table_migration(migrations_dir, "1000_a", "a")
    write_sql(migrations_dir, "2000_bad", "INSERT INTO missing_table VALUES (1);")
    arguments = ["up", "--database-url", database_url, "--migrations-dir", str(migrations_dir)]
    if how == "flag":
        arguments.append("--single-transaction")
    else:
        monkeypatch.setenv("SINGLE_TRANSACTION", "true")
    assert main(arguments) == 1
    assert capsys.readouterr().err.rstrip().endswith("not applied either: 1000_a")
    assert applied_names(conn) == [] and not table_exists(conn, "a")
    assert main(["up", "--database-url", database_url, "--migrations-dir", str(migrations_dir), "1"]) == 0
    assert applied_names(conn) == ["1000_a"]


def test_a_bad_value_names_the_variable(migrations_dir) -> None:
    from lambda_db_setup.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="SINGLE_TRANSACTION"):
        Settings.load({"SINGLE_TRANSACTION": "yes please"})
