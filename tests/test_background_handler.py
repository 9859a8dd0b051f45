"""The Lambda's background event, the deploy starting the state machine, and the long-statement entry point;
Secrets Manager and Step Functions are moto's, the database the embedded server."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from lambda_db_setup import cli, handler, operator
from lambda_db_setup.background import lambda_event, long_statements
from lambda_db_setup.background.lambda_event import KEY
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import EventError
from tests import cfn_events
from tests.background_helpers import jobs, make_big, queue_backfill, scalar
from tests.cfn_events import ACCOUNT, REGION, LambdaContext
from tests.helpers import table_exists, write_py
from tests.test_handler import Deployment, log_lines
from tests.test_handler import deployment as deployment
from tests.test_handler import logs as logs
from tests.test_operator import fake_lambda as fake_lambda
from tests.test_operator import remote

EVENT = {KEY: {"version": 1}}


def test_the_background_event_runs_batches_and_answers_with_progress(deployment: Deployment, database_url):
    make_big(deployment.conn, 5000)
    queue_backfill(deployment.migrations_dir, deployment.conn)
    answer = handler.on_event(EVENT, LambdaContext(60))[KEY]
    assert (answer["state"], answer["more"], answer["statements"]) == ("finished", False, False)
    assert answer["done"] == answer["total"] == 5000 and answer["batches"] >= 1 and answer["rows_per_second"] > 0
    assert answer["jobs"] == [{"name": "1000_backfill_w2", "state": "finished", "summary": "finished: 5,000 rows in"
                               f" {jobs(database_url)[0].batches} batches"}]  # fmt: skip
    assert scalar(deployment.conn, "SELECT count(*) FROM big WHERE w2 = v * 2") == 5000


def test_the_answer_stays_small_and_says_paused_failed_or_statements(deployment: Deployment, database_url):
    make_big(deployment.conn, 100)
    for n in range(30):
        write_py(deployment.migrations_dir, f"{1000 + n}_q", 'pgm.backfill("big", set={"w2": "v"})')
    write_py(deployment.migrations_dir, "2000_index", 'pgm.background_sql("CREATE INDEX CONCURRENTLY i ON big (v)")')
    Engine(deployment.conn, deployment.migrations_dir).up()
    with deployment.conn.cursor() as cursor:
        cursor.execute("UPDATE lambda_db_setup_background SET state = 'paused' WHERE kind = 'backfill'")
    answer = handler.on_event(EVENT, LambdaContext(60))[KEY]
    assert (answer["state"], answer["more"], answer["statements"], answer["batches"]) == ("paused", False, True, 0)
    assert len(answer["jobs"]) == lambda_event.MAX_JOBS_SHOWN and len(json.dumps(answer)) < 8000
    with deployment.conn.cursor() as cursor:
        cursor.execute("UPDATE lambda_db_setup_background SET state = 'failed' WHERE migration = '1003_q'")
    assert handler.on_event(EVENT, LambdaContext(60))[KEY]["state"] == "failed"
    assert not table_exists(deployment.conn, "i")  # the Lambda leaves long statements to their runner


@pytest.mark.parametrize(
    "event",
    [{KEY: {"version": 2}}, {KEY: None}, {KEY: {"version": 1}, "RequestType": "Create"}, {KEY: {}}],
)
def test_a_malformed_background_event_is_refused(deployment: Deployment, event):
    with pytest.raises(EventError, match="background event refused"):
        handler.on_event(event, LambdaContext(60))


def a_state_machine(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """moto's Step Functions client and a state machine the handler is told to start."""
    client = boto3.client("stepfunctions", region_name=REGION)
    role = f"arn:aws:iam::{ACCOUNT}:role/machine"
    machine = client.create_state_machine(
        name="bg", definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}), roleArn=role
    )["stateMachineArn"]
    monkeypatch.setenv("BACKGROUND_STATE_MACHINE_ARN", machine)
    return client, machine


def test_a_deploy_that_queues_work_starts_the_state_machine_once(deployment: Deployment, monkeypatch):
    make_big(deployment.conn, 100)
    write_py(deployment.migrations_dir, "1000_backfill_w2", 'pgm.backfill("big", set={"w2": "v"})')
    client, machine = a_state_machine(monkeypatch)
    deployment.deploy(cfn_events.create())
    (first,) = client.list_executions(stateMachineArn=machine)["executions"]
    deployment.deploy(cfn_events.create())  # work still queued, the execution still running: not a second one
    assert [e["executionArn"] for e in client.list_executions(stateMachineArn=machine)["executions"]] == [
        first["executionArn"]
    ]


def test_a_deploy_without_queued_work_or_without_a_machine_starts_nothing(deployment: Deployment, monkeypatch):
    client, machine = a_state_machine(monkeypatch)
    write_py(deployment.migrations_dir, "1000_t", 'pgm.sql("CREATE TABLE t (id int)")')
    deployment.deploy(cfn_events.create())
    assert client.list_executions(stateMachineArn=machine)["executions"] == []


