"""The Lambda entry points, driven by the events the CDK Provider framework sends, against the embedded server.

Secrets Manager is moto's; the "proxy" is the embedded server's socket directory (DB_SSLMODE=disable).
"""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg2
import pytest
from moto import mock_aws
from psycopg2.extensions import parse_dsn

from lambda_db_setup import handler, lock, reason, rolespec
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import (
    ConfigurationError,
    ConnectError,
    EventError,
    LintRefusedError,
    MigrationFailedError,
    OrderError,
    RunBudgetError,
    SecretError,
)
from lambda_db_setup.options import EngineOptions
from tests import cfn_events
from tests.cfn_events import LambdaContext
from tests.helpers import applied_names, count_reads, table_exists, write_py, write_sql
from tests.test_credentials import secrets_calls
from tests.test_roles import drop_roles

ADMIN_PASSWORD = "Adm1n-pw-SENTINEL-4f1c"  # trust auth ignores it; it must still never reach a log


@dataclass
class Deployment:
    """One stack's world: its secrets, its migrations directory, its database."""

    conn: psycopg2.extensions.connection
    migrations_dir: Path
    secrets: Any
    admin_secret_arn: str
    app_rw_secret_arn: str
    app_tc_secret_arn: str
    app_rw: str
    app_tc: str
    passwords: list[str]
    groups: tuple[str, str]  # write and ddl, as this repository's stack declares readwrite and tablecreator

    @property
    def roles(self) -> dict[str, Any]:
        """The resource properties declaring the two groups and the two users, as the construct writes them."""
        readwrite, tablecreator = self.groups
        return rolespec.to_properties(
            [rolespec.AppGroup(readwrite, rolespec.WRITE), rolespec.AppGroup(tablecreator, rolespec.DDL)],
            [(self.app_rw, readwrite, self.app_rw_secret_arn), (self.app_tc, tablecreator, self.app_tc_secret_arn)],
        )

    def deploy(self, event: dict[str, Any], remaining_seconds: float = 900.0) -> dict[str, Any]:
        """One CloudFormation request through the framework: on_event, then is_complete until complete."""
        started = handler.on_event(event, LambdaContext(remaining_seconds))
        poll = cfn_events.is_complete_event(event, started)
        for _ in range(10):
            answer = handler.is_complete(poll, LambdaContext(remaining_seconds))
            if answer["IsComplete"]:
                return {**started, **answer, "Data": {**started.get("Data", {}), **answer.get("Data", {})}}
        raise AssertionError("is_complete never completed")

    def set_password(self, arn: str, username: str, password: str) -> None:
        self.passwords.append(password)
        self.secrets.put_secret_value(
            SecretId=arn, SecretString=json.dumps({"username": username, "password": password})
        )


