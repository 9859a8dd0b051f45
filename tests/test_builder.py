"""The builder turns calls into the SQL PostgreSQL expects: checked by running it and reading the catalog."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg2 import sql
from psycopg2.extensions import connection as Connection

from lambda_db_setup.builder import MigrationBuilder, PgLiteral, func

Callback = Callable[[MigrationBuilder], object]
UUID_PK = {"type": "uuid", "primary_key": True, "default": func("gen_random_uuid()")}


def run(conn: Connection, pgm: MigrationBuilder) -> None:
    with conn.cursor() as cursor:
        for statement in pgm.statements:
            cursor.execute(statement)


def build(conn: Connection, call: Callback) -> MigrationBuilder:
    """A fresh builder after ``call(pgm)``, its statements already executed."""
    pgm = MigrationBuilder()
    call(pgm)
    run(conn, pgm)
    return pgm


def query(conn: Connection, text: str, params: tuple = ()) -> list[tuple]:
    with conn.cursor() as cursor:
        cursor.execute(text, params)
        return cursor.fetchall()


def columns(conn: Connection, table: str, schema: str = "public") -> list[tuple]:
    """(name, data type, default, nullable) of each column, in table order."""
    return query(
        conn,
        "SELECT column_name, data_type, column_default, is_nullable FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    )


def constraints(conn: Connection, table: str) -> dict[str, str]:
    """Constraint name -> definition, for one table."""
    return dict(
        query(
            conn,
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = to_regclass(%s)",
            (sql.Identifier(table).as_string(conn),),
        )
    )


def indexes(conn: Connection, table: str) -> dict[str, str]:
    return dict(query(conn, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)))


def table_exists(conn: Connection, table: str, schema: str = "public") -> bool:
    return bool(query(conn, "SELECT 1 FROM pg_tables WHERE schemaname = %s AND tablename = %s", (schema, table)))


def rendered(conn: Connection, pgm: MigrationBuilder) -> list[str]:
    return [statement.as_string(conn) for statement in pgm.statements]


def make_groups(pgm: MigrationBuilder) -> None:
    pgm.create_table("groups", {"group_id": UUID_PK, "name": "varchar"})


# -- create_table ------------------------------------------------------------------------------


def test_create_table_renders_columns_then_constraints(conn: Connection) -> None:
    pgm = MigrationBuilder()
    pgm.create_table(
        "members",
        {
            "member_id": UUID_PK,
            "email": {"type": "varchar(200)", "unique": True, "not_null": True},
            "group_id": {
                "type": "uuid",
                "references": "groups",
                "references_column": "group_id",
                "on_delete": "cascade",
                "on_update": "Set Null",
            },
            "joined": {"type": "timestamptz", "default": func("now()")},
        },
        if_not_exists=True,
        constraints={"unique": ["group_id", "email"]},
    )
    assert rendered(conn, pgm) == [
        'CREATE TABLE IF NOT EXISTS "members" (\n'
        '  "member_id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),\n'
        '  "email" varchar(200) NOT NULL UNIQUE,\n'
        '  "group_id" uuid REFERENCES "groups" ("group_id") ON DELETE CASCADE ON UPDATE SET NULL,\n'
        '  "joined" timestamptz DEFAULT now(),\n'
        '  UNIQUE ("group_id", "email")\n'
        ")"
    ]


def test_create_table_column_options_reach_the_catalog(conn: Connection) -> None:
    def call(pgm: MigrationBuilder) -> None:
        make_groups(pgm)
        pgm.create_table(
            "members",
            {
                "member_id": UUID_PK,
                "group_id": {"type": "uuid", "not_null": True, "references": "groups", "on_delete": "RESTRICT"},
                "email": {"type": "varchar", "unique": True},
                "age": {"type": "integer", "check": "age >= 0", "default": 18},
                "nick": {"type": "text", "collation": "C"},
                "active": {"type": "boolean", "default": False},
                "tags": {"type": "varchar[]", "default": ["a", "b"]},
                "settings": {"type": "jsonb", "default": {"theme": "dark"}},
                "note": {"type": "text", "default": None},
                "score": "double precision",
            },
        )

    build(conn, call)
    assert columns(conn, "members") == [
        ("member_id", "uuid", "gen_random_uuid()", "NO"),
        ("group_id", "uuid", None, "NO"),
        ("email", "character varying", None, "YES"),
        ("age", "integer", "18", "YES"),
        ("nick", "text", None, "YES"),
        ("active", "boolean", "false", "YES"),
        ("tags", "ARRAY", "ARRAY['a'::text, 'b'::text]", "YES"),
        ("settings", "jsonb", """'{"theme": "dark"}'::jsonb""", "YES"),
        ("note", "text", None, "YES"),
        ("score", "double precision", None, "YES"),
    ]
    assert query(conn, "SELECT collation_name FROM information_schema.columns WHERE column_name = 'nick'") == [("C",)]
    assert constraints(conn, "members") == {
        "members_pkey": "PRIMARY KEY (member_id)",
        "members_group_id_fkey": "FOREIGN KEY (group_id) REFERENCES groups(group_id) ON DELETE RESTRICT",
        "members_email_key": "UNIQUE (email)",
        "members_age_check": "CHECK ((age >= 0))",
    }


def test_create_table_level_constraints_keep_postgres_default_names(conn: Connection) -> None:
    def call(pgm: MigrationBuilder) -> None:
        pgm.create_table("parents", {"a": "integer", "b": "integer"}, constraints={"primary_key": ["a", "b"]})
        pgm.create_table(
            "children",
            {"x": "integer", "y": "integer", "z": "integer"},
            constraints={
                "primary_key": "x",
                "unique": [["x", "y"], "z"],
                "check": ["x > 0", "y <> z"],
                "foreign_keys": [
                    {
                        "columns": ["y", "z"],
                        "references": "parents",
                        "references_columns": ["a", "b"],
                        "on_delete": "no action",
                        "on_update": "CASCADE",
                    }
                ],
            },
        )

    build(conn, call)
    assert constraints(conn, "children") == {
        "children_pkey": "PRIMARY KEY (x)",
        "children_x_y_key": "UNIQUE (x, y)",
        "children_z_key": "UNIQUE (z)",
        "children_x_check": "CHECK ((x > 0))",
        "children_check": "CHECK ((y <> z))",
        "children_y_z_fkey": "FOREIGN KEY (y, z) REFERENCES parents(a, b) ON UPDATE CASCADE",
    }
    assert constraints(conn, "parents") == {"parents_pkey": "PRIMARY KEY (a, b)"}


def test_a_flat_unique_list_is_one_constraint(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.create_table("t", {"a": "int", "b": "int"}, constraints={"unique": ["a", "b"]}))
    assert constraints(conn, "t") == {"t_a_b_key": "UNIQUE (a, b)"}


def test_create_table_if_not_exists_twice_is_quiet(conn: Connection) -> None:
    for _ in range(2):
        build(conn, lambda pgm: pgm.create_table("once", {"id": "integer"}, if_not_exists=True))
    assert columns(conn, "once") == [("id", "integer", None, "YES")]


def test_schema_qualified_tables_and_references(conn: Connection) -> None:
    def call(pgm: MigrationBuilder) -> None:
        pgm.sql("CREATE SCHEMA audit")
        pgm.create_table(("audit", "owners"), {"id": {"type": "integer", "primary_key": True}})
        pgm.create_table(
            ("audit", "pets"),
            {"owner_id": {"type": "integer", "references": ("audit", "owners"), "on_delete": "SET DEFAULT"}},
        )

    pgm = build(conn, call)
    assert rendered(conn, pgm)[1].startswith('CREATE TABLE "audit"."owners" (')
    assert table_exists(conn, "pets", "audit")
    assert query(conn, "SELECT confdeltype FROM pg_constraint WHERE conname = 'pets_owner_id_fkey'") == [("d",)]
    build(conn, lambda pgm: pgm.drop_table(("audit", "pets")))
    assert not table_exists(conn, "pets", "audit")


def test_a_dotted_string_is_one_table_name(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.create_table("audit.log", {"id": "integer"}))
    assert table_exists(conn, "audit.log", "public")


def test_weird_identifiers_and_quoted_default_round_trip(conn: Connection) -> None:
    table, column = 'we"ird', 'it\'s a "column"'

    def call(pgm: MigrationBuilder) -> None:
        pgm.create_table(table, {"id": "serial", column: {"type": "varchar", "default": "O'Reilly"}})
        pgm.create_index(table, column)

    pgm = build(conn, call)
    assert rendered(conn, pgm)[0] == (
        'CREATE TABLE "we""ird" (\n  "id" serial,\n  "it\'s a ""column""" varchar DEFAULT \'O\'\'Reilly\'\n)'
    )
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(table)))
        cursor.execute(sql.SQL("SELECT {} FROM {}").format(sql.Identifier(column), sql.Identifier(table)))
        assert cursor.fetchall() == [("O'Reilly",)]
    assert list(indexes(conn, table)) == [f"{table}_{column}_index"]
    build(conn, lambda pgm: pgm.drop_table(table))
    assert not table_exists(conn, table)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.text(
        st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=20
    ).filter(lambda text: len(text.encode()) <= 63),
)
def test_any_identifier_survives_create_and_drop(conn: Connection, name: str) -> None:
    build(conn, lambda pgm: pgm.create_table(name, {name: {"type": "text", "default": name}}))
    assert table_exists(conn, name)
    assert columns(conn, name)[0][0] == name
    build(conn, lambda pgm: pgm.drop_table(name))
    assert not table_exists(conn, name)


