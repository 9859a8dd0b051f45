"""The long-statement runner: ``python -m lambda_db_setup.background.long_statements``.

Started by the state machine as an AWS CodeBuild build (``startBuild.sync``) in the VPC, from the same asset
the Lambda runs and with the same environment, because a ``CREATE INDEX CONCURRENTLY`` on a big table can
outlast any Lambda. It runs every queued long statement, then exits: 0 when none failed, 1 otherwise (the
build, and so the state machine's step, fails with it). Its output is one JSON line per job.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import closing

from ..settings import Settings
from . import control, queue
from .lambda_event import connect_admin
from .runner import Runner

RUNNER_NAME = "lambda_db_setup (long statements)"
CONNECT_SECONDS = 120.0  # how long to keep trying to connect (the database may be starting)


def main() -> int:
    settings = Settings.from_env()
    with closing(connect_admin(settings, time.monotonic() + CONNECT_SECONDS, RUNNER_NAME)) as conn:
        Runner(conn).run(kinds=("statement",))
        with conn.cursor() as cursor:
            jobs = [job for job in queue.read_jobs(cursor) if job.kind == "statement"]
    for job in jobs:
        print(json.dumps(control.document(job)))
    return 1 if any(job.state == "failed" for job in jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
