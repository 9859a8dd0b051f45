"""Reading SQL text the way PostgreSQL does: `.sql` migration sections and statement boundaries.

Only a lexer, no parser: it knows quotes, dollar quotes, comments and ``BEGIN ATOMIC`` bodies so that a
semicolon inside any of them does not end a statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from .errors import MigrationFileError

# node-pg-migrate's markers: a line comment such as "-- Up Migration" (dashes and spaces free, any case).
UP_MARKER = re.compile(r"^\s*--[\s-]*up\s+migration\b.*$", re.IGNORECASE | re.MULTILINE)
DOWN_MARKER = re.compile(r"^\s*--[\s-]*down\s+migration\b.*$", re.IGNORECASE | re.MULTILINE)
# Our directive (node-pg-migrate has none for SQL files): run this file outside a transaction. It counts
# only in the header, before the up marker; one elsewhere, or any other '-- pgm:' comment, is an error.
NO_TRANSACTION_DIRECTIVE = re.compile(r"^\s*--\s*pgm:\s*no-transaction\s*$", re.IGNORECASE | re.MULTILINE)
_DIRECTIVE = re.compile(r"--\s*pgm:", re.IGNORECASE)  # a comment reserved for directives

TRANSACTION_CONTROL = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})

_DROP_TABLE = re.compile(
    r"^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?P<names>.+?)(?:\s+(?:CASCADE|RESTRICT))?\s*$", re.IGNORECASE | re.DOTALL
)
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
_NAME = re.compile(r'"(?P<quoted>(?:[^"]|"")*)"|(?P<word>[A-Za-z_][A-Za-z0-9_$]*)')


@dataclass(frozen=True)
class SqlSections:
    """The parts of a `.sql` migration file."""

    up: str
    down: str | None
    use_transaction: bool
    up_statements: tuple[str, ...] = ()  # ``up`` split into statements (parsing has to split it anyway)


def parse_sections(text: str, file_name: str) -> SqlSections:
    """Split a `.sql` migration into its up and (optional) down sections."""
    up_markers = list(UP_MARKER.finditer(text))
    down_markers = list(DOWN_MARKER.finditer(text))
    if not up_markers:
        raise MigrationFileError(f"{file_name}: no '-- Up Migration' marker line")
    if len(up_markers) > 1 or len(down_markers) > 1:
        raise MigrationFileError(f"{file_name}: more than one '-- Up Migration' or '-- Down Migration' marker")
    up_marker = up_markers[0]
    down_marker = down_markers[0] if down_markers else None
    if down_marker and down_marker.start() < up_marker.start():
        raise MigrationFileError(f"{file_name}: '-- Down Migration' comes before '-- Up Migration'")
    up = text[up_marker.end() : down_marker.start() if down_marker else len(text)].strip()
    down = text[down_marker.end() :].strip() if down_marker else None
    up_statements = tuple(split_statements(up))
    if not up_statements:
        raise MigrationFileError(f"{file_name}: the up section has no SQL statement")
    use_transaction = _use_transaction(text, up_marker.start(), file_name)
    return SqlSections(up=up, down=down, use_transaction=use_transaction, up_statements=up_statements)


def _use_transaction(text: str, header_end: int, file_name: str) -> bool:
    """False when the header (before '-- Up Migration') holds '-- pgm:no-transaction'.

    A directive anywhere else, or a misspelt one, would silently not apply, so both are errors. Only
    line comments that start a line outside quotes, dollar-quoted bodies and block comments count.
    """
    use_transaction = True
    for kind, begin, end in _top_level_tokens(text):
        comment = text[begin:end].strip()
        if kind != "--" or not _DIRECTIVE.match(comment) or text[text.rfind("\n", 0, begin) + 1 : begin].strip():
            continue
        line = text.count("\n", 0, begin) + 1
        if not NO_TRANSACTION_DIRECTIVE.fullmatch(comment):
            raise MigrationFileError(
                f"{file_name}: line {line}: unknown directive {comment!r}; the only one is '-- pgm:no-transaction'"
            )
        if begin > header_end:
            raise MigrationFileError(
                f"{file_name}: line {line}: '-- pgm:no-transaction' counts only in the header;"
                " move it above '-- Up Migration'"
            )
        use_transaction = False
    return use_transaction


def split_statements(text: str) -> list[str]:
    """Split SQL text into statements at top-level semicolons; comment-only pieces are dropped."""
    statements: list[str] = []
    start = 0
    atomic_depth = 0
    previous_word = ""
    for kind, begin, end in _top_level_tokens(text):
        if kind == "word":
            upper = text[begin:end].upper()
            if (upper == "ATOMIC" and previous_word == "BEGIN") or (atomic_depth and upper == "CASE"):
                atomic_depth += 1
            elif atomic_depth and upper == "END":
                atomic_depth -= 1
            previous_word = upper
        elif kind == ";" and not atomic_depth:
            statements.append(text[start:begin])
            start = end
    statements.append(text[start:])
    return [statement.strip() for statement in statements if first_keyword(statement)]


def _top_level_tokens(text: str) -> Iterator[tuple[Literal["--", "word", ";"], int, int]]:
    """The lexer: (kind, start, end) of each line comment, word and semicolon outside quotes and block comments.

    String literals, quoted identifiers, dollar-quoted bodies and /* */ comments are skipped whole, so
    nothing inside them is ever seen as a statement end, a keyword or a directive.
    """
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        if char == "-" and text.startswith("--", position):
            newline = text.find("\n", position)
            end = length if newline < 0 else newline + 1
            yield "--", position, end
            position = end
        elif char == "/" and text.startswith("/*", position):
            position = _skip_block_comment(text, position)
        elif char == "'":
            escapes = position > 0 and text[position - 1] in "eE" and not _is_word_char(text, position - 2)
            position = _skip_quoted(text, position, "'", backslash_escapes=escapes)
        elif char == '"':
            position = _skip_quoted(text, position, '"', backslash_escapes=False)
        elif char == "$" and (tag := _DOLLAR_TAG.match(text, position)) and not _is_word_char(text, position - 1):
            closing = text.find(tag.group(0), tag.end())
            position = length if closing < 0 else closing + len(tag.group(0))
        elif (word := _WORD.match(text, position)) and not _is_word_char(text, position - 1):
            yield "word", position, word.end()
            position = word.end()
        elif char == ";":
            yield ";", position, position + 1
            position += 1
        else:
            position += 1


def excerpt(text: str | bytes | None, limit: int) -> str:
    """SQL (or a message) on one line, cut to ``limit`` characters, for an error or a report."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def first_keyword(statement: str) -> str:
    """The statement's first keyword in upper case ('' for a comment-only piece)."""
    stripped = _strip_leading_comments(statement)
    word = _WORD.match(stripped)
    return word.group(0).upper() if word else ("" if not stripped else stripped[:1])


