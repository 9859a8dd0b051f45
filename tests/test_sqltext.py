"""Property tests for reading SQL text: `.sql` sections, statement boundaries, migration file names.

Statements are generated from pieces that hide semicolons from a naive splitter (string literals, E''
strings, quoted identifiers, dollar-quoted bodies, line and nested block comments, BEGIN ATOMIC bodies),
joined with semicolons, and must come back exactly.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lambda_db_setup.discovery import MAX_NAME_LENGTH, parse_file_name, parse_timestamp
from lambda_db_setup.errors import MigrationFileError
from lambda_db_setup.sqltext import (
    DOWN_MARKER,
    NO_TRANSACTION_DIRECTIVE,
    UP_MARKER,
    dropped_tables,
    identifiers,
    is_transaction_control,
    parse_sections,
    split_statements,
)

PROPERTIES = settings(max_examples=60, deadline=None)

# Words the splitter treats specially (BEGIN ATOMIC ... CASE ... END); generated on purpose only.
SPECIAL_WORDS = {"begin", "atomic", "case", "end"}
ALPHABET = "aZ_0 \t;'\"$-/*\\\nEé€😀"  # characters that end or open something in SQL, and some that do not
text_bits = st.text(alphabet=ALPHABET, max_size=12)
line_bits = st.text(alphabet=ALPHABET.replace("\n", ""), max_size=12)

words = st.from_regex(r"[A-Za-z_][A-Za-z0-9_$]{0,8}", fullmatch=True).filter(lambda w: w.lower() not in SPECIAL_WORDS)
quoted_identifiers = text_bits.map(lambda text: '"' + text.replace('"', '""') + '"')
string_literals = text_bits.map(lambda text: "'" + text.replace("'", "''") + "'")
escape_strings = st.lists(st.sampled_from(["a", ";", "\\'", "''", "\\\\", '"', "$$", "--", " "])).map(
    lambda parts: "E'" + "".join(parts) + "'"
)
dollar_tags = st.sampled_from(["", "body", "fn_1", "X"])


def without(text: str, *needles: str) -> str:
    """``text`` with every occurrence of the needles removed, including ones that removal creates."""
    while any(needle in text for needle in needles):
        for needle in needles:
            text = text.replace(needle, "")
    return text


# A space before each closing delimiter: "$$a$" + "$$" or "/*a/" + "*/" would close early (as in PostgreSQL).
dollar_quoted = st.tuples(dollar_tags, text_bits).map(
    lambda pair: f"${pair[0]}$" + without(pair[1], f"${pair[0]}$") + f" ${pair[0]}$"
)
line_comments = line_bits.map(lambda text: "--" + text + "\n")
block_comments = st.recursive(
    text_bits.map(lambda text: "/* " + without(text, "/*", "*/") + " */"),
    lambda inner: st.tuples(text_bits, inner).map(
        lambda pair: "/* " + without(pair[0], "/*", "*/") + " " + pair[1] + " */"
    ),
    max_leaves=3,
)
others = st.sampled_from(["1", "42.5", "+", "(", ")", ",", "::", "$1", "=", "*", "[1]", "e", "E"])
tokens = st.one_of(
    words, quoted_identifiers, string_literals, escape_strings, dollar_quoted, line_comments, block_comments, others
)
heads = st.sampled_from(["SELECT", "INSERT", "update", "CREATE", "Alter", "COMMENT", "DO", "GRANT", "WITH"])
simple_statements = st.tuples(heads, st.lists(tokens, max_size=6)).map(lambda pair: " ".join([pair[0], *pair[1]]))
case_expressions = st.lists(tokens, max_size=3).map(lambda parts: "CASE WHEN " + " ".join(parts) + " THEN 1 END")
atomic_statements = st.lists(st.one_of(simple_statements, case_expressions.map("SELECT ".__add__)), min_size=1).map(
    lambda inner: "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC " + "; ".join(inner) + "; END"
)
statements = st.one_of(simple_statements, simple_statements, atomic_statements)
separators = st.sampled_from([";", "; ", ";\n", ";\n\n", " ;\t"])


@PROPERTIES
@given(st.lists(st.tuples(statements, separators), min_size=1, max_size=5), st.booleans())
def test_split_statements_returns_each_statement_exactly(pieces: list[tuple[str, str]], trailing: bool) -> None:
    text = "".join(statement + separator for statement, separator in pieces)
    if not trailing:
        text = text.rstrip().removesuffix(";")
    assert split_statements(text) == [statement.strip() for statement, _ in pieces]


@PROPERTIES
@given(st.lists(statements, min_size=1, max_size=4), st.lists(st.one_of(line_comments, block_comments), max_size=3))
def test_comment_only_pieces_are_dropped(parts: list[str], comments: list[str]) -> None:
    text = ";\n".join(parts) + ";\n" + "\n".join(comments) + ";;\n"
    assert split_statements(text) == [part.strip() for part in parts]
    assert split_statements("\n".join(comments)) == []


def test_split_statements_examples() -> None:
    assert split_statements("SELECT ';'; SELECT $$;$$; SELECT $a$ $$ ; $a$") == [
        "SELECT ';'",
        "SELECT $$;$$",
        "SELECT $a$ $$ ; $a$",
    ]
    assert split_statements("SELECT E'\\';'; SELECT 'a\\'; SELECT 2") == ["SELECT E'\\';'", "SELECT 'a\\'", "SELECT 2"]
    assert split_statements("SELECT a$b$c; SELECT $1;") == ["SELECT a$b$c", "SELECT $1"]
    assert split_statements("/* a /* ; */ ; */ SELECT 1; -- x;\nSELECT 2") == [
        "/* a /* ; */ ; */ SELECT 1",
        "-- x;\nSELECT 2",
    ]
    body = "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END"
    assert split_statements(f"{body}; SELECT 3") == [body, "SELECT 3"]


# -- sections ----------------------------------------------------------------------------------------


def marker(word: str) -> st.SearchStrategy[str]:
    """node-pg-migrate's marker line in any case and dash/space form: '-- Up Migration', '---- UP   migration'."""
    return st.tuples(
        st.sampled_from(["", " ", "\t"]),
        st.sampled_from(["", " ", "-", "- ", " -- ", "--- "]),
        st.sampled_from([word, word.upper(), word.capitalize(), word[0] + word[1:].upper()]),
        st.sampled_from([" ", "  ", "\t"]),
        st.sampled_from(["migration", "Migration", "MIGRATION", "miGration"]),
        st.sampled_from(["", " ", " (generated)", ": do not edit", "."]),
    ).map(lambda parts: f"{parts[0]}--{parts[1]}{parts[2]}{parts[3]}{parts[4]}{parts[5]}")


