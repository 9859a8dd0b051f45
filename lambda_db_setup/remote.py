"""``--lambda FUNCTION``: run an operator command in the deployed migration Lambda and print what it printed.

The database is reachable only from inside the VPC; the migration Lambda is. The command goes as an
operator event (`operator`) through ``lambda:Invoke`` (RequestResponse), so IAM decides who may run it.
Commands that change the database need ``--confirm``, refused here before anything is invoked.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from . import operator_protocol as protocol
from .errors import ConfigurationError, MigrationError
from .settings import Settings

READ_TIMEOUT_SECONDS = 905  # a Lambda runs 900 s at most: wait for its answer, never retry a command


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Invoke the function with the parsed command; print its stdout and stderr; return its exit code."""
    command = args.command
    if command not in protocol.COMMANDS:
        raise ConfigurationError(f"--lambda runs {', '.join(protocol.COMMANDS)}; not {command}")
    given = {name: getattr(args, name, None) for name, _ in protocol.COMMANDS[command]}
    arguments = {name: value for name, value in given.items() if value not in (None, False, [])}
    refusal = protocol.needs_confirmation(command, arguments)
    if refusal and (command == "up" or arguments.get("action") == "run" or not getattr(args, "confirm", False)):
        raise ConfigurationError(f"{refusal}: run it with --confirm (nothing was invoked)")
    if refusal:
        arguments[protocol.CONFIRM] = True
    event = {protocol.KEY: {"version": protocol.VERSION, "command": command, "args": arguments}}
    answer = _invoke(settings.lambda_function, event)
    sys.stdout.write(answer["stdout"])
    sys.stderr.write(answer["stderr"])
    return int(answer["exit_code"])


def _invoke(function: str, event: dict[str, Any]) -> dict[str, Any]:
    """The operator answer of one synchronous invocation; a failed invocation is an error naming the function."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    config = Config(read_timeout=READ_TIMEOUT_SECONDS, retries={"total_max_attempts": 1})
    client = boto3.client("lambda", config=config)
    try:
        response = client.invoke(FunctionName=function, InvocationType="RequestResponse", Payload=json.dumps(event))
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise MigrationError(f"cannot invoke {function} ({code}): {error}") from None
    except BotoCoreError as error:
        raise MigrationError(f"cannot invoke {function}: {error}") from None
    document = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        raise MigrationError(f"{function}: {document.get('errorMessage', 'the function failed')}")
    answer = document.get(protocol.KEY) if isinstance(document, dict) else None
    if not isinstance(answer, dict) or answer.get("version") != protocol.VERSION:
        raise MigrationError(f"{function} did not answer as the migration Lambda does: is it the right function?")
    return answer
