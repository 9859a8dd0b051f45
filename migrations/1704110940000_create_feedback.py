"""Feedback on a session: a score, an analysis and areas for improvement."""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-bigint-over-int": "a small number, not a key; the deployed schema has integer",
    "prefer-timestamp-tz": "the deployed schema has timestamp; moving to timestamptz is a migration of its own",
}


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "feedback",
        {
            "feedback_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "session_id": {
                "type": "uuid",
                "references": "sessions",
                "references_column": "session_id",
                "on_delete": "CASCADE",
                "on_update": "CASCADE",
            },
            "score": "integer",
            "analysis": "text",
            "areas_for_improvement": "varchar[]",
            "submitted_at": {"type": "timestamp", "default": func("CURRENT_TIMESTAMP")},
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("feedback", if_exists=True, cascade=True)