# -- drop_table ----------------------------------------------------------------------------------


def test_drop_table_if_exists_and_cascade(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.drop_table("missing", if_exists=True))

    def call(pgm: MigrationBuilder) -> None:
        make_groups(pgm)
        pgm.sql("CREATE VIEW group_names AS SELECT name FROM groups")

    build(conn, call)
    pgm = build(conn, lambda pgm: pgm.drop_table("groups", if_exists=True, cascade=True))
    assert rendered(conn, pgm) == ['DROP TABLE IF EXISTS "groups" CASCADE']
    assert query(conn, "SELECT to_regclass('group_names'), to_regclass('groups')") == [(None, None)]


# -- columns -------------------------------------------------------------------------------------


def test_add_columns_in_one_statement_and_again_if_not_exists(conn: Connection) -> None:
    build(conn, make_groups)
    new_columns = {"archived": {"type": "boolean", "default": True}, "code": {"type": "varchar(8)", "unique": True}}
    pgm = build(conn, lambda pgm: pgm.add_columns("groups", new_columns, if_not_exists=True))
    assert rendered(conn, pgm) == [
        'ALTER TABLE "groups"\n'
        '  ADD COLUMN IF NOT EXISTS "archived" boolean DEFAULT true,\n'
        '  ADD COLUMN IF NOT EXISTS "code" varchar(8) UNIQUE'
    ]
    build(conn, lambda pgm: pgm.add_columns("groups", new_columns, if_not_exists=True))
    build(conn, lambda pgm: pgm.add_column("groups", "size", "integer"))
    assert [row[:3] for row in columns(conn, "groups")] == [
        ("group_id", "uuid", "gen_random_uuid()"),
        ("name", "character varying", None),
        ("archived", "boolean", "true"),
        ("code", "character varying", None),
        ("size", "integer", None),
    ]
    assert set(constraints(conn, "groups")) == {"groups_pkey", "groups_code_key"}


