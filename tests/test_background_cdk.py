"""The background state machine: synthesized with the real aws-cdk-lib, then run in moto's Step Functions
executor with the real handler behind its Lambda step, against the embedded server.

moto's Lambda would need docker to run a function; its Step Functions executor calls Lambda through a boto3
client, so a ``before-call`` hook on ``lambda.Invoke`` (botocore's own extension point) answers each call by
running ``lambda_db_setup.handler.on_event`` in this process, as the Lambda runtime would.
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import botocore.handlers
import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as sm
from aws_cdk.assertions import Match, Template
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from cdk_nag import AwsSolutionsChecks
from moto import mock_aws

from lambda_db_setup import handler
from lambda_db_setup.background import lambda_event
from lambda_db_setup.background.lambda_event import KEY
from lambda_db_setup.cdk import DatabaseMigrations
from lambda_db_setup.cdk.background import LONG_STATEMENT_COMMAND
from tests.background_helpers import jobs, make_big, queue_backfill, scalar
from tests.cfn_events import ACCOUNT, REGION, LambdaContext
from tests.test_handler import Deployment
from tests.test_handler import deployment as deployment
from tests.test_infra import CFN_LINT, CFN_LINT_IGNORED

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRETS = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret"


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Stack, dict[str, Any]]:
    migrations = tmp_path_factory.mktemp("migrations")
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(outdir=str(outdir))
    stack = Stack(app, "Orders", env={"account": ACCOUNT, "region": REGION})
    vpc = ec2.Vpc.from_vpc_attributes(
        stack,
        "Vpc",
        vpc_id="vpc-0a1b2c3d",
        availability_zones=["a", "b"],
        isolated_subnet_ids=["subnet-0a1b2c3d", "subnet-2c3d4e5f"],
    )
    proxy_sg = ec2.SecurityGroup.from_security_group_id(stack, "ProxySg", "sg-0a1b2c3d")
    proxy = rds.DatabaseProxy.from_database_proxy_attributes(
        stack, "Proxy", db_proxy_name="orders", db_proxy_arn=f"arn:aws:rds:{REGION}:{ACCOUNT}:db-proxy:prx-0a1b2c3d",
        endpoint="orders.proxy.example", security_groups=[proxy_sg],
    )  # fmt: skip

    def secret(name: str) -> sm.ISecret:
        return sm.Secret.from_secret_complete_arn(stack, name, f"{SECRETS}:{name}-AbCdEf")

    DatabaseMigrations(
        stack, "Migrations", vpc=vpc, target=proxy, target_security_group=proxy_sg, admin_secret=secret("admin"),
        migrations_dir=migrations, background_migrations=True,
        secrets_manager_endpoint=ec2.InterfaceVpcEndpoint.from_interface_vpc_endpoint_attributes(
            stack, "Endpoint", vpc_endpoint_id="vpce-0a1b2c3d", port=443,
            security_groups=[ec2.SecurityGroup.from_security_group_id(stack, "EndpointSg", "sg-1a2b3c4d")],
        ),
        bundle_cache_dir=PROJECT_ROOT / ".cdk-bundle-cache",
    )  # fmt: skip
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()
    report = json.loads((outdir / "validation-report.json").read_text())
    assert [r for r in report["pluginReports"] if r["conclusion"] != "success"] == []  # every finding has a reason
    return stack, Template.from_stack(stack).to_json()


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: r.get("Properties", {}) for name, r in template["Resources"].items() if r["Type"] == kind}


def background_machine(template: dict[str, Any]) -> dict[str, Any]:
    """The background state machine (the Provider framework has its own)."""
    (machine,) = [m for m in resources(template, "AWS::StepFunctions::StateMachine").values() if KEY in json.dumps(m)]
    return machine


def definition(template: dict[str, Any], function_arn: str, wait_seconds: int | None = None) -> dict[str, Any]:
    """The state machine's definition with its references resolved: functions and projects to fixed ARNs."""
    parts = background_machine(template)["DefinitionString"]["Fn::Join"][1]
    text = "".join(part if isinstance(part, str) else _value(part, function_arn) for part in parts)
    document = json.loads(text)
    if wait_seconds is not None:
        document["States"]["WaitBetweenRuns"]["Seconds"] = wait_seconds
    return document


def _value(part: dict[str, Any], function_arn: str) -> str:
    if "Fn::GetAtt" in part and part["Fn::GetAtt"][1] == "Arn":
        return function_arn
    if part == {"Ref": "AWS::Partition"}:
        return "aws"
    return "project-name" if "Ref" in part else json.dumps(part)


def test_the_construct_adds_a_standard_state_machine_that_loops(synth):
    _, template = synth
    machine = background_machine(template)
    assert machine["StateMachineType"] == "STANDARD"
    states = definition(template, "arn:fn")["States"]
    assert states["RunBatches"]["Resource"] == "arn:aws:states:::lambda:invoke"
    assert states["RunBatches"]["Parameters"]["Payload"] == {KEY: {"version": 1}}
    assert states["RunBatches"]["Next"] == "WhereIsTheQueue"
    assert states["RunLongStatements"]["Resource"] == "arn:aws:states:::codebuild:startBuild.sync"
    assert states["RunLongStatements"]["Next"] == "RunBatches"
    assert states["WaitBetweenRuns"] == {"Type": "Wait", "Seconds": 30, "Next": "RunBatches"}
    choices = {json.dumps(choice, sort_keys=True): choice["Next"] for choice in states["WhereIsTheQueue"]["Choices"]}
    assert sorted(choices.values()) == ["Failed", "Paused", "RunLongStatements", "WaitBetweenRuns"]
    assert states["WhereIsTheQueue"]["Default"] == "Finished"


