"""``lambda-db-setup logs``: what the deploy-time runs did, read from the migration functions' CloudWatch log groups.

It reads CloudWatch with the operator's own AWS credentials (no database, no ``--lambda``): the stack's
functions come from CloudFormation (ListStackResources), each function's group from its configuration
(GetFunctionConfiguration: its LoggingConfig, else ``/aws/lambda/<name>``), the lines from FilterLogEvents.
``--follow`` polls FilterLogEvents: unlike StartLiveTail it works on any group, for as long as wanted, and
sees the lines CloudWatch ingests late. boto3 is imported only by this command.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import ConfigurationError, MigrationError
from .runlog import (
    LogLine,
    format_line,
    format_run,
    group_runs,
    line_document,
    parse_event,
    printable,
    run_document,
)

HANDLER_MODULE = "lambda_db_setup.handler"  # the construct's functions: <module>.on_event and <module>.is_complete
ENTRY_POINTS = ("on_event", "is_complete")
RUN_MAX = timedelta(hours=1)  # CloudFormation waits at most an hour for a custom resource: a run's lines span less
LAST_RUN_WINDOWS = tuple(timedelta(days=days) for days in (1 / 24, 1, 7, 31, 3653))  # searched for the last run
FOLLOW_BACK = timedelta(minutes=10)  # --follow without --since starts this far back, as `aws logs tail` does
POLL_SECONDS = 2.0
LATE = timedelta(minutes=1)  # each poll reads this far back again: CloudWatch may ingest a line after later ones
SINCE = re.compile(r"(\d+)\s*([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command's flags."""
    parser.add_argument("--stack", metavar="NAME", help="read the migration functions of this CloudFormation stack")
    parser.add_argument(
        "--function", metavar="NAME", action="append", default=[], help="read this function's log group (repeatable)"
    )
    parser.add_argument(
        "--since",
        metavar="WHEN",
        type=_since_argument,
        help="30m, 2h, 3d, 1w or an ISO 8601 time (default: the last run; with --follow: 10m)",
    )
    parser.add_argument("--follow", action="store_true", help="keep reading new lines until Ctrl-C")
    parser.add_argument("--json", action="store_true", help="one JSON document (with --follow: a JSON object a line)")


def run(args: argparse.Namespace) -> int:
    """Find the groups, then print the runs (or follow the lines); 0 also when no run is logged."""
    if not args.stack and not args.function:
        raise ConfigurationError("logs needs --stack NAME or --function NAME (the migration stack or function)")
    clients = _clients()
    groups = find_groups(clients, args.stack, args.function)
    print(f"reading {', '.join(groups)}", file=sys.stderr)
    now = datetime.now(UTC)
    if args.follow:
        try:
            follow(clients["logs"], groups, args.since or now - FOLLOW_BACK, _show_line(args.json))
        except KeyboardInterrupt:
            print("stopped following", file=sys.stderr)
        return 0
    runs = (
        group_runs(read_lines(clients["logs"], groups, args.since))
        if args.since
        else last_run(clients["logs"], groups, now)
    )
    documents = [run_document(run) for run in runs]
    if args.json:
        print(json.dumps({"command": "logs", "ok": True, "log_groups": groups, "runs": documents}, indent=2))
        return 0
    if not documents:
        print("no migration run logged" + (f" since {args.since:%Y-%m-%d %H:%M:%S} UTC" if args.since else ""))
    for document in documents:
        print("\n".join(format_run(document)))
    return 0


def parse_since(text: str, now: datetime) -> datetime:
    """``2h`` back from ``now``, or an ISO 8601 time (UTC unless it says otherwise)."""
    duration = SINCE.fullmatch(text.strip().lower())
    if duration:
        return now - timedelta(**{UNITS[duration[2]]: int(duration[1])})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"--since: {printable(text)!r} is neither a duration (30m, 2h, 3d, 1w) nor an ISO 8601 time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _since_argument(text: str) -> datetime:
    try:
        return parse_since(text, datetime.now(UTC))
    except ConfigurationError as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--since: ")) from None


def find_groups(clients: dict[str, Any], stack: str | None, functions: Sequence[str]) -> list[str]:
    """The log groups of the stack's migration functions and of each function named, each once."""
    groups = stack_groups(clients, stack) if stack else []
    groups += [_group_of(_configuration(clients["lambda"], function)) for function in functions]
    return list(dict.fromkeys(groups))