def test_drop_columns_and_drop_column(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.create_table("t", {"a": "int", "b": "int", "c": "int", "d": "int"}))
    build(conn, lambda pgm: pgm.sql("CREATE VIEW v AS SELECT d FROM t"))
    pgm = build(conn, lambda pgm: pgm.drop_columns("t", ["a", "b"]))
    assert rendered(conn, pgm) == ['ALTER TABLE "t"\n  DROP COLUMN "a",\n  DROP COLUMN "b"']
    build(conn, lambda pgm: pgm.drop_column("t", "a", if_exists=True))
    build(conn, lambda pgm: pgm.drop_column("t", "d", cascade=True))
    assert [row[0] for row in columns(conn, "t")] == ["c"]
    assert query(conn, "SELECT to_regclass('v')") == [(None,)]


def test_alter_column_type_default_nullability_and_collation(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.create_table("t", {"n": {"type": "varchar", "default": "1"}, "s": "varchar"}))
    pgm = build(
        conn,
        lambda pgm: pgm.alter_column("t", "n", type="integer", using="n::integer", default=7, not_null=True),
    )
    assert rendered(conn, pgm) == [
        'ALTER TABLE "t"\n'
        '  ALTER COLUMN "n" DROP DEFAULT,\n'
        '  ALTER COLUMN "n" SET DEFAULT 7,\n'
        '  ALTER COLUMN "n" SET DATA TYPE integer USING n::integer,\n'
        '  ALTER COLUMN "n" SET NOT NULL'
    ]
    assert columns(conn, "t")[0] == ("n", "integer", "7", "NO")
    build(conn, lambda pgm: pgm.alter_column("t", "n", default=None, not_null=False))
    build(conn, lambda pgm: pgm.alter_column("t", "s", type="text", collation="C"))
    assert columns(conn, "t") == [("n", "integer", None, "YES"), ("s", "text", None, "YES")]
    assert query(conn, "SELECT collation_name FROM information_schema.columns WHERE column_name = 's'") == [("C",)]


