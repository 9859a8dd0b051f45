"""The lexer against PostgreSQL itself: whatever it accepts is what the server runs, statement for statement.

SQL text is generated from what ends or opens something in PostgreSQL (quotes with doubled quotes, E'' strings
with backslash escapes and continuation lines, dollar quotes with non-ASCII tags, quoted identifiers, line
comments ending in \\n or \\r, nested block comments), as statements that each insert one known value. The text
then goes to the server as one query string, as the engine sends a transaction. Cut short anywhere, it must
either be refused by the lexer or leave a statement appended after it intact; and as a migration, the engine's
invariant holds: its row exists exactly when its effects do.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lambda_db_setup import testing
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import MigrationError, MigrationFileError
from lambda_db_setup.execute import SEPARATOR
from lambda_db_setup.sqltext import split_statements, unreadable
from tests import safety
from tests.helpers import applied_names, write_sql

module_database_url = safety.module_database_url
PROPERTIES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ENGINE_PROPERTIES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Characters that end or open something in SQL, and some that do not (non-ASCII, as PostgreSQL reads high bytes).
ALPHABET = "a; '\"$-/*\\\n\rEeжü€日"
TAGS = ["", "ж", "ü", "tag_1", "日本", "_x", "Ab9"]
SENTINEL = "INSERT INTO lexed VALUES (-1, 'sentinel')"


@dataclass(frozen=True)
class Value:
    """An SQL expression and the text PostgreSQL must make of it."""

    sql: str
    text: str


contents = st.text(alphabet=ALPHABET, max_size=10)


def _standard(text: str) -> Value:
    return Value("'" + text.replace("'", "''") + "'", text)


def _escaped(parts: list[tuple[str, str]]) -> Value:
    return Value("E'" + "".join(sql for sql, _ in parts) + "'", "".join(text for _, text in parts))


escape_parts = st.lists(
    st.sampled_from([("a", "a"), (";", ";"), ("\\'", "'"), ("''", "'"), ("\\\\", "\\"), ('"', '"'), ("$$", "$$")])
    | st.sampled_from([("--", "--"), ("/*", "/*"), ("ж", "ж"), ("\\n", "\n")]),
    max_size=8,
)


def _dollar(pair: tuple[str, str]) -> Value:
    tag, text = pair
    delimiter = f"${tag}$"
    body = text.replace(delimiter, "")
    while delimiter in body or body.endswith(f"${tag}") or (tag == "" and body.endswith("$")):
        body = body.replace(delimiter, "").rstrip("$")
    return Value(delimiter + body + delimiter, body)


def _continued(pair: tuple[Value, str]) -> Value:
    """``E'a'`` or ``'a'`` followed, after a newline (and a comment), by ``'b'``: one string to PostgreSQL."""
    first, second = pair
    joint = "\n" if len(second) % 2 else " -- joined\n  "
    if first.sql.startswith("E'"):
        return Value(
            first.sql + joint + "'" + second.replace("\\", "\\\\").replace("'", "\\'") + "'", first.text + second
        )
    return Value(first.sql + joint + "'" + second.replace("'", "''") + "'", first.text + second)


values = st.one_of(
    contents.map(_standard),
    escape_parts.map(_escaped),
    st.tuples(st.sampled_from(TAGS), contents).map(_dollar),
    st.tuples(st.one_of(contents.map(_standard), escape_parts.map(_escaped)), contents).map(_continued),
)


def _line_comment(pair: tuple[str, str]) -> str:
    text, end = pair
    return "--" + text.replace("\n", "").replace("\r", "") + end


def _block_comment(text: str) -> str:
    while "/*" in text or "*/" in text:
        text = text.replace("/*", "").replace("*/", "")
    return "/*" + text.rstrip("/*") + " /* nested */ */"


comments = st.one_of(
    st.tuples(contents, st.sampled_from(["\n", "\r"])).map(_line_comment),
    contents.map(_block_comment),
)
gaps = st.lists(comments, max_size=2).map(lambda parts: " " + " ".join(parts) + " ")
aliases = contents.map(lambda text: '"' + text.replace('"', '""') + '"' if text else '"a"')


@st.composite
def statements(draw) -> tuple[str, list[str]]:
    """SQL text of 1-4 statements, each inserting one value; the values PostgreSQL must store, in order."""
    parts: list[str] = []
    expected: list[str] = []
    for number in range(draw(st.integers(1, 4))):
        value = draw(values)
        alias = draw(aliases)
        parts.append(
            f"INSERT INTO lexed{draw(gaps)}SELECT {number},{draw(gaps)}{value.sql}{draw(gaps)}AS {alias}{draw(gaps)}"
        )
        expected.append(value.text)
    return ";".join(parts) + draw(st.sampled_from(["", ";", ";\n", "; -- end"])), expected


@pytest.fixture(scope="module")
def lexed(module_database_url: str) -> Iterator[psycopg2.extensions.connection]:
    conn = psycopg2.connect(module_database_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS lexed; CREATE TABLE lexed (n int, v text)")
    yield conn
    conn.close()


def run(conn, text: str) -> list[tuple[int, str]] | None:
    """Send ``text`` as one query string; the rows it inserted (None: the server refused it)."""
    with conn.cursor() as cursor:
        cursor.execute("TRUNCATE lexed")
        try:
            cursor.execute(text)
        except psycopg2.Error:
            return None
        cursor.execute("SELECT n, v FROM lexed ORDER BY n")
        return cursor.fetchall()


@PROPERTIES
@given(statements())
def test_what_the_lexer_splits_is_what_the_server_runs(lexed, generated) -> None:
    text, expected = generated
    assert unreadable(text) is None
    assert len(split_statements(text)) == len(expected)
    assert run(lexed, text) == list(enumerate(expected))
    for statement, value in zip(split_statements(text), expected, strict=True):  # each piece alone, too
        assert run(lexed, statement)[0][1] == value


@PROPERTIES
@given(statements(), st.data())
def test_text_cut_anywhere_is_refused_or_leaves_what_follows_intact(lexed, generated, data) -> None:
    """The engine appends its own statements after a migration's: cut short anywhere, either the lexer refuses
    the text, or a statement appended after it runs as itself (or the server refuses the whole string)."""
    text, _ = generated
    cut = text[: data.draw(st.integers(0, len(text)))]
    rows = run(lexed, cut + SEPARATOR + SENTINEL)
    if unreadable(cut) is None:
        assert rows is None or rows.count((-1, "sentinel")) == 1
        if rows is not None:  # and every statement before it ran as the lexer split them
            assert len(rows) - 1 == len([s for s in split_statements(cut) if s.upper().startswith("INSERT")])
    else:  # what the lexer refuses would indeed have swallowed the sentinel
        assert rows is None or (-1, "sentinel") not in rows


@PROPERTIES
@given(statements(), st.data())
def test_a_nul_anywhere_is_refused(lexed, generated, data) -> None:
    text, _ = generated
    at = data.draw(st.integers(0, len(text)))
    problem = unreadable(text[:at] + "\x00" + text[at:])
    assert problem is not None and problem.offset == at and "NUL" in problem.what


@ENGINE_PROPERTIES
@given(statements(), st.data())
def test_as_a_migration_its_row_exists_exactly_when_its_effects_do(
    server_url: str, tmp_path_factory, generated, data
) -> None:
    """Any cut or NUL-spoiled variant, run by the engine in a fresh database: refused with nothing applied,
    failed with nothing applied, or applied whole and recorded."""
    text, expected = generated
    mutation = data.draw(st.sampled_from(["whole", "cut", "nul"]))
    if mutation == "cut":
        text = text[: data.draw(st.integers(1, len(text)))]
    elif mutation == "nul":
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + "\x00" + text[at:]
    assume(split_statements(text) or unreadable(text))
    directory: Path = tmp_path_factory.mktemp("migrations")
    write_sql(directory, "1000_schema", "CREATE TABLE lexed (n int, v text);")
    write_sql(directory, "2000_generated", text)
    with testing.scratch_database(server_url, "lx") as url, testing.autocommit_connection(url) as conn:
        try:
            Engine(conn, directory).up()
            outcome = "applied"
        except MigrationFileError:
            outcome = "refused"
        except MigrationError:
            outcome = "failed"
        rows = lexed_rows(conn)
        names = applied_names(conn)
    if outcome == "refused":
        assert names == [] and rows == []
    elif outcome == "failed":
        assert "2000_generated" not in names and rows == []
    else:
        assert names == ["1000_schema", "2000_generated"]
        if mutation == "whole":
            assert rows == list(enumerate(expected))


def lexed_rows(conn) -> list[tuple[int, str]]:
    """The rows of ``lexed`` ([] when the table does not exist: nothing was applied)."""
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass('lexed') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return []
        cursor.execute("SELECT n, v FROM lexed ORDER BY n")
        return cursor.fetchall()
