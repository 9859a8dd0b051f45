"""Migration files written to fool the runner: each is refused naming the file, or warned about, never run wrongly.

Most tests need no database: loading and building a file is pure. Those that do check that nothing changed.
"""

from __future__ import annotations

import hashlib
import os
import textwrap
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_db_setup.discovery import (
    MAX_FILE_NAME_BYTES,
    MAX_NAME_LENGTH,
    IrreversibleMigrationError,
    discover,
    parse_file_name,
    scan,
    slug_for,
)
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import MigrationFileError
from lambda_db_setup.sqltext import parse_sections
from tests import safety
from tests.helpers import applied_names, table_exists, write_py, write_sql
from tests.safety import catalog, run_cli

module_database_url = safety.module_database_url
database_url = safety.database_url


def python_file(directory: Path, name: str, source: str) -> Path:
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(source).lstrip())
    return path


def load(path: Path, direction: str = "up"):
    """Import and build one file, as the engine does before running anything."""
    return parse_file_name(path).build(direction)


# -- 1. up/down that would only create a coroutine or generator ---------------------------------------

DEFERRED_DEFINITIONS = {
    "async-def": ("async def {d}(pgm):\n    pgm.sql('CREATE TABLE t (id int)')\n", "an async def"),
    "generator": ("def {d}(pgm):\n    pgm.sql('CREATE TABLE t (id int)')\n    yield\n", "a generator function"),
    "async-generator": ("async def {d}(pgm):\n    pgm.sql('SELECT 1')\n    yield\n", "an async generator function"),
    "partial-of-async": (
        "import functools\n\nasync def _run(table, pgm):\n    pgm.sql('SELECT 1')\n\n"
        "{d} = functools.partial(_run, 't')\n",
        "an async def",
    ),
    "async-method": (
        "class _Steps:\n    async def run(self, pgm):\n        pgm.sql('SELECT 1')\n\n{d} = _Steps().run\n",
        "an async def",
    ),
    "async-callable-instance": (
        "class _Up:\n    async def __call__(self, pgm):\n        pgm.sql('SELECT 1')\n\n{d} = _Up()\n",
        "an async def",
    ),
    "generator-callable-instance": (
        "class _Up:\n    def __call__(self, pgm):\n        yield pgm.sql('SELECT 1')\n\n{d} = _Up()\n",
        "a generator function",
    ),
}


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize("case", list(DEFERRED_DEFINITIONS))
def test_deferred_up_or_down_is_refused_on_import(migrations_dir, case: str, direction: str) -> None:
    definition, kind = DEFERRED_DEFINITIONS[case]
    source = definition.format(d=direction)
    if direction == "down":
        source = "def up(pgm):\n    pgm.sql('SELECT 1')\n\n" + source
    path = python_file(migrations_dir, "1000_deferred", source)
    with pytest.raises(MigrationFileError) as caught:
        load(path, "up")  # importing is enough, even for a bad down
    assert str(caught.value).startswith(f"1000_deferred.py: {direction}(pgm) is {kind}")
    assert "nothing in it would run" in str(caught.value)
    assert caught.value.migration == "1000_deferred"


LAZY_RESULTS = {
    "lambda-returning-coroutine": (
        "async def _up(pgm):\n    pgm.sql('SELECT 1')\n\nup = lambda pgm: _up(pgm)\n",
        "coroutine",
    ),
    "wrapper-returning-coroutine": (
        "import functools\n\nasync def _up(pgm):\n    pgm.sql('SELECT 1')\n\n"
        "def _sync(f):\n    @functools.wraps(f)\n    def wrapper(pgm):\n        return f(pgm)\n    return wrapper\n\n"
        "up = _sync(_up)\n",
        "coroutine",
    ),
    "generator-expression": ("def up(pgm):\n    return (pgm.sql(s) for s in ['SELECT 1'])\n", "generator"),
    "map": ("def up(pgm):\n    return map(pgm.sql, ['SELECT 1'])\n", "map"),
    "async-generator-object": (
        "async def _gen(pgm):\n    yield pgm.sql('SELECT 1')\n\nup = lambda pgm: _gen(pgm)\n",
        "async_generator",
    ),
    "callable-instance": (
        "async def _up(pgm):\n    pgm.sql('SELECT 1')\n\n"
        "class _Up:\n    def __call__(self, pgm):\n        return _up(pgm)\n\nup = _Up()\n",
        "coroutine",
    ),
}


