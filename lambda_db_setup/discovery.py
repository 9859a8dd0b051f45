"""Find migration files, order them as node-pg-migrate does, and load one only when it must run.

A migration's name is its file name without extension (what ``pgmigrations.name`` holds). Files are
read lazily: listing 10,000 files reads none of them; the checksum reads a file; loading imports it.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Literal

from .builder import MigrationBuilder
from .errors import MigrationFileError
from .sqltext import SqlSections, parse_sections, split_statements

FILE_NAME = re.compile(r"^(?P<prefix>\d+)_(?P<description>[a-z0-9][a-z0-9_]*)\.(?P<kind>py|sql)$")
MAX_NAME_LENGTH = 255  # pgmigrations.name is varchar(255)
Direction = Literal["up", "down"]


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
            return data.decode("utf-8")
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise MigrationFileError(
                f"{self.file_name}: not valid UTF-8 (line {line}: byte 0x{data[error.start]:02x} at offset"
                f" {error.start}); save it as UTF-8",
                migration=self.name,
            ) from error

    def build(self, direction: Direction) -> MigrationBuilder:
        """Run the file's ``up``/``down`` against a fresh builder and return the collected SQL."""
        builder = MigrationBuilder()
        if self.kind == "sql":
            self._build_sql(builder, direction)
        else:
            self._build_python(builder, direction)
        return builder

    def _build_sql(self, builder: MigrationBuilder, direction: Direction) -> None:
        sections = self._sections
        if direction == "down" and sections.down is None:
            raise MigrationFileError(f"{self.file_name}: no '-- Down Migration' section", migration=self.name)
        if not sections.use_transaction:
            builder.no_transaction()
        for statement in sections.up_statements if direction == "up" else split_statements(sections.down):
            builder.sql(statement)

    def _build_python(self, builder: MigrationBuilder, direction: Direction) -> None:
        function: Callable[[MigrationBuilder], object] | None = getattr(self._module, direction, None)
        if not callable(function):
            raise MigrationFileError(f"{self.file_name}: no {direction}(pgm) function", migration=self.name)
        try:
            function(builder)
        except Exception as error:
            raise MigrationFileError(
                f"{self.file_name}: {direction}(pgm) raised {type(error).__name__}: {error}", migration=self.name
            ) from error

    @cached_property
    def _sections(self) -> SqlSections:
        return parse_sections(self.text, self.file_name)

    @cached_property
    def _module(self) -> ModuleType:
        return _import_file(self)


def _import_file(migration: Migration) -> ModuleType:
    """Run a Python migration's bytes (already read) as a private module, never put into ``sys.modules``."""
    module = ModuleType(f"_pgmigration_{migration.name}")
    module.__file__ = str(migration.path)
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
    except Exception as error:
        raise MigrationFileError(
            f"{migration.file_name}: import failed: {type(error).__name__}: {error}", migration=migration.name
        ) from error
    if not callable(getattr(module, "up", None)):
        raise MigrationFileError(f"{migration.file_name}: no up(pgm) function", migration=migration.name)
    return module


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


def _candidate_name(file_name: str) -> bool:
    """Files the runner looks at: `.py`/`.sql` not starting with '_' or '.' (helpers and caches are skipped)."""
    return file_name.endswith((".py", ".sql")) and not file_name.startswith(("_", "."))


def discover(directory: Path) -> list[Migration]:
    """All migrations in ``directory``, ordered by timestamp then name; bad or clashing names are errors."""
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise MigrationFileError(f"migrations directory {directory} {problem} (looked for {directory.resolve()})")
    with os.scandir(directory) as entries:  # the file type comes with the entry: no stat per file
        paths = [Path(entry.path) for entry in entries if _candidate_name(entry.name) and entry.is_file()]
    migrations = sorted(
        (parse_file_name(path) for path in paths),
        key=lambda migration: (migration.timestamp, migration.name, migration.file_name),
    )
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
    return migrations
