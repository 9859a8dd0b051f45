"""Find migration files, order them as node-pg-migrate does, and load one only when it must run.

A migration's name is its file name without extension (what ``pgmigrations.name`` holds). Files are
read lazily: listing 10,000 files reads none of them; the checksum reads a file; loading imports it.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Literal

from .builder import MigrationBuilder
from .errors import IrreversibleMigrationError, MigrationFileError
from .sqltext import SqlSections, parse_sections, split_statements

FILE_NAME = re.compile(r"^(?P<prefix>\d+)_(?P<description>[a-z0-9][a-z0-9_]*)\.(?P<kind>py|sql)$")
# Meant as a migration even if it is not a usable one: a timestamp, then anything, then .py/.sql in any case.
MIGRATION_LIKE = re.compile(r"^\d+[_-].*\.(py|sql)$", re.IGNORECASE)
MAX_NAME_LENGTH = 255  # pgmigrations.name is varchar(255)
MAX_FILE_NAME_BYTES = 255  # NAME_MAX of ext4, APFS and NTFS: a longer file name cannot be created
Direction = Literal["up", "down"]

# Deferred-execution functions: calling one returns an object and runs none of its body.
_DEFERRED_KINDS: tuple[tuple[Callable[[object], bool], str], ...] = (
    (inspect.iscoroutinefunction, "an async def (coroutine function)"),
    (inspect.isasyncgenfunction, "an async generator function"),
    (inspect.isgeneratorfunction, "a generator function (it contains yield)"),
)
# Latin letters NFKD leaves whole; every other accented letter loses only its accent.
_TRANSLITERATION = str.maketrans(
    {"æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "\u0131": "i"}
)


@dataclass(frozen=True)
class Migration:
    """One migration file; cheap to create, reads the file only when asked."""

    name: str
    path: Path
    timestamp: int
    kind: str

    @property
    def file_name(self) -> str:
        return self.path.name

    @cached_property
    def checksum(self) -> str:
        """SHA-256 of the file's bytes: what drift detection compares with the recorded one."""
        return hashlib.sha256(self.source).hexdigest()

    @cached_property
    def source(self) -> bytes:
        """The file's bytes, read once: its checksum, SQL sections, import and lint all use these."""
        try:
            return self.path.read_bytes()
        except OSError as error:
            raise MigrationFileError(f"{self.file_name}: cannot read: {error.strerror}", migration=self.name) from error

    @cached_property
    def text(self) -> str:
        """The file's text (UTF-8)."""
        data = self.source
        try:
            return data.decode("utf-8").removeprefix("\ufeff")  # a BOM (Windows editors) would hide the marker
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise MigrationFileError(
                f"{self.file_name}: not valid UTF-8 (line {line}: byte 0x{data[error.start]:02x} at offset"
                f" {error.start}); save it as UTF-8",
                migration=self.name,
            ) from error

    def build(self, direction: Direction) -> MigrationBuilder:
        """Run the file's ``up``/``down`` against a fresh builder and return the collected SQL."""
        builder = MigrationBuilder(self.name)
        if self.kind == "sql":
            self._build_sql(builder, direction)
        else:
            self._build_python(builder, direction)
        return builder

    @property
    def reversible(self) -> bool:
        """Whether ``down`` would undo something (builds it: a broken file still raises its own error)."""
        try:
            self.build("down")
        except IrreversibleMigrationError:
            return False
        return True

    def _build_sql(self, builder: MigrationBuilder, direction: Direction) -> None:
        sections = self._sections
        if direction == "down" and sections.down is None:
            raise IrreversibleMigrationError(f"{self.file_name}: no '-- Down Migration' section", migration=self.name)
        statements = sections.up_statements if direction == "up" else split_statements(sections.down or "")
        if not statements:  # the up section is checked when parsed
            raise IrreversibleMigrationError(
                f"{self.file_name}: the '-- Down Migration' section has no SQL statement, so the migration is"
                " irreversible; write the SQL that undoes the up section",
                migration=self.name,
            )
        if not sections.use_transaction:
            builder.no_transaction()
        for statement in statements:
            builder.sql(statement)

    def _build_python(self, builder: MigrationBuilder, direction: Direction) -> None:
        function: Callable[[MigrationBuilder], object] | None = getattr(self._module, direction, None)
        if not callable(function):  # a missing `up` is refused on import
            raise IrreversibleMigrationError(f"{self.file_name}: no down(pgm) function", migration=self.name)
        _call(self, direction, function, builder)
        if direction == "down" and not builder.statements:
            raise IrreversibleMigrationError(
                f"{self.file_name}: down(pgm) adds no SQL statement, so reverting would only forget that up ran;"
                " write what undoes up(), or remove down() to mark the migration irreversible",
                migration=self.name,
            )

    @cached_property
    def _sections(self) -> SqlSections:
        try:
            return parse_sections(self.text, self.file_name)
        except MigrationFileError as error:
            error.migration = self.name
            raise

    @cached_property
    def _module(self) -> ModuleType:
        return _import_file(self)


