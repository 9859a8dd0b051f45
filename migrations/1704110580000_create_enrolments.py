"""Enrolments: which user takes part in which simulation group, at most once per group."""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-bigint-over-int": "a small number, not a key; the deployed schema has integer",
    "prefer-timestamp-tz": "the deployed schema has timestamp; moving to timestamptz is a migration of its own",
}


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "enrolments",
        {
            "enrolment_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
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
            "enrolment_type": "varchar",
            "group_completion_percentage": "integer",
            "time_enroled": "timestamp",
        },
        if_not_exists=True,
        constraints={"unique": ["simulation_group_id", "user_id"]},
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("enrolments", if_exists=True, cascade=True)