@pytest.mark.parametrize("case", list(LAZY_RESULTS))
def test_up_returning_a_coroutine_or_iterator_is_refused_when_built(migrations_dir, case: str) -> None:
    source, type_name = LAZY_RESULTS[case]
    path = python_file(migrations_dir, "1000_lazy", source)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the coroutine is closed, not left "never awaited"
        with pytest.raises(MigrationFileError) as caught:
            load(path)
    assert str(caught.value).startswith(f"1000_lazy.py: up(pgm) returned {type_name} object instead of running;")


def test_a_plain_return_value_and_a_sync_wrapper_that_runs_the_coroutine_are_fine(migrations_dir) -> None:
    list_result = python_file(migrations_dir, "1000_list", "def up(pgm):\n    return [pgm.sql('SELECT 1')]\n")
    assert len(load(list_result).statements) == 1
    runs_it = python_file(
        migrations_dir,
        "2000_runs_it",
        """
        import asyncio
        import functools

        def synchronous(f):
            @functools.wraps(f)
            def wrapper(pgm):
                asyncio.run(f(pgm))
            return wrapper

        @synchronous
        async def up(pgm):
            pgm.sql("SELECT 1")
        """,
    )
    assert len(load(runs_it).statements) == 1


def test_async_up_is_never_recorded_as_applied(conn, migrations_dir) -> None:
    python_file(migrations_dir, "1000_async", "async def up(pgm):\n    pgm.sql('CREATE TABLE a (id int)')\n")
    before = catalog(conn)
    with pytest.raises(MigrationFileError, match=r"^1000_async\.py: up\(pgm\) is an async def"):
        Engine(conn, migrations_dir).up()
    assert catalog(conn) == before


# -- 2. sys.exit() and other BaseExceptions --------------------------------------------------------

EXITS = [("sys.exit()", "sys.exit()"), ("sys.exit(0)", "sys.exit(0)"), ("sys.exit('bye')", "sys.exit('bye')")]


@pytest.mark.parametrize(
    ("call", "shown"), [*EXITS, ("raise SystemExit(3)", "sys.exit(3)"), ("exit(0)", "sys.exit(0)")]
)
def test_sys_exit_on_import_names_the_file(migrations_dir, call: str, shown: str) -> None:
    path = python_file(migrations_dir, "1000_exits", f"import sys\n{call}\n\ndef up(pgm):\n    pass\n")
    with pytest.raises(MigrationFileError) as caught:
        load(path)
    assert str(caught.value) == f"1000_exits.py: called {shown} on import"


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize(("call", "shown"), EXITS)
def test_sys_exit_in_up_or_down_names_the_file(migrations_dir, direction: str, call: str, shown: str) -> None:
    path = write_py(migrations_dir, "1000_exits", f"import sys\n{call}", f"import sys\n{call}")
    with pytest.raises(MigrationFileError) as caught:
        load(path, direction)
    assert str(caught.value) == f"1000_exits.py: {direction}(pgm) called {shown}"


def test_other_base_exceptions_name_the_file(migrations_dir) -> None:
    on_import = python_file(migrations_dir, "1000_on_import", "raise GeneratorExit('odd')\n\ndef up(pgm):\n    pass\n")
    with pytest.raises(MigrationFileError, match=r"^1000_on_import\.py: import failed: GeneratorExit: odd$"):
        load(on_import)
    in_up = python_file(
        migrations_dir,
        "2000_in_up",
        "class Stop(BaseException):\n    pass\n\ndef up(pgm):\n    raise Stop('halt')\n",
    )
    with pytest.raises(MigrationFileError, match=r"^2000_in_up\.py: up\(pgm\) raised Stop: halt$"):
        load(in_up)


def test_keyboard_interrupt_passes_through(migrations_dir) -> None:
    on_import = python_file(migrations_dir, "1000_on_import", "raise KeyboardInterrupt\n\ndef up(pgm):\n    pass\n")
    with pytest.raises(KeyboardInterrupt):
        load(on_import)
    in_down = write_py(migrations_dir, "2000_in_down", "pass", "raise KeyboardInterrupt")
    with pytest.raises(KeyboardInterrupt):
        load(in_down, "down")