@pytest.fixture
def deployment(database_url: str, conn, migrations_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    for name in (
        "DB_PROXY_ENDPOINT",
        "DB_CA_BUNDLE",
        "LOCK_TIMEOUT_MS",
        "STATEMENT_TIMEOUT_MS",
        "LINT_BEFORE_APPLY",
        "SQUAWK_BINARY",
        "ADOPT_EXISTING_SCHEMA",
        "SINGLE_TRANSACTION",
        "MIGRATIONS_SCHEMA",
        "MIGRATIONS_TABLE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", cfn_events.REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    suffix = uuid.uuid4().hex[:8]
    app_rw, app_tc = f"app_rw_{suffix}", f"app_tc_{suffix}"
    rw_password, tc_password = f"rw-{uuid.uuid4().hex}", f"tc-{uuid.uuid4().hex}"
    dsn = parse_dsn(database_url)
    with mock_aws():
        secrets = boto3.client("secretsmanager")
        admin_secret = {
            "username": dsn["user"],
            "password": ADMIN_PASSWORD,
            "engine": "postgres",
            "host": dsn["host"],  # the server's socket directory
            "port": 5432,
            "dbname": dsn["dbname"],
            "dbClusterIdentifier": "dbstack-cluster",
        }
        arns = [
            secrets.create_secret(Name=name, SecretString=json.dumps(value))["ARN"]
            for name, value in (
                ("db-admin", admin_secret),
                ("app-rw", {"username": app_rw, "password": rw_password}),
                ("app-tc", {"username": app_tc, "password": tc_password}),
            )
        ]
        monkeypatch.setenv("DB_SECRET_ARN", arns[0])
        monkeypatch.setenv("DB_SSLMODE", "disable")
        monkeypatch.setenv("DB_CONNECT_TIMEOUT_SECONDS", "2")
        monkeypatch.setenv("MIGRATIONS_DIR", str(migrations_dir))
        groups = (f"readwrite_{suffix}", f"tablecreator_{suffix}")
        passwords = [ADMIN_PASSWORD, rw_password, tc_password]
        yield Deployment(conn, migrations_dir, secrets, *arns, app_rw, app_tc, passwords=passwords, groups=groups)
    drop_roles(conn, [app_rw, app_tc, *groups])


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the powertools Logger writes (normally to stdout, one JSON object a line)."""
    stream = io.StringIO()
    monkeypatch.setattr(handler.logger.registered_handler, "stream", stream)
    return stream


def log_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def three_migrations(directory: Path) -> list[str]:
    write_py(directory, "1700000000000_create_alpha", 'pgm.sql("CREATE TABLE alpha (id int)")')
    write_sql(directory, "1700000001000_create_beta", "CREATE TABLE beta (id serial PRIMARY KEY);")
    write_py(directory, "1700000002000_create_gamma", 'pgm.sql("CREATE TABLE gamma (id int)")')
    return ["1700000000000_create_alpha", "1700000001000_create_beta", "1700000002000_create_gamma"]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the deploy replay -------------------------------------------------------------------------------


def test_create_update_delete_replay(deployment: Deployment, logs: io.StringIO) -> None:
    names = three_migrations(deployment.migrations_dir)

    create = cfn_events.create({"MigrationsHash": "a1"})
    created = deployment.deploy(create)
    assert created["PhysicalResourceId"] == handler.PHYSICAL_RESOURCE_ID
    assert created["Data"] == {"AppliedCount": "3", "LastMigration": names[-1]}
    assert applied_names(deployment.conn) == names

    write_sql(deployment.migrations_dir, "1700000003000_create_delta", "CREATE TABLE delta (id int);")
    update = cfn_events.update(created["PhysicalResourceId"], {"MigrationsHash": "b2"}, {"MigrationsHash": "a1"})
    updated = deployment.deploy(update)
    assert updated["PhysicalResourceId"] == handler.PHYSICAL_RESOURCE_ID  # same id: no replacement, no Delete
    assert updated["Data"] == {"AppliedCount": "1", "LastMigration": "1700000003000_create_delta"}

    again = deployment.deploy(cfn_events.update(updated["PhysicalResourceId"], {"MigrationsHash": "b2"}))
    assert again["Data"] == {"AppliedCount": "0", "LastMigration": ""}

    delete = cfn_events.delete(again["PhysicalResourceId"])
    assert handler.on_event(delete, LambdaContext()) == {"PhysicalResourceId": handler.PHYSICAL_RESOURCE_ID}
    assert handler.is_complete(cfn_events.is_complete_event(delete, None), LambdaContext()) == {"IsComplete": True}
    assert table_exists(deployment.conn, "delta")  # the schema outlives the resource

    lines = log_lines(logs)
    assert {line["correlation_id"] for line in lines if line.get("request_type") == "Create"} == {create["RequestId"]}


def test_on_event_hands_is_complete_the_count_it_started_from(deployment: Deployment) -> None:
    names = three_migrations(deployment.migrations_dir)
    event = cfn_events.create()
    result = handler.on_event(event, LambdaContext())
    started = result[handler.RUN_STARTED]
    assert result == {
        "PhysicalResourceId": handler.PHYSICAL_RESOURCE_ID,
        handler.APPLIED_BEFORE: 0,
        handler.RUN_STARTED: started,
    }
    assert time.time() - 60 < started <= time.time()  # where the run's budget counts from
    assert applied_names(deployment.conn) == names  # plenty of time: on_event did all the migrations
    answer = handler.is_complete(cfn_events.is_complete_event(event, result), LambdaContext())
    assert answer == {"IsComplete": True, "Data": {"AppliedCount": "3", "LastMigration": names[-1]}}


def test_update_keeps_the_physical_id_it_was_given(deployment: Deployment) -> None:
    three_migrations(deployment.migrations_dir)
    event = cfn_events.update("resource-made-by-the-javascript-stack")
    assert handler.on_event(event, LambdaContext())["PhysicalResourceId"] == "resource-made-by-the-javascript-stack"


def test_roles_and_users_are_ensured_on_completion(deployment: Deployment) -> None:
    three_migrations(deployment.migrations_dir)
    deployment.deploy(cfn_events.create(deployment.roles))
    with deployment.conn.cursor() as cursor:
        cursor.execute(
            "SELECT has_table_privilege(%(rw)s, 'beta', 'INSERT'), has_schema_privilege(%(rw)s, 'public', 'CREATE'),"
            " has_schema_privilege(%(tc)s, 'public', 'CREATE'), has_sequence_privilege(%(rw)s, 'beta_id_seq', 'USAGE')",
            {"rw": deployment.app_rw, "tc": deployment.app_tc},
        )
        assert cursor.fetchone() == (True, False, True, True)


# -- Delete and malformed events ----------------------------------------------------------------------


def test_delete_never_touches_the_database_or_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PROXY_ENDPOINT", f"127.0.0.1:{closed_port()}")
    monkeypatch.setenv("DB_SECRET_ARN", "arn:aws:secretsmanager:eu-central-1:123456789012:secret:gone-AbCdEf")
    monkeypatch.setenv("MIGRATIONS_DIR", "/nonexistent")
    monkeypatch.setattr(handler.credentials, "secrets_client", _forbidden)
    monkeypatch.setattr(handler, "connect", _forbidden)
    event = cfn_events.delete(handler.PHYSICAL_RESOURCE_ID)
    started = time.monotonic()
    assert handler.on_event(event, LambdaContext()) == {"PhysicalResourceId": handler.PHYSICAL_RESOURCE_ID}
    assert handler.is_complete(cfn_events.is_complete_event(event, None), LambdaContext()) == {"IsComplete": True}
    assert time.monotonic() - started < 1


def _forbidden(*args: object, **kwargs: object) -> None:
    raise AssertionError("Delete must not read secrets or connect")


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (["Create"], "event must be a JSON object, not list"),
        ({"RequestId": "r"}, "event has no RequestType"),
        ({"RequestType": "Replace", "RequestId": "r"}, "unknown RequestType 'Replace'; expected one of Create"),
        ({"RequestType": "Create"}, "Create event has no RequestId"),
        ({"RequestType": "Update", "RequestId": "r"}, "Update event has no PhysicalResourceId"),
        ({"RequestType": "Delete", "RequestId": "r", "PhysicalResourceId": ""}, "Delete event has no PhysicalResource"),
    ],
)
@pytest.mark.parametrize("entry_point", [handler.on_event, handler.is_complete])
def test_malformed_events_raise_with_a_reason(entry_point: Any, event: Any, reason: str) -> None:
    with pytest.raises(handler.EventError, match=reason):
        entry_point(event, LambdaContext())


def test_is_complete_without_on_event_result_is_refused() -> None:
    event = cfn_events.is_complete_event(cfn_events.create(), {"PhysicalResourceId": handler.PHYSICAL_RESOURCE_ID})
    with pytest.raises(handler.EventError, match=f"no {handler.APPLIED_BEFORE} count"):
        handler.is_complete(event, LambdaContext())


# -- failures become the CloudFormation reason --------------------------------------------------------


def test_failing_migration_fails_with_its_name_and_leaves_nothing_of_it(
    deployment: Deployment, logs: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    write_py(deployment.migrations_dir, "1700000000000_create_alpha", 'pgm.sql("CREATE TABLE alpha (id int)")')
    write_sql(deployment.migrations_dir, "1700000001000_broken", "CREATE TABLE half (id int);\nSELECT 1 / 0;")
    with pytest.raises(MigrationFailedError, match=r"^1700000001000_broken\.sql: division by zero \(SQLSTATE 22012\)"):
        handler.on_event(cfn_events.create(), LambdaContext())
    assert applied_names(deployment.conn) == ["1700000000000_create_alpha"]
    assert not table_exists(deployment.conn, "half")
    failure = next(line for line in log_lines(logs) if line["message"] == "migration run failed")
    assert failure["level"] == "ERROR"
    assert (failure["outcome"], failure["migration"], failure["sqlstate"]) == (
        "failed",
        "1700000001000_broken",
        "22012",
    )
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert (emf["MigrationsApplied"], emf["MigrationsFailed"]) == ([1.0], [1.0])


def test_single_transaction_applies_all_or_none(
    deployment: Deployment, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SINGLE_TRANSACTION", "true")
    write_py(deployment.migrations_dir, "1700000000000_create_alpha", 'pgm.sql("CREATE TABLE alpha (id int)")')
    write_sql(deployment.migrations_dir, "1700000001000_broken", "SELECT 1 / 0;")
    with pytest.raises(MigrationFailedError, match=r"not applied either: 1700000000000_create_alpha$"):
        handler.on_event(cfn_events.create(), LambdaContext())
    assert applied_names(deployment.conn) == [] and not table_exists(deployment.conn, "alpha")
    (deployment.migrations_dir / "1700000001000_broken.sql").unlink()
    write_py(deployment.migrations_dir, "1700000001000_create_beta", 'pgm.sql("CREATE TABLE beta (id int)")')
    assert deployment.deploy(cfn_events.create())["IsComplete"] is True
    assert applied_names(deployment.conn) == ["1700000000000_create_alpha", "1700000001000_create_beta"]
    applied = [line for line in log_lines(logs) if line.get("outcome") == "applied"]
    assert [(line["migration"], line["group_size"]) for line in applied] == [
        ("1700000000000_create_alpha", 2),
        ("1700000001000_create_beta", 2),
    ]


RESPONSE_LIMIT = 4096  # bytes CloudFormation accepts for a custom resource's response
LONGEST_FUNCTION_NAME = "F" * 64  # Lambda's limit: the framework names it in the Reason (Logs: /aws/lambda/...)
WORST_STACK_ID = cfn_events.STACK_ID.replace("/DbStack/", f"/{'S' * 128}/")  # stack names run to 128 characters
LISTED_IDS = ", ".join(str(uuid.UUID(int=n * 7919)) for n in range(150))  # the 6.6 KB failure: 150 ids listed
UNICODE_TEXT = 'Zeile für Zeile: 件名「移行」は失敗 "quoted" \\ back\\slash ✓ ' * 120  # 2-4 bytes a character, escapes


def raising_migration(directory: Path, name: str, message: str) -> None:
    literal = message.replace("'", "''")
    write_sql(directory, name, f"DO $$ BEGIN RAISE EXCEPTION '%', '{literal}'; END $$;")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("1700000000000_check_ids", f"ids still referenced: {LISTED_IDS}"),
        ("1700000000000_" + "a_very_long_migration_name_" * 8 + "end", f"ids still referenced: {LISTED_IDS}"),
        ("1700000000000_" + "multi_byte_" * 20, UNICODE_TEXT),  # file names are ASCII snake_case
    ],
    ids=["long-message", "long-file-name", "multi-byte"],
)
def test_a_long_failure_fits_cloudformations_response_limit(
    deployment: Deployment, logs: io.StringIO, name: str, message: str
) -> None:
    raising_migration(deployment.migrations_dir, name, message)
    request = {**cfn_events.create(), "StackId": WORST_STACK_ID, "LogicalResourceId": "L" * 255}
    with pytest.raises(MigrationFailedError) as raised:
        handler.on_event(request, LambdaContext())
    reason = str(raised.value)
    size = len(cfn_events.failure_response(request, reason, LONGEST_FUNCTION_NAME))
    assert size < RESPONSE_LIMIT
    assert reason.startswith(f"{name}.sql: ")  # the file first
    assert "(SQLSTATE P0001)" in reason
    assert re.search(r" … \[cut, [\d,]+ more characters: see the log line\]", reason)
    assert raised.value.migration == name and raised.value.sqlstate == "P0001"  # the error is still the same one
    failure = next(line for line in log_lines(logs) if line["message"] == "migration run failed")
    assert message.strip()[-60:] in failure["reason"]  # the whole text is in the log line
    assert "[cut," not in failure["reason"]


def test_a_short_failure_is_left_as_it_is() -> None:
    assert reason.cap("1700000000000_x.sql: division by zero (SQLSTATE 22012)") == (
        "1700000000000_x.sql: division by zero (SQLSTATE 22012)"
    )
    capped = reason.cap("x" * 5000)
    assert capped.endswith(f"[cut, {5000 - capped.index(' …'):,} more characters: see the log line]")
    assert reason.json_bytes(capped) <= reason.REASON_MAX_BYTES


def test_missing_app_secret_fails_before_any_migration(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    three_migrations(deployment.migrations_dir)
    deployment.secrets.delete_secret(SecretId=deployment.app_tc_secret_arn, ForceDeleteWithoutRecovery=True)
    expected = f"^app user {deployment.app_tc}: secret {deployment.app_tc_secret_arn} not found$"
    with pytest.raises(SecretError, match=expected):
        handler.on_event(cfn_events.create(deployment.roles), LambdaContext())
    assert not table_exists(deployment.conn, "pgmigrations")


def count_secrets_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[tuple[str, list[str]]]]:
    """The handler's Secrets Manager calls from now on: one list per client it makes."""
    calls: list[list[tuple[str, list[str]]]] = []
    make_client = handler.credentials.secrets_client

    def counted_client() -> Any:
        client = make_client()
        calls.append(secrets_calls(client))
        return client

    monkeypatch.setattr(handler.credentials, "secrets_client", counted_client)
    return calls


def test_each_invocation_reads_the_three_secrets_in_one_call(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_migrations(deployment.migrations_dir)
    calls = count_secrets_calls(monkeypatch)
    deployment.deploy(cfn_events.create(deployment.roles))
    arns = [deployment.admin_secret_arn, deployment.app_rw_secret_arn, deployment.app_tc_secret_arn]
    assert calls == [[("BatchGetSecretValue", arns)]] * 2  # on_event, then is_complete: one call each


def test_missing_setting_names_the_variable(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DB_SECRET_ARN")
    with pytest.raises(ConfigurationError, match=r"^DB_SECRET_ARN is not set$"):
        handler.on_event(cfn_events.create(), LambdaContext())


def test_unreachable_proxy_fails_within_the_time_left(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv("DB_PROXY_ENDPOINT", f"127.0.0.1:{port}")
    started = time.monotonic()
    with pytest.raises(ConnectError, match=rf"^cannot reach 127\.0\.0\.1:{port} \(database .*\) after \d+ attempt"):
        handler.on_event(cfn_events.create(), LambdaContext(remaining_seconds=handler.RESPONSE_MARGIN_SECONDS + 4))
    assert time.monotonic() - started < 4.5


# -- rollback: the previous code on a database that is ahead -------------------------------------------


def test_rollback_update_with_older_migrations_succeeds_with_a_warning(
    deployment: Deployment, logs: io.StringIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = three_migrations(deployment.migrations_dir)
    deployment.deploy(cfn_events.create())
    previous_asset = tmp_path / "previous" / "migrations"
    previous_asset.mkdir(parents=True)
    for name in names[:2]:
        path = next(deployment.migrations_dir.glob(f"{name}.*"))
        shutil.copy(path, previous_asset / path.name)
    monkeypatch.setenv("MIGRATIONS_DIR", str(previous_asset))

    rolled_back = deployment.deploy(cfn_events.update(handler.PHYSICAL_RESOURCE_ID))

    assert rolled_back["Data"] == {"AppliedCount": "0", "LastMigration": ""}
    assert table_exists(deployment.conn, "gamma")  # never rolled back automatically
    warnings = [line for line in log_lines(logs) if line["level"] == "WARNING"]
    assert warnings and all(line["ahead"] == [names[2]] for line in warnings)
    assert "the database is ahead of this code" in warnings[0]["message"]


SYNTH_TIMES = ("2024-06-01T10:00:00.000001+00:00", "2024-06-01T11:30:00.000002+00:00")  # older, newer


def rollback_event(physical_resource_id: str = handler.PHYSICAL_RESOURCE_ID) -> dict[str, Any]:
    """What CloudFormation sends in UPDATE_ROLLBACK_IN_PROGRESS: the previous properties new, the failed ones old."""
    older, newer = SYNTH_TIMES
    return cfn_events.update(
        physical_resource_id, {"Trigger": older, "MigrationsHash": "a1"}, {"Trigger": newer, "MigrationsHash": "b2"}
    )


def _no_database(*args: object, **kwargs: object) -> None:
    raise AssertionError("a rollback must not read secrets or connect")


def _rolls_back_at_once(event: dict[str, Any]) -> None:
    started = time.monotonic()
    first = handler.on_event(event, LambdaContext())
    answer = handler.is_complete(cfn_events.is_complete_event(event, first), LambdaContext())
    assert time.monotonic() - started < 2.0
    assert first["PhysicalResourceId"] == handler.PHYSICAL_RESOURCE_ID
    assert answer == {"IsComplete": True, "Data": {"AppliedCount": "0", "LastMigration": ""}}


def test_rollback_with_the_lock_held_succeeds_at_once_touching_nothing(
    deployment: Deployment, database_url: str, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = three_migrations(deployment.migrations_dir)
    deployment.deploy(cfn_events.create())
    holder = psycopg2.connect(database_url, application_name="lambda_db_setup (the failed run)")
    try:
        with holder.cursor() as cursor:
            cursor.execute(lock.TRY_LOCK, {"lock_id": lock.LOCK_ID})
            assert cursor.fetchone() == (True,)
        monkeypatch.setattr(handler.credentials, "secrets_client", _no_database)
        monkeypatch.setattr(handler, "connect", _no_database)
        _rolls_back_at_once(rollback_event())
    finally:
        holder.close()
    assert applied_names(deployment.conn) == names
    (line,) = [line for line in log_lines(logs) if line.get("outcome") == "rollback"]
    assert line["trigger"] == SYNTH_TIMES[0] and line["rolled_back_trigger"] == SYNTH_TIMES[1]
    assert line["level"] == "WARNING"  # the schema stays ahead of the restored code: alarms must see it
    assert "the schema stays ahead of the code being restored" in line["message"]


def test_rollback_with_the_database_unreachable_succeeds_at_once(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_PROXY_ENDPOINT", f"127.0.0.1:{closed_port()}")
    monkeypatch.setattr(handler.credentials, "secrets_client", _no_database)
    monkeypatch.setattr(handler, "connect", _no_database)
    _rolls_back_at_once(rollback_event())


@pytest.mark.parametrize(
    ("properties", "old_properties", "expected"),
    [
        ({"Trigger": SYNTH_TIMES[0]}, {"Trigger": SYNTH_TIMES[1]}, True),  # back in time: rollback
        ({"Trigger": SYNTH_TIMES[1]}, {"Trigger": SYNTH_TIMES[0]}, False),  # forward: a deploy
        ({"Trigger": SYNTH_TIMES[0]}, {"Trigger": SYNTH_TIMES[0]}, False),  # same template again
        ({"Trigger": "5f0c" * 16}, {"Trigger": "9a1b" * 16}, False),  # content-hash: no order, a deploy
        ({"Trigger": SYNTH_TIMES[0]}, {}, False),  # the previous template had no Trigger
        ({"Trigger": "2024-06-01T10:00:00"}, {"Trigger": SYNTH_TIMES[1]}, False),  # no time zone: not ours
    ],
)
def test_rollback_rule(properties: dict[str, str], old_properties: dict[str, str], expected: bool) -> None:
    assert handler.is_rollback(cfn_events.update("db-migrations", properties, old_properties)) is expected
    assert handler.is_rollback({**cfn_events.create(properties), "OldResourceProperties": old_properties}) is False


def test_schema_built_before_tracking_is_adopted_on_deploy(deployment: Deployment, logs: io.StringIO) -> None:
    """The original Lambda's behaviour: tables there, no pgmigrations, schema matches -> recorded, not run."""
    names = three_migrations(deployment.migrations_dir)
    with deployment.conn.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE alpha (id int); CREATE TABLE beta (id serial PRIMARY KEY); CREATE TABLE gamma (id int)"
        )
        cursor.execute("INSERT INTO alpha VALUES (7)")
    deployment.deploy(cfn_events.create())
    assert applied_names(deployment.conn) == names
    with deployment.conn.cursor() as cursor:
        cursor.execute("SELECT id FROM alpha")
        assert cursor.fetchall() == [(7,)]
    adopted = [line for line in log_lines(logs) if line.get("outcome") == "adopted"]
    assert adopted and adopted[0]["adopted"] == names


def test_a_gap_in_the_middle_still_fails(deployment: Deployment) -> None:
    names = three_migrations(deployment.migrations_dir)
    deployment.deploy(cfn_events.create())
    next(deployment.migrations_dir.glob(f"{names[1]}.*")).unlink()
    with pytest.raises(OrderError, match=names[1]):
        handler.on_event(cfn_events.update(handler.PHYSICAL_RESOURCE_ID), LambdaContext())


# -- LINT_BEFORE_APPLY: squawk before anything is applied -------------------------------------------

ITEMS = "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, code text);"
INDEX_ITEMS = "CREATE INDEX IF NOT EXISTS items_code_idx ON items (code);"


def test_lint_before_apply_refuses_flagged_migrations_and_applies_none(
    deployment: Deployment, logs: io.StringIO, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LINT_BEFORE_APPLY", "true")
    directory = deployment.migrations_dir
    write_sql(directory, "1700000000000_create_items", ITEMS)
    Engine(deployment.conn, directory).up()  # items exists before this deploy
    write_sql(directory, "1700000001000_create_tags", "CREATE TABLE IF NOT EXISTS tags (id bigint PRIMARY KEY);")
    write_sql(directory, "1700000002000_index_items", INDEX_ITEMS)
    write_py(
        directory,
        "1700000003000_item_tag",
        'pgm.sql("ALTER TABLE items ADD COLUMN tag bigint NOT NULL")\n'
        'pgm.sql("ALTER TABLE items ADD CONSTRAINT items_tag_fk FOREIGN KEY (tag) REFERENCES tags (id)")',
    )

    with pytest.raises(LintRefusedError) as refused:
        handler.on_event(cfn_events.update(handler.PHYSICAL_RESOURCE_ID), LambdaContext())

    reason = str(refused.value)  # the CloudFormation Reason
    assert reason.startswith(
        "deploy refused (LINT_BEFORE_APPLY): squawk flags 2 of 3 pending migration(s), none applied:"
        " 1700000002000_index_items.sql:2 (require-concurrent-index-creation),"
        " 1700000003000_item_tag.py (adding-required-field),"
        " 1700000003000_item_tag.py (constraint-missing-not-valid) and 1 more. Fix them"
    )
    assert '-- squawk-ignore rule: reason; .py: SQUAWK_IGNORE = {"rule": "reason"}' in reason
    assert "\n" not in reason and len(reason) < 1000
    assert applied_names(deployment.conn) == ["1700000000000_create_items"]
    assert not table_exists(deployment.conn, "tags")  # the clean migration waits with the others
    lines = log_lines(logs)
    (linted,) = [line for line in lines if "lint_report" in line]
    assert linted["level"] == "ERROR"
    assert linted["lint_report"].startswith("1700000002000_index_items.sql:2: require-concurrent-index-creation: ")
    assert "\ncheck: failed: 4 finding(s) and 0 problem(s) in 2 of 3 pending migration(s)" in linted["lint_report"]
    failure = next(line for line in lines if line["message"] == "migration run failed")
    assert (failure["error_type"], failure["migration"]) == ("LintRefusedError", "1700000002000_index_items")
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert (emf["MigrationsApplied"], emf["MigrationsFailed"]) == ([0.0], [1.0])


def test_lint_before_apply_lets_clean_migrations_through(
    deployment: Deployment, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linted together, as in ``check``: the index is on a table the same deploy creates, so squawk passes it."""
    monkeypatch.setenv("LINT_BEFORE_APPLY", "true")
    write_sql(deployment.migrations_dir, "1700000000000_create_items", ITEMS)
    write_sql(deployment.migrations_dir, "1700000001000_index_items", INDEX_ITEMS)
    created = deployment.deploy(cfn_events.create())
    assert created["Data"] == {"AppliedCount": "2", "LastMigration": "1700000001000_index_items"}
    (linted,) = [line for line in log_lines(logs) if "lint_report" in line]  # once, by on_event
    assert (linted["level"], linted["stage"]) == ("INFO", "on_event")
    assert "check: ok: 2 pending migration(s) linted, no findings" in linted["lint_report"]


def test_lint_before_apply_reads_everything_once(
    deployment: Deployment, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """on_event with the linter: one discovery, one read of pgmigrations, one read of each file."""
    monkeypatch.setenv("LINT_BEFORE_APPLY", "true")
    write_sql(deployment.migrations_dir, "1700000000000_create_items", ITEMS)
    Engine(deployment.conn, deployment.migrations_dir).up()
    write_sql(deployment.migrations_dir, "1700000001000_create_tags", "CREATE TABLE IF NOT EXISTS tags (id bigint);")
    write_py(deployment.migrations_dir, "1700000002000_create_notes", 'pgm.sql("CREATE TABLE notes (id bigint)")')
    counts = count_reads(monkeypatch)
    handler.on_event(cfn_events.update(handler.PHYSICAL_RESOURCE_ID), LambdaContext())
    assert applied_names(deployment.conn)[-2:] == ["1700000001000_create_tags", "1700000002000_create_notes"]
    assert (counts.discoveries, counts.history_reads) == (1, 1)
    assert counts.file_reads == {
        "1700000000000_create_items.sql": 1,  # applied: its checksum only
        "1700000001000_create_tags.sql": 1,
        "1700000002000_create_notes.py": 1,
    }


def test_is_complete_applies_the_rest_of_what_on_event_linted(
    deployment: Deployment, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linted alone after the first migration ran, the index would be on an existing table and flagged."""
    monkeypatch.setenv("LINT_BEFORE_APPLY", "true")
    write_sql(deployment.migrations_dir, "1700000000000_create_items", ITEMS)
    write_sql(deployment.migrations_dir, "1700000001000_index_items", INDEX_ITEMS)
    Engine(deployment.conn, deployment.migrations_dir).up(1)  # as if on_event had had time for one only
    started = {
        "PhysicalResourceId": handler.PHYSICAL_RESOURCE_ID,
        handler.APPLIED_BEFORE: 0,
        handler.RUN_STARTED: time.time(),
    }
    answer = handler.is_complete(cfn_events.is_complete_event(cfn_events.create(), started), LambdaContext())
    assert answer["Data"] == {"AppliedCount": "2", "LastMigration": "1700000001000_index_items"}
    assert not [line for line in log_lines(logs) if "lint_report" in line]


# -- time ----------------------------------------------------------------------------------------------

START_MARGIN = EngineOptions().start_margin_seconds


def test_too_little_time_starts_nothing_and_the_next_poll_finishes(deployment: Deployment) -> None:
    names = three_migrations(deployment.migrations_dir)
    event = cfn_events.create()
    short = handler.RESPONSE_MARGIN_SECONDS + START_MARGIN - 1
    started = handler.on_event(event, LambdaContext(short))
    assert applied_names(deployment.conn) == []
    poll = cfn_events.is_complete_event(event, started)
    assert handler.is_complete(poll, LambdaContext(short)) == {"IsComplete": False}  # no Data with False
    assert handler.is_complete(poll, LambdaContext()) == {
        "IsComplete": True,
        "Data": {"AppliedCount": "3", "LastMigration": names[-1]},
    }


def test_the_run_budget_spent_on_a_poll_fails_with_what_was_applied_and_what_is_left(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = three_migrations(deployment.migrations_dir)
    monkeypatch.setenv("RUN_BUDGET_SECONDS", "3480")
    event = cfn_events.create()
    started = handler.on_event(event, LambdaContext(handler.RESPONSE_MARGIN_SECONDS + START_MARGIN - 1))
    assert applied_names(deployment.conn) == []  # on_event had no time to start one
    an_hour_ago = {**started, handler.RUN_STARTED: time.time() - 3600}  # as if the polls had taken that long
    began = time.monotonic()
    with pytest.raises(RunBudgetError) as raised:
        handler.is_complete(cfn_events.is_complete_event(event, an_hour_ago), LambdaContext())
    assert time.monotonic() - began < 5  # failed at once, without starting a migration
    assert str(raised.value) == (
        "the run's time budget is spent (RUN_BUDGET_SECONDS=3480 s from on_event's start; CloudFormation waits one"
        f" hour): 0 migration(s) applied by this deploy, 3 left (next: {names[0]}). What was applied stays"
        " applied; the next deploy continues with the rest"
    )
    assert applied_names(deployment.conn) == []


def test_the_run_budget_stops_on_event_between_migrations(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_sql(deployment.migrations_dir, "1700000000000_quick", "CREATE TABLE quick (id int);")
    write_sql(deployment.migrations_dir, "1700000001000_slow", "SELECT pg_sleep(3);")
    write_sql(deployment.migrations_dir, "1700000002000_later", "CREATE TABLE later (id int);")
    # 17 s budget - 5 s response margin = 12 s: both first two start with 10 s left; after the sleep, less
    monkeypatch.setenv("RUN_BUDGET_SECONDS", str(int(handler.RESPONSE_MARGIN_SECONDS + START_MARGIN + 2)))
    with pytest.raises(RunBudgetError, match=r": 2 migration\(s\) applied by this deploy, 1 left \(next"):
        handler.on_event(cfn_events.create(), LambdaContext())  # 900 s of its own: the budget is what stops it
    assert applied_names(deployment.conn) == ["1700000000000_quick", "1700000001000_slow"]


def test_is_complete_without_the_run_start_is_refused() -> None:
    event = cfn_events.is_complete_event(cfn_events.create(), {handler.APPLIED_BEFORE: 0})
    with pytest.raises(EventError, match=f"no {handler.RUN_STARTED} time"):
        handler.is_complete(event, LambdaContext())


def test_deadline_stops_between_migrations_and_polls_continue(deployment: Deployment) -> None:
    """3 s fit before the start margin is reached: the slow first migration runs whole, the others wait."""
    write_sql(deployment.migrations_dir, "1700000000000_slow", "CREATE TABLE slow (id int);\nSELECT pg_sleep(3);")
    write_sql(deployment.migrations_dir, "1700000001000_second", "CREATE TABLE second (id int);")
    write_sql(deployment.migrations_dir, "1700000002000_third", "CREATE TABLE third (id int);")
    event = cfn_events.create()
    started = handler.on_event(event, LambdaContext(handler.RESPONSE_MARGIN_SECONDS + START_MARGIN + 3))
    assert applied_names(deployment.conn) == ["1700000000000_slow"]
    assert not table_exists(deployment.conn, "second")
    answer = handler.is_complete(cfn_events.is_complete_event(event, started), LambdaContext())
    assert answer["Data"] == {"AppliedCount": "3", "LastMigration": "1700000002000_third"}


def test_roles_wait_for_a_poll_with_time_for_them(deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    three_migrations(deployment.migrations_dir)
    event = cfn_events.create(deployment.roles)
    started = handler.on_event(event, LambdaContext())
    monkeypatch.setattr(handler, "ROLES_MIN_SECONDS", 10_000.0)
    assert handler.is_complete(cfn_events.is_complete_event(event, started), LambdaContext()) == {"IsComplete": False}
    with deployment.conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (deployment.app_rw,))
        assert cursor.fetchone() == (0,)


def test_lock_and_statement_timeouts_come_from_the_environment(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCK_TIMEOUT_MS", "1234")
    monkeypatch.setenv("STATEMENT_TIMEOUT_MS", "56789")
    write_sql(
        deployment.migrations_dir,
        "1700000000000_record_settings",
        "CREATE TABLE seen AS SELECT current_setting('lock_timeout') AS lock_timeout,"
        " current_setting('statement_timeout') AS statement_timeout;",
    )
    handler.on_event(cfn_events.create(), LambdaContext())
    with deployment.conn.cursor() as cursor:
        cursor.execute("SELECT lock_timeout, statement_timeout FROM seen")
        assert cursor.fetchone() == ("1234ms", "56789ms")


# -- CloudWatch ----------------------------------------------------------------------------------------


def test_logs_and_metrics_of_a_run(deployment: Deployment, logs: io.StringIO, capsys: pytest.CaptureFixture) -> None:
    names = three_migrations(deployment.migrations_dir)
    event = cfn_events.create()
    handler.on_event(event, LambdaContext())
    lines = log_lines(logs)
    applied = [line for line in lines if line["message"] == "migration applied"]
    assert [line["migration"] for line in applied] == names
    assert all(line["outcome"] == "applied" and line["duration_ms"] >= 0 for line in applied)
    (summary,) = [line for line in lines if line["message"] == "migration run finished"]
    assert summary["correlation_id"] == event["RequestId"]
    assert (summary["request_type"], summary["stage"]) == ("Create", "on_event")
    assert (summary["applied"], summary["skipped"], summary["pending"], summary["ahead"]) == (3, 0, 0, 0)
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    metrics = {metric["Name"] for metric in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert metrics == {"MigrationsApplied", "MigrationsFailed", "RunDuration"}
    assert (emf["MigrationsApplied"], emf["MigrationsFailed"]) == ([3.0], [0.0])


def test_no_secret_value_reaches_any_log(
    deployment: Deployment, logs: io.StringIO, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    three_migrations(deployment.migrations_dir)
    deployment.deploy(cfn_events.create(deployment.roles))
    deployment.set_password(deployment.app_rw_secret_arn, deployment.app_rw, f"rotated-{uuid.uuid4().hex}")
    deployment.deploy(cfn_events.update(handler.PHYSICAL_RESOURCE_ID, deployment.roles))
    monkeypatch.setenv("DB_PROXY_ENDPOINT", f"127.0.0.1:{closed_port()}")
    with pytest.raises(ConnectError):
        handler.on_event(cfn_events.create(), LambdaContext(handler.RESPONSE_MARGIN_SECONDS + 3))
    captured = capsys.readouterr()
    everything = logs.getvalue() + captured.out + captured.err
    assert "set password of" in everything  # the rotation was logged ...
    for password in deployment.passwords:
        assert password not in everything  # ... without any password
    assert "postgresql://" not in everything


# -- declared roles: optional, any shape, retired when dropped ------------------------------------------


def role_count(conn, names: list[str]) -> int:
    with conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (names,))
        return cursor.fetchone()[0]


def test_without_declared_roles_no_user_secret_is_read_and_no_role_touched(
    deployment: Deployment, logs: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_migrations(deployment.migrations_dir)
    calls = count_secrets_calls(monkeypatch)
    deployment.secrets.delete_secret(SecretId=deployment.app_rw_secret_arn, ForceDeleteWithoutRecovery=True)
    with deployment.conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_roles")
        before = cursor.fetchone()
        assert deployment.deploy(cfn_events.create())["Data"]["AppliedCount"] == "3"
        cursor.execute("SELECT count(*) FROM pg_roles")
        assert cursor.fetchone() == before
    assert calls == [[("BatchGetSecretValue", [deployment.admin_secret_arn])]] * 2
    assert not [line for line in log_lines(logs) if line.get("outcome") == "roles"]


def test_roles_no_longer_declared_at_all_are_reported_and_left_alone(deployment: Deployment, logs: io.StringIO) -> None:
    three_migrations(deployment.migrations_dir)
    deployment.deploy(cfn_events.create(deployment.roles))
    deployment.deploy(cfn_events.update(handler.PHYSICAL_RESOURCE_ID))
    (warning,) = [line for line in log_lines(logs) if "undeclared_roles" in line]
    assert warning["level"] == "WARNING"
    assert warning["undeclared_roles"] == sorted([deployment.app_rw, deployment.app_tc, *deployment.groups])
    with deployment.conn.cursor() as cursor:
        cursor.execute("SELECT bool_and(rolcanlogin) FROM pg_roles WHERE rolname IN (%s, %s)", deployment.groups)
        assert cursor.fetchone() == (False,)
        cursor.execute(
            "SELECT bool_and(rolcanlogin) FROM pg_roles WHERE rolname IN (%s, %s)",
            (deployment.app_rw, deployment.app_tc),
        )
        assert cursor.fetchone() == (True,)


def test_a_user_dropped_from_the_properties_is_retired_on_the_next_deploy(
    deployment: Deployment, logs: io.StringIO
) -> None:
    three_migrations(deployment.migrations_dir)
    deployment.deploy(cfn_events.create(deployment.roles))
    fewer = {**deployment.roles, "AppUsers": deployment.roles["AppUsers"][1:]}
    deployment.deploy(cfn_events.update(handler.PHYSICAL_RESOURCE_ID, fewer, deployment.roles))
    (ensured,) = [line for line in log_lines(logs) if line["message"] == "application roles ensured"][1:]
    retired = f"retired user {deployment.app_rw}: revoked {deployment.groups[0]}, made NOLOGIN; the role is kept"
    assert retired in ensured["changes"]
    with deployment.conn.cursor() as cursor:
        cursor.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (deployment.app_rw,))
        assert cursor.fetchone() == (False,)


def test_a_custom_read_only_group_on_its_own_schema(deployment: Deployment) -> None:
    write_sql(deployment.migrations_dir, "1700000000000_app", "CREATE SCHEMA app; CREATE TABLE app.items (id int);")
    reader_group, reader = f"reporting_{uuid.uuid4().hex[:8]}", f"report_{uuid.uuid4().hex[:8]}"
    arn = deployment.secrets.create_secret(Name="report", SecretString=json.dumps({"password": "pw-report"}))["ARN"]
    properties = rolespec.to_properties(
        [rolespec.AppGroup(reader_group, rolespec.READ, ("app",))], [(reader, reader_group, arn)]
    )
    try:
        deployment.deploy(cfn_events.create(properties))
        dsn = parse_dsn(deployment.conn.dsn)
        with closing(psycopg2.connect(host=dsn["host"], dbname=dsn["dbname"], user=reader)) as session:
            session.autocommit = True
            with session.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM app.items")
                for refused in ("INSERT INTO app.items VALUES (1)", "CREATE TABLE app.mine (id int)"):
                    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                        cursor.execute(refused)
        assert role_count(deployment.conn, [deployment.app_rw, deployment.app_tc, *deployment.groups]) == 0
    finally:
        drop_roles(deployment.conn, [reader, reader_group])


def test_a_secret_naming_another_login_fails_before_any_migration(deployment: Deployment) -> None:
    three_migrations(deployment.migrations_dir)
    deployment.set_password(deployment.app_tc_secret_arn, "someone_else", "pw-tc")
    expected = (
        f"app user {deployment.app_tc}: secret {deployment.app_tc_secret_arn}: 'username' is 'someone_else' but the"
        f" user is declared as '{deployment.app_tc}'"
    )
    with pytest.raises(SecretError, match=f"^{re.escape(expected)}"):
        handler.on_event(cfn_events.create(deployment.roles), LambdaContext())
    assert not table_exists(deployment.conn, "pgmigrations")


def test_declaring_the_admin_as_an_app_user_fails_before_any_migration(deployment: Deployment) -> None:
    three_migrations(deployment.migrations_dir)
    admin = parse_dsn(deployment.conn.dsn)["user"]
    deployment.set_password(deployment.app_rw_secret_arn, admin, "pw")
    properties = deployment.roles
    properties["AppUsers"][0]["Name"] = admin
    with pytest.raises(ConfigurationError, match=f"^application role '{admin}' is the admin"):
        handler.on_event(cfn_events.create(properties), LambdaContext())
    as_group = deployment.roles
    as_group["AppGroups"][1]["Name"] = as_group["AppUsers"][1]["Group"] = admin
    with pytest.raises(ConfigurationError, match=f"^application role '{admin}' is the admin"):
        handler.on_event(cfn_events.create(as_group), LambdaContext())
    assert not table_exists(deployment.conn, "pgmigrations")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["AppGroups"][0].update(Privilege="admin"), "has privilege 'admin'; one of read, write, ddl"),
        (lambda p: p["AppUsers"][0].update(Group="nobody"), "joins group 'nobody', which is not declared"),
        (lambda p: p["AppUsers"][0].update(Name="pg_app"), "reserved by PostgreSQL"),
        (lambda p: p["AppUsers"][1].update(Name=p["AppUsers"][0]["Name"]), "is declared twice"),
        (lambda p: p["AppGroups"][0].update(Schemas="public"), "malformed"),
        (lambda p: p.update(AppUsers={"Name": "x"}), "malformed"),
        (lambda p: p["AppUsers"][1].update(SecretArn=p["AppUsers"][0]["SecretArn"]), "shares its secret"),
    ],
)
def test_malformed_role_properties_fail_naming_them(deployment: Deployment, change: Any, message: str) -> None:
    properties = json.loads(json.dumps(deployment.roles))
    change(properties)
    with pytest.raises(ConfigurationError, match=f"^resource propert.*{re.escape(message)}"):
        handler.on_event(cfn_events.create(properties), LambdaContext())


def test_an_undeclared_member_of_a_declared_group_is_logged_as_unmanaged(
    deployment: Deployment, logs: io.StringIO
) -> None:
    three_migrations(deployment.migrations_dir)
    deployment.deploy(cfn_events.create(deployment.roles))
    hand_made = f"by_hand_{uuid.uuid4().hex[:8]}"
    with deployment.conn.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {hand_made} LOGIN")
        cursor.execute(f"GRANT {deployment.groups[0]} TO {hand_made}")  # both plain lower-case names
    try:
        deployment.deploy(cfn_events.update(handler.PHYSICAL_RESOURCE_ID, deployment.roles))
        (warning,) = [line for line in log_lines(logs) if "unmanaged" in line]
        assert (warning["level"], warning["unmanaged"]) == ("WARNING", [hand_made])
    finally:
        drop_roles(deployment.conn, [hand_made])
