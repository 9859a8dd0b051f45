"""The deploy-time gate (``pgm.require_finished``) and the CLI's ``background`` command."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest

from lambda_db_setup import cli, operator
from lambda_db_setup.background import queue
from lambda_db_setup.background.runner import Limits, Runner, RunReport
from lambda_db_setup.background.summary import describe, duration
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import MigrationFailedError
from tests.background_helpers import jobs, make_big, queue_backfill, scalar
from tests.helpers import applied_names, write_py

GATE = 'pgm.require_finished("1000_backfill_w2")\npgm.sql("ALTER TABLE big ALTER COLUMN w2 SET NOT NULL")'


def test_the_gate_fails_the_deploy_with_how_far_the_work_is(conn, migrations_dir, database_url):
    make_big(conn, 10_000)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v"}, batch_size=1000')
    Runner(conn, Limits(target_batch_seconds=1e3, max_batch_size=1000)).run(deadline=time.monotonic() + 0.05)
    with conn.cursor() as cursor:  # a measured history: 7,300 of 10,000 rows in 73 s of batches
        queue.update(cursor, jobs(database_url)[0].id, state="running", cursor_key="7300", rows_done=7300,
                     busy_seconds=73.0, progress=0.73, seconds_left=27.0 * 27,
                     summary="73% done, about 12 minutes left")  # fmt: skip
    write_py(migrations_dir, "2000_not_null", GATE)
    with pytest.raises(MigrationFailedError) as failure:
        Engine(conn, migrations_dir).up()
    assert "2000_not_null.py: require_finished: backfill of big.w2: 73% done, about 12 minutes left" in str(
        failure.value
    )
    assert applied_names(conn) == ["1000_backfill_w2"]


def test_the_gate_quotes_the_runner_s_own_estimate(conn, migrations_dir, database_url):
    make_big(conn, 10_000)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v"}, batch_size=1000')
    runner = Runner(conn, Limits(target_batch_seconds=1e3, max_batch_size=1000))
    for _ in range(3):
        runner._batch(jobs(database_url)[0].id, RunReport(), None)
    (job,) = jobs(database_url)
    assert job.progress == pytest.approx(0.3) and job.seconds_left == pytest.approx(job.busy_seconds * 7 / 3)
    assert job.summary == f"30% done, about {duration(job.seconds_left)} left"
    write_py(migrations_dir, "2000_not_null", GATE)
    with pytest.raises(MigrationFailedError, match=r"backfill of big\.w2: 30% done, about .* left"):
        Engine(conn, migrations_dir).up()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("queued", "backfill of big.w2: queued, not started yet"),
        ("failed", "backfill of big.w2: failed: boom; fix the cause, then `lambda-db-setup background retry"),
        ("paused", "backfill of big.w2: paused at 0 rows done; `lambda-db-setup background resume 1000_backfill_w2`"),
    ],
)
def test_the_gate_names_each_state(conn, migrations_dir, database_url, state, expected):
    make_big(conn, 10)
    queue_backfill(migrations_dir, conn)
    job = replace(jobs(database_url)[0], state=state, last_error="boom")
    with conn.cursor() as cursor:
        queue.update(cursor, job.id, state=state, summary=describe(job))
    write_py(migrations_dir, "2000_not_null", GATE)
    with pytest.raises(MigrationFailedError, match=expected.replace("(", r"\(").replace("`", ".")):
        Engine(conn, migrations_dir).up()


def test_the_gate_passes_once_the_work_finished(conn, migrations_dir):
    make_big(conn, 1000)
    queue_backfill(migrations_dir, conn)
    Runner(conn).run()
    write_py(migrations_dir, "2000_not_null", GATE)
    Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1000_backfill_w2", "2000_not_null"]
    assert scalar(conn, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'big'::regclass AND attname = 'w2'")


@pytest.mark.parametrize("queue_exists", [False, True])
def test_the_gate_on_a_migration_that_queued_nothing_fails(conn, migrations_dir, queue_exists):
    make_big(conn, 10)
    if queue_exists:
        queue_backfill(migrations_dir, conn)
    write_py(migrations_dir, "2000_gate", 'pgm.require_finished("1000_typo")')
    with pytest.raises(MigrationFailedError, match="migration 1000_typo queued no background work"):
        Engine(conn, migrations_dir).up()


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_status_run_pause_resume_retry(conn, migrations_dir, database_url, capsys):
    make_big(conn, 3000)
    queue_backfill(migrations_dir, conn)
    url = ["--database-url", database_url]
    code, out, _ = run_cli(capsys, "background", "status", *url)
    assert code == 0 and out.split() == ["1000_backfill_w2", "queued", "backfill", "of", "big.w2:", "queued,", "not",
                                         "started", "yet"]  # fmt: skip
    assert run_cli(capsys, "background", "pause", "1000_backfill_w2", *url)[0] == 0
    code, _, err = run_cli(capsys, "background", "run", "--for", "5", *url)
    assert code == 0 and "ran 0 batch(es)" in err  # paused: nothing to run
    code, out, _ = run_cli(capsys, "background", "resume", "1000_backfill_w2", *url)
    assert code == 0 and "queued" in out
    code, out, err = run_cli(capsys, "background", "run", *url)
    assert code == 0 and "finished: 3,000 rows" in out and "3,000 rows" in err
    code, _, err = run_cli(capsys, "background", "retry", "1000_backfill_w2", *url)
    assert code == 1 and "1000_backfill_w2 is finished; only failed work can be retried" in err
    code, out, _ = run_cli(capsys, "background", "status", "--json", *url)
    (document,) = json.loads(out)["background"]
    assert document["state"] == "finished" and document["rows_done"] == 3000 and document["progress"] == 1.0


def test_cli_retry_continues_a_failed_job_from_its_cursor(conn, migrations_dir, database_url, capsys):
    make_big(conn, 100)
    queue_backfill(migrations_dir, conn, arguments='set={"w2": "v / (id - 50)"}, batch_size=10')
    url = ["--database-url", database_url]
    code, out, err = run_cli(capsys, "background", "run", *url)
    assert code == 1 and "background: failed: 1000_backfill_w2" in err and "division by zero" in out
    with conn.cursor() as cursor:
        cursor.execute("UPDATE big SET id = 1000 WHERE id = 50")  # the cause, fixed: past the job's range now
    code, out, _ = run_cli(capsys, "background", "retry", "1000_backfill_w2", *url)
    assert code == 0 and "running" in out
    assert run_cli(capsys, "background", "run", *url)[0] == 0
    assert jobs(database_url)[0].state == "finished"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["background", "pause"], "background pause needs the migration's NAME"),
        (["background", "status", "x"], "background status takes no NAME"),
        (["background", "status", "--for", "3"], "--for goes with background run"),
        (["background", "pause", "nope"], "no background work named 'nope' (known: none)"),
    ],
)
def test_cli_refuses_bad_arguments_in_one_line(database_url, capsys, args, message):
    code, _, err = run_cli(capsys, *args, "--database-url", database_url)
    assert code != 0 and message in err and "Traceback" not in err


def test_cli_for_must_be_positive(database_url, capsys):
    with pytest.raises(SystemExit):
        cli.main(["background", "run", "--for", "-1", "--database-url", database_url])
    assert "must be a positive number of seconds" in capsys.readouterr().err


def test_status_json_includes_background_work(conn, migrations_dir, database_url, capsys):
    make_big(conn, 10)
    queue_backfill(migrations_dir, conn)
    code, out, _ = run_cli(capsys, "status", "--json", "--database-url", database_url, "--migrations-dir",
                           str(migrations_dir))  # fmt: skip
    assert code == 0 and [job["name"] for job in json.loads(out)["background"]] == ["1000_backfill_w2"]


def test_operator_event_passes_background_commands_and_guards_changes():
    assert operator._argv("background", {"action": "pause", "name": "1000_x"}) == ["background", "pause", "1000_x"]
    assert operator.needs_confirmation("background", {"action": "status"}) is None
    assert "changes a background migration's state" in operator.needs_confirmation(
        "background", {"action": "resume", "name": "x"}
    )
    assert "state machine" in operator.needs_confirmation("background", {"action": "run"})


def readme_examples() -> list[str]:
    """The Python blocks of the README's "Background migrations" section, in order."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Background migrations", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_readme_s_examples_queue_gate_and_finish(conn, migrations_dir, database_url):
    queue_it, gate_on_it = readme_examples()[:2]
    with conn.cursor() as cursor:
        cursor.execute("CREATE TABLE big (id bigint PRIMARY KEY, v int)")
        cursor.execute("INSERT INTO big SELECT g, g FROM generate_series(1, 500) g")
    (migrations_dir / "1767225600000_add_w2.py").write_text(queue_it)
    (migrations_dir / "1767225700000_w2_not_null.py").write_text(gate_on_it)
    with pytest.raises(MigrationFailedError, match=r"require_finished: backfill of big\.w2: queued, not started yet"):
        Engine(conn, migrations_dir).up()
    assert applied_names(conn) == ["1767225600000_add_w2"]
    Runner(conn).run()
    Engine(conn, migrations_dir).up()
    assert scalar(conn, "SELECT count(*) FROM big WHERE w2 = v * 2") == 500
    assert [job.state for job in jobs(database_url)] == ["finished", "finished"]
    assert scalar(conn, "SELECT to_regclass('big_w2_index') IS NOT NULL")