def test_rename_column_and_table(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.create_table("old", {"a": "int"}))
    build(conn, lambda pgm: (pgm.rename_column("old", "a", "b"), pgm.rename_table("old", "new")))
    assert not table_exists(conn, "old")
    assert [row[0] for row in columns(conn, "new")] == ["b"]


# -- constraints ---------------------------------------------------------------------------------


def test_add_and_drop_named_constraints(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.create_table("t", {"a": "int", "b": "text"}))
    build(
        conn,
        lambda pgm: (
            pgm.add_constraint("t", "b_not_blank", "CHECK (length(b) > 0)"),
            pgm.add_constraint("t", "a_b_unique", "UNIQUE (a, b)"),
        ),
    )
    assert constraints(conn, "t") == {"b_not_blank": "CHECK ((length(b) > 0))", "a_b_unique": "UNIQUE (a, b)"}
    pgm = build(conn, lambda pgm: pgm.drop_constraint("t", "b_not_blank", cascade=True))
    assert rendered(conn, pgm) == ['ALTER TABLE "t"\n  DROP CONSTRAINT "b_not_blank" CASCADE']
    build(conn, lambda pgm: pgm.drop_constraint("t", "b_not_blank", if_exists=True))
    assert list(constraints(conn, "t")) == ["a_b_unique"]


# -- indexes -------------------------------------------------------------------------------------


def test_create_index_default_names_and_options(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.create_table("t", {"a": "int", "b": "int", "c": "text"}))
    pgm = build(
        conn,
        lambda pgm: (
            pgm.create_index("t", "a"),
            pgm.create_index("t", ["a", "b"], unique=True, where="a > 0", include="c"),
            pgm.create_index("t", "c", name="t_c_hash", method="hash", if_not_exists=True),
            pgm.create_index("t", "c", name="t_c_hash", method="hash", if_not_exists=True),
        ),
    )
    assert rendered(conn, pgm)[1] == (
        'CREATE UNIQUE INDEX "t_a_b_unique_index" ON "t" ("a", "b") INCLUDE ("c") WHERE a > 0'
    )
    assert indexes(conn, "t") == {
        "t_a_index": "CREATE INDEX t_a_index ON public.t USING btree (a)",
        "t_a_b_unique_index": "CREATE UNIQUE INDEX t_a_b_unique_index ON public.t USING btree (a, b) INCLUDE (c)"
        " WHERE (a > 0)",
        "t_c_hash": "CREATE INDEX t_c_hash ON public.t USING hash (c)",
    }
    build(
        conn,
        lambda pgm: (
            pgm.drop_index("t", "a"),
            pgm.drop_index("t", ["a", "b"], unique=True, cascade=True),
            pgm.drop_index("t", "c", name="t_c_hash", if_exists=True),
            pgm.drop_index("t", "c", name="t_c_hash", if_exists=True),
        ),
    )
    assert indexes(conn, "t") == {}