def is_marker_free(text: str) -> bool:
    return not (UP_MARKER.search(text) or DOWN_MARKER.search(text) or NO_TRANSACTION_DIRECTIVE.search(text))


section_bodies = st.lists(statements, min_size=1, max_size=2).map(lambda parts: ";\n".join(parts) + ";")
headers = st.lists(line_comments, max_size=2).map("".join)


@PROPERTIES
@given(headers, marker("up"), section_bodies, st.none() | st.tuples(marker("down"), section_bodies), st.booleans())
def test_sections_round_trip(
    header: str, up_marker: str, up: str, down: tuple[str, str] | None, no_transaction: bool
) -> None:
    assume(is_marker_free(header + up + (down[1] if down else "")))
    directive = "-- pgm:no-transaction\n" if no_transaction else ""
    text = f"{directive}{header}{up_marker}\n{up}\n"
    if down is not None:
        text += f"\n{down[0]}\n{down[1]}\n"
    sections = parse_sections(text, "1000_x.sql")
    assert sections.up == up.strip()
    assert sections.down == (down[1].strip() if down else None)
    assert sections.use_transaction is not no_transaction
    assert split_statements(sections.up) == split_statements(up)


@PROPERTIES
@given(headers, section_bodies)
def test_sections_without_up_marker_name_the_file(header: str, body: str) -> None:
    assume(is_marker_free(header + body))
    with pytest.raises(MigrationFileError, match=r"^1234_no_marker\.sql: no '-- Up Migration' marker line$"):
        parse_sections(header + body, "1234_no_marker.sql")


@PROPERTIES
@given(headers, section_bodies, section_bodies, st.sampled_from([2, 3, 5]), dollar_tags)
def test_directive_counts_only_in_the_header(header: str, up: str, down: str, position: int, tag: str) -> None:
    assume(is_marker_free(header + up + down))
    parts = [header, "-- Up Migration\n", up + "\n", "-- Down Migration\n", down + "\n"]
    in_body = f"SELECT ${tag}$\n-- pgm:no-transaction\n ${tag}$;\n"  # SQL text, not a directive
    text = "".join([*parts[:3], in_body, *parts[3:]])
    assert parse_sections(text, "1000_x.sql").use_transaction
    assert not parse_sections("-- pgm:no-transaction\n" + text, "1000_x.sql").use_transaction
    parts.insert(position, "-- pgm:no-transaction\n")  # after the up marker, before or after the down marker
    line = "".join(parts[:position]).count("\n") + 1
    with pytest.raises(MigrationFileError, match=rf"^1000_x\.sql: line {line}: '-- pgm:no-transaction' counts only"):
        parse_sections("".join(parts), "1000_x.sql")


