"""Messages of a session, from the student or the simulated patient, with their empathy evaluation."""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-timestamp-tz": "the deployed schema has timestamp; moving to timestamptz is a migration of its own",
}


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "messages",
        {
            "message_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "session_id": {
                "type": "uuid",
                "references": "sessions",
                "references_column": "session_id",
                "on_delete": "CASCADE",
                "on_update": "CASCADE",
            },
            "student_sent": "boolean",
            "message_content": "varchar",
            "time_sent": "timestamp",
            "empathy_evaluation": {"type": "jsonb", "default": "{}"},
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("messages", if_exists=True, cascade=True)