def test_cli_run_with_sys_exit_in_a_migration_fails_and_applies_nothing(conn, database_url, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_first", "CREATE TABLE first (id int);", "DROP TABLE first;")
    write_py(migrations_dir, "2000_quits", 'import sys\npgm.sql("CREATE TABLE quits (id int)")\nsys.exit(0)')
    run = run_cli(["up", "--database-url", database_url, "--migrations-dir", str(migrations_dir)])
    assert run.returncode == 1
    assert run.stderr.splitlines()[-1] == "error: 2000_quits.py: up(pgm) called sys.exit(0)"
    assert applied_names(conn) == [] and not table_exists(conn, "first")


# -- 3. the no-transaction directive counts only in the header ---------------------------------------


def sections(text: str):
    return parse_sections(text, "1000_x.sql")


@pytest.mark.parametrize(
    "header",
    [
        "-- pgm:no-transaction\n",
        "-- Create the index without blocking writes.\n  -- PGM: no-transaction  \r\n",
        "/* about this file */\n-- pgm:no-transaction\n\n",
    ],
)
def test_directive_in_the_header_is_honoured(header: str) -> None:
    assert sections(f"{header}-- Up Migration\nCREATE INDEX CONCURRENTLY i ON t (a);\n").use_transaction is False


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("-- Up Migration\nSELECT 1;\n-- Down Migration\n-- pgm:no-transaction\nSELECT 2;\n", 4),
        ("-- Up Migration\n-- pgm:no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n", 2),
        ("-- Up Migration\nSELECT 1;\n  --pgm:no-transaction\n", 3),
        ("-- Up Migration\nSELECT $$ $$;\n-- pgm:no-transaction\nSELECT 2;\n", 3),  # after a closed $$ body
    ],
    ids=["in-down", "after-up-marker", "at-the-end", "after-a-dollar-body"],
)
def test_directive_after_the_header_is_an_error_naming_its_line(text: str, line: int) -> None:
    with pytest.raises(MigrationFileError) as caught:
        sections(text)
    assert str(caught.value) == (
        f"1000_x.sql: line {line}: '-- pgm:no-transaction' counts only in the header; move it above '-- Up Migration'"
    )


@pytest.mark.parametrize(
    "text",
    [
        "-- Up Migration\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\n-- pgm:no-transaction\nSELECT 1 $$;\n",
        "-- Up Migration\nDO $body$ BEGIN\n  -- pgm:no-transaction\nEND $body$;\n",
        "-- Up Migration\nSELECT '\n-- pgm:no-transaction\n';\n",
        "/*\n-- pgm:no-transaction\n*/\n-- Up Migration\nSELECT 1;\n",
        "-- Up Migration\nSELECT 1;\n/* -- pgm:no-transaction\n   /* nested */ -- pgm:typo\n*/\n",
        "-- Up Migration\nSELECT 1; -- pgm:no-transaction\n",
    ],
    ids=["dollar-body", "tagged-dollar-body", "string", "block-comment-in-header", "nested-block-comment", "mid-line"],
)
def test_directive_text_inside_sql_bodies_and_block_comments_is_just_text(text: str) -> None:
    assert sections(text).use_transaction is True


@pytest.mark.parametrize("directive", ["-- pgm:no_transaction", "-- pgm: notransaction", "--pgm:no-transaction;"])
def test_misspelt_directive_is_an_error(directive: str) -> None:
    with pytest.raises(MigrationFileError) as caught:
        sections(f"{directive}\n-- Up Migration\nSELECT 1;\n")
    assert str(caught.value) == (
        f"1000_x.sql: line 1: unknown directive {directive!r}; the only one is '-- pgm:no-transaction'"
    )


def test_directive_inside_a_dollar_body_does_not_take_the_migration_out_of_its_transaction(
    conn, migrations_dir
) -> None:
    write_sql(
        migrations_dir,
        "1000_body",
        "CREATE TABLE b (id int);\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$\n-- pgm:no-transaction\n"
        "SELECT 1 $$;\nCREATE TABLE b (id int);",
    )
    with pytest.raises(Exception, match="already exists"):
        Engine(conn, migrations_dir).up()
    assert not table_exists(conn, "b")  # rolled back as one transaction


# -- 4. irreversible migrations -------------------------------------------------------------------

CREATE_SQL_TEMPLATE = """-- Index messages by session.
-- Add a line '-- pgm:no-transaction' to run this file outside a transaction (CREATE INDEX CONCURRENTLY).

-- Up Migration
CREATE TABLE one_way (id int);

-- Down Migration

"""


