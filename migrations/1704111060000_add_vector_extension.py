"""The pgvector extension, for databases created before migration 1 made it."""

from lambda_db_setup.builder import MigrationBuilder


def up(pgm: MigrationBuilder) -> None:
    pgm.create_extension("vector", if_not_exists=True)


def down(pgm: MigrationBuilder) -> None:
    pgm.drop_extension("vector", if_exists=True)
