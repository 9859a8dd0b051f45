"""``lambda-db-setup logs`` against moto's CloudWatch Logs, CloudFormation and Lambda, fed the real handler's lines.

The handler runs against the embedded server (as in test_handler); what its Logger writes to stdout, each
invocation apart, is put into moto's log groups the way Lambda ships it (one stream per invocation, Lambda's
START/END/REPORT lines around the handler's JSON). The stack is created in moto's CloudFormation with the
two migration functions, their groups, and a function of something else.
"""

from __future__ import annotations

import _thread
import io
import json
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto.core import set_initial_no_auth_action_count

from lambda_db_setup import cli, handler
from lambda_db_setup import logs as logs_command
from lambda_db_setup.cdk import construct
from lambda_db_setup.errors import ConfigurationError, MigrationError
from lambda_db_setup.runlog import LogLine, format_line, line_document
from tests import cfn_events
from tests.cfn_events import LambdaContext
from tests.helpers import write_sql
from tests.test_handler import Deployment, deployment, logs  # noqa: F401 (fixtures)

STACK = "DbMigrations"
FUNCTIONS = {"on_event": "DbMigrations-OnEvent-5b3c9f70", "is_complete": "DbMigrations-IsComplete-5b3c9f70"}
GROUPS = {stage: f"/aws/lambda/{name}" for stage, name in FUNCTIONS.items()}
OTHER_STACK = "Website"
BAD_MIGRATION = "1700000002000_read_missing"
SENTINEL = "pw-SENTINEL-in-a-field-logs-never-shows"


@dataclass
class Invocation:
    stage: str
    lines: list[str]  # what the handler's Logger wrote, one JSON object a line


@dataclass
class World:
    """The deployment, the AWS side (moto), and the two runs' request ids once deployed."""

    deployment: Deployment
    stream: io.StringIO
    stdout: pytest.CaptureFixture[str]
    succeeded: str = ""
    failed: str = ""

    def request(self, event: dict[str, Any]) -> list[Invocation]:
        """One CloudFormation request through the Provider's calls: on_event, then is_complete until complete."""
        try:
            started = handler.on_event(event, LambdaContext())
        except MigrationError:
            return [Invocation("on_event", self._take())]
        invocations = [Invocation("on_event", self._take())]
        poll = cfn_events.is_complete_event(event, started)
        for _ in range(10):
            complete = handler.is_complete(poll, LambdaContext())["IsComplete"]
            invocations.append(Invocation("is_complete", self._take()))
            if complete:
                return invocations
        raise AssertionError("is_complete never completed")

    def _take(self) -> list[str]:
        """The Logger's lines and the EMF metrics powertools prints, both on the function's stdout, in time order."""
        lines = self.stream.getvalue().splitlines() + self.stdout.readouterr().out.splitlines()
        self.stream.seek(0)
        self.stream.truncate()
        return sorted(lines, key=_written_at)

    def deploy_success(self, shift: timedelta = timedelta()) -> None:
        write_sql(self.deployment.migrations_dir, "1700000000000_create_alpha", "CREATE TABLE alpha (id int);")
        write_sql(self.deployment.migrations_dir, "1700000001000_create_beta", "CREATE TABLE beta (id int);")
        event = cfn_events.create({"MigrationsHash": "a1", **self.deployment.roles})
        ship(self.request(event), shift)
        self.succeeded = event["RequestId"]

    def deploy_failure(self, shift: timedelta = timedelta(), *, shipped: bool = True) -> list[Invocation]:
        """The failing Update; its lines go to CloudWatch now, or (``shipped=False``) when the test ships them."""
        write_sql(self.deployment.migrations_dir, BAD_MIGRATION, "SELECT * FROM missing_table;")
        event = cfn_events.update(
            handler.PHYSICAL_RESOURCE_ID,
            {"MigrationsHash": "b2", **self.deployment.roles},
            {"MigrationsHash": "a1", **self.deployment.roles},
        )
        invocations = self.request(event)
        if shipped:
            ship(invocations, shift)
        self.failed = event["RequestId"]
        return invocations


