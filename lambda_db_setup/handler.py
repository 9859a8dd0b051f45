"""Lambda entry points for CDK's ``custom_resources.Provider``: a CloudFormation event in, engine runs out.

``on_event`` starts a Create or Update: it applies the pending migrations that fit in its time and passes
on how many were applied before it (the framework merges on_event's result into the event it polls
``is_complete`` with). ``is_complete`` applies whatever is left, within its own time, then ensures the
application roles and users the resource declares (`rolespec`; none: roles are left alone) and returns
``Data``. Until then it answers ``IsComplete: false`` and the framework polls again, so a long series
of migrations spans several invocations up to the Provider's total timeout. The framework ignores
``IsComplete`` from on_event and rejects ``Data`` with ``IsComplete: false``, so on_event returns
neither, and Data comes only with completion.

Delete does nothing: the schema is not this resource's to remove, and a stack delete must never wait
on, or fail because of, the database. Nor does a rollback Update (see `is_rollback`): the schema is never
undone, and a rollback that waited for the lock still held by the failed run, or for a database that
is down, would fail and leave the stack in UPDATE_ROLLBACK_FAILED. An Update the rule cannot tell from a
deploy (``migrationTrigger=content-hash``) runs the previous asset, whose ``migrations/`` lacks what this
deploy applied: the database being ahead is logged as a warning, never undone.
Failures raise; the framework turns the message into the CloudFormation Reason.

With ``LINT_BEFORE_APPLY=true``, on_event first lints all pending migrations together with squawk, as
``python -m lambda_db_setup check`` does, and refuses the run, applying nothing, if any is flagged.
is_complete applies the rest of what on_event vetted without linting again: linted alone, the rest would
count the tables this deploy created as existing ones.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from . import credentials, operator, operator_protocol, reason, roles, rolespec
from .background import lambda_event as background_event
from .connect import connect
from .engine import Engine
from .errors import ConfigurationError, EventError, LintRefusedError, MigrationError, RunBudgetError
from .lint import LintReport, format_report, lint
from .options import EngineOptions
from .results import MigrationOutcome, RunResult
from .settings import APPLICATION_NAME, BY_NAME, Settings
from .tracking import TrackingTable

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

PHYSICAL_RESOURCE_ID = "db-migrations"  # one resource per stack; Update keeps whatever id the resource has
APPLIED_BEFORE = "MigrationsAppliedBefore"  # on_event -> is_complete: to count what this deploy applied
RUN_STARTED = "MigrationsRunStartedAt"  # on_event -> is_complete: epoch seconds, where RUN_BUDGET_SECONDS counts from
RUNNER_NAME = f"{APPLICATION_NAME} (CloudFormation)"  # how pg_stat_activity and the lock holder show us
REQUEST_TYPES = ("Create", "Update", "Delete")
TRIGGER = "Trigger"  # resource property: the synth time (ISO 8601, UTC) with migrationTrigger=always
RESPONSE_MARGIN_SECONDS = 5.0  # kept free at the end of an invocation to log, flush metrics and return
ROLES_MIN_SECONDS = 5.0  # less time than this left after migrating: the roles wait for the next poll
LINT_SHOWN = 3  # flagged items a refusal names; the CloudFormation Reason stays short, the log has them all

logger = Logger()
metrics = Metrics(namespace=os.environ.get(BY_NAME["metrics_namespace"].env) or BY_NAME["metrics_namespace"].default)


@dataclass(frozen=True)
class Request:
    """The fields of a Provider framework event the handler acts on."""

    request_type: str
    request_id: str
    physical_resource_id: str | None


@dataclass(frozen=True)
class Invocation:
    """What one invocation does, and where the whole run stands."""

    stage: str  # on_event or is_complete
    started: float  # time.time() at on_event's start: the run's budget counts from it
    applied_before: int | None  # is_complete: what the database had when on_event began
    ensure_roles: bool
    lint_first: bool
    declared: rolespec.Declaration  # the application roles in the resource's properties


@dataclass(frozen=True)
class Standing:
    """Where the database stands after one invocation (not `progress.Progress`, which reports a run as it goes)."""

    applied_before: int  # migrations the database had when this invocation began
    applied: list[str]  # every applied migration now, oldest first
    complete: bool  # nothing pending (and, when asked for, roles ensured)


@logger.inject_lambda_context(correlation_id_path="RequestId", clear_state=True)
def on_event(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Create/Update: apply what fits in this invocation. Delete: succeed at once, touching nothing.

    An operator event (`operator`, never a CloudFormation one) runs an operator command instead.
    """
    if operator_protocol.is_operator_event(event):
        return operator.handle(event, logger)
    if background_event.is_background_event(event):
        return background_event.handle(event, context, logger, metrics)
    request = parse_request(event)
    if request.request_type == "Delete":
        logger.info("delete: nothing to do, the schema stays", extra={"request_type": request.request_type})
        return {"PhysicalResourceId": request.physical_resource_id}
    if is_rollback(event):
        logger.warning(  # the schema stays ahead of the code being restored: alarms and filters must see it
            "rollback update: the schema stays ahead of the code being restored (migrations are never undone"
            " automatically); the database is not contacted, so a held lock or a database that is down cannot"
            " fail the rollback",
            extra={
                "request_type": request.request_type,
                "trigger": event["ResourceProperties"][TRIGGER],
                "rolled_back_trigger": event["OldResourceProperties"][TRIGGER],
                "outcome": "rollback",
            },
        )
        return {"PhysicalResourceId": request.physical_resource_id, APPLIED_BEFORE: 0}
    started = time.time()
    declared = rolespec.from_properties(event.get("ResourceProperties") or {})
    invocation = Invocation("on_event", started, None, ensure_roles=False, lint_first=True, declared=declared)
    progress = _migrate(request, context, invocation)
    return {
        "PhysicalResourceId": request.physical_resource_id or PHYSICAL_RESOURCE_ID,
        APPLIED_BEFORE: progress.applied_before,
        RUN_STARTED: started,
    }


