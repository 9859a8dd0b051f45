"""Reading SQL text the way PostgreSQL does: `.sql` migration sections and statement boundaries.

Only a lexer, no parser: it knows quotes, dollar quotes, comments and ``BEGIN ATOMIC`` bodies so that a
semicolon inside any of them does not end a statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise
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
# scan.l's identifiers and dollar-quote tags take any byte 0x80-0xFF, so any non-ASCII character (a server
# encoding is ASCII-safe: every byte of a non-ASCII character has the high bit set). Written as [^\x00-\x7f]:
# a class spelled out to U+10FFFF takes milliseconds to compile at every start-up.
_START = r"(?:[A-Za-z_]|[^\x00-\x7f])"
_DOLLAR_TAG = re.compile(rf"\$(?:{_START}(?:[A-Za-z0-9_]|[^\x00-\x7f])*)?\$")
_IDENTIFIER = rf"{_START}(?:[A-Za-z0-9_$]|[^\x00-\x7f])*"
_WORD = re.compile(_IDENTIFIER)
_NUMBER = re.compile(r"[0-9](?:[0-9A-Za-z_]|[^\x00-\x7f])*")
_NAME = re.compile(rf'"(?P<quoted>(?:[^"]|"")*)"|(?P<word>{_IDENTIFIER})')
_NEWLINE = re.compile(r"[\n\r]")  # a -- comment ends at either
# What lets a quoted string go on in the next quote: spaces or -- comments, a newline, then spaces,
# newlines or whole -- comment lines (scan.l's whitespace_with_newline; \v counts as space since PostgreSQL 16).
_QUOTE_CONTINUES = re.compile(r"(?:[ \t\f\v]|--[^\n\r]*)*[\n\r](?:[ \t\n\r\f\v]+|--[^\n\r]*[\n\r])*'")


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
    up_end = down_marker.start() if down_marker else len(text)
    up_statements = tuple(_readable_statements(text, up_marker.end(), up_end, file_name))
    if down_marker:
        _readable_statements(text, down_marker.end(), len(text), file_name)
    up = text[up_marker.end() : up_end].strip()
    down = text[down_marker.end() :].strip() if down_marker else None
    if not up_statements:
        raise MigrationFileError(f"{file_name}: the up section has no SQL statement")
    use_transaction = _use_transaction(text, up_marker.start(), file_name)
    return SqlSections(up=up, down=down, use_transaction=use_transaction, up_statements=up_statements)


def _readable_statements(text: str, start: int, end: int, file_name: str) -> list[str]:
    """A section's statements; one that ends inside a quote or comment, or holds a NUL, is refused, naming the
    line it happens on."""
    statements, problem = read_statements(text[start:end])
    if problem:
        at = Unreadable(problem.what, start + problem.offset)
        raise MigrationFileError(f"{file_name}: {at.where(text)}: {at.what}")
    return statements


def _use_transaction(text: str, header_end: int, file_name: str) -> bool:
    """False when the header (before '-- Up Migration') holds '-- pgm:no-transaction'.

    A directive anywhere else, or a misspelt one, would silently not apply, so both are errors. Only
    line comments that start a line outside quotes, dollar-quoted bodies and block comments count.
    """
    use_transaction = True
    if not _DIRECTIVE.search(text):  # no comment that could be one: nothing to lex
        return use_transaction
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
    return _pieces(text, _scan(text))


def read_statements(text: str) -> tuple[list[str], Unreadable | None]:
    """``text``'s statements, and why PostgreSQL would not read it as complete statements (`unreadable`), in one
    pass of the lexer."""
    nul = text.find("\x00")
    if nul >= 0:
        return [], Unreadable(NUL_BYTE, nul)
    scanned = _scan(text)
    return _pieces(text, scanned), scanned.open


def _pieces(text: str, scanned: _Scanned) -> list[str]:
    statements: list[str] = []
    start = 0
    for begin, end in scanned.semicolons:
        statements.append(text[start:begin])
        start = end
    statements.append(text[start:])
    return [statement.strip() for statement in statements if first_keyword(statement)]


@dataclass(frozen=True)
class Unreadable:
    """Why SQL text cannot be sent as it is: it ends inside something, or holds a NUL; ``offset`` is where."""

    what: str
    offset: int

    def where(self, text: str) -> str:
        return where(text, self.offset)


def where(text: str, offset: int) -> str:
    """'line L, column C' of ``offset`` in ``text``."""
    line_start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
    return f"line {text.count(chr(10), 0, offset) + 1}, column {offset - line_start + 1}"


def unreadable(text: str) -> Unreadable | None:
    """Why PostgreSQL would not read ``text`` as complete statements (None: it would).

    Text that ends inside a quote, a dollar quote, a block comment or a BEGIN ATOMIC body would swallow
    whatever is sent after it; libpq ends a query at a NUL, dropping whatever follows.
    """
    return read_statements(text)[1]


NUL_BYTE = "a NUL byte (0x00): PostgreSQL cannot receive it (libpq would cut the query there)"
_NEVER_ENDS = "starts here and never ends: PostgreSQL would read on into whatever is sent after it"


@dataclass(frozen=True)
class _Scanned:
    semicolons: list[tuple[int, int]]  # the top-level semicolons that end statements
    open: Unreadable | None  # what the text ends inside, if anything


def _scan(text: str) -> _Scanned:
    """The statement-ending semicolons, skipping those inside ``BEGIN ATOMIC ... END`` bodies (whose CASE
    expressions end with END too), and what the text ends inside."""
    semicolons: list[tuple[int, int]] = []
    atomic_starts: list[int] = []
    previous_word = ""
    for kind, begin, end in _top_level_tokens(text):
        if kind == "open":
            return _Scanned(semicolons, Unreadable(f"{_opened(text, begin)} {_NEVER_ENDS}", begin))
        if kind == "word":
            upper = text[begin:end].upper()
            if (upper == "ATOMIC" and previous_word == "BEGIN") or (atomic_starts and upper == "CASE"):
                atomic_starts.append(begin)
            elif atomic_starts and upper == "END":
                atomic_starts.pop()
            previous_word = upper
        elif kind == ";" and not atomic_starts:
            semicolons.append((begin, end))
    if atomic_starts:
        return _Scanned(
            semicolons, Unreadable(f"a BEGIN ATOMIC body (or a CASE in it) {_NEVER_ENDS}", atomic_starts[0])
        )
    return _Scanned(semicolons, None)


def _opened(text: str, begin: int) -> str:
    """What the construct starting at ``begin`` is, as an error message names it."""
    if text.startswith("/*", begin):
        return "a /* comment"
    if text[begin] == '"':
        return "a quoted identifier"
    if tag := _DOLLAR_TAG.match(text, begin):
        return f"a dollar-quoted string ({tag.group(0)})"
    return "an E'' string" if text[begin] in "eE" else "a quoted string"


TokenKind = Literal["--", "word", ";", "(", ")", "open"]


def _top_level_tokens(text: str) -> Iterator[tuple[TokenKind, int, int]]:
    """The lexer, after PostgreSQL's scan.l: (kind, start, end) of each line comment, word, semicolon and
    parenthesis outside quotes and block comments; "open" for one the text ends inside (then nothing more).

    String literals, quoted identifiers, dollar-quoted bodies and /* */ comments are skipped whole, so
    nothing inside them is ever seen as a statement end, a keyword or a directive. Identifiers swallow the
    ``$`` they contain, so a ``$`` seen here never continues one; numbers do not (``1$$`` opens a quote).
    """
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        end: int | None
        kind: TokenKind | None = None
        if text.startswith("--", position):
            newline = _NEWLINE.search(text, position)
            end = length if newline is None else newline.end()
            kind = "--"
        elif text.startswith("/*", position):
            end = _skip_block_comment(text, position)
        elif char in "eE" and text.startswith("'", position + 1):
            end = _skip_quoted(text, position + 1, "'", backslash_escapes=True)
        elif char in "'\"":
            end = _skip_quoted(text, position, char, backslash_escapes=False)
        elif char == "$" and (tag := _DOLLAR_TAG.match(text, position)):
            closing = text.find(tag.group(0), tag.end())
            end = None if closing < 0 else closing + len(tag.group(0))
        elif word := _WORD.match(text, position):
            end, kind = word.end(), "word"
        elif number := _NUMBER.match(text, position):
            end = number.end()
        else:
            end = position + 1
            kind = char if char in ";()" else None  # type: ignore[assignment]
        if end is None:
            yield "open", position, length
            return
        if kind:
            yield kind, position, end
        position = end


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


def copies_with_client(statement: str) -> bool:
    """``COPY ... FROM STDIN`` or ``TO STDOUT``: rows from or to the client, which no migration can send or take
    (COPY from or to a server file or program stays allowed)."""
    if first_keyword(statement) != "COPY":
        return False
    words = _top_level_words(statement)
    return any(direction in ("FROM", "TO") and end in ("STDIN", "STDOUT") for direction, end in pairwise(words))


def discards_session(statement: str) -> bool:
    """``DISCARD ALL``: it releases the session's advisory locks (the migration lock among them)."""
    return first_keyword(statement) == "DISCARD" and _top_level_words(statement)[:2] == ["DISCARD", "ALL"]