def ship(invocations: list[Invocation], shift: timedelta = timedelta()) -> None:
    """Each invocation into its function's group as Lambda does: a stream of its own, the platform's lines around."""
    client = boto3.client("logs")
    for invocation in invocations:
        if not invocation.lines:  # is_complete of a Delete or a rollback: nothing of the handler's
            continue
        group, stream, lambda_request = (
            GROUPS[invocation.stage],
            f"2026/12/02/[$LATEST]{uuid.uuid4().hex}",
            uuid.uuid4(),
        )
        client.create_log_stream(logGroupName=group, logStreamName=stream)
        stamps = [_written_at(line) + shift for line in invocation.lines]
        first, last = _ms(stamps[0]), _ms(stamps[-1])
        events = [
            {"timestamp": first, "message": f"START RequestId: {lambda_request} Version: $LATEST\n"},
            *(
                {"timestamp": _ms(stamp), "message": line + "\n"}
                for stamp, line in zip(stamps, invocation.lines, strict=True)
            ),
            {"timestamp": last, "message": f"END RequestId: {lambda_request}\n"},
            {"timestamp": last, "message": f"REPORT RequestId: {lambda_request}\tDuration: 812.31 ms\n"},
        ]
        client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def _written_at(line: str) -> datetime:
    """When powertools wrote the line: a log line's ``timestamp`` (``2026-12-02 18:30:00,123+0000``), EMF's ms."""
    record = json.loads(line)
    if "_aws" in record:
        return datetime.fromtimestamp(record["_aws"]["Timestamp"] / 1000, UTC)
    return datetime.strptime(record["timestamp"], "%Y-%m-%d %H:%M:%S,%f%z")


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@pytest.fixture
def world(deployment: Deployment, logs: io.StringIO, capsys: pytest.CaptureFixture[str]) -> World:  # noqa: F811
    """moto's CloudFormation stack with the two migration functions and their groups, and another stack."""
    role = boto3.client("iam").create_role(RoleName="migrations", AssumeRolePolicyDocument="{}")["Role"]["Arn"]

    def function(name: str, entry_point: str) -> dict[str, Any]:
        code = {"ZipFile": "def handler(event, context): pass"}
        properties = {"FunctionName": name, "Handler": entry_point, "Role": role, "Runtime": "python3.12", "Code": code}
        return {"Type": "AWS::Lambda::Function", "Properties": properties}

    resources = {
        f"Migrations{stage.title().replace('_', '')}": function(name, f"{construct.HANDLER_MODULE}.{stage}")
        for stage, name in FUNCTIONS.items()
    }
    resources.update(
        {
            f"Migrations{stage.title().replace('_', '')}Logs": {
                "Type": "AWS::Logs::LogGroup",
                "Properties": {"LogGroupName": group},
            }
            for stage, group in GROUPS.items()
        }
    )
    resources["Thumbnails"] = function("Website-Thumbnails", "index.handler")
    cloudformation = boto3.client("cloudformation")
    cloudformation.create_stack(StackName=STACK, TemplateBody=json.dumps({"Resources": resources}))
    website = {"Resources": {"Thumbnails": function("Website-Thumbnails-2", "index.handler")}}
    cloudformation.create_stack(StackName=OTHER_STACK, TemplateBody=json.dumps(website))
    return World(deployment, logs, capsys)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["logs", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# -- what a run shows ------------------------------------------------------------------------------------------


def test_by_default_the_last_run_its_failure_migration_sqlstate_and_postgres_message(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.deploy_success()
    world.deploy_failure()
    code, out, err = run_cli(capsys, "--stack", STACK)
    assert code == 0, err
    assert err.strip() == f"reading {GROUPS['on_event']}, {GROUPS['is_complete']}"
    lines = out.splitlines()
    assert lines[0].startswith(f"run {world.failed} (Update): 20") and lines[0].endswith(", failed")
    assert "  0 applied, 0 adopted (already applied and pending not logged: the run stopped first)" in lines
    assert f'  failed in on_event: {BAD_MIGRATION} SQLSTATE 42P01: relation "missing_table" does not exist' in lines
    assert any(line.startswith(f"  reason: {BAD_MIGRATION}.sql: ") for line in lines)
    assert world.succeeded not in out  # the last run only
    assert not any(line.startswith(("START", "END", "REPORT")) for line in lines)


def test_json_since_groups_both_functions_lines_by_run(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.deploy_success()
    world.deploy_failure()
    code, out, err = run_cli(capsys, "--stack", STACK, "--since", "1h", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["log_groups"] == [GROUPS["on_event"], GROUPS["is_complete"]]
    succeeded, failed = document["runs"]
    assert succeeded["run_id"] == world.succeeded and succeeded["request_type"] == "Create"
    assert succeeded["outcome"] == "succeeded" and succeeded["failure"] is None
    assert [item["migration"] for item in succeeded["applied"]] == [
        "1700000000000_create_alpha",
        "1700000001000_create_beta",
    ]
    assert all(isinstance(item["duration_ms"], float) and item["duration_ms"] >= 0 for item in succeeded["applied"])
    assert (succeeded["skipped"], succeeded["adopted"], succeeded["pending"]) == (0, [], 0)
    assert any(world.deployment.app_rw in change for change in succeeded["roles_changes"])
    assert succeeded["log_groups"] == sorted(GROUPS.values())  # on_event's and is_complete's lines, one run
    assert succeeded["started"] <= succeeded["ended"] and succeeded["started"].endswith("Z")
    assert failed["run_id"] == world.failed and failed["request_type"] == "Update" and failed["outcome"] == "failed"
    assert failed["failure"]["migration"] == BAD_MIGRATION
    assert failed["failure"]["sqlstate"] == "42P01"
    assert failed["failure"]["pg_message"] == 'relation "missing_table" does not exist'
    assert failed["failure"]["stage"] == "on_event" and failed["failure"]["error_type"] == "MigrationFailedError"
    assert (failed["applied"], failed["skipped"], failed["log_groups"]) == ([], None, [GROUPS["on_event"]])


def test_text_of_a_successful_run(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.deploy_success()
    code, out, _ = run_cli(capsys, "--stack", STACK)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"run {world.succeeded} (Create): ") and lines[0].endswith(", succeeded")
    assert lines[1].startswith("  applied 1700000000000_create_alpha (") and lines[1].endswith(" ms)")
    assert lines[2].startswith("  applied 1700000001000_create_beta (")
    assert lines[3] == "  2 applied, 0 adopted, 0 already applied, 0 pending"
    assert any(line.startswith("  roles: ") and world.deployment.app_tc in line for line in lines)
    assert not any("failed" in line for line in lines)


def test_function_flag_reads_that_functions_group_once(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.deploy_success()
    arn = boto3.client("lambda").get_function_configuration(FunctionName=FUNCTIONS["on_event"])["FunctionArn"]
    code, out, err = run_cli(capsys, "--function", FUNCTIONS["on_event"], "--function", arn, "--since", "1h", "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["log_groups"] == [GROUPS["on_event"]]
    (run,) = document["runs"]
    assert [item["migration"] for item in run["applied"]] == ["1700000000000_create_alpha", "1700000001000_create_beta"]
    assert run["outcome"] == "unfinished"  # its end is in is_complete's group, not read
    assert run["roles_changes"] == []


def test_the_last_run_is_found_days_back_and_since_narrows(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.deploy_success(shift=-timedelta(days=3))
    world.deploy_failure(shift=-timedelta(days=2))
    code, out, _ = run_cli(capsys, "--stack", STACK, "--json")
    assert code == 0
    assert [run["run_id"] for run in json.loads(out)["runs"]] == [world.failed]
    code, out, _ = run_cli(capsys, "--stack", STACK, "--since", "60h", "--json")
    assert [run["run_id"] for run in json.loads(out)["runs"]] == [world.failed]
    code, out, _ = run_cli(capsys, "--stack", STACK, "--since", "4d", "--json")
    assert [run["run_id"] for run in json.loads(out)["runs"]] == [world.succeeded, world.failed]
    code, out, _ = run_cli(capsys, "--stack", STACK, "--since", "1h")
    assert code == 0 and out.startswith("no migration run logged since 20")


def test_no_run_logged_at_all(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--stack", STACK)
    assert (code, out) == (0, "no migration run logged\n")
    code, out, _ = run_cli(capsys, "--stack", STACK, "--json")
    assert json.loads(out)["runs"] == []


def test_no_secret_and_no_unknown_field_is_printed(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.deploy_success()
    update = cfn_events.update(handler.PHYSICAL_RESOURCE_ID)
    finished = next(
        json.loads(line)
        for line in world.request(update)[0].lines
        if json.loads(line).get("message") == "migration run finished"
    )
    ship([Invocation("on_event", [json.dumps({**finished, "db_password": SENTINEL})])])  # a field never shown
    outputs = [run_cli(capsys, "--stack", STACK, "--since", "1h", *flags)[1] for flags in ((), ("--json",))]
    since = datetime.now(UTC) - timedelta(hours=1)
    shown: list[str] = []
    logs_command.follow(
        boto3.client("logs"), list(GROUPS.values()), since, lambda line: shown.append(format_line(line)), polls=1
    )
    shown_json: list[str] = []
    logs_command.follow(
        boto3.client("logs"),
        list(GROUPS.values()),
        since,
        lambda line: shown_json.append(json.dumps(line_document(line))),
        polls=1,
    )
    for text in [*outputs, *shown, *shown_json]:
        for secret in (SENTINEL, *world.deployment.passwords):
            assert secret not in str(text)
    assert len(shown) > 5 and len(shown_json) == len(shown)
    assert any(json.loads(text)["run_id"] == update["RequestId"] for text in shown_json)  # the line was read


def test_rollback_delete_and_a_warning(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.deploy_success()
    (world.deployment.migrations_dir / "1700000001000_create_beta.sql").unlink()  # the database is ahead now
    ahead = cfn_events.update(handler.PHYSICAL_RESOURCE_ID, {"MigrationsHash": "c3", **world.deployment.roles})
    rollback = cfn_events.update(
        handler.PHYSICAL_RESOURCE_ID, {"Trigger": "2026-12-01T10:00:00+00:00"}, {"Trigger": "2026-12-02T10:00:00+00:00"}
    )
    delete = cfn_events.delete(handler.PHYSICAL_RESOURCE_ID)
    for event in (ahead, rollback, delete):
        ship(world.request(event))
    code, out, _ = run_cli(capsys, "--stack", STACK, "--since", "1h", "--json")
    runs = {run["run_id"]: run for run in json.loads(out)["runs"]}
    assert [runs[event["RequestId"]]["outcome"] for event in (ahead, rollback, delete)] == [
        "succeeded",
        "rollback",
        "delete",
    ]
    assert [
        message.startswith("the database is ahead of this code") for message in runs[ahead["RequestId"]]["warnings"]
    ] == [True]
    (rolled_back,) = runs[rollback["RequestId"]]["warnings"]  # a rollback leaves the schema ahead: a warning
    assert rolled_back.startswith("rollback update: the schema stays ahead of the code being restored")
    assert runs[rollback["RequestId"]]["applied"] == [] and runs[delete["RequestId"]]["request_type"] == "Delete"
    code, out, _ = run_cli(capsys, "--stack", STACK, "--since", "1h")
    assert [line for line in out.splitlines() if line.startswith("  warning: ")] == [
        f"  warning: {runs[ahead['RequestId']]['warnings'][0]}",
        f"  warning: {rolled_back}",
    ]
    code, out, _ = run_cli(capsys, "--stack", STACK)
    assert (
        code == 0
        and out.startswith(f"run {delete['RequestId']} (Delete): ")
        and out.splitlines()[0].endswith(", delete")
    )


def test_lines_of_other_shapes_do_not_break_it(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    odd = [
        {"correlation_id": "r-1", "outcome": "roles", "changes": 5},
        {"correlation_id": "r-1", "outcome": "adopted", "adopted": "not a list", "level": "WARNING", "message": None},
        {"correlation_id": "r-1", "outcome": "applied", "migration": ["x"], "duration_ms": "slow"},
        {"correlation_id": "r-1", "message": "\x1b[2Jcleared\r\nscreen", "level": "ERROR"},
        {"correlation_id": ""},
        ["a", "list"],
    ]
    now = _ms(datetime.now(UTC))
    client = boto3.client("logs")
    client.create_log_stream(logGroupName=GROUPS["on_event"], logStreamName="odd")
    events = [{"timestamp": now + i, "message": json.dumps(line)} for i, line in enumerate(odd)]
    client.put_log_events(logGroupName=GROUPS["on_event"], logStreamName="odd", logEvents=events)
    code, out, err = run_cli(capsys, "--stack", STACK)
    assert code == 0, err
    assert out.startswith("run r-1 (unknown request): ") and "\x1b" not in out and "\r" not in out
    assert "  applied ['x'] (duration not logged)" in out.splitlines()
    assert "  warning:  [2Jcleared  screen" in out.splitlines()


# -- --follow ---------------------------------------------------------------------------------------------------


def test_follow_shows_lines_that_arrive_after_it_started(world: World) -> None:
    world.deploy_success()
    shown: list[LogLine] = []
    waits: list[float] = []

    def wait(seconds: float) -> None:  # between polls: the failing deploy happens while follow runs
        waits.append(seconds)
        if len(waits) == 1:
            assert {line.run_id for line in shown} == {world.succeeded}
            world.deploy_failure()

    since = datetime.now(UTC) - timedelta(minutes=10)
    logs_command.follow(boto3.client("logs"), list(GROUPS.values()), since, shown.append, polls=3, wait=wait)
    assert waits == [logs_command.POLL_SECONDS] * 2
    runs = [line.run_id for line in shown]
    assert set(runs) == {world.succeeded, world.failed}
    assert runs.index(world.failed) > max(i for i, run in enumerate(runs) if run == world.succeeded)
    assert len({(line.group, line.event_id) for line in shown}) == len(shown)  # read again each poll, shown once
    failure = [line for line in shown if line.record.get("outcome") == "failed"]
    assert [line.record["migration"] for line in failure] == [BAD_MIGRATION]


def test_follow_through_the_cli_until_ctrl_c(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs_command, "POLL_SECONDS", 0.02)
    world.deploy_success()
    failure = world.deploy_failure(shipped=False)  # run here: the CLI's stdout is captured while it follows

    def later() -> None:
        try:
            time.sleep(0.5)
            ship(failure)  # CloudWatch has it now, after the command started
            time.sleep(1.5)
        finally:
            _thread.interrupt_main()  # what Ctrl-C does

    threading.Thread(target=later, daemon=True).start()
    code, out, err = run_cli(capsys, "--stack", STACK, "--follow", "--json")
    assert code == 0 and err.splitlines()[-1] == "stopped following"
    lines = [json.loads(line) for line in out.splitlines()]
    assert {line["run_id"] for line in lines} == {world.succeeded, world.failed}
    (failure,) = [line for line in lines if line.get("outcome") == "failed"]
    assert (failure["migration"], failure["sqlstate"], failure["log_group"]) == (
        BAD_MIGRATION,
        "42P01",
        GROUPS["on_event"],
    )


def test_follow_text_lines(world: World) -> None:
    world.deploy_success()
    world.deploy_failure()
    shown: list[str] = []
    since = datetime.now(UTC) - timedelta(hours=1)
    logs_command.follow(
        boto3.client("logs"), [GROUPS["on_event"]], since, lambda line: shown.append(format_line(line)), polls=1
    )
    (failure,) = [line for line in shown if "failed in" in line]
    assert f" {world.failed[:8]} Update on_event: failed in on_event: {BAD_MIGRATION} SQLSTATE 42P01:" in failure
    assert f'relation "missing_table" does not exist | {BAD_MIGRATION}.sql: ' in failure
    assert any(
        f" {world.succeeded[:8]} Create on_event: applied 1700000000000_create_alpha (" in line for line in shown
    )
    assert any(
        line.endswith(": 2 applied, 0 already applied, 0 pending: complete (" + line.rsplit("(", 1)[1])
        for line in shown
    )


# -- errors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stack", "NoSuchStack"], "error: stack 'NoSuchStack' does not exist"),
        (["--stack", "Bestellungen-ü"], "error: stack 'Bestellungen-ü' does not exist"),
        (["--stack", OTHER_STACK], f"error: stack '{OTHER_STACK}' has no migration function"),
        (["--function", "nope"], "error: function 'nope' does not exist"),
        (["--stack", STACK, "--function", "nope"], "error: function 'nope' does not exist"),
        (
            ["--function", "Website-Thumbnails-2"],
            "error: log group '/aws/lambda/Website-Thumbnails-2' does not exist: a",
        ),
        ([], "error: logs needs --stack NAME or --function NAME"),
        (
            ["--function", ""],
            "error: function '': Parameter validation failed: Invalid length for parameter FunctionName",
        ),
    ],
)
def test_missing_stack_function_or_group_is_one_line(
    world: World, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == cli.EXIT_USAGE
    assert err.splitlines()[-1].startswith(message) and "Traceback" not in err, err
    assert [line for line in err.splitlines() if not line.startswith("reading ")] == [err.splitlines()[-1]]
    assert out == ""


@set_initial_no_auth_action_count(0)  # from here on moto checks credentials as AWS does: the test's are unknown
def test_aws_refusing_is_one_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--stack", STACK)
    assert code == cli.EXIT_FAILED
    assert err.startswith(f"error: cannot read stack '{STACK}': InvalidClientTokenId: ") and err.count("\n") == 1, err
    assert out == ""


def test_an_error_under_json_is_a_document(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--stack", "NoSuchStack", "--json")
    assert code == cli.EXIT_USAGE
    assert json.loads(out) == {
        "command": "logs",
        "ok": False,
        "exit_code": 2,
        "error": err.strip()[7:],
        "migrations": [],
    }


@pytest.mark.parametrize("since", ["", "yesterday", "2x", "-2h", "h", "2026-13-01"])
def test_a_bad_since_is_a_usage_error(since: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["logs", "--function", "f", "--since", since])
    assert exit_info.value.code == cli.EXIT_USAGE
    assert "argument --since: " in capsys.readouterr().err


def test_since_forms() -> None:
    now = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    assert logs_command.parse_since("30m", now) == now - timedelta(minutes=30)
    assert logs_command.parse_since(" 2H ", now) == now - timedelta(hours=2)
    assert logs_command.parse_since("3d", now) == now - timedelta(days=3)
    assert logs_command.parse_since("1w", now) == now - timedelta(weeks=1)
    assert logs_command.parse_since("45s", now) == now - timedelta(seconds=45)
    assert logs_command.parse_since("2026-12-01T10:00:00", now) == datetime(2026, 12, 1, 10, tzinfo=UTC)
    assert logs_command.parse_since("2026-12-01 12:00+02:00", now) == datetime(2026, 12, 1, 10, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match="neither a duration"):
        logs_command.parse_since("\x1b[31m2h", now)


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No credentials anywhere boto3 looks: environment, files, instance metadata."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_SECURITY_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # one an earlier test set up keeps its credentials


def test_missing_credentials_is_one_line(no_aws_credentials: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "--function", FUNCTIONS["on_event"])
    assert code == cli.EXIT_USAGE
    assert err.startswith(f"error: no AWS credentials to read function '{FUNCTIONS['on_event']}': configure a profile")
    assert err.count("\n") == 1 and out == ""


def test_missing_region_is_one_line(
    no_aws_credentials: None, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)
    code, _, err = run_cli(capsys, "--stack", STACK)
    assert code == cli.EXIT_USAGE
    assert err == "error: no AWS region to read the migration logs: set AWS_REGION or the profile's region\n"


def test_the_lambda_setting_does_not_send_logs_to_the_function(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_MIGRATIONS_LAMBDA", FUNCTIONS["on_event"])
    world.deploy_success()
    code, out, _ = run_cli(capsys, "--stack", STACK)
    assert code == 0 and out.startswith(f"run {world.succeeded} (Create)")


def test_a_function_logging_to_a_group_of_its_own_is_read_there() -> None:
    """moto's Lambda keeps no LoggingConfig: GetFunctionConfiguration's documented shape, as AWS answers it."""
    configuration = {
        "FunctionName": "Orders-OnEvent",
        "LoggingConfig": {"LogFormat": "Text", "LogGroup": "/team/orders"},
    }
    assert logs_command._group_of(configuration) == "/team/orders"
    assert (
        logs_command._group_of({"FunctionName": "Orders-OnEvent", "LoggingConfig": {}}) == "/aws/lambda/Orders-OnEvent"
    )


def test_the_construct_and_the_command_agree_on_the_handler() -> None:
    assert construct.HANDLER_MODULE == logs_command.HANDLER_MODULE
    assert sorted(entry_point for entry_point, *_ in construct.FUNCTIONS.values()) == sorted(logs_command.ENTRY_POINTS)
