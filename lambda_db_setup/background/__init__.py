"""Background migrations: work a migration queues at deploy time and a runner finishes afterwards.

A migration calls ``pgm.backfill(...)`` or ``pgm.background_sql(...)``; its transaction inserts a row into the
queue table (`queue`) next to its own row in ``pgmigrations``, and the deploy goes on without waiting. The
`runner` works the queue a batch at a time, each batch its own transaction that also moves the job's cursor,
so a crash anywhere resumes where the last commit left it. Who calls the runner is the adapters' business:
the CLI (``background run``), the Lambda's background event driven by Step Functions, CodeBuild for long
statements. This package uses the engine's public pieces only; the engine knows nothing about it.
"""