def _top_level_words(statement: str) -> list[str]:
    """The statement's words outside parentheses, quotes and comments, upper-cased."""
    words: list[str] = []
    depth = 0
    for kind, begin, end in _top_level_tokens(statement):
        if kind == "(":
            depth += 1
        elif kind == ")":
            depth -= 1
        elif kind == "word" and depth == 0:
            words.append(statement[begin:end].upper())
    return words


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
            position = _skip_quoted(text, position, '"', backslash_escapes=False) or len(text)
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
            newline = _NEWLINE.search(text)
            text = "" if newline is None else text[newline.end() :]
        elif text.startswith("/*"):
            end = _skip_block_comment(text, 0)
            text = "" if end is None else text[end:]
        else:
            return text


def _skip_block_comment(text: str, position: int) -> int | None:
    """Position after a (possibly nested) /* */ comment starting at ``position``; None if it never ends."""
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
    return None


def _skip_quoted(text: str, position: int, quote: str, *, backslash_escapes: bool) -> int | None:
    """Position after a quoted literal or identifier (None if it never ends); a doubled quote is an escaped
    quote. An E'' string goes on after a quote that only a newline (and comments) separate from the next one,
    and keeps its backslash escapes there (scan.l's quotecontinue)."""
    position += 1
    length = len(text)
    while position < length:
        char = text[position]
        if backslash_escapes and char == "\\":
            position += 2
        elif char == quote:
            if text.startswith(quote * 2, position):
                position += 2
            elif backslash_escapes and (continued := _QUOTE_CONTINUES.match(text, position + 1)):
                position = continued.end()
            else:
                return position + 1
        else:
            position += 1
    return None