def stack_groups(clients: dict[str, Any], stack: str) -> list[str]:
    """The groups of the stack's functions whose handler is the migration handler's (any number of constructs)."""
    with _aws(f"stack {stack!r}"):
        pages = clients["cloudformation"].get_paginator("list_stack_resources").paginate(StackName=stack)
        functions = [
            summary["PhysicalResourceId"]
            for page in pages
            for summary in page["StackResourceSummaries"]
            if summary["ResourceType"] == "AWS::Lambda::Function" and summary.get("PhysicalResourceId")
        ]
    handlers = {f"{HANDLER_MODULE}.{entry_point}" for entry_point in ENTRY_POINTS}
    configurations = [_configuration(clients["lambda"], function) for function in functions]
    groups = [_group_of(configuration) for configuration in configurations if configuration.get("Handler") in handlers]
    if not groups:
        raise ConfigurationError(
            f"stack {stack!r} has no migration function (a Lambda function whose handler is {HANDLER_MODULE}.on_event"
            " or .is_complete): is it the stack with the DatabaseMigrations construct?"
        )
    return groups


def _configuration(client: Any, function: str) -> dict[str, Any]:
    with _aws(f"function {function!r}"):
        return client.get_function_configuration(FunctionName=function)


def _group_of(configuration: dict[str, Any]) -> str:
    """The group a function logs to: its LoggingConfig's, else Lambda's default ``/aws/lambda/<name>``."""
    return configuration.get("LoggingConfig", {}).get("LogGroup") or f"/aws/lambda/{configuration['FunctionName']}"


def read_lines(client: Any, groups: Sequence[str], since: datetime) -> list[LogLine]:
    """Every handler line of the groups from ``since`` on, in time order."""
    lines = []
    for group in groups:
        with _aws(f"log group {group!r}", hint=": a function's group appears with its first line; has it run?"):
            pages = client.get_paginator("filter_log_events").paginate(logGroupName=group, startTime=_ms(since))
            lines += [line for page in pages for event in page["events"] if (line := parse_event(group, event))]
    return sorted(lines, key=lambda line: line.timestamp_ms)


def last_run(client: Any, groups: Sequence[str], now: datetime) -> list[list[LogLine]]:
    """The newest run, looked for an hour back, then further; [] when none is logged at all.

    Each window is read from a run's length earlier, so a run that began in the window is read whole.
    """
    for window in LAST_RUN_WINDOWS:
        begun = [
            run
            for run in group_runs(read_lines(client, groups, now - window - RUN_MAX))
            if run[0].timestamp_ms >= _ms(now - window)
        ]
        if begun:
            return begun[-1:]
    return []


def follow(
    client: Any,
    groups: Sequence[str],
    since: datetime,
    show: Callable[[LogLine], None],
    *,
    polls: int | None = None,
    wait: Callable[[float], None] = time.sleep,
) -> None:
    """Show each new line as it arrives, every ``POLL_SECONDS``; ``polls`` bounds the loop (None: until Ctrl-C)."""
    shown: dict[tuple[str, str], int] = {}  # (group, event id) -> timestamp, for the lines read again
    newest = _ms(since)
    done = 0
    while polls is None or done < polls:
        if done:
            wait(POLL_SECONDS)
        start = max(_ms(since), newest - _ms_of(LATE))
        for line in read_lines(client, groups, datetime.fromtimestamp(start / 1000, UTC)):
            if (line.group, line.event_id) not in shown:
                shown[line.group, line.event_id] = line.timestamp_ms
                show(line)
            newest = max(newest, line.timestamp_ms)
        shown = {key: stamp for key, stamp in shown.items() if stamp >= newest - _ms_of(LATE)}
        done += 1


def _show_line(as_json: bool) -> Callable[[LogLine], None]:
    def show(line: LogLine) -> None:
        if as_json:
            print(json.dumps(line_document(line)), flush=True)
        else:
            print(format_line(line), flush=True)

    return show


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _ms_of(duration: timedelta) -> int:
    return int(duration.total_seconds() * 1000)


def _clients() -> dict[str, Any]:
    """The three clients, from the operator's own configuration (profile, environment, SSO)."""
    import boto3  # 200 ms to import: only this command and --lambda need it

    with _aws("the migration logs"):
        return {service: boto3.client(service) for service in ("cloudformation", "lambda", "logs")}


@contextmanager
def _aws(what: str, hint: str = "") -> Iterator[None]:
    """AWS's errors as one line naming ``what``: missing credentials or region, a bad name, not found, denied."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, ParamValidationError

    try:
        yield
    except NoCredentialsError:
        raise ConfigurationError(
            f"no AWS credentials to read {what}: configure a profile (AWS_PROFILE, aws configure or aws sso login)"
            " or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except NoRegionError:
        raise ConfigurationError(f"no AWS region to read {what}: set AWS_REGION or the profile's region") from None
    except ParamValidationError as error:  # a name AWS would refuse (empty, too long): checked before sending
        raise ConfigurationError(f"{what}: {error}") from None
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        if code == "ResourceNotFoundException" or "does not exist" in message:
            raise ConfigurationError(f"{what} does not exist{hint}") from None
        raise MigrationError(f"cannot read {what}: {code}: {message}") from None
    except BotoCoreError as error:
        raise MigrationError(f"cannot read {what}: {error}") from None