def test_indexes_on_a_schema_qualified_table(conn: Connection) -> None:
    build(conn, lambda pgm: (pgm.sql("CREATE SCHEMA s"), pgm.create_table(("s", "t"), {"a": "int"})))
    pgm = build(conn, lambda pgm: pgm.create_index(("s", "t"), "a"))
    assert rendered(conn, pgm) == ['CREATE INDEX "t_a_index" ON "s"."t" ("a")']
    assert query(conn, "SELECT schemaname, indexname FROM pg_indexes WHERE tablename = 't'") == [("s", "t_a_index")]
    pgm = build(conn, lambda pgm: pgm.drop_index(("s", "t"), "a"))
    assert rendered(conn, pgm) == ['DROP INDEX "s"."t_a_index"']
    assert indexes(conn, "t") == {}


def test_concurrent_index_needs_no_transaction(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.create_table("t", {"a": "int"}))
    pgm = MigrationBuilder()
    assert pgm.use_transaction is True
    pgm.no_transaction()
    pgm.create_index("t", "a", concurrently=True, if_not_exists=True)
    pgm.drop_index("t", "a", concurrently=True, if_exists=True)
    assert pgm.use_transaction is False
    assert rendered(conn, pgm) == [
        'CREATE INDEX CONCURRENTLY IF NOT EXISTS "t_a_index" ON "t" ("a")',
        'DROP INDEX CONCURRENTLY IF EXISTS "t_a_index"',
    ]
    run(conn, pgm)
    assert indexes(conn, "t") == {}


# -- extensions ----------------------------------------------------------------------------------


def installed_extensions(conn: Connection) -> dict[str, str]:
    return dict(
        query(conn, "SELECT e.extname, n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace")
    )


def test_create_and_drop_extensions(conn: Connection) -> None:
    pgm = build(conn, lambda pgm: pgm.create_extension(["uuid-ossp", "vector"], if_not_exists=True))
    assert rendered(conn, pgm) == [
        'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"',
        'CREATE EXTENSION IF NOT EXISTS "vector"',
    ]
    build(conn, lambda pgm: pgm.create_extension("vector", if_not_exists=True))
    assert installed_extensions(conn).keys() >= {"uuid-ossp", "vector", "plpgsql"}
    pgm = build(conn, lambda pgm: pgm.drop_extension(["vector", "uuid-ossp"], if_exists=True, cascade=True))
    assert rendered(conn, pgm) == ['DROP EXTENSION IF EXISTS "vector", "uuid-ossp" CASCADE']
    build(conn, lambda pgm: pgm.drop_extension("vector", if_exists=True))
    assert list(installed_extensions(conn)) == ["plpgsql"]


def test_create_extension_in_a_schema(conn: Connection) -> None:
    build(conn, lambda pgm: (pgm.sql("CREATE SCHEMA extensions"), pgm.create_extension("vector", schema="extensions")))
    assert installed_extensions(conn)["vector"] == "extensions"


# -- raw SQL -------------------------------------------------------------------------------------


def test_sql_without_params_is_taken_as_written(conn: Connection) -> None:
    text = """
        CREATE FUNCTION shout(t text) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN
            RETURN upper(t) || ' {100%}';
        END $$;
        CREATE TABLE said (line text DEFAULT shout('hi'));
    """
    pgm = build(conn, lambda pgm: pgm.sql(text))
    assert rendered(conn, pgm) == [text]
    with conn.cursor() as cursor:
        cursor.execute("INSERT INTO said DEFAULT VALUES RETURNING line")
        assert cursor.fetchone() == ("HI {100%}",)


