"""The deploy-time runs in the migration functions' log lines: grouped by CloudFormation request, then summarized.

The handler logs one JSON object a line (powertools), each with ``correlation_id`` set from the request's
``RequestId``: the same for on_event and every is_complete poll of one deploy, so a run is the lines of one
correlation id. What a run did is read from the handler's own keys (``outcome``, ``migration``, ``duration_ms``,
...). Only those keys are ever shown: a line's other fields never reach the output.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

RUN_KEY = "correlation_id"  # powertools' key; the handler sets it from the CloudFormation RequestId
FINISHED = "migration run finished"  # the handler's message at the end of each invocation that did not fail
FAILURE_KEYS = ("stage", "migration", "sqlstate", "pg_message", "error_type", "reason")
SHOWN_LEVELS = ("WARNING", "ERROR", "CRITICAL")  # other lines' messages a run lists, beside what it applied
LINE_KEYS = (  # what ``logs --follow --json`` shows of a line: the handler's keys, never the rest
    "level", "message", "request_type", "stage", "migration", "duration_ms", "group_size", "outcome", "applied",
    "skipped", "pending", "ahead", "complete", "adopted", "changes", "not_granted", "sqlstate", "pg_message",
    "error_type", "reason",
)  # fmt: skip


@dataclass(frozen=True)
class LogLine:
    """One handler line as CloudWatch holds it."""

    timestamp_ms: int  # when the function wrote it
    group: str
    event_id: str
    record: dict[str, Any]  # the handler's JSON object

    @property
    def run_id(self) -> str:
        return self.record[RUN_KEY]


def parse_event(group: str, event: dict[str, Any]) -> LogLine | None:
    """A FilterLogEvents event as a handler line; None for Lambda's own lines (START, REPORT) and any other text."""
    try:
        record = json.loads(event["message"])
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get(RUN_KEY), str) or not record[RUN_KEY]:
        return None
    return LogLine(int(event["timestamp"]), group, str(event["eventId"]), record)


def group_runs(lines: list[LogLine]) -> list[list[LogLine]]:
    """The lines of each run, in time order; runs ordered by their first line."""
    runs: dict[str, list[LogLine]] = {}
    for line in sorted(lines, key=lambda line: line.timestamp_ms):
        runs.setdefault(line.run_id, []).append(line)
    return sorted(runs.values(), key=lambda run: run[0].timestamp_ms)


def run_document(run: list[LogLine]) -> dict[str, Any]:
    """What one run did, as ``logs --json`` prints it."""
    records = [line.record for line in run]
    finished = [record for record in records if record.get("message") == FINISHED]
    failures = _with_outcome(records, "failed")
    return {
        "run_id": run[0].run_id,
        "request_type": next((record["request_type"] for record in records if "request_type" in record), None),
        "started": iso_time(run[0].timestamp_ms),
        "ended": iso_time(run[-1].timestamp_ms),
        "duration_seconds": round((run[-1].timestamp_ms - run[0].timestamp_ms) / 1000, 3),
        "outcome": _outcome(records, finished),
        "applied": [
            {key: record.get(key) for key in ("migration", "duration_ms", "group_size")}
            for record in _with_outcome(records, "applied")
        ],
        "skipped": finished[0].get("skipped") if finished else None,  # already applied when the run began
        "adopted": [name for record in _with_outcome(records, "adopted") for name in _listed(record, "adopted")],
        "pending": finished[-1].get("pending") if finished else None,
        "roles_changes": [
            change for record in _with_outcome(records, "roles") for change in _listed(record, "changes")
        ],
        "failure": {key: failures[-1].get(key) for key in FAILURE_KEYS} if failures else None,
        "warnings": list(  # each once: on_event and is_complete may both say it
            dict.fromkeys(
                str(record.get("message"))
                for record in records
                if record.get("level") in SHOWN_LEVELS and record.get("outcome") != "failed"
            )
        ),
        "log_groups": sorted({line.group for line in run}),
    }


