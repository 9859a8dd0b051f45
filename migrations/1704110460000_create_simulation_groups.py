"""Simulation groups: the course-like unit that patients and enrolments belong to."""

from lambda_db_setup.builder import MigrationBuilder, func


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "simulation_groups",
        {
            "simulation_group_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "group_name": "varchar",
            "group_description": "varchar",
            "group_access_code": "varchar",
            "group_student_access": "boolean",
            "system_prompt": "text",
            "empathy_enabled": {"type": "boolean", "not_null": True, "default": False},
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("simulation_groups", if_exists=True, cascade=True)
