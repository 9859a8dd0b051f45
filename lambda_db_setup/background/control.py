"""What an operator does to background work: pause, resume, retry; and how it is shown (text and JSON).

Each change is one UPDATE of the job rows, which a runner reads at the start of its next batch: a paused job
stops after the batch in flight, a resumed one goes on from its cursor, a retried one starts its failed batch
again with fresh attempts. Nothing else is undone or repeated.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from psycopg2.extensions import cursor as Cursor

from ..errors import MigrationError
from . import queue
from .queue import Job
from .summary import describe

# action -> (the states it applies to, what it says of the others)
ACTIONS = {
    "pause": (("queued", "running"), "only queued or running work can be paused"),
    "resume": (("paused",), "only paused work can be resumed"),
    "retry": (("failed",), "only failed work can be retried"),
}


def change(cursor: Cursor, action: str, name: str) -> list[Job]:
    """Apply ``action`` to the jobs ``name`` means; an error names any job it cannot apply to."""
    states, rule = ACTIONS[action]
    jobs = queue.jobs_named(cursor, name)
    refused = [job for job in jobs if job.state not in states]
    if refused:
        listed = ", ".join(f"{job.name} is {job.state}" for job in refused)
        raise MigrationError(f"background {action} {name}: {listed}; {rule}", migration=jobs[0].migration)
    changed = []
    for job in jobs:
        state = "paused" if action == "pause" else "running" if job.started_at else "queued"
        new = replace(job, state=state)
        values: dict[str, object] = {"state": state}
        if action == "retry":
            new = replace(new, attempts=0, failed_batches=0, last_error=None)
            values.update(attempts=0, failed_batches=0, last_error=None)
        new = replace(new, summary=describe(new))
        queue.update(cursor, job.id, summary=new.summary, **values)
        changed.append(new)
    return changed


def document(job: Job) -> dict[str, Any]:
    """One job as JSON: what status --json, the handler and the metrics report."""
    return {
        "name": job.name,
        "migration": job.migration,
        "kind": job.kind,
        "description": job.description,
        "state": job.state,
        "summary": job.summary,
        "rows_done": job.rows_done,
        "batches": job.batches,
        "failed_batches": job.failed_batches,
        "batch_size": job.batch_size,
        "progress": None if job.progress is None else round(job.progress, 4),
        "seconds_left": None if job.seconds_left is None else round(job.seconds_left, 1),
        "rows_per_second": None if job.rows_per_second is None else round(job.rows_per_second, 1),
        "throttled": job.throttled,
        "last_error": job.last_error,
    }


def lines(jobs: list[Job]) -> list[str]:
    """The jobs as aligned text lines, oldest first."""
    if not jobs:
        return ["no background work queued"]
    width = max(len(job.name) for job in jobs)
    return [f"{job.name:<{width}}  {job.state:<8}  {job.description}: {job.summary}" for job in jobs]
