"""Starting the background state machine: after a deploy that queued work, or an operator's resume or retry.

At most one execution runs at a time: a running one is left alone (a second would only compete for the same
jobs, which their row locks already serialise).
"""

from __future__ import annotations

from typing import Any

from . import queue


def start_machine(cursor: Any, arn: str | None) -> tuple[str, bool] | None:
    """Start the state machine when there is active work and no execution is running.

    Returns the execution's ARN and whether this call started it; None when there is no machine or no work.
    """
    if not arn or not any(job.state in queue.ACTIVE for job in queue.read_jobs(cursor)):
        return None
    import boto3  # in the Lambda runtime; only needed when there is a state machine to start

    client = boto3.client("stepfunctions")
    running = client.list_executions(stateMachineArn=arn, statusFilter="RUNNING", maxResults=1)["executions"]
    if running:
        return running[0]["executionArn"], False
    return client.start_execution(stateMachineArn=arn, input="{}")["executionArn"], True
