"""Simulated patients of a simulation group."""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-bigint-over-int": "a small number, not a key; the deployed schema has integer",
}


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "patients",
        {
            "patient_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "simulation_group_id": {
                "type": "uuid",
                "references": "simulation_groups",
                "references_column": "simulation_group_id",
                "on_delete": "CASCADE",
                "on_update": "CASCADE",
            },
            "patient_name": "varchar",
            "patient_age": "integer",
            "patient_gender": "varchar",
            "patient_number": "integer",
            "patient_prompt": "text",
            "llm_completion": {"type": "boolean", "default": True},
            "voice_id": {"type": "varchar", "default": "tiffany"},
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("patients", if_exists=True, cascade=True)
