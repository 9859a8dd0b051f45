"""What the CLI prints: progress while a run works, each result as lines or as one JSON document for CI.

With ``--json`` stdout holds exactly one document and every other line goes to stderr. Nothing printed
holds a secret: `Output.scrub` removes every piece of the database URL that may be a password.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from .discovery import Migration
from .lock import LockHolder
from .plan import Plan
from .progress import Progress
from .results import MigrationOutcome, RunResult
from .tracking import AppliedRow


@dataclass
class Output(Progress):
    """Where a command's lines go; also the engine's `Progress` (lock waits, retries, skipped files)."""

    json: bool = False
    secrets: tuple[str, ...] = ()  # texts of the database URL that may be a password: never printed
    finished: list[MigrationOutcome] = field(default_factory=list)  # for the JSON document of a failed run
    warnings: list[str] = field(default_factory=list)  # skipped look-alike files, for the JSON document too
    show_starts: bool = field(default_factory=sys.stderr.isatty)  # "applying …" lines: on a terminal only

    def line(self, text: str = "") -> None:
        print(text, file=sys.stderr if self.json else sys.stdout, flush=True)

    def note(self, text: str) -> None:
        """A progress or warning line: always stderr, so stdout stays the result."""
        print(self.scrub(text), file=sys.stderr, flush=True)

    def document(self, document: dict[str, Any]) -> None:
        print(json.dumps(document, indent=2))

    def on_migration(self, outcome: MigrationOutcome) -> None:
        self.finished.append(outcome)
        self.line(outcome_line(outcome))

    def skipped(self, text: str) -> None:
        self.warnings.append(text)
        self.note(f"warning: {text}")

    def waiting_for_lock(self, holder: LockHolder | None, waited_seconds: float, wait_seconds: float) -> None:
        who = holder.describe() if holder else "a session that is letting go"
        self.note(f"waiting for the migration lock, held by {who} ({waited_seconds:.0f}s of {wait_seconds:g}s)")

    def starting(self, migration: Migration, direction: str, attempt: int) -> None:
        if self.show_starts and attempt == 1:
            self.note(f"{'applying' if direction == 'up' else 'reverting'} {migration.name} ...")

    def retrying(self, migration: Migration, attempt: int, backoff_seconds: float) -> None:
        self.note(
            f"lock contention on {migration.name}: attempt {attempt} gave up after lock_timeout;"
            f" retrying in {backoff_seconds:.1f}s"
        )

    def scrub(self, text: str) -> str:
        """``text`` without any secret; shorter than 4 characters they would blank out ordinary words."""
        for secret in self.secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        return text


def outcome_line(outcome: MigrationOutcome) -> str:
    """One finished migration; retries show, since lock contention is what makes a run slow."""
    verb = "applied" if outcome.direction == "up" else "reverted"
    retried = f", {outcome.attempts} attempts: lock contention" if outcome.attempts > 1 else ""
    return f"{verb} {outcome.name} ({outcome.duration_ms:.0f} ms{retried})"


def print_result(result: RunResult, command: str) -> None:
    """A run's result as lines: the SQL of a dry run, else what was done."""
    if result.dry_run:
        _print_dry_run(result)
        return
    if result.ahead:
        print(f"warning: {_ahead_warning(result.ahead)}")
    if result.adopted:
        print(f"adopted the existing schema (it matched): recorded {len(result.adopted)} migration(s) without running")
        return
    if not (result.ran or result.reverted):
        print("nothing to do: no pending migrations" if command == "up" else "nothing to revert")
    elif command == "redo":
        print(f"redo: {len(result.reverted)} migration(s) redone")
    else:
        print(f"{command}: {len(result.ran + result.reverted)} migration(s) done")


def _print_dry_run(result: RunResult) -> None:
    for outcome in result.would_run:
        outside = " (runs outside a transaction: statement by statement)" if not outcome.use_transaction else ""
        print(f"-- {outcome.direction}: {outcome.name}{outside}")
        for statement in outcome.sql:
            print(f"{statement.rstrip().rstrip(';')};")
        if not outcome.reversible:
            print(f"-- warning: {outcome.name} has no down: a later `down` of it would be refused")
        print()
    print(f"-- dry run: {len(result.would_run)} migration(s) would run; nothing was changed")


def _ahead_warning(ahead: list[str]) -> str:
    return f"the database is ahead of these files: {', '.join(ahead)}"