def _import_file(migration: Migration) -> ModuleType:
    """Run a Python migration's bytes (already read) as a private module, never put into ``sys.modules``."""
    module = ModuleType(f"_pgmigration_{migration.name}")
    module.__file__ = str(migration.path)
    _execute(migration, module)
    if not callable(getattr(module, "up", None)):
        raise MigrationFileError(f"{migration.file_name}: no up(pgm) function", migration=migration.name)
    for direction in ("up", "down"):
        _refuse_deferred(migration, direction, getattr(module, direction, None))
    return module


def _execute(migration: Migration, module: ModuleType) -> None:
    """Run the module's code; any way it fails, sys.exit() included, names the file. Ctrl-C stays Ctrl-C."""
    try:
        exec(compile(migration.source, migration.path, "exec"), module.__dict__)
    except SyntaxError as error:
        if error.msg.startswith("(unicode error)"):
            raise MigrationFileError(
                f"{migration.file_name}: not valid UTF-8 (line {error.lineno}: {error.msg.split(') ', 1)[-1]});"
                " save it as UTF-8",
                migration=migration.name,
            ) from error
        raise MigrationFileError(
            f"{migration.file_name}: line {error.lineno}: {error.msg}", migration=migration.name
        ) from error
    except KeyboardInterrupt:
        raise
    except SystemExit as error:
        raise MigrationFileError(
            f"{migration.file_name}: {_exit_call(error)} on import", migration=migration.name
        ) from error
    except BaseException as error:
        raise MigrationFileError(
            f"{migration.file_name}: import failed: {type(error).__name__}: {error}", migration=migration.name
        ) from error


def _refuse_deferred(migration: Migration, direction: str, function: object) -> None:
    """Refuse an ``up``/``down`` whose call would only create a coroutine or generator: nothing would run."""
    if not callable(function):
        return
    for is_kind, kind in _DEFERRED_KINDS:
        if is_kind(function) or is_kind(type(function).__call__):  # a callable instance too
            raise MigrationFileError(
                f"{migration.file_name}: {direction}(pgm) is {kind}; the engine calls it without awaiting or"
                " iterating it, so nothing in it would run: make it a plain def",
                migration=migration.name,
            )


def _call(
    migration: Migration, direction: str, function: Callable[[MigrationBuilder], object], builder: MigrationBuilder
) -> None:
    """Call ``up``/``down``; whatever it raises, or a lazy result that never ran, names the file."""
    try:
        result = function(builder)
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        failure = _exit_call(error) if isinstance(error, SystemExit) else f"raised {type(error).__name__}: {error}"
        raise MigrationFileError(
            f"{migration.file_name}: {direction}(pgm) {failure}", migration=migration.name
        ) from error
    if result is None or not (inspect.isawaitable(result) or isinstance(result, Iterator | AsyncIterator)):
        return
    if inspect.iscoroutine(result) or inspect.isgenerator(result):
        result.close()  # never started: closing runs none of it and silences "never awaited"
    raise MigrationFileError(
        f"{migration.file_name}: {direction}(pgm) returned {type(result).__name__} object instead of running;"
        f" nothing in it ran: make {direction} a plain function that calls pgm",
        migration=migration.name,
    )


def _exit_call(error: SystemExit) -> str:
    """How a migration ended the process, as the user wrote it: 'called sys.exit(3)'."""
    return f"called sys.exit({'' if error.code is None else repr(error.code)})"


