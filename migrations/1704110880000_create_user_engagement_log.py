"""An append-only log of what users do, for instructors' engagement views."""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-timestamp-tz": "the deployed schema has timestamp; moving to timestamptz is a migration of its own",
}


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "user_engagement_log",
        {
            "log_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "user_id": {
                "type": "uuid",
                "references": "users",
                "references_column": "user_id",
                "on_delete": "CASCADE",
                "on_update": "CASCADE",
            },
            "simulation_group_id": {
                "type": "uuid",
                "references": "simulation_groups",
                "references_column": "simulation_group_id",
                "on_delete": "CASCADE",
                "on_update": "CASCADE",
            },
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
            "timestamp": "timestamp",
            "engagement_type": "varchar",
            "engagement_details": "text",
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("user_engagement_log", if_exists=True, cascade=True)