def _with_outcome(records: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    return [record for record in records if record.get("outcome") == outcome]


def _listed(record: dict[str, Any], key: str) -> list[str]:
    """A list the handler logs, as texts; anything else (a line from another program) as nothing."""
    value = record.get(key)
    return [str(item) for item in value] if isinstance(value, list) else []


def _outcome(records: list[dict[str, Any]], finished: list[dict[str, Any]]) -> str:
    """failed, rollback, delete (both change nothing), succeeded, or unfinished (still running, or cut off)."""
    if _with_outcome(records, "failed"):
        return "failed"
    if _with_outcome(records, "rollback"):
        return "rollback"
    if any(record.get("request_type") == "Delete" for record in records):
        return "delete"
    if any(record.get("stage") == "is_complete" and record.get("complete") for record in finished):
        return "succeeded"
    return "unfinished"


def format_run(document: dict[str, Any]) -> list[str]:
    """A run as lines of text: a heading, then what it did."""
    started = document["started"].replace("T", " ").replace("Z", " UTC")
    lines = [
        f"run {document['run_id']} ({document['request_type'] or 'unknown request'}): {started},"
        f" {document['duration_seconds']:g} s, {document['outcome']}"
    ]
    lines += [f"  applied {item['migration']} ({_milliseconds(item['duration_ms'])})" for item in document["applied"]]
    counts = f"  {len(document['applied'])} applied, {len(document['adopted'])} adopted"
    if document["skipped"] is None:  # the handler logs them at the end of an invocation
        lines.append(f"{counts} (already applied and pending not logged: the run stopped first)")
    else:
        lines.append(f"{counts}, {document['skipped']} already applied, {document['pending']} pending")
    lines += [f"  adopted {name}" for name in document["adopted"]]
    lines += [f"  roles: {change}" for change in document["roles_changes"]]
    lines += [f"  warning: {message}" for message in document["warnings"]]
    if document["failure"]:
        lines += _failure_lines(document["failure"])
    return [printable(line) for line in lines]


def _failure_lines(failure: dict[str, Any]) -> list[str]:
    """Which migration failed and PostgreSQL's SQLSTATE and message; the handler's whole reason after."""
    where = f" {failure['migration']}" if failure["migration"] else ""
    sqlstate = f" SQLSTATE {failure['sqlstate']}" if failure["sqlstate"] else ""
    what = f": {failure['pg_message']}" if failure["pg_message"] else f" ({failure['error_type']})"
    return [
        f"  failed in {failure['stage'] or 'the handler'}:{where}{sqlstate}{what}",
        f"  reason: {failure['reason']}",
    ]


def line_document(line: LogLine) -> dict[str, Any]:
    """One line as ``logs --follow --json`` prints it."""
    shown = {key: line.record[key] for key in LINE_KEYS if key in line.record}
    return {"time": iso_time(line.timestamp_ms), "log_group": line.group, "run_id": line.run_id, **shown}


def format_line(line: LogLine) -> str:
    """One line as ``logs --follow`` prints it: time, run, function, what happened."""
    record = line.record
    when = datetime.fromtimestamp(line.timestamp_ms / 1000, UTC).strftime("%H:%M:%S")
    head = f"{when} {line.run_id[:8]} {record.get('request_type', '')} {record.get('stage', '')}".rstrip()
    return printable(f"{head}: {_describe(record)}")


def _describe(record: dict[str, Any]) -> str:
    outcome = record.get("outcome")
    if outcome == "applied":
        return f"applied {record.get('migration')} ({_milliseconds(record.get('duration_ms'))})"
    if outcome == "failed":
        failure = {key: record.get(key) for key in FAILURE_KEYS}
        return _failure_lines(failure)[0].strip() + f" | {failure['reason']}"
    if outcome == "roles":
        return f"application roles ensured: {'; '.join(_listed(record, 'changes')) or 'no change'}"
    if record.get("message") == FINISHED:
        done = "complete" if record.get("complete") else "more to do"
        return (
            f"{record.get('applied')} applied, {record.get('skipped')} already applied, {record.get('pending')}"
            f" pending: {done} ({_milliseconds(record.get('duration_ms'))})"
        )
    level = record.get("level")
    return f"{level.lower()}: {record.get('message')}" if level in SHOWN_LEVELS else str(record.get("message"))


def _milliseconds(value: object) -> str:
    return f"{value:g} ms" if isinstance(value, int | float) else "duration not logged"


def iso_time(timestamp_ms: int) -> str:
    """A CloudWatch timestamp as ISO 8601, UTC, to the millisecond."""
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def printable(text: str) -> str:
    """``text`` without control characters: a log line must not move the cursor or recolour the terminal."""
    return "".join(" " if unicodedata.category(char)[0] == "C" else char for char in text)