def test_the_deploy_time_function_may_start_it_without_a_reference_cycle(synth, tmp_path):
    _, template = synth
    machine = background_machine(template)
    name = machine["StateMachineName"]
    assert name.startswith("Orders-Migrations-Background") and len(name) <= 80
    arn = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":states:{REGION}:{ACCOUNT}:stateMachine:{name}"]]}
    functions = resources(template, "AWS::Lambda::Function")
    starters = [f for f in functions.values() if f.get("Handler") == "lambda_db_setup.handler.is_complete"]
    assert starters[0]["Environment"]["Variables"]["BACKGROUND_STATE_MACHINE_ARN"] == arn
    Template.from_json(template).has_resource_properties(
        "AWS::IAM::Policy",
        {"PolicyDocument": {"Statement": Match.array_with([
            {"Action": ["states:StartExecution", "states:ListExecutions"], "Effect": "Allow", "Resource": arn}
        ])}},
    )  # fmt: skip
    path = tmp_path / "template.json"
    path.write_text(json.dumps(template))
    lint = subprocess.run(
        [CFN_LINT, "--ignore-checks", *CFN_LINT_IGNORED, "--", str(path)], capture_output=True, text=True, check=False
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr  # E3004 among its rules: no circular dependency


def test_long_statements_run_on_codebuild_in_the_vpc_from_the_lambda_asset(synth):
    _, template = synth
    ((_, project),) = resources(template, "AWS::CodeBuild::Project").items()
    assert project["Source"]["Type"] == "S3"
    assert project["Environment"]["Image"] == "aws/codebuild/amazonlinux-aarch64-standard:3.0"
    assert project["TimeoutInMinutes"] == 36 * 60
    assert project["VpcConfig"]["Subnets"] == ["subnet-0a1b2c3d", "subnet-2c3d4e5f"]
    (group,) = project["VpcConfig"]["SecurityGroupIds"]
    egress = resources(template, "AWS::EC2::SecurityGroup")[group["Fn::GetAtt"][0]]["SecurityGroupEgress"]
    https = [(rule["CidrIp"], rule["FromPort"], rule["ToPort"]) for rule in egress if rule["IpProtocol"] == "tcp"]
    assert ("0.0.0.0/0", 443, 443) in https  # the S3 source and the logs
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert variables["MIGRATIONS_DIR"] == "/var/task/migrations" and "DB_SECRET_ARN" in variables
    assert LONG_STATEMENT_COMMAND in project["Source"]["BuildSpec"]


def test_alarms_watch_failed_and_stalled_background_work(synth):
    _, template = synth
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    stalled = [a for a in alarms if a.get("MetricName") == "BackgroundBatches"]
    assert stalled[0]["ComparisonOperator"] == "LessThanThreshold" and stalled[0]["EvaluationPeriods"] == 6
    failed = [a for a in alarms if "Metrics" in a]
    names = {m.get("MetricStat", {}).get("Metric", {}).get("MetricName") for m in failed[0]["Metrics"]}
    assert {"BackgroundFailed", "ExecutionsFailed"} <= names


class InProcessLambda:
    """Answers lambda.Invoke with the real handler's on_event, run here with a short remaining time."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.answers: list[dict[str, Any]] = []

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        if model.name != "Invoke":
            return None
        event = json.loads(params["body"])
        answer = handler.on_event(event, LambdaContext(self.seconds))
        self.answers.append(answer)
        data = json.dumps(answer).encode()
        parsed = {
            "StatusCode": 200,
            "Payload": StreamingBody(io.BytesIO(data), len(data)),
            "ExecutedVersion": "$LATEST",
        }
        return AWSResponse("https://lambda", 200, {}, None), parsed


def test_the_state_machine_runs_the_backfill_to_its_end_in_moto(
    synth, deployment: Deployment, migrations_dir, database_url, monkeypatch
):
    _, template = synth
    make_big(deployment.conn, 5_000, audit=True)
    with deployment.conn.cursor() as cursor:  # 0.6 ms a row: at least 3 s of work, more than one invocation's
        cursor.execute(
            "CREATE FUNCTION slow(x int) RETURNS int VOLATILE LANGUAGE sql AS 'SELECT x FROM pg_sleep(0.0006)'"
        )
    queue_backfill(migrations_dir, deployment.conn, arguments='set={"w2": "slow(v) * 2"}, batch_size=500')
    monkeypatch.setattr(lambda_event, "MARGIN_SECONDS", 0.0)
    invoke = InProcessLambda(seconds=2.5)  # a short "Lambda": several invocations finish the job
    monkeypatch.setattr(botocore.handlers, "BUILTIN_HANDLERS", [*botocore.handlers.BUILTIN_HANDLERS,
                        ("before-call.lambda.Invoke", invoke)])  # fmt: skip
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a new session, with the hook
    function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:migrations"
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        client = boto3.client("stepfunctions", region_name=REGION)
        role = f"arn:aws:iam::{ACCOUNT}:role/machine"
        document = definition(template, function_arn, wait_seconds=0)
        arn = client.create_state_machine(name="bg", definition=json.dumps(document), roleArn=role)["stateMachineArn"]
        execution = client.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        status = _finished(client, execution)
    assert status["status"] == "SUCCEEDED", status
    assert json.loads(status["output"])[KEY]["state"] == "finished"
    assert len(invoke.answers) >= 2 and all(a[KEY]["state"] == "running" for a in invoke.answers[:-1])
    assert len(json.dumps(invoke.answers[0])) < 2000
    assert scalar(deployment.conn, "SELECT count(*) FROM big_audit WHERE updates = 1") == 5_000
    assert jobs(database_url)[0].state == "finished"


def _finished(client: Any, execution: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (status := client.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution never ended"
        time.sleep(0.1)
    return status
