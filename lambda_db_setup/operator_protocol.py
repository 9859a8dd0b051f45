"""What the CLI's ``--lambda`` and the Lambda's operator path agree on: the event's key and version, the
commands with their arguments, and which of them change the database (and so need ``confirm``).

A module of its own so that the CLI side (`remote`) needs nothing of the Lambda side (`operator`), which runs
the CLI itself.
"""

from __future__ import annotations

from typing import Any

KEY = "lambda_db_setup_operator"
VERSION = 1
CONFIRM = "confirm"  # the CLI's --confirm
# command -> its arguments: (name, CLI flag; None for the positional COUNT)
COMMANDS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "status": (("json", "--json"), ("check", "--check")),
    "up": (("count", None), ("to", "--to"), ("dry_run", "--dry-run"), ("json", "--json")),
    "check": (),
    "unlock": (("terminate", "--terminate"), ("force", "--force")),
    "down": (("count", None), ("force", "--force"), ("dry_run", "--dry-run")),
    "repair": (),
    "baseline": (("to", "--to"), ("no_verify", "--no-verify")),
    # in here there is no terminal to confirm on: the operator's confirm is forget's --yes
    "forget": (
        ("names", None),
        ("all_gone", "--all-gone"),
        ("dry_run", "--dry-run"),
        ("json", "--json"),
        ("confirm", "--yes"),
    ),
    "background": (("action", None), ("name", None), ("json", "--json")),
}
BACKGROUND_CHANGES = ("pause", "resume", "retry")  # `background run` is the state machine's, not an operator's


def is_operator_event(event: object) -> bool:
    return isinstance(event, dict) and KEY in event


def needs_confirmation(command: str, args: dict[str, Any]) -> str | None:
    """Why the command needs ``confirm`` (it changes the database), or None for one that only reads."""
    if command == "up" and not args.get("dry_run"):
        return "up applies migrations only at deploy time; through the Lambda only up --dry-run"
    if command == "background" and args.get("action") == "run":
        return "background run is the state machine's work; through the Lambda only status, pause, resume, retry"
    if command == "down" and not args.get("dry_run"):
        return "down reverts migrations"
    if command in ("repair", "baseline"):
        return f"{command} rewrites the migration history"
    if command == "forget" and not args.get("dry_run"):
        return "forget removes rows from the migration history"
    if command == "unlock" and args.get("terminate"):
        return "unlock --terminate ends the lock holder's session"
    if command == "background" and args.get("action") in BACKGROUND_CHANGES:
        return f"background {args['action']} changes a background migration's state"
    return None
