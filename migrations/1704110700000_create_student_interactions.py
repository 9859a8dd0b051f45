"""A student's work with one patient within an enrolment."""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-bigint-over-int": "a small number, not a key; the deployed schema has integer",
    "prefer-timestamp-tz": "the deployed schema has timestamp; moving to timestamptz is a migration of its own",
}


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "student_interactions",
        {
            "student_interaction_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "patient_id": {
                "type": "uuid",
                "references": "patients",
                "references_column": "patient_id",
                "on_delete": "CASCADE",
                "on_update": "CASCADE",
            },
            "enrolment_id": {
                "type": "uuid",
                "references": "enrolments",
                "references_column": "enrolment_id",
                "on_delete": "CASCADE",
                "on_update": "CASCADE",
            },
            "patient_score": "integer",
            "last_accessed": "timestamp",
            "patient_context_embedding": "double precision[]",
            "is_completed": {"type": "boolean", "default": False},
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("student_interactions", if_exists=True, cascade=True)
