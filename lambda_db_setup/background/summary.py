"""A job's state in one phrase, for the gate's failure reason, ``background status`` and the logs.

Written into the queue row whenever the job changes, so the deploy-time gate quotes it as it is:
"73% done, about 12 minutes left".
"""

from __future__ import annotations

from .queue import Job

CLI = "lambda-db-setup background"


def describe(job: Job) -> str:
    """What the job is doing and, while it runs, how far it got and how long it still needs."""
    if job.state == "queued":
        return f"queued; waiting: {job.throttled}" if job.throttled else "queued, not started yet"
    if job.state == "finished":
        return f"finished: {job.rows_done:,} rows in {job.batches:,} batches" if job.kind == "backfill" else "finished"
    if job.state == "failed":
        return f"failed: {job.last_error}; fix the cause, then `{CLI} retry {job.name}`"
    where = done(job)
    if job.state == "paused":
        return f"paused at {where}; `{CLI} resume {job.name}` continues it"
    if job.throttled:
        return f"{where}; waiting: {job.throttled}"
    return where


def done(job: Job) -> str:
    """How far a started job got: '73% done, about 12 minutes left', or what is known of it."""
    if job.kind == "statement":
        return "running" if job.state == "running" else "not started"
    if job.progress is None:
        return f"{job.rows_done:,} rows done"
    text = f"{int(job.progress * 100)}% done"
    if job.seconds_left is not None:
        text += f", about {duration(job.seconds_left)} left"
    return text


def duration(seconds: float) -> str:
    """Seconds as a person would say them: '40 seconds', '12 minutes', '3 hours'."""
    if seconds < 90:
        return f"{max(1, round(seconds))} seconds"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} minutes"
    return f"{seconds / 3600:.1f} hours"