def test_marker_words_inside_a_line_are_not_markers() -> None:
    text = "SELECT 1; -- up migration\n-- Up Migration\nSELECT '-- Down Migration';\n"
    assert parse_sections(text, "1_x.sql").up == "SELECT '-- Down Migration';"


# -- transaction control, identifiers, dropped tables -------------------------------------------------


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("COMMIT", True),
        ("  /* c */ -- x\n rollback", True),
        ("END", True),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE", True),
        ("START TRANSACTION", True),
        ("ABORT", True),
        ("PREPARE TRANSACTION 'x'", True),
        ("COMMIT PREPARED 'x'", True),
        ("ROLLBACK TO SAVEPOINT a", False),
        ("rollback to a", False),
        ("SAVEPOINT a", False),
        ("PREPARE q AS SELECT 1", False),
        ("DO $$ BEGIN COMMIT; END $$", False),  # found when it runs (SQLSTATE 2D000)
        ("SELECT 'COMMIT'", False),
    ],
)
def test_is_transaction_control(statement: str, expected: bool) -> None:
    assert is_transaction_control(statement) is expected


def test_identifiers_fold_like_postgresql() -> None:
    assert {"alter", "table", "public", 'My"T', "add", "x"} <= identifiers('ALTER TABLE public."My""T" ADD X int')
    assert "t" not in identifiers("ALTER TABLE tt ADD COLUMN x int")


def test_dropped_tables() -> None:
    text = 'DROP TABLE a; drop table if exists "B", s.c cascade; DROP INDEX i; /* x */ DROP TABLE "d,e" RESTRICT'
    assert dropped_tables(text) == ["a", '"B"', "s.c", '"d,e"']


# -- file names --------------------------------------------------------------------------------------

descriptions = st.from_regex(r"[a-z0-9][a-z0-9_]{0,40}", fullmatch=True)
kinds = st.sampled_from(["py", "sql"])


@PROPERTIES
@given(st.integers(min_value=0, max_value=10**16 - 1), descriptions, kinds)
def test_valid_names_round_trip(timestamp: int, description: str, kind: str) -> None:
    migration = parse_file_name(Path(f"{timestamp}_{description}.{kind}"))
    assert (migration.timestamp, migration.name, migration.kind) == (timestamp, f"{timestamp}_{description}", kind)
    assert migration.file_name == f"{timestamp}_{description}.{kind}"


@PROPERTIES
@given(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2999, 12, 31)),
    st.integers(min_value=0, max_value=999),
    descriptions,
    kinds,
)
def test_17_digit_prefixes_are_utc_dates(moment: datetime, millis: int, description: str, kind: str) -> None:
    moment = moment.replace(microsecond=0, tzinfo=UTC)
    prefix = f"{moment:%Y%m%d%H%M%S}{millis:03d}"
    migration = parse_file_name(Path(f"{prefix}_{description}.{kind}"))
    assert migration.timestamp == int(moment.timestamp()) * 1000 + millis
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=migration.timestamp) == moment + timedelta(
        milliseconds=millis
    )
    assert parse_timestamp(prefix) == migration.timestamp


invalid_names = st.one_of(
    st.tuples(descriptions, kinds).map(lambda pair: f"{pair[0]}.{pair[1]}").filter(lambda n: not re.match(r"\d+_", n)),
    st.tuples(st.integers(0, 10**6), kinds).map(lambda pair: f"{pair[0]}_.{pair[1]}"),
    st.tuples(st.integers(0, 10**6), descriptions, st.sampled_from(["PY", "Sql", "txt", "sql.bak", "py~", ""])).map(
        lambda parts: f"{parts[0]}_{parts[1]}.{parts[2]}".rstrip(".")
    ),
    st.tuples(
        st.integers(0, 10**6),
        descriptions,
        st.sampled_from(["A", "-", " ", ".", "é", "_", "$"]),
        descriptions,
        kinds,
    ).map(lambda parts: f"{parts[0]}_{'' if parts[2] == '_' else parts[1]}{parts[2]}{parts[3]}.{parts[4]}"),
    st.tuples(st.integers(0, 10**6), kinds).map(lambda pair: f"{pair[0]}_{'x' * MAX_NAME_LENGTH}.{pair[1]}"),
)


@PROPERTIES
@given(invalid_names)
def test_invalid_names_raise_naming_the_file(file_name: str) -> None:
    with pytest.raises(MigrationFileError) as caught:
        parse_file_name(Path("migrations") / file_name)
    assert str(caught.value).startswith(f"{file_name}: ")
