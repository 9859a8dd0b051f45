"""Many runners at once (separate processes and connections, released together): every migration is applied
exactly once and in order, and every runner either succeeds or fails clearly on the lock. A node-pg-migrate
runner holding its advisory lock keeps the Python runner out.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from lambda_db_setup import lock
from tests import safety
from tests.helpers import applied_names, write_py, write_sql
from tests.safety import cli_command, cli_env

module_database_url = safety.module_database_url
database_url = safety.database_url

RUNNERS = 8
MIGRATIONS = 20

# Imports the CLI first (the slow part), says it is ready, waits for the starting signal, then runs `up`.
BARRIER_RUNNER = """
import os, pathlib, sys, time
from lambda_db_setup import cli
ready, go, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
pathlib.Path(ready).touch()
while not os.path.exists(go):
    time.sleep(0.001)
sys.exit(cli.main(argv))
"""


def twenty_migrations(directory: Path) -> list[str]:
    """Migrations that each log themselves (with the backend that ran them) in run_log."""
    names = []
    for index in range(1, MIGRATIONS + 1):
        name = f"{1000 + index}_step_{index:02d}"
        names.append(name)
        log = f"INSERT INTO run_log (migration) VALUES ('{name}')"
        if index == 1:
            write_sql(
                directory,
                name,
                "CREATE TABLE run_log (seq serial PRIMARY KEY, migration text NOT NULL,"
                f" backend int NOT NULL DEFAULT pg_backend_pid());\n{log};",
            )
        elif index % 2:
            write_sql(directory, name, f"CREATE TABLE t_{index} (id int);\n{log};")
        else:
            write_py(directory, name, f'pgm.create_table("t_{index}", {{"id": "int"}})\npgm.sql("{log}")')
    return names


def run_together(database_url: str, migrations_dir: Path, tmp_path: Path, lock_wait: str) -> list:
    go = tmp_path / "go"
    runners = []
    try:
        for index in range(RUNNERS):
            ready = tmp_path / f"ready-{index}"
            argv = ["up", "--database-url", database_url, "--migrations-dir", str(migrations_dir)]
            argv += ["--lock-wait", lock_wait]
            runners.append(
                (
                    ready,
                    subprocess.Popen(
                        [sys.executable, "-c", BARRIER_RUNNER, str(ready), str(go), *argv],
                        env=cli_env(),
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        text=True,
                    ),
                )
            )
        deadline = time.monotonic() + 60
        while not all(ready.exists() for ready, _ in runners):
            assert time.monotonic() < deadline, "runners did not start within 60 s"
            assert all(process.poll() is None for _, process in runners), "a runner exited before the start"
            time.sleep(0.01)
        go.touch()
        outputs = [process.communicate(timeout=120) for _, process in runners]
        return [(process.returncode, out, err) for (_, process), (out, err) in zip(runners, outputs, strict=True)]
    finally:
        for _, process in runners:
            if process.poll() is None:
                process.kill()
                process.communicate()


def assert_applied_once_in_order(conn, names: list[str]) -> None:
    assert applied_names(conn) == names
    with conn.cursor() as cursor:
        cursor.execute("SELECT migration FROM run_log ORDER BY seq")
        assert [row[0] for row in cursor.fetchall()] == names  # ran once each, in order
        cursor.execute("SELECT count(DISTINCT backend) FROM run_log")
        assert cursor.fetchone() == (1,)  # the lock winner ran them all
        assert lock.find_holder(cursor) is None


def test_eight_runners_waiting_for_the_lock_apply_each_migration_once(
    conn, database_url, migrations_dir, tmp_path
) -> None:
    names = twenty_migrations(migrations_dir)
    results = run_together(database_url, migrations_dir, tmp_path, lock_wait="120")
    assert [code for code, _, _ in results] == [0] * RUNNERS, [err for _, _, err in results]
    summaries = sorted(out.splitlines()[-1] for _, out, _ in results)
    assert summaries == ["nothing to do: no pending migrations"] * (RUNNERS - 1) + ["up: 20 migration(s) done"]
    assert_applied_once_in_order(conn, names)


def test_eight_runners_that_do_not_wait_succeed_or_fail_on_the_lock(
    conn, database_url, migrations_dir, tmp_path
) -> None:
    names = twenty_migrations(migrations_dir)
    results = run_together(database_url, migrations_dir, tmp_path, lock_wait="0")
    assert sum("up: 20 migration(s) done" in out for _, out, _ in results) == 1
    for code, out, err in results:
        if code == 0:
            assert out.splitlines()[-1] in ("up: 20 migration(s) done", "nothing to do: no pending migrations")
        else:
            assert code == 1, err
            assert out == ""
            assert err.splitlines()[-1].startswith("error: migration lock not obtained within 0s: held by ")
    assert_applied_once_in_order(conn, names)


def test_node_pg_migrate_holding_its_lock_keeps_the_runner_out(conn, database_url, migrations_dir) -> None:
    names = twenty_migrations(migrations_dir)[:3]
    for extra in sorted(migrations_dir.iterdir())[3:]:
        extra.unlink()
    node = psycopg2.connect(database_url, application_name="node-pg-migrate")
    node.autocommit = True
    try:
        with node.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(7241865325823964), pg_backend_pid()")
            node_pid = cursor.fetchone()[1]
        args = cli_command("up", "--database-url", database_url, "--migrations-dir", str(migrations_dir))
        refused = subprocess.run([*args, "--lock-wait", "0.5"], capture_output=True, text=True, env=cli_env())
        assert refused.returncode == 1
        assert refused.stderr.splitlines()[-1].startswith(
            f"error: migration lock not obtained within 0.5s: held by pid {node_pid} (node-pg-migrate, "
        )
        assert not safety.catalog(conn)["relations"]

        waiting = subprocess.Popen(
            [*args, "--lock-wait", "60"], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + 30
            with conn.cursor() as cursor:
                while True:  # the runner is connected and polling for the lock
                    cursor.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE application_name = 'lambda_db_setup' AND datname = current_database()"
                    )
                    if cursor.fetchone()[0]:
                        break
                    assert time.monotonic() < deadline and waiting.poll() is None
                    time.sleep(0.02)
            assert waiting.poll() is None
            assert not safety.catalog(conn)["relations"]  # it waits, it does not run
            node.close()  # node-pg-migrate finishes
            stdout, stderr = waiting.communicate(timeout=60)
        finally:
            if waiting.poll() is None:
                waiting.kill()
                waiting.communicate()
        assert waiting.returncode == 0, stderr
        assert stdout.splitlines()[-1] == "up: 3 migration(s) done"
        assert applied_names(conn) == names
    finally:
        node.close()