def test_the_long_statement_entry_point_runs_queued_statements(deployment: Deployment, capsys):
    make_big(deployment.conn, 1000)
    write_py(deployment.migrations_dir, "1000_index", 'pgm.background_sql("CREATE INDEX CONCURRENTLY i ON big (v)")')
    queue_backfill(deployment.migrations_dir, deployment.conn, name="2000_backfill_w2")
    assert long_statements.main() == 0
    assert table_exists(deployment.conn, "i")
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["state"] == "finished" and json.loads(line)["name"] == "1000_index"
    assert scalar(deployment.conn, "SELECT count(*) FROM big WHERE w2 IS NOT NULL") == 0  # backfills: not its work


def test_the_long_statement_entry_point_fails_when_a_statement_fails(deployment: Deployment, capsys):
    make_big(deployment.conn, 10)
    write_py(deployment.migrations_dir, "1000_bad", 'pgm.background_sql("ALTER TABLE big VALIDATE CONSTRAINT nope")')
    Engine(deployment.conn, deployment.migrations_dir).up()
    assert long_statements.main() == 1
    assert 'constraint \\"nope\\" of relation \\"big\\" does not exist' in capsys.readouterr().out


def test_resume_through_the_cli_starts_the_state_machine_again(deployment: Deployment, database_url, monkeypatch):
    make_big(deployment.conn, 100)
    queue_backfill(deployment.migrations_dir, deployment.conn)
    client, machine = a_state_machine(monkeypatch)
    url = ["--database-url", database_url]
    assert cli.main(["background", "pause", "1000_backfill_w2", *url]) == 0
    assert client.list_executions(stateMachineArn=machine)["executions"] == []  # a pause starts nothing
    assert cli.main(["background", "resume", "1000_backfill_w2", *url]) == 0
    assert len(client.list_executions(stateMachineArn=machine)["executions"]) == 1


def test_a_state_machine_that_cannot_be_started_does_not_fail_the_deploy(deployment: Deployment, monkeypatch, logs):
    make_big(deployment.conn, 10)
    write_py(deployment.migrations_dir, "1000_backfill_w2", 'pgm.backfill("big", set={"w2": "v"})')
    monkeypatch.setenv("BACKGROUND_STATE_MACHINE_ARN", f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:gone")
    answer = deployment.deploy(cfn_events.create())
    assert answer["IsComplete"] is True and answer["Data"]["LastMigration"] == "1000_backfill_w2"
    (warning,) = [line for line in log_lines(logs) if line["level"] == "WARNING"]
    assert warning["message"] == "background work queued, but the state machine could not be started"
    assert "StateMachineDoesNotExist" in warning["error"]


def operator_event(args: dict) -> dict:
    return {operator.KEY: {"version": operator.VERSION, "command": "background", "args": args}}


def test_background_commands_run_through_the_operator_event(deployment: Deployment, database_url, logs):
    make_big(deployment.conn, 100)
    queue_backfill(deployment.migrations_dir, deployment.conn)
    answer = handler.on_event(operator_event({"action": "status", "json": True}), LambdaContext(60))[operator.KEY]
    assert answer["exit_code"] == 0 and json.loads(answer["stdout"])["background"][0]["state"] == "queued"
    with pytest.raises(EventError, match="background pause changes a background migration's state"):
        handler.on_event(operator_event({"action": "pause", "name": "1000_backfill_w2"}), LambdaContext(60))
    confirmed = {"action": "pause", "name": "1000_backfill_w2", "confirm": True}
    assert handler.on_event(operator_event(confirmed), LambdaContext(60))[operator.KEY]["exit_code"] == 0
    assert jobs(database_url)[0].state == "paused"
    with pytest.raises(EventError, match="background run is the state machine's work"):
        handler.on_event(operator_event({"action": "run", "confirm": True}), LambdaContext(60))


def test_the_cli_s_lambda_option_runs_background_commands_in_the_function(
    fake_lambda, deployment: Deployment, database_url, capsys
):
    make_big(deployment.conn, 100)
    write_py(deployment.migrations_dir, "1800000000000_backfill_w2", 'pgm.backfill("big", set={"w2": "v"})')
    deployment.deploy(cfn_events.create())
    capsys.readouterr()  # the deploy's own metrics lines
    code, out, _ = remote(["background", "status"], capsys)
    assert code == 0 and out.split()[:2] == ["1800000000000_backfill_w2", "queued"]
    code, _, err = remote(["background", "pause", "1800000000000_backfill_w2"], capsys)
    assert code == 2 and "background pause changes a background migration's state: run it with --confirm" in err
    assert remote(["background", "pause", "1800000000000_backfill_w2", "--confirm"], capsys)[0] == 0
    assert jobs(database_url)[0].state == "paused"
    code, _, err = remote(["background", "run", "--confirm"], capsys)
    assert code == 2 and "background run is the state machine's work" in err
    assert [call[operator.KEY]["args"]["action"] for call in fake_lambda.calls[-2:]] == ["status", "pause"]