@logger.inject_lambda_context(correlation_id_path="RequestId", clear_state=True)
def is_complete(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Apply what is left, then the roles; complete with ``Data`` once nothing is pending."""
    request = parse_request(event)
    if request.request_type == "Delete":
        return {"IsComplete": True}
    if is_rollback(event):
        return {"IsComplete": True, "Data": {"AppliedCount": "0", "LastMigration": ""}}
    applied_before, started = (
        _handed_on(event, key, kind) for key, kind in ((APPLIED_BEFORE, int), (RUN_STARTED, float))
    )
    declared = rolespec.from_properties(event.get("ResourceProperties") or {})
    invocation = Invocation(
        "is_complete", started, int(applied_before), ensure_roles=True, lint_first=False, declared=declared
    )
    progress = _migrate(request, context, invocation)
    if not progress.complete:
        return {"IsComplete": False}
    applied_count = max(len(progress.applied) - applied_before, 0)
    return {
        "IsComplete": True,
        "Data": {
            "AppliedCount": str(applied_count),
            "LastMigration": progress.applied[-1] if applied_count else "",
        },
    }


def parse_request(event: object) -> Request:
    """Validate what the handler relies on; the message becomes the CloudFormation Reason."""
    if not isinstance(event, dict):
        raise EventError(f"event must be a JSON object, not {type(event).__name__}")
    if operator_protocol.KEY in event:
        raise EventError(f"event has {operator_protocol.KEY}: an operator command, not a CloudFormation request")
    request_type = event.get("RequestType")
    if request_type is None:
        raise EventError("event has no RequestType")
    if request_type not in REQUEST_TYPES:
        raise EventError(f"unknown RequestType {request_type!r}; expected one of {', '.join(REQUEST_TYPES)}")
    request_id = event.get("RequestId")
    if not isinstance(request_id, str) or not request_id:
        raise EventError(f"{request_type} event has no RequestId")
    physical_resource_id = event.get("PhysicalResourceId")
    if request_type != "Create" and (not isinstance(physical_resource_id, str) or not physical_resource_id):
        raise EventError(f"{request_type} event has no PhysicalResourceId")
    return Request(request_type, request_id, physical_resource_id)


def _handed_on(event: dict[str, Any], key: str, kind: type) -> float:
    """A number on_event returned, which the framework merges into every is_complete event."""
    value = event.get(key)
    if isinstance(value, bool) or not isinstance(value, int | kind) or value < 0:
        raise EventError(
            f"is_complete event has no {key} {'count' if kind is int else 'time'}; the Provider framework merges"
            " on_event's result into it: was is_complete invoked without on_event?"
        )
    return value


def is_rollback(event: dict[str, Any]) -> bool:
    """An Update whose ``Trigger`` synth time went back: CloudFormation rolling back to the previous template.

    The event has no rollback flag: during UPDATE_ROLLBACK_IN_PROGRESS CloudFormation sends an ordinary
    Update whose ResourceProperties are the previous template's and whose OldResourceProperties are the
    failed update's. With ``migrationTrigger=always`` every synth stamps its time into ``Trigger``, so
    the properties going back in time is a rollback. An asset hash (``content-hash``) has no order: such
    an Update is treated as a deploy.
    """
    if event.get("RequestType") != "Update":
        return False
    new, old = (_synth_time(event.get(key)) for key in ("ResourceProperties", "OldResourceProperties"))
    return new is not None and old is not None and new < old


def _synth_time(properties: object) -> datetime | None:
    """The ``Trigger`` property as a timezone-aware time; None when it is not one (an asset hash, missing)."""
    value = properties.get(TRIGGER) if isinstance(properties, dict) else None
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _migrate(request: Request, context: LambdaContext, invocation: Invocation) -> Standing:
    """One run, measured: every failure is logged and counted, so one alarm covers every failed deploy."""
    deadline = time.monotonic() + context.get_remaining_time_in_millis() / 1000 - RESPONSE_MARGIN_SECONDS
    started = time.perf_counter()
    logger.append_keys(request_type=request.request_type, stage=invocation.stage)
    ran: list[MigrationOutcome] = []
    try:
        result, complete = _run(deadline, ran.append, invocation)
    except Exception as error:
        _log_failure(error)
        metrics.add_metric(name="MigrationsFailed", unit=MetricUnit.Count, value=1)
        _cap_reason(error)
        raise
    else:
        metrics.add_metric(name="MigrationsFailed", unit=MetricUnit.Count, value=0)
    finally:
        duration_ms = (time.perf_counter() - started) * 1000
        metrics.add_metric(name="MigrationsApplied", unit=MetricUnit.Count, value=len(ran))
        metrics.add_metric(name="RunDuration", unit=MetricUnit.Milliseconds, value=duration_ms)
        metrics.flush_metrics()
    logger.info(
        "migration run finished",
        extra={
            "applied": len(result.ran),
            "skipped": len(result.already_applied),
            "pending": len(result.pending),
            "ahead": len(result.ahead),
            "complete": complete,
            "duration_ms": round(duration_ms, 1),
        },
    )
    return Standing(
        applied_before=len(result.already_applied),
        applied=result.already_applied + [outcome.name for outcome in result.adopted + result.ran],
        complete=complete,
    )


def _run(deadline: float, on_ran: Callable[[MigrationOutcome], None], invocation: Invocation) -> tuple[RunResult, bool]:
    """Secrets, connection, lint (if asked and on), migrations up to the deadline, then (if asked) roles.

    ``deadline`` is this invocation's; migrations and roles also stop at the run budget's (`_budget_deadline`).
    """
    settings = Settings.from_env()
    budget = _budget_deadline(settings, invocation.started)
    work_deadline = min(deadline, budget)
    admin, users = _read_logins(settings, invocation.declared)

    def on_migration(outcome: MigrationOutcome) -> None:
        on_ran(outcome)
        logger.info(
            "migration applied",
            extra={
                "migration": outcome.name,
                "duration_ms": round(outcome.duration_ms, 1),  # of its whole transaction when group_size > 1
                "group_size": outcome.group_size,
                "outcome": "applied",
            },
        )

    with closing(connect(admin, settings, deadline=deadline, application_name=RUNNER_NAME)) as conn:
        engine = Engine(conn, settings.migrations_dir, _engine_options(settings, work_deadline), on_migration)
        lint_first = invocation.lint_first and settings.lint_before_apply
        vet = _lint_vet(conn.server_version, settings) if lint_first else None
        result = engine.up(vet=vet)
        if result.adopted:
            logger.info(
                "adopted a schema built before migration tracking: it matched what the migrations build, so"
                " they were recorded as applied without running",
                extra={"adopted": [outcome.name for outcome in result.adopted], "outcome": "adopted"},
            )
        if result.ahead:
            logger.warning(
                "the database is ahead of this code: migrations applied that have no file here (a rollback"
                " deploys the previous code); the schema is left as it is",
                extra={"ahead": result.ahead},
            )
        complete = not result.pending
        if complete and invocation.ensure_roles:
            complete = _ensure_roles(conn, invocation.declared, users, work_deadline, engine.options.tracking)
        if complete and invocation.ensure_roles:
            with conn.cursor() as cursor:
                background_event.start_after_deploy(cursor, settings, logger)
    if not complete and budget - time.monotonic() < EngineOptions.start_margin_seconds:
        raise _budget_spent(settings, result, invocation)
    return result, complete


def _budget_deadline(settings: Settings, run_started: float) -> float:
    """The run budget's end as a ``time.monotonic()`` value, less the response margin (no budget: never)."""
    if settings.run_budget_seconds is None:
        return math.inf
    left = run_started + settings.run_budget_seconds - time.time()
    return time.monotonic() + left - RESPONSE_MARGIN_SECONDS


def _budget_spent(settings: Settings, result: RunResult, invocation: Invocation) -> RunBudgetError:
    """Fail now rather than poll on: CloudFormation gives up at one hour and would report only a timeout."""
    before = len(result.already_applied) if invocation.applied_before is None else invocation.applied_before
    applied = len(result.already_applied) + len(result.adopted) + len(result.ran) - before
    left = (
        f"{len(result.pending)} left (next: {result.pending[0].name})"
        if result.pending
        else "none left, but the application roles were not ensured"
    )
    return RunBudgetError(
        f"the run's time budget is spent (RUN_BUDGET_SECONDS={settings.run_budget_seconds} s from on_event's"
        f" start; CloudFormation waits one hour): {applied} migration(s) applied by this deploy, {left}. What was"
        " applied stays applied; the next deploy continues with the rest",
        migration=result.pending[0].name if result.pending else None,
    )


def _read_logins(
    settings: Settings, declared: rolespec.Declaration
) -> tuple[credentials.AdminLogin, list[roles.AppUser]]:
    """The admin's and the declared users' logins, in one Secrets Manager call (no user secret if none declared).

    Read at the start of every run, the users' too: a broken one fails the deploy before the schema changes.
    """
    admin_variable = BY_NAME["admin_secret_arn"].env
    arns = {admin_variable: settings.admin_secret_arn} | {_user_label(u.name): u.secret_arn for u in declared.users}
    secrets = credentials.read_secrets(credentials.secrets_client(), arns)
    admin = credentials.admin_login(secrets[admin_variable])
    for name in [group.name for group in declared.groups] + [user.name for user in declared.users]:
        if name == admin.username:
            raise ConfigurationError(
                f"application role {name!r} is the admin ({admin_variable}'s username); the run would change the"
                " admin's login or password: declare another name"
            )
    users = [
        roles.AppUser(credentials.user_login(secrets[_user_label(user.name)], user.name), user.group)
        for user in declared.users
    ]
    return admin, users


def _user_label(name: str) -> str:
    """How errors about a user's secret start: ``app user NAME: secret ARN ...``."""
    return f"app user {name}"


def _engine_options(settings: Settings, deadline: float) -> EngineOptions:
    """Timeouts from the settings; the lock wait shortened so that a migration can still start after it."""
    time_left = deadline - time.monotonic() - EngineOptions.start_margin_seconds
    return EngineOptions.from_settings(
        replace(settings, lock_wait_seconds=max(0.0, min(settings.lock_wait_seconds, time_left))),
        deadline=deadline,
        allow_ahead=True,
        application_name=RUNNER_NAME,
    )


def _lint_vet(server_version: int, settings: Settings) -> Callable[[list[MigrationOutcome]], None]:
    """Lint the rendered pending migrations; if squawk flags any, log the whole report and refuse the run."""

    def vet(rendered: list[MigrationOutcome]) -> None:
        report = lint(rendered, server_version, settings.squawk_binary)
        extra = {"lint_report": format_report(report)}
        if report.ok:
            logger.info("pending migrations pass squawk", extra=extra)
            return
        logger.error("squawk flags pending migrations: refused", extra=extra)
        raise _refusal(report)

    return vet


def _refusal(report: LintReport) -> LintRefusedError:
    """One line for the CloudFormation Reason: the first few findings, and how to get past them."""
    failing = [migration for migration in report.migrations if not migration.ok]
    flagged = [f"{finding.where} ({finding.rule})" for finding in report.findings]
    flagged += [f"{migration.file} (squawk-ignore not accepted)" for migration in failing if migration.problems]
    more = f" and {len(flagged) - LINT_SHOWN} more" if len(flagged) > LINT_SHOWN else ""
    return LintRefusedError(
        f"deploy refused (LINT_BEFORE_APPLY): squawk flags {len(failing)} of {len(report.migrations)} pending"
        f" migration(s), none applied: {', '.join(flagged[:LINT_SHOWN])}{more}. Fix them, or declare in the migration"
        " the rule it knowingly ignores and why (.sql: a line -- squawk-ignore rule: reason; .py: SQUAWK_IGNORE ="
        ' {"rule": "reason"}). Details: the lint_report log line, or python -m lambda_db_setup check',
        migration=Path(failing[0].file).stem,
    )


def _ensure_roles(
    conn: Any, declared: rolespec.Declaration, users: list[roles.AppUser], deadline: float, tracking: TrackingTable
) -> bool:
    """Ensure the declared roles if there is time for it; False leaves them to the next poll.

    Nothing declared: no role is touched; roles this tool still marks as managed here are only reported.
    """
    if not declared:
        leftover = roles.undeclared_roles(conn)
        if leftover:
            logger.warning(
                "no application roles are declared, but roles marked as managed for this database remain; left as"
                " they are (LOGIN and grants included): declare them again to manage them, or drop them",
                extra={"undeclared_roles": leftover, "outcome": "roles"},
            )
        return True
    if deadline - time.monotonic() < ROLES_MIN_SECONDS:
        logger.info("migrations done; application roles left for the next poll (not enough time left)")
        return False
    report = roles.ensure_roles(conn, declared.groups, users, tracking)
    logger.info("application roles ensured", extra={"changes": report.changes, "outcome": "roles"})
    if report.not_granted:
        logger.warning(
            "objects owned by another role were not granted to the application roles",
            extra={"not_granted": report.not_granted},
        )
    if report.unmanaged:
        logger.warning(
            "roles not declared (made by hand, or before roles were marked) are members of declared groups; left as"
            " they are: declare them to manage them, or revoke their membership",
            extra={"unmanaged": report.unmanaged},
        )
    return True


def _log_failure(error: Exception) -> None:
    """One line saying what failed; for a migration, which one, with what SQLSTATE and PostgreSQL's message."""
    logger.error(
        "migration run failed",
        extra={
            "outcome": "failed",
            "migration": error.migration if isinstance(error, MigrationError) else None,
            "sqlstate": getattr(error, "sqlstate", None),
            "pg_message": getattr(error, "pg_message", None),  # PostgreSQL's own words, for `logs` and the queries
            "error_type": type(error).__name__,
            "reason": str(error),
        },
    )


def _cap_reason(error: Exception) -> None:
    """Cut the message the runtime hands the framework (``str(error)``) so the response fits CloudFormation's 4 KB.

    The exception itself is kept, its type and fields too; only its text is shortened (the log line has it whole).
    """
    sqlstate = getattr(error, "sqlstate", None)
    message = str(error)
    capped = reason.cap(message, keep=f"(SQLSTATE {sqlstate})" if sqlstate else "")
    if capped != message:
        error.args = (capped,)