@pytest.mark.parametrize(
    ("file_name", "text", "message"),
    [
        ("1000_template.sql", CREATE_SQL_TEMPLATE, "the '-- Down Migration' section has no SQL statement"),
        (
            "1000_comments.sql",
            "-- Up Migration\nCREATE TABLE t (id int);\n-- Down Migration\n-- nothing to undo\n/* really */\n;\n",
            "the '-- Down Migration' section has no SQL statement",
        ),
        ("1000_absent.sql", "-- Up Migration\nCREATE TABLE t (id int);\n", "no '-- Down Migration' section"),
        ("1000_no_down.py", "def up(pgm):\n    pgm.sql('SELECT 1')\n", "no down(pgm) function"),
        ("1000_down_none.py", "def up(pgm):\n    pgm.sql('SELECT 1')\n\ndown = None\n", "no down(pgm) function"),
        (
            "1000_down_pass.py",
            "def up(pgm):\n    pgm.sql('SELECT 1')\n\ndef down(pgm):\n    pass\n",
            "down(pgm) adds no SQL statement",
        ),
    ],
)
def test_irreversible_migrations_are_recognised(migrations_dir, file_name: str, text: str, message: str) -> None:
    (migrations_dir / file_name).write_text(text)
    migration = parse_file_name(migrations_dir / file_name)
    assert migration.reversible is False
    with pytest.raises(IrreversibleMigrationError) as caught:
        migration.build("down")
    assert str(caught.value).startswith(f"{file_name}: {message}")
    assert isinstance(caught.value, MigrationFileError) and caught.value.migration == migration.name
    assert migration.build("up").statements  # up is unaffected


def test_reversible_migrations_are_recognised(migrations_dir) -> None:
    sql = write_sql(migrations_dir, "1000_sql", "CREATE TABLE t (id int);", "-- undo\nDROP TABLE t;")
    py = write_py(migrations_dir, "2000_py", 'pgm.sql("SELECT 1")', 'pgm.sql("SELECT 2")')
    assert parse_file_name(sql).reversible and parse_file_name(py).reversible


def test_reversible_does_not_hide_a_broken_down(migrations_dir) -> None:
    path = write_py(migrations_dir, "1000_broken_down", 'pgm.sql("SELECT 1")', 'raise ValueError("oops")')
    with pytest.raises(MigrationFileError, match="down\\(pgm\\) raised ValueError: oops"):
        _ = parse_file_name(path).reversible


def test_down_of_an_empty_down_section_keeps_the_table_and_its_row(conn, migrations_dir) -> None:
    (migrations_dir / "1000_template.sql").write_text(CREATE_SQL_TEMPLATE)
    Engine(conn, migrations_dir).up()
    before = catalog(conn)
    with pytest.raises(IrreversibleMigrationError, match=r"^1000_template\.sql: the '-- Down Migration' section"):
        Engine(conn, migrations_dir).down()
    assert catalog(conn) == before and applied_names(conn) == ["1000_template"]


# -- 5. a UTF-8 byte order mark -------------------------------------------------------------------

BOM = b"\xef\xbb\xbf"


def test_sql_file_with_a_bom_is_read_and_hashed_as_it_is(migrations_dir) -> None:
    data = BOM + b"-- Up Migration\r\nCREATE TABLE t (id int);\r\n-- Down Migration\r\nDROP TABLE t;\r\n"
    (migrations_dir / "1000_bom.sql").write_bytes(data)
    migration = discover(migrations_dir)[0]
    assert [statement.as_string(None) for statement in migration.build("up").statements] == ["CREATE TABLE t (id int)"]
    assert migration.reversible
    assert migration.checksum == hashlib.sha256(data).hexdigest()


def test_sql_file_with_a_bom_and_a_directive_in_its_first_line(migrations_dir) -> None:
    (migrations_dir / "1000_bom.sql").write_bytes(BOM + b"-- pgm:no-transaction\n-- Up Migration\nSELECT 1;\n")
    assert not parse_file_name(migrations_dir / "1000_bom.sql").build("up").use_transaction


def test_python_file_with_a_bom_imports(migrations_dir) -> None:
    (migrations_dir / "1000_bom.py").write_bytes(BOM + b"def up(pgm):\n    pgm.sql('SELECT 1')\n")
    assert len(load(migrations_dir / "1000_bom.py").statements) == 1


# -- 6. look-alike entries are skipped with a warning --------------------------------------------------