def is_transaction_control(statement: str) -> bool:
    """Whether a statement would end or nest the transaction the engine runs a migration in.

    ``ROLLBACK TO [SAVEPOINT]`` stays inside the transaction; ``PREPARE TRANSACTION`` ends it.
    """
    keyword = first_keyword(statement)
    words = _strip_leading_comments(statement).split(None, 2)
    second = words[1].upper() if len(words) > 1 else ""
    if keyword == "ROLLBACK" and second == "TO":
        return False
    return keyword in TRANSACTION_CONTROL or (keyword == "PREPARE" and second == "TRANSACTION")


def identifiers(text: str) -> set[str]:
    """Every name the text could mention, as PostgreSQL folds it (unquoted lower-cased, quoted verbatim)."""
    return {
        match["word"].lower() if match["word"] else match["quoted"].replace('""', '"') for match in _NAME.finditer(text)
    }


def dropped_tables(text: str) -> list[str]:
    """Table names (as written, quotes kept) that the DROP TABLE statements in ``text`` drop."""
    names: list[str] = []
    for statement in split_statements(text):
        match = _DROP_TABLE.match(_strip_leading_comments(statement))
        if match:
            names.extend(name.strip() for name in _split_top_level_commas(match["names"]))
    return names


def _split_top_level_commas(text: str) -> list[str]:
    parts: list[str] = []
    start = position = 0
    while position < len(text):
        if text[position] == '"':
            position = _skip_quoted(text, position, '"', backslash_escapes=False)
            continue
        if text[position] == ",":
            parts.append(text[start:position])
            start = position + 1
        position += 1
    parts.append(text[start:])
    return parts


def _strip_leading_comments(text: str) -> str:
    while True:
        text = text.lstrip()
        if text.startswith("--"):
            newline = text.find("\n")
            text = "" if newline < 0 else text[newline + 1 :]
        elif text.startswith("/*"):
            text = text[_skip_block_comment(text, 0) :]
        else:
            return text


def _skip_block_comment(text: str, position: int) -> int:
    """Position after a (possibly nested) /* */ comment starting at ``position``."""
    depth = 0
    length = len(text)
    while position < length:
        if text.startswith("/*", position):
            depth += 1
            position += 2
        elif text.startswith("*/", position):
            depth -= 1
            position += 2
            if depth == 0:
                return position
        else:
            position += 1
    return length


def _skip_quoted(text: str, position: int, quote: str, *, backslash_escapes: bool) -> int:
    """Position after a quoted literal or identifier; a doubled quote is an escaped quote."""
    position += 1
    length = len(text)
    while position < length:
        char = text[position]
        if backslash_escapes and char == "\\":
            position += 2
        elif char == quote:
            if text.startswith(quote * 2, position):
                position += 2
            else:
                return position + 1
        else:
            position += 1
    return length


def _is_word_char(text: str, position: int) -> bool:
    return 0 <= position < len(text) and (text[position].isalnum() or text[position] in "_$")