def test_sql_params_are_quoted_literals_and_func_is_raw(conn: Connection) -> None:
    build(conn, lambda pgm: pgm.create_table("notes", {"body": "text", "at": "timestamptz", "tags": "jsonb"}))
    pgm = build(
        conn,
        lambda pgm: pgm.sql(
            "INSERT INTO notes VALUES ({body}, {at}, '{{}}')",
            {"body": "it's {not} a placeholder; DROP TABLE notes; --", "at": func("now()")},
        ),
    )
    assert rendered(conn, pgm) == [
        "INSERT INTO notes VALUES ('it''s {not} a placeholder; DROP TABLE notes; --', now(), '{}')"
    ]
    assert query(conn, "SELECT body, tags FROM notes WHERE at IS NOT NULL") == [
        ("it's {not} a placeholder; DROP TABLE notes; --", {})
    ]


def test_func_is_a_module_function_and_a_method() -> None:
    assert func("now()") == MigrationBuilder().func("now()") == PgLiteral("now()")


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda pgm: pgm.create_table("t", {"a": {"type": "int", "notNull": True}}), r"'notNull'.*'not_null'"),
        (
            lambda pgm: pgm.create_table("t", {"a": {"type": "int", "colour": 1}}),
            r"column 'a'.*unknown option 'colour'",
        ),
        (lambda pgm: pgm.create_table("t", {"a": {"not_null": True}}), r"column 'a'.*'type' option is required"),
        (lambda pgm: pgm.create_table("t", {"a": ""}), r"column 'a': type"),
        (lambda pgm: pgm.create_table("t", {"a": 5}), r"column 'a'"),
        (
            lambda pgm: pgm.create_table("t", {"a": {"type": "int", "references": "p", "on_delete": "DROP"}}),
            r"column 'a': on_delete: 'DROP' is not one of",
        ),
        (
            lambda pgm: pgm.create_table("t", {"a": {"type": "int", "references": "p", "on_update": "cascades"}}),
            r"column 'a': on_update",
        ),
        (
            lambda pgm: pgm.create_table("t", {"a": {"type": "int", "on_delete": "CASCADE"}}),
            r"on_delete needs references",
        ),
        (
            lambda pgm: pgm.create_table("t", {"a": {"type": "int", "references": "users(user_id)"}}),
            r"column 'a'.*references_column",
        ),
        (lambda pgm: pgm.create_table("t", {"a": {"type": "int", "unique": "yes"}}), r"column 'a': unique"),
        (lambda pgm: pgm.create_table("t", {"a": {"type": "int", "default": object()}}), r"column 'a': default"),
        (lambda pgm: pgm.create_table("", {"a": "int"}), r"table name ''"),
        (lambda pgm: pgm.create_table(("a", "b", "c"), {"a": "int"}), r"table name \('a', 'b', 'c'\)"),
        (lambda pgm: pgm.create_table("t\x00", {"a": "int"}), r"not a valid identifier"),
        (lambda pgm: pgm.create_table("t", {"a": "int"}, constraints={"uniq": ["a"]}), r"'uniq'.*'unique'"),
        (
            lambda pgm: pgm.create_table("t", {"a": "int"}, constraints={"foreign_keys": [{"columns": "a"}]}),
            r"foreign key: the 'references' option is required",
        ),
        (lambda pgm: pgm.add_columns("t", {}), r"add_columns 't': give at least one column"),
        (lambda pgm: pgm.drop_columns("t", []), r"drop_columns 't'.*empty"),
        (lambda pgm: pgm.alter_column("t", "a"), r"alter_column 't', column 'a': nothing to change"),
        (lambda pgm: pgm.alter_column("t", "a", using="a::int"), r"column 'a': using and collation need a new type"),
        (lambda pgm: pgm.create_index("t", []), r"create_index 't'.*empty"),
        (lambda pgm: pgm.sql("SELECT {missing}", {"other": 1}), r"placeholder \{missing\}"),
        (lambda pgm: pgm.sql("SELECT '{}'", {"other": 1}), r"write a literal brace as \{\{"),
        (lambda pgm: pgm.sql("  "), r"sql\(\): the SQL text is empty"),
        (lambda pgm: pgm.func(""), r"func\(\)"),
    ],
)
def test_bad_arguments_are_value_errors_naming_the_problem(call: Callback, message: str) -> None:
    pgm = MigrationBuilder()
    with pytest.raises(ValueError, match=message):
        call(pgm)
    assert pgm.statements == []
