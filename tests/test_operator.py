"""Operator commands through the deployed Lambda: the CLI's --lambda, boto3's invoke stubbed to call on_event.

The stub round-trips the payload through JSON and runs the handler in-process against the embedded
database, with the secrets in moto: what the Lambda would do, short of the network hop.
"""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import psycopg2
import pytest

from lambda_db_setup import cli, handler, lock, operator
from lambda_db_setup.errors import EventError
from tests import cfn_events
from tests.cfn_events import LambdaContext
from tests.helpers import applied_names, create_table_migration, table_exists
from tests.test_handler import ADMIN_PASSWORD, Deployment, deployment, log_lines, logs  # noqa: F401 (fixtures)

FUNCTION = "DbStack-OnEvent-5b3c9f70"


class FakeLambda:
    """boto3's Lambda client as remote uses it: invoke, RequestResponse, the handler's answer or its error."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: str) -> dict[str, Any]:
        assert (FunctionName, InvocationType) == (FUNCTION, "RequestResponse")
        event = json.loads(Payload)
        self.calls.append(event)
        try:
            answer, error = handler.on_event(event, LambdaContext()), None
        except Exception as failure:
            answer, error = {"errorMessage": str(failure), "errorType": type(failure).__name__}, "Unhandled"
        response = {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(answer).encode())}
        return {**response, "FunctionError": error} if error else response


@pytest.fixture
def fake_lambda(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> FakeLambda:  # noqa: F811
    fake, real = FakeLambda(), boto3.client
    monkeypatch.setattr(boto3, "client", lambda service, **kw: fake if service == "lambda" else real(service, **kw))
    monkeypatch.setenv("DB_MIGRATIONS_LAMBDA", FUNCTION)
    create_table_migration(deployment.migrations_dir, "1700000003000_create_cat", "cat")
    create_table_migration(deployment.migrations_dir, "1700000004000_create_dog", "dog")
    deployment.deploy(cfn_events.create())
    return fake


def remote(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert ADMIN_PASSWORD not in out + err
    return code, out, err


def local(argv: list[str], database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    with monkeypatch.context() as local_env:
        local_env.delenv("DB_MIGRATIONS_LAMBDA")
        local_env.setenv("DATABASE_URL", database_url)
        return remote(argv, capsys)


def test_status_prints_what_the_local_cli_prints(
    fake_lambda: FakeLambda, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = remote(["status"], capsys)
    assert code == 0, err
    assert "applied (2):" in out and "pending (0):" in out
    assert (code, out) == local(["status"], database_url, monkeypatch, capsys)[:2]
    assert fake_lambda.calls == [{operator.KEY: {"version": 1, "command": "status", "args": {}}}]


def test_status_json_through_the_lambda(
    fake_lambda: FakeLambda, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if "--json" not in cli.build_parser()._subparsers._group_actions[0].choices["status"].format_help():
        pytest.skip("the CLI's status --json comes with its own branch")
    code, out, _ = remote(["status", "--json"], capsys)
    assert code == 0 and json.loads(out) == json.loads(
        local(["status", "--json"], database_url, monkeypatch, capsys)[1]
    )


def test_unlock_shows_the_holder(
    fake_lambda: FakeLambda, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert remote(["unlock"], capsys)[:2] == (0, "the migration lock is free\n")
    holder = psycopg2.connect(database_url, application_name="someone else")
    try:
        with holder.cursor() as cursor:
            cursor.execute(lock.TRY_LOCK, {"lock_id": lock.LOCK_ID})
        code, out, _ = remote(["unlock"], capsys)
        assert code == 0 and "the migration lock is held by" in out and "someone else" in out
        code, _, err = remote(["unlock", "--terminate"], capsys)
        assert code == 2 and "--confirm" in err
    finally:
        holder.close()


def test_down_without_confirm_is_refused_before_invoking(
    fake_lambda: FakeLambda,
    deployment: Deployment,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = remote(["down"], capsys)
    assert code == 2 and "down reverts migrations: run it with --confirm (nothing was invoked)" in err
    assert fake_lambda.calls == []
    assert table_exists(deployment.conn, "dog")


def test_down_with_confirm_reverts_and_is_logged(
    fake_lambda: FakeLambda,
    deployment: Deployment,  # noqa: F811
    logs: io.StringIO,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    dry = remote(["down", "--dry-run"], capsys)
    assert dry[0] == 0 and "DROP TABLE dog" in dry[1] and table_exists(deployment.conn, "dog")
    code, out, _ = remote(["down", "--confirm"], capsys)
    assert code == 0 and "reverted 1700000004000_create_dog" in out
    assert applied_names(deployment.conn) == ["1700000003000_create_cat"]
    assert not table_exists(deployment.conn, "dog")
    (line,) = [
        line
        for line in log_lines(logs)
        if line["message"] == "operator command" and not line["arguments"].get("dry_run")
    ]
    assert (line["command"], line["arguments"], line["exit_code"], line["outcome"]) == (
        "down",
        {"count": 1, "confirm": True},
        0,
        "ok",
    )
    assert ADMIN_PASSWORD not in logs.getvalue()


def test_the_lambda_refuses_a_change_without_confirm_whoever_invokes_it(fake_lambda: FakeLambda) -> None:
    with pytest.raises(EventError, match="operator down refused: down reverts migrations; it needs confirm"):
        handler.on_event({operator.KEY: {"version": 1, "command": "down", "args": {}}}, LambdaContext())
    with pytest.raises(EventError, match="up applies migrations only at deploy time"):
        handler.on_event({operator.KEY: {"version": 1, "command": "up", "args": {"confirm": True}}}, LambdaContext())


@pytest.mark.parametrize(
    ("entry_point", "event", "reason"),
    [
        (handler.on_event, {**cfn_events.create(), operator.KEY: {"version": 1, "command": "status"}}, "RequestType"),
        (handler.on_event, {operator.KEY: {"version": 1, "command": "status"}, "ResponseURL": "https://x"}, "Resp"),
        (handler.on_event, {operator.KEY: {"version": 1, "command": "redo", "args": {}}}, "must be one of"),
        (handler.on_event, {operator.KEY: {"version": 2, "command": "status"}}, "expected version 1"),
        (handler.on_event, {operator.KEY: {"version": 1, "command": "status", "args": {"x": 1}}}, "unknown argument"),
        (handler.is_complete, {operator.KEY: {"version": 1, "command": "status"}}, "not a CloudFormation request"),
    ],
    ids=["with-request-type", "with-response-url", "unknown-command", "version", "unknown-arg", "is-complete"],
)
def test_operator_and_cloudformation_events_are_never_mistaken(entry_point: Any, event: Any, reason: str) -> None:
    with pytest.raises(EventError, match=reason):
        entry_point(event, LambdaContext())
    with pytest.raises(EventError, match="not a CloudFormation request"):
        handler.parse_request({**cfn_events.create(), operator.KEY: {}})
