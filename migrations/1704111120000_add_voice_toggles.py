"""Per-group switches letting administrators and instructors turn the patients' voice on or off."""

from lambda_db_setup.builder import MigrationBuilder


def up(pgm: MigrationBuilder) -> None:
    pgm.add_columns(
        "simulation_groups",
        {
            "admin_voice_enabled": {"type": "boolean", "default": True},
            "instructor_voice_enabled": {"type": "boolean", "default": True},
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_columns("simulation_groups", ["admin_voice_enabled", "instructor_voice_enabled"], if_exists=True)
