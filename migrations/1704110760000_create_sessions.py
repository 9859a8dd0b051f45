"""Chat sessions of a student interaction."""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-timestamp-tz": "the deployed schema has timestamp; moving to timestamptz is a migration of its own",
}


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "sessions",
        {
            "session_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "student_interaction_id": {
                "type": "uuid",
                "references": "student_interactions",
                "references_column": "student_interaction_id",
                "on_delete": "CASCADE",
                "on_update": "CASCADE",
            },
            "session_name": "varchar",
            "session_context_embeddings": "double precision[]",
            "last_accessed": "timestamp",
            "notes": "text",
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("sessions", if_exists=True, cascade=True)
