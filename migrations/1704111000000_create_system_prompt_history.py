"""Every version of the system prompt, so an administrator can see and restore earlier ones."""

from lambda_db_setup.builder import MigrationBuilder, func

SQUAWK_IGNORE = {
    "prefer-timestamp-tz": "the deployed schema has timestamp; moving to timestamptz is a migration of its own",
}


def up(pgm: MigrationBuilder) -> None:
    pgm.create_table(
        "system_prompt_history",
        {
            "history_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "prompt_content": {"type": "text", "not_null": True},
            "created_at": {"type": "timestamp", "default": func("CURRENT_TIMESTAMP")},
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("system_prompt_history", if_exists=True, cascade=True)
