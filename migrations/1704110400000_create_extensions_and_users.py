"""Extensions uuid-ossp (for the uuid_generate_v4() key defaults) and vector, and the users table."""

from lambda_db_setup.builder import MigrationBuilder, func


def up(pgm: MigrationBuilder) -> None:
    pgm.create_extension(["uuid-ossp", "vector"], if_not_exists=True)
    pgm.create_table(
        "users",
        {
            "user_id": {"type": "uuid", "primary_key": True, "default": func("uuid_generate_v4()")},
            "user_email": {"type": "varchar", "unique": True},
            "username": "varchar",
            "first_name": "varchar",
            "last_name": "varchar",
            "time_account_created": {"type": "timestamptz", "not_null": True, "default": func("now()")},
            "roles": "varchar[]",
            "last_sign_in": "timestamptz",
        },
        if_not_exists=True,
    )


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_table("users", if_exists=True, cascade=True)
    pgm.drop_extension(["vector", "uuid-ossp"], if_exists=True)