def parse_timestamp(prefix: str) -> int:
    """node-pg-migrate's rule: a 17-digit prefix is UTC yyyyMMddHHmmssSSS, anything else is a number (ms)."""
    if len(prefix) == 17:
        try:
            moment = datetime.strptime(prefix[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        except ValueError:
            return int(prefix)
        return int(moment.timestamp() * 1000) + int(prefix[14:])
    return int(prefix)


def parse_file_name(path: Path) -> Migration:
    """A `Migration` for a file name that follows ``{timestamp}_{snake_case_name}.py|.sql``."""
    match = FILE_NAME.match(path.name)
    if match is None:
        raise MigrationFileError(
            f"{path.name}: not a migration file name; expected {{unix-ms-timestamp}}_{{snake_case_name}}.py or .sql"
        )
    name = path.name.rsplit(".", 1)[0]
    if len(name) > MAX_NAME_LENGTH:
        raise MigrationFileError(f"{path.name}: name longer than {MAX_NAME_LENGTH} characters")
    return Migration(name=name, path=path, timestamp=parse_timestamp(match["prefix"]), kind=match["kind"])


def slug_for(description: str, timestamp: int) -> str:
    """The ``snake_case_name`` for a new migration ``{timestamp}_{slug}.py|.sql`` from free text.

    Accented letters keep their letter (``añadir`` -> ``anadir``) instead of vanishing, and the slug is
    cut so that the name fits ``pgmigrations.name`` and the file name (with ".sql") fits the file system.
    """
    if timestamp < 0:
        raise ValueError(f"timestamp must not be negative, got {timestamp}")
    decomposed = unicodedata.normalize("NFKD", description.casefold())
    ascii_text = "".join(char for char in decomposed if not unicodedata.combining(char)).lower()
    slug = re.sub(r"[^a-z0-9]+", "_", ascii_text.translate(_TRANSLITERATION)).strip("_")
    if not slug:
        raise MigrationFileError(
            f"migration name {description!r} has no ASCII letter or digit (accents are dropped, other scripts"
            " are not transliterated); describe it with at least one"
        )
    room = min(MAX_NAME_LENGTH, MAX_FILE_NAME_BYTES - len(".sql")) - len(f"{timestamp}_")
    if room < 1:
        raise MigrationFileError(f"timestamp {timestamp} leaves no room for a name in {MAX_NAME_LENGTH} characters")
    return slug[:room].rstrip("_")


@dataclass(frozen=True)
class Discovery:
    """A migrations directory: its migrations in order, and one warning per look-alike entry it skipped."""

    migrations: list[Migration]
    skipped: tuple[str, ...] = ()


def _candidate_name(file_name: str) -> bool:
    """Files the runner looks at: `.py`/`.sql` not starting with '_' or '.' (helpers and caches are skipped)."""
    return file_name.endswith((".py", ".sql")) and not file_name.startswith(("_", "."))


def _skip_reason(entry: os.DirEntry[str]) -> str | None:
    """Why an entry named like a migration is not read as one (None: it is not named like one)."""
    if not MIGRATION_LIKE.match(entry.name):
        return None
    if entry.is_dir():
        return "is a directory"
    if entry.is_symlink() and not entry.is_file():
        return f"is a symlink to {os.readlink(entry.path)!r}, which does not exist"
    if not entry.is_file():
        return "is not a regular file"
    extension = entry.name.rsplit(".", 1)[1]
    return f"the extension .{extension} is not lower-case; rename it to .{extension.lower()} to run it"


def scan(directory: Path) -> Discovery:
    """All migrations in ``directory`` (as `discover`), plus a warning for each entry meant as one but skipped."""
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise MigrationFileError(f"migrations directory {directory} {problem} (looked for {directory.resolve()})")
    paths: list[Path] = []
    skipped: list[str] = []
    with os.scandir(directory) as entries:  # the file type comes with the entry: no stat per file
        for entry in entries:
            if _candidate_name(entry.name) and entry.is_file():
                paths.append(Path(entry.path))
            elif (reason := _skip_reason(entry)) is not None:
                skipped.append(f"{entry.name}: skipped: {reason}")
    migrations = sorted(
        (parse_file_name(path) for path in paths),
        key=lambda migration: (migration.timestamp, migration.name, migration.file_name),
    )
    _refuse_clashes(migrations)
    return Discovery(migrations, tuple(sorted(skipped)))


def discover(directory: Path) -> list[Migration]:
    """All migrations in ``directory``, ordered by timestamp then name; bad or clashing names are errors."""
    return scan(directory).migrations


def _refuse_clashes(migrations: list[Migration]) -> None:
    """Two files for one migration, or two migrations with one timestamp, make the order ambiguous."""
    by_name: dict[str, Migration] = {}
    by_timestamp: dict[int, Migration] = {}
    for migration in migrations:
        if (twin := by_name.get(migration.name)) is not None:
            raise MigrationFileError(
                f"{twin.file_name} and {migration.file_name}: two files for migration {migration.name}",
                migration=migration.name,
            )
        if (twin := by_timestamp.get(migration.timestamp)) is not None:
            raise MigrationFileError(
                f"{twin.file_name} and {migration.file_name} have the same timestamp {migration.timestamp};"
                " give one a new timestamp",
                migration=migration.name,
            )
        by_name[migration.name] = migration
        by_timestamp[migration.timestamp] = migration