def test_look_alikes_are_skipped_with_a_warning_each(migrations_dir) -> None:
    write_sql(migrations_dir, "1000_good", "SELECT 1;")
    (migrations_dir / "2000_upper.SQL").write_text("-- Up Migration\nSELECT 1;\n")
    (migrations_dir / "3000_mixed.Py").write_text("def up(pgm):\n    pass\n")
    (migrations_dir / "4000_Add-Users.SQL").write_text("-- Up Migration\nSELECT 1;\n")
    (migrations_dir / "5000_a_directory.sql").mkdir()
    os.symlink(migrations_dir / "gone.sql", migrations_dir / "6000_dangling.sql")
    os.symlink(migrations_dir / "5000_a_directory.sql", migrations_dir / "7000_to_a_directory.py")
    os.mkfifo(migrations_dir / "8000_fifo.sql")
    for ignored in ("README.md", "_helpers.py", ".1000_good.sql.swp", "9000_x.sql.bak", "notes.SQL"):
        (migrations_dir / ignored).write_text("")
    (migrations_dir / "__pycache__").mkdir()
    found = scan(migrations_dir)
    assert [migration.name for migration in found.migrations] == ["1000_good"]
    assert found.skipped == (
        "2000_upper.SQL: skipped: the extension .SQL is not lower-case; rename it to .sql to run it",
        "3000_mixed.Py: skipped: the extension .Py is not lower-case; rename it to .py to run it",
        "4000_Add-Users.SQL: skipped: the extension .SQL is not lower-case; rename it to .sql to run it",
        "5000_a_directory.sql: skipped: is a directory",
        f"6000_dangling.sql: skipped: is a symlink to {str(migrations_dir / 'gone.sql')!r}, which does not exist",
        "7000_to_a_directory.py: skipped: is a directory",
        "8000_fifo.sql: skipped: is not a regular file",
    )
    assert discover(migrations_dir) == found.migrations


def test_hard_errors_stay_errors(migrations_dir) -> None:
    (migrations_dir / "1704110400000_Add-Users.sql").write_text("-- Up Migration\nSELECT 1;\n")
    with pytest.raises(MigrationFileError, match=r"^1704110400000_Add-Users\.sql: not a migration file name"):
        scan(migrations_dir)


def test_a_clean_directory_has_no_warnings(migrations_dir) -> None:
    write_sql(migrations_dir, "1000_good", "SELECT 1;")
    os.symlink(migrations_dir / "1000_good.sql", migrations_dir / "2000_linked.sql")
    found = scan(migrations_dir)
    assert found.skipped == () and [m.name for m in found.migrations] == ["1000_good", "2000_linked"]


# -- 7. names for new migrations ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("description", "slug"),
    [
        ("añadir preferencias", "anadir_preferencias"),
        ("Crème Brûlée", "creme_brulee"),
        ("Straße ändern", "strasse_andern"),
        ("Ærø Łódź", "aero_lodz"),
        ("ﬁle ①  ", "file_1"),
        ("  add users!  ", "add_users"),
        ("添加 users", "users"),
    ],
)
def test_slug_keeps_letters_without_their_accents(description: str, slug: str) -> None:
    assert slug_for(description, 1704110400000) == slug


@pytest.mark.parametrize("description", ["", "   ", "добавить", "追加", "!!!", "\u0301"])
def test_slug_with_nothing_usable_is_refused(description: str) -> None:
    with pytest.raises(MigrationFileError, match="has no ASCII letter or digit"):
        slug_for(description, 1704110400000)


def test_long_names_are_cut_to_fit_the_table_and_the_file_system(tmp_path: Path) -> None:
    timestamp = 1704110400000
    slug = slug_for("add " + "very " * 200 + "long", timestamp)
    file_name = f"{timestamp}_{slug}.sql"
    assert len(file_name.encode()) == MAX_FILE_NAME_BYTES and not slug.endswith("_")
    (tmp_path / file_name).write_text("-- Up Migration\nSELECT 1;\n")  # the file system takes it
    assert parse_file_name(tmp_path / file_name).name == file_name.removesuffix(".sql")


def test_a_timestamp_leaving_no_room_is_refused() -> None:
    with pytest.raises(MigrationFileError, match="leaves no room"):
        slug_for("x", 10**MAX_NAME_LENGTH)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400), st.integers(min_value=0, max_value=10**17 - 1), st.sampled_from(["py", "sql"]))
def test_any_text_gives_an_accepted_name_or_a_clean_refusal(description: str, timestamp: int, kind: str) -> None:
    try:
        slug = slug_for(description, timestamp)
    except MigrationFileError as error:
        assert "has no ASCII letter or digit" in str(error)
        return
    file_name = f"{timestamp}_{slug}.{kind}"
    migration = parse_file_name(Path(file_name))
    assert migration.name == f"{timestamp}_{slug}" and len(migration.name) <= MAX_NAME_LENGTH
    assert len(file_name.encode()) <= MAX_FILE_NAME_BYTES
