"""The 14 application migrations build exactly the schema of schema.md, re-run cleanly and revert fully."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from psycopg2.extensions import connection as Connection

from lambda_db_setup.builder import MigrationBuilder
from lambda_db_setup.engine import Engine

MIGRATIONS_DIR = Path(__file__).parents[1] / "migrations"

MIGRATION_NAMES = [
    "1704110400000_create_extensions_and_users",
    "1704110460000_create_simulation_groups",
    "1704110520000_create_patients",
    "1704110580000_create_enrolments",
    "1704110640000_create_patient_data",
    "1704110700000_create_student_interactions",
    "1704110760000_create_sessions",
    "1704110820000_create_messages",
    "1704110880000_create_user_engagement_log",
    "1704110940000_create_feedback",
    "1704111000000_create_system_prompt_history",
    "1704111060000_add_vector_extension",
    "1704111120000_add_voice_toggles",
    "1704111180000_create_empathy_prompt_history",
]

# schema.md's type spelling -> information_schema (data_type, udt_name, character_maximum_length)
TYPES = {
    "uuid": ("uuid", "uuid", None),
    "varchar": ("character varying", "varchar", None),
    "varchar(20)": ("character varying", "varchar", 20),
    "text": ("text", "text", None),
    "boolean": ("boolean", "bool", None),
    "integer": ("integer", "int4", None),
    "timestamp": ("timestamp without time zone", "timestamp", None),
    "timestamptz": ("timestamp with time zone", "timestamptz", None),
    "varchar[]": ("ARRAY", "_varchar", None),
    "float[]": ("ARRAY", "_float8", None),
    "jsonb": ("jsonb", "jsonb", None),
}
UUID_DEFAULT = "uuid_generate_v4()"
NULL, NOT_NULL = "YES", "NO"

# table -> columns in order: (name, type as schema.md spells it, default as PostgreSQL shows it, nullable)
EXPECTED_TABLES: dict[str, list[tuple[str, str, str | None, str]]] = {
    "users": [
        ("user_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("user_email", "varchar", None, NULL),
        ("username", "varchar", None, NULL),
        ("first_name", "varchar", None, NULL),
        ("last_name", "varchar", None, NULL),
        ("time_account_created", "timestamptz", "now()", NOT_NULL),
        ("roles", "varchar[]", None, NULL),
        ("last_sign_in", "timestamptz", None, NULL),
    ],
    "simulation_groups": [
        ("simulation_group_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("group_name", "varchar", None, NULL),
        ("group_description", "varchar", None, NULL),
        ("group_access_code", "varchar", None, NULL),
        ("group_student_access", "boolean", None, NULL),
        ("system_prompt", "text", None, NULL),
        ("empathy_enabled", "boolean", "false", NOT_NULL),
        ("admin_voice_enabled", "boolean", "true", NULL),
        ("instructor_voice_enabled", "boolean", "true", NULL),
    ],
    "patients": [
        ("patient_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("simulation_group_id", "uuid", None, NULL),
        ("patient_name", "varchar", None, NULL),
        ("patient_age", "integer", None, NULL),
        ("patient_gender", "varchar", None, NULL),
        ("patient_number", "integer", None, NULL),
        ("patient_prompt", "text", None, NULL),
        ("llm_completion", "boolean", "true", NULL),
        ("voice_id", "varchar", "'tiffany'::character varying", NULL),
    ],
    "enrolments": [
        ("enrolment_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("user_id", "uuid", None, NULL),
        ("simulation_group_id", "uuid", None, NULL),
        ("enrolment_type", "varchar", None, NULL),
        ("group_completion_percentage", "integer", None, NULL),
        ("time_enroled", "timestamp", None, NULL),
    ],
    "patient_data": [
        ("file_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("patient_id", "uuid", None, NULL),
        ("filetype", "varchar", None, NULL),
        ("s3_bucket_reference", "varchar", None, NULL),
        ("filepath", "varchar", None, NULL),
        ("filename", "varchar", None, NULL),
        ("time_uploaded", "timestamp", None, NULL),
        ("metadata", "text", None, NULL),
        ("file_number", "integer", None, NULL),
        ("ingestion_status", "varchar(20)", "'not processing'::character varying", NULL),
    ],
    "student_interactions": [
        ("student_interaction_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("patient_id", "uuid", None, NULL),
        ("enrolment_id", "uuid", None, NULL),
        ("patient_score", "integer", None, NULL),
        ("last_accessed", "timestamp", None, NULL),
        ("patient_context_embedding", "float[]", None, NULL),
        ("is_completed", "boolean", "false", NULL),
    ],
    "sessions": [
        ("session_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("student_interaction_id", "uuid", None, NULL),
        ("session_name", "varchar", None, NULL),
        ("session_context_embeddings", "float[]", None, NULL),
        ("last_accessed", "timestamp", None, NULL),
        ("notes", "text", None, NULL),
    ],
    "messages": [
        ("message_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("session_id", "uuid", None, NULL),
        ("student_sent", "boolean", None, NULL),
        ("message_content", "varchar", None, NULL),
        ("time_sent", "timestamp", None, NULL),
        ("empathy_evaluation", "jsonb", "'{}'::jsonb", NULL),
    ],
    "user_engagement_log": [
        ("log_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("user_id", "uuid", None, NULL),
        ("simulation_group_id", "uuid", None, NULL),
        ("patient_id", "uuid", None, NULL),
        ("enrolment_id", "uuid", None, NULL),
        ("timestamp", "timestamp", None, NULL),
        ("engagement_type", "varchar", None, NULL),
        ("engagement_details", "text", None, NULL),
    ],
    "feedback": [
        ("feedback_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("session_id", "uuid", None, NULL),
        ("score", "integer", None, NULL),
        ("analysis", "text", None, NULL),
        ("areas_for_improvement", "varchar[]", None, NULL),
        ("submitted_at", "timestamp", "CURRENT_TIMESTAMP", NULL),
    ],
    "system_prompt_history": [
        ("history_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("prompt_content", "text", None, NOT_NULL),
        ("created_at", "timestamp", "CURRENT_TIMESTAMP", NULL),
    ],
    "empathy_prompt_history": [
        ("history_id", "uuid", UUID_DEFAULT, NOT_NULL),
        ("prompt_content", "text", None, NOT_NULL),
        ("created_at", "timestamp", "CURRENT_TIMESTAMP", NULL),
    ],
}

# (table, column) -> (parent table, parent column); every one ON DELETE CASCADE ON UPDATE CASCADE
EXPECTED_FOREIGN_KEYS = {
    ("patients", "simulation_group_id"): ("simulation_groups", "simulation_group_id"),
    ("enrolments", "user_id"): ("users", "user_id"),
    ("enrolments", "simulation_group_id"): ("simulation_groups", "simulation_group_id"),
    ("patient_data", "patient_id"): ("patients", "patient_id"),
    ("student_interactions", "patient_id"): ("patients", "patient_id"),
    ("student_interactions", "enrolment_id"): ("enrolments", "enrolment_id"),
    ("sessions", "student_interaction_id"): ("student_interactions", "student_interaction_id"),
    ("messages", "session_id"): ("sessions", "session_id"),
    ("user_engagement_log", "user_id"): ("users", "user_id"),
    ("user_engagement_log", "simulation_group_id"): ("simulation_groups", "simulation_group_id"),
    ("user_engagement_log", "patient_id"): ("patients", "patient_id"),
    ("user_engagement_log", "enrolment_id"): ("enrolments", "enrolment_id"),
    ("feedback", "session_id"): ("sessions", "session_id"),
}

EXPECTED_UNIQUES = {
    "users_user_email_key": ("users", "UNIQUE (user_email)"),
    "enrolments_simulation_group_id_user_id_key": ("enrolments", "UNIQUE (simulation_group_id, user_id)"),
}


def query(conn: Connection, text: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cursor:
        cursor.execute(text, params)
        return cursor.fetchall()


def application_tables(conn: Connection) -> set[str]:
    rows = query(conn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'pgmigrations'")
    return {table for (table,) in rows}


def table_columns(conn: Connection, table: str) -> list[tuple]:
    return query(
        conn,
        "SELECT column_name, data_type, udt_name, character_maximum_length, column_default, is_nullable"
        " FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    )


def application_constraints(conn: Connection) -> list[tuple]:
    """(table, name, type, definition, delete action, update action) of every application constraint."""
    return query(
        conn,
        "SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid), k.confdeltype, k.confupdtype"
        " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
        " WHERE c.relnamespace = 'public'::regnamespace AND c.relname <> 'pgmigrations' ORDER BY 1, 2",
    )


def extensions(conn: Connection) -> set[str]:
    return {name for (name,) in query(conn, "SELECT extname FROM pg_extension")}


def snapshot(conn: Connection) -> dict[str, object]:
    """Everything a migration could change: columns, constraints, indexes, extensions and rows."""
    tables = sorted(application_tables(conn))
    return {
        "columns": {table: table_columns(conn, table) for table in tables},
        "constraints": application_constraints(conn),
        "indexes": query(conn, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"),
        "extensions": query(conn, "SELECT extname, extversion FROM pg_extension ORDER BY 1"),
        "rows": {table: query(conn, f'SELECT count(*) FROM "{table}"')[0][0] for table in tables},
        "empathy_prompts": query(conn, "SELECT history_id, prompt_content, created_at FROM empathy_prompt_history"),
    }


def assert_schema_matches_schema_md(conn: Connection) -> None:
    assert application_tables(conn) == set(EXPECTED_TABLES)
    for table, expected in EXPECTED_TABLES.items():
        assert table_columns(conn, table) == [
            (name, *TYPES[spelling][:2], TYPES[spelling][2], default, nullable)
            for name, spelling, default, nullable in expected
        ], table

    constraints = application_constraints(conn)
    primary_keys = {(table, name, definition) for table, name, kind, definition, *_ in constraints if kind == "p"}
    assert primary_keys == {
        (table, f"{table}_pkey", f"PRIMARY KEY ({columns[0][0]})") for table, columns in EXPECTED_TABLES.items()
    }
    uniques = {name: (table, definition) for table, name, kind, definition, *_ in constraints if kind == "u"}
    assert uniques == EXPECTED_UNIQUES
    foreign_keys = {
        (table, name, definition, tuple(actions))
        for table, name, kind, definition, *actions in constraints
        if kind == "f"
    }
    assert foreign_keys == {
        (
            table,
            f"{table}_{column}_fkey",
            f"FOREIGN KEY ({column}) REFERENCES {parent}({parent_column}) ON UPDATE CASCADE ON DELETE CASCADE",
            ("c", "c"),
        )
        for (table, column), (parent, parent_column) in EXPECTED_FOREIGN_KEYS.items()
    }
    assert {kind for _, _, kind, *_ in constraints} == {"p", "u", "f"}

    index_rows = query(conn, "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public'")
    assert {index for table, index in index_rows if table != "pgmigrations"} == {
        f"{table}_pkey" for table in EXPECTED_TABLES
    } | set(EXPECTED_UNIQUES)
    assert extensions(conn) >= {"vector", "uuid-ossp"}

    prompts = query(conn, "SELECT prompt_content FROM empathy_prompt_history")
    assert len(prompts) == 1
    assert "{patient_context}" in prompts[0][0]
    assert "{user_text}" in prompts[0][0]


def run_up_directly(conn: Connection, name: str) -> None:
    """Import a migration file and execute its ``up`` statements, bypassing the engine and pgmigrations."""
    spec = importlib.util.spec_from_file_location(f"_rerun_{name}", MIGRATIONS_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pgm = MigrationBuilder()
    module.up(pgm)
    with conn.cursor() as cursor:
        for statement in pgm.statements:
            cursor.execute(statement)


@pytest.fixture
def migrated(migrated_conn: Connection) -> Connection:
    """A database of the test's own with every application migration applied by the engine (the plugin's copy)."""
    return migrated_conn


def test_up_applies_the_fourteen_in_order_on_an_empty_database(conn: Connection) -> None:
    result = Engine(conn, MIGRATIONS_DIR).up()
    assert [migration.name for migration in result.ran] == MIGRATION_NAMES
    assert_schema_matches_schema_md(conn)


def test_migration_files_are_the_fourteen_of_schema_md() -> None:
    assert sorted(path.stem for path in MIGRATIONS_DIR.glob("*.py")) == MIGRATION_NAMES


def test_up_builds_the_schema_of_schema_md(migrated) -> None:
    assert_schema_matches_schema_md(migrated)


def test_running_each_up_again_changes_nothing(migrated) -> None:
    before = snapshot(migrated)
    for name in MIGRATION_NAMES:
        run_up_directly(migrated, name)
        assert snapshot(migrated) == before, f"re-running {name} changed the database"


def test_down_to_zero_removes_everything_and_up_rebuilds_it(migrated) -> None:
    reverted = Engine(migrated, MIGRATIONS_DIR).down(len(MIGRATION_NAMES), force=True)
    assert [migration.name for migration in reverted.reverted] == MIGRATION_NAMES[::-1]
    assert application_tables(migrated) == set()
    assert not extensions(migrated) & {"vector", "uuid-ossp"}

    reapplied = Engine(migrated, MIGRATIONS_DIR).up()
    assert [migration.name for migration in reapplied.ran] == MIGRATION_NAMES
    assert_schema_matches_schema_md(migrated)