def outcome_document(outcome: MigrationOutcome) -> dict[str, Any]:
    document = {
        "name": outcome.name,
        "direction": outcome.direction,
        "action": str(outcome.action),
        "duration_ms": round(outcome.duration_ms, 1),
        "attempts": outcome.attempts,
        "use_transaction": outcome.use_transaction,
        "reversible": outcome.reversible,
    }
    return document | ({"sql": list(outcome.sql)} if outcome.sql else {})


def up_document(result: RunResult, skipped: tuple[str, ...] = ()) -> dict[str, Any]:
    """What ``up --json`` prints: every migration's outcome, for CI to gate on."""
    return {
        "command": "up",
        "ok": True,
        "dry_run": result.dry_run,
        "already_applied": result.already_applied,
        "migrations": [outcome_document(outcome) for outcome in result.outcomes],
        "left_pending": [migration.name for migration in result.pending],
        "ahead": result.ahead,
        "warnings": ([_ahead_warning(result.ahead)] if result.ahead else []) + list(skipped),
    }


def attention(plan: Plan) -> list[str]:
    """What in the plan needs a person before anything can run (``status`` exits 1 for it)."""
    found = [f"{len(names)} {title}" for title, names in _lists(plan) if names]
    found += ["migrations out of order"] if plan.out_of_order else []
    return found + ([f"{len(plan.problems)} {plan.tracking} problem(s)"] if plan.problems else [])


def _lists(plan: Plan) -> tuple[tuple[str, list[str]], ...]:
    return (("drifted", plan.drifted), ("missing", plan.missing), ("ahead", plan.ahead))


def status_document(plan: Plan, needs: list[str]) -> dict[str, Any]:
    """What ``status --json`` prints."""
    order = plan.out_of_order
    return {
        "command": "status",
        "ok": not needs,
        "needs_attention": needs,
        "applied": [{"name": row.name, "run_on": _run_on(row.run_on, iso=True)} for row in plan.applied],
        "pending": [migration.name for migration in plan.pending],
        **{title: names for title, names in _lists(plan)},
        "out_of_order": {"not_run": order[0], "already_run": order[1]} if order else None,
        "problems": plan.problems,
        "warnings": list(plan.skipped),
    }


def forget_document(rows: list[AppliedRow], *, dry_run: bool) -> dict[str, Any]:
    """What ``forget --json`` prints: the rows removed (or, in a dry run, that would be)."""
    forgotten = [{"id": row.id, "name": row.name, "run_on": _run_on(row.run_on, iso=True)} for row in rows]
    return {"command": "forget", "ok": True, "dry_run": dry_run, "forgotten": forgotten}


def forget_lines(rows: list[AppliedRow], tracking: str, *, dry_run: bool) -> list[str]:
    """The rows ``forget`` removed, or would remove, as lines."""
    if not rows:
        return [f"nothing to forget: every row in {tracking} has its file"]
    lines = [f"{'would remove' if dry_run else 'removed'} {len(rows)} row(s) from {tracking}:"]
    lines += [f"  {_run_on(row.run_on)}  {row.name}" for row in rows]
    return lines + (["dry run: nothing was changed"] if dry_run else [])


def print_status(plan: Plan) -> None:
    print(f"applied ({len(plan.applied)}):")
    for row in plan.applied:
        flag = "  DRIFTED" if row.name in plan.drifted else ("  MISSING FILE" if row.name in plan.missing else "")
        print(f"  {_run_on(row.run_on)}  {row.name}{flag}")
    print(f"pending ({len(plan.pending)}):")
    for migration in plan.pending:
        print(f"  {migration.name}")
    for title, names in _lists(plan):
        if names:
            print(f"{title} ({len(names)}): {', '.join(names)}")
    if plan.out_of_order:
        print(f"out of order: Not run migration {plan.out_of_order[0]} is preceding already run {plan.out_of_order[1]}")
    if plan.gone:
        print(f"rows whose file is gone are removed with: {plan.forget_command(plan.gone)}")
    for problem in plan.problems:
        print(f"problem: {problem}")


def _run_on(value: object, *, iso: bool = False) -> str | None:
    """A row's run_on as text; a NULL or a value that is not a timestamp (a hand-made table) is shown as it is."""
    if hasattr(value, "isoformat") and hasattr(value, "strftime"):
        return value.isoformat() if iso else value.strftime("%Y-%m-%d %H:%M:%S")
    if value is None:
        return None if iso else "(no run_on)"
    return str(value)
