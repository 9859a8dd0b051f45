"""The migration Lambda's background event, and the start of the state machine after a deploy.

The state machine (``lambda_db_setup.cdk``) invokes the Lambda with ``{"lambda_db_setup_background":
{"version": 1}}``; the Lambda runs backfill batches until its own deadline and answers with where the queue
stands, small enough for any Step Functions payload (256 KB): ``state`` (running, paused, failed, finished),
``more`` (backfill work left), ``statements`` (long statements waiting for the long-statement runner), the
rows done and the rate. The machine waits and invokes again while ``more``; it never decides anything the
answer does not say. A deploy that leaves active work starts the machine (`start_after_deploy`).
"""

from __future__ import annotations

import time
from contextlib import closing
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from psycopg2.extensions import connection as Connection

from .. import credentials
from ..connect import connect
from ..errors import EventError
from ..settings import BY_NAME, Settings
from . import control, queue
from .machine import start_machine
from .queue import Job
from .runner import Runner, RunReport

KEY = "lambda_db_setup_background"
VERSION = 1
MARGIN_SECONDS = 10.0  # kept free at the end of an invocation: the batch in flight, the answer, the metrics
MAX_JOBS_SHOWN = 20  # jobs listed in the answer: the payload stays small whatever the queue holds
RUNNER_NAME = "lambda_db_setup (background)"


def is_background_event(event: object) -> bool:
    return isinstance(event, dict) and KEY in event


def handle(event: dict[str, Any], context: Any, logger: Any, metrics: Any) -> dict[str, Any]:
    """Run backfill batches until the invocation's deadline; answer with the queue's progress."""
    body = event.get(KEY)
    if set(event) != {KEY} or not isinstance(body, dict) or body.get("version") != VERSION:
        raise EventError(f"background event refused: expected {{{KEY!r}: {{'version': {VERSION}}}}} and nothing else")
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - MARGIN_SECONDS
    with closing(connect_admin(Settings.from_env(), deadline, RUNNER_NAME)) as conn:
        report = Runner(conn).run(deadline, kinds=("backfill",))
        with conn.cursor() as cursor:
            jobs = queue.read_jobs(cursor)
    answer = progress(jobs, report)
    _measure(metrics, answer, report)
    logger.info("background batches run", extra={KEY: answer})
    return {KEY: answer}


def connect_admin(settings: Settings, deadline: float, application_name: str) -> Connection:
    """The admin secret's connection, as the deploy-time run makes it (TLS, proxy, IAM auth alike)."""
    login = credentials.read_admin_login(
        credentials.secrets_client(), settings.admin_secret_arn, BY_NAME["admin_secret_arn"].env
    )
    return connect(login, settings, deadline=deadline, application_name=application_name)


def progress(jobs: list[Job], report: RunReport) -> dict[str, Any]:
    """Where the queue stands, for the state machine's Choice: compact, whatever the number of jobs."""
    states = {job.state for job in jobs}
    more = any(job.state in queue.ACTIVE and job.kind == "backfill" for job in jobs)
    if "failed" in states:
        state = "failed"
    elif more:
        state = "running"
    elif "paused" in states:
        state = "paused"
    else:
        state = "finished"
    backfills = [job for job in jobs if job.kind == "backfill"]
    return {
        "version": VERSION,
        "state": state,
        "more": more,
        "statements": any(job.state in queue.ACTIVE and job.kind == "statement" for job in jobs),
        "done": sum(job.rows_done for job in backfills),
        "total": sum(_total(job) for job in backfills),
        "batches": report.batches,
        "rows_per_second": round(report.rows / report.seconds, 1) if report.seconds > 0 else 0.0,
        "throttled": report.throttled,
        "jobs": [
            {key: value for key, value in control.document(job).items() if key in ("name", "state", "summary")}
            for job in jobs[-MAX_JOBS_SHOWN:]
        ],
    }


def _total(job: Job) -> int:
    """The rows a job will have done: its count over its progress, else the table's estimate."""
    if job.progress:
        return round(job.rows_done / job.progress)
    return int(job.total_estimate or job.rows_done)


def _measure(metrics: Any, answer: dict[str, Any], report: RunReport) -> None:
    """What the dashboard graphs and the alarms watch: a failed job, batches that stopped coming."""
    metrics.add_metric(name="BackgroundBatches", unit=MetricUnit.Count, value=report.batches)
    metrics.add_metric(name="BackgroundRowsPerSecond", unit=MetricUnit.CountPerSecond, value=answer["rows_per_second"])
    metrics.add_metric(name="BackgroundRowsRemaining", unit=MetricUnit.Count, value=answer["total"] - answer["done"])
    metrics.add_metric(name="BackgroundFailed", unit=MetricUnit.Count, value=int(answer["state"] == "failed"))
    metrics.flush_metrics()


def start_after_deploy(cursor: Any, settings: Settings, logger: Any) -> None:
    """After a deploy: start the state machine if the deploy left active work (see `start_machine`).

    A failure to start it is logged, not raised: the migrations are applied, and failing the deploy now would
    only roll the stack back around them; `background resume`/`retry` or the console start it later.
    """
    from botocore.exceptions import BotoCoreError, ClientError  # with boto3, in the Lambda runtime

    try:
        started = start_machine(cursor, settings.background_state_machine_arn)
    except (BotoCoreError, ClientError) as error:
        logger.warning(
            "background work queued, but the state machine could not be started", extra={"error": str(error)}
        )
        return
    if started is not None:
        execution, new = started
        message = "state machine started" if new else "the state machine is already running"
        logger.info(f"background work queued; {message}", extra={"execution": execution})
