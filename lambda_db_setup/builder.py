"""The ``pgm`` object a migration's ``up``/``down`` receives: each call becomes SQL, nothing is executed.

Modelled on node-pg-migrate's MigrationBuilder, with snake_case names and keyword-only options. Every
call appends to ``statements`` (one ``psycopg2.sql`` composable per SQL statement); the engine executes
them in order, and a dry run only renders them. Identifiers always go through ``sql.Identifier`` and
values through ``sql.Literal``. Raw SQL is taken only where node-pg-migrate takes it too: column types,
CHECK expressions, index predicates, ``func()`` values and ``sql()``.

A table is named by a string (always one identifier, never split on dots) or a ``(schema, name)`` tuple.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Required, TypedDict

import psycopg2
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extras import Json

from .background import queue as background_queue
from .sqltext import split_statements

TableName = str | tuple[str, str]
ColumnNames = str | Sequence[str]

REFERENTIAL_ACTIONS = frozenset({"CASCADE", "RESTRICT", "NO ACTION", "SET NULL", "SET DEFAULT"})


@dataclass(frozen=True)
class PgLiteral:
    """Raw SQL standing where a value would go (e.g. a default of ``now()``), so it is never quoted."""

    text: str

    def as_sql(self) -> sql.SQL:
        return sql.SQL(self.text)


def func(text: str) -> PgLiteral:
    """Mark ``text`` as raw SQL, as node-pg-migrate's ``pgm.func``: ``default=func("now()")``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"func(): expected a non-empty SQL expression, got {text!r}")
    return PgLiteral(text)


class ColumnOptions(TypedDict, total=False):
    """One column of ``create_table``/``add_columns``; only ``type`` is required."""

    type: Required[str]
    primary_key: bool
    not_null: bool
    unique: bool
    default: object
    references: TableName
    references_column: str
    on_delete: str
    on_update: str
    check: str
    collation: str


class ForeignKeyOptions(TypedDict, total=False):
    """A table-level foreign key of ``create_table(constraints=...)``."""

    columns: Required[ColumnNames]
    references: Required[TableName]
    references_columns: ColumnNames
    on_delete: str
    on_update: str


class TableConstraints(TypedDict, total=False):
    """Table-level constraints of ``create_table``; all unnamed, so PostgreSQL names them."""

    primary_key: ColumnNames
    unique: ColumnNames | Sequence[ColumnNames]
    check: str | Sequence[str]
    foreign_keys: ForeignKeyOptions | Sequence[ForeignKeyOptions]


class _Unchanged(Enum):
    """Sentinel type: ``alter_column`` leaves the default alone unless ``default`` is passed."""

    UNCHANGED = "unchanged"


UNCHANGED = _Unchanged.UNCHANGED

_COLUMN_FLAGS = ("primary_key", "not_null", "unique")
_COLUMN_OPTIONS = frozenset(ColumnOptions.__annotations__)
_FOREIGN_KEY_OPTIONS = frozenset(ForeignKeyOptions.__annotations__)
_CONSTRAINT_OPTIONS = frozenset(TableConstraints.__annotations__)


class MigrationBuilder:
    """Collects a migration's SQL statements; the engine runs them, a dry run prints them."""

    func = staticmethod(func)

    def __init__(self, migration: str | None = None) -> None:
        self.statements: list[sql.Composable] = []
        self.use_transaction = True
        self.migration = migration  # the migration's name: background work is queued under it
        self.background_jobs = 0

    def no_transaction(self) -> None:
        """Run this migration outside a transaction (CREATE INDEX CONCURRENTLY refuses to run inside one)."""
        self.use_transaction = False

    def sql(self, text: str, params: Mapping[str, object] | None = None) -> None:
        """Raw SQL, taken as written (several statements, ``$$`` bodies, braces and ``%`` are fine).

        Only when ``params`` is given are ``{name}`` placeholders replaced by quoted values (a
        ``func()`` value is inserted raw); a literal brace must then be written ``{{`` or ``}}``.
        """
        if not isinstance(text, str) or not text.strip():
            raise ValueError("sql(): the SQL text is empty")
        template = sql.SQL(text)
        if params is None:
            self.statements.append(template)
            return
        values = {name: _value(value, f"sql() parameter {name!r}") for name, value in params.items()}
        try:
            self.statements.append(template.format(**values))
        except KeyError as error:
            raise ValueError(f"sql(): placeholder {{{error.args[0]}}} has no value in params") from None
        except (IndexError, ValueError) as error:
            raise ValueError(
                "sql(): with params only {name} placeholders are allowed; write a literal brace as {{ or }}"
                f" ({error})"
            ) from None

    def create_table(
        self,
        name: TableName,
        columns: Mapping[str, str | ColumnOptions],
        *,
        if_not_exists: bool = False,
        constraints: TableConstraints | None = None,
    ) -> None:
        """CREATE TABLE; unnamed constraints keep PostgreSQL's default names (``users_user_email_key``)."""
        table = _table(name)
        if not isinstance(columns, Mapping):
            raise ValueError(f"create_table {name!r}: columns must be a mapping of column name to options")
        elements = [_column_definition(name, column, options) for column, options in columns.items()]
        elements.extend(_table_constraints(name, constraints or {}))
        self.statements.append(
            _words(
                sql.SQL("CREATE TABLE"),
                _flag(if_not_exists, "IF NOT EXISTS"),
                table,
                sql.SQL("(\n  ") + sql.SQL(",\n  ").join(elements) + sql.SQL("\n)"),
            )
        )

    def drop_table(self, name: TableName, *, if_exists: bool = False, cascade: bool = False) -> None:
        """DROP TABLE; ``cascade`` also drops what depends on it (foreign keys, views)."""
        self.statements.append(
            _words(sql.SQL("DROP TABLE"), _flag(if_exists, "IF EXISTS"), _table(name), _flag(cascade, "CASCADE"))
        )

    def add_columns(
        self, table: TableName, columns: Mapping[str, str | ColumnOptions], *, if_not_exists: bool = False
    ) -> None:
        """One ALTER TABLE adding several columns; ``if_not_exists`` makes re-running it a no-op."""
        if not isinstance(columns, Mapping) or not columns:
            raise ValueError(f"add_columns {table!r}: give at least one column")
        actions = [
            _words(sql.SQL("ADD COLUMN"), _flag(if_not_exists, "IF NOT EXISTS"), _column_definition(table, c, o))
            for c, o in columns.items()
        ]
        self._alter_table(table, actions)

    def add_column(
        self, table: TableName, name: str, options: str | ColumnOptions, *, if_not_exists: bool = False
    ) -> None:
        """One column; see ``add_columns``."""
        self.add_columns(table, {name: options}, if_not_exists=if_not_exists)

    def drop_columns(
        self, table: TableName, names: ColumnNames, *, if_exists: bool = False, cascade: bool = False
    ) -> None:
        """One ALTER TABLE dropping several columns."""
        columns = _names(names, f"drop_columns {table!r}")
        actions = [
            _words(sql.SQL("DROP COLUMN"), _flag(if_exists, "IF EXISTS"), column, _flag(cascade, "CASCADE"))
            for column in columns
        ]
        self._alter_table(table, actions)

    def drop_column(self, table: TableName, name: str, *, if_exists: bool = False, cascade: bool = False) -> None:
        """One column; see ``drop_columns``."""
        self.drop_columns(table, [name], if_exists=if_exists, cascade=cascade)

    def alter_column(
        self,
        table: TableName,
        column: str,
        *,
        type: str | None = None,
        using: str | None = None,
        default: object = UNCHANGED,
        not_null: bool | None = None,
        collation: str | None = None,
    ) -> None:
        """Change a column's type, default or nullability in one ALTER TABLE.

        ``default=None`` drops the default; leaving ``default`` out keeps it. ``using`` and ``collation``
        only make sense with a new ``type``. A new type and a new default together drop the old default
        first, as PostgreSQL converts the old one to the new type before setting the new one.
        """
        where = f"alter_column {table!r}, column {column!r}"
        target = sql.SQL("ALTER COLUMN ") + _identifier(column, where)
        actions: list[sql.Composable] = []
        if default is None or (default is not UNCHANGED and type is not None):
            actions.append(target + sql.SQL(" DROP DEFAULT"))
        if default is not None and default is not UNCHANGED:
            actions.append(target + sql.SQL(" SET DEFAULT ") + _value(default, f"{where}: default"))
        if type is not None:
            actions.append(
                _words(
                    target,
                    sql.SQL("SET DATA TYPE"),
                    _raw(type, f"{where}: type"),
                    _collate(collation, where),
                    sql.SQL("USING ") + _raw(using, f"{where}: using") if using is not None else None,
                )
            )
        elif using is not None or collation is not None:
            raise ValueError(f"{where}: using and collation need a new type")
        if not_null is not None:
            actions.append(
                target + sql.SQL(" SET NOT NULL" if _bool(not_null, f"{where}: not_null") else " DROP NOT NULL")
            )
        if not actions:
            raise ValueError(f"{where}: nothing to change; give type, default or not_null")
        self._alter_table(table, actions)

    def rename_column(self, table: TableName, old: str, new: str) -> None:
        """ALTER TABLE ... RENAME COLUMN."""
        where = f"rename_column {table!r}"
        self._alter_table(
            table, [sql.SQL("RENAME COLUMN {} TO {}").format(_identifier(old, where), _identifier(new, where))]
        )

    def rename_table(self, old: TableName, new: str) -> None:
        """ALTER TABLE ... RENAME TO; ``new`` is a bare name (a rename never moves a table to another schema)."""
        new_name = _identifier(new, f"rename_table {old!r}: new name")
        self._alter_table(old, [sql.SQL("RENAME TO ") + new_name])

    def add_constraint(self, table: TableName, name: str, expression: str) -> None:
        """A named constraint from raw SQL, e.g. ``"CHECK (length(x) > 0)"`` or ``"UNIQUE (a, b)"``."""
        where = f"add_constraint {table!r}"
        self._alter_table(
            table,
            [_words(sql.SQL("ADD CONSTRAINT"), _identifier(name, where), _raw(expression, f"{where}: expression"))],
        )

    def drop_constraint(self, table: TableName, name: str, *, if_exists: bool = False, cascade: bool = False) -> None:
        """ALTER TABLE ... DROP CONSTRAINT."""
        constraint = _identifier(name, f"drop_constraint {table!r}")
        self._alter_table(
            table,
            [_words(sql.SQL("DROP CONSTRAINT"), _flag(if_exists, "IF EXISTS"), constraint, _flag(cascade, "CASCADE"))],
        )

    def create_index(
        self,
        table: TableName,
        columns: ColumnNames,
        *,
        name: str | None = None,
        unique: bool = False,
        concurrently: bool = False,
        if_not_exists: bool = False,
        where: str | None = None,
        method: str | None = None,
        include: ColumnNames | None = None,
    ) -> None:
        """CREATE INDEX, named ``{table}_{columns}[_unique]_index`` unless ``name`` is given.

        With ``concurrently`` the migration must also call ``no_transaction()``.
        """
        context = f"create_index {table!r}"
        column_names = _names(columns, context)
        index_name = _index_name(table, columns, name, unique=unique)
        self.statements.append(
            _words(
                sql.SQL("CREATE"),
                _flag(unique, "UNIQUE"),
                sql.SQL("INDEX"),
                _flag(concurrently, "CONCURRENTLY"),
                _flag(if_not_exists, "IF NOT EXISTS"),
                _identifier(index_name, context),
                sql.SQL("ON"),
                _table(table),
                sql.SQL("USING ") + _identifier(method, f"{context}: method") if method is not None else None,
                _parenthesised(column_names),
                sql.SQL("INCLUDE ") + _parenthesised(_names(include, f"{context}: include"))
                if include is not None
                else None,
                sql.SQL("WHERE ") + _raw(where, f"{context}: where") if where is not None else None,
            )
        )

    def drop_index(
        self,
        table: TableName,
        columns: ColumnNames,
        *,
        concurrently: bool = False,
        if_exists: bool = False,
        name: str | None = None,
        unique: bool = False,
        cascade: bool = False,
    ) -> None:
        """DROP INDEX by the name ``create_index`` gave it (from table, columns and ``unique``) or by ``name``.

        The index lives in its table's schema, so a ``(schema, table)`` name qualifies the index too.
        """
        context = f"drop_index {table!r}"
        _names(columns, context)
        index_name = _identifier(_index_name(table, columns, name, unique=unique), context).string
        index = sql.Identifier(*_table_parts(table)[:-1], index_name)
        self.statements.append(
            _words(
                sql.SQL("DROP INDEX"),
                _flag(concurrently, "CONCURRENTLY"),
                _flag(if_exists, "IF EXISTS"),
                index,
                _flag(cascade, "CASCADE"),
            )
        )

    def create_extension(
        self, name: str | Sequence[str], *, if_not_exists: bool = False, schema: str | None = None
    ) -> None:
        """CREATE EXTENSION; a list appends one statement per extension (PostgreSQL takes one name each)."""
        for extension in _names(name, "create_extension"):
            self.statements.append(
                _words(
                    sql.SQL("CREATE EXTENSION"),
                    _flag(if_not_exists, "IF NOT EXISTS"),
                    extension,
                    sql.SQL("SCHEMA ") + _identifier(schema, "create_extension: schema")
                    if schema is not None
                    else None,
                )
            )

    def drop_extension(self, name: str | Sequence[str], *, if_exists: bool = False, cascade: bool = False) -> None:
        """DROP EXTENSION, several in one statement."""
        extensions = _names(name, "drop_extension")
        self.statements.append(
            _words(
                sql.SQL("DROP EXTENSION"),
                _flag(if_exists, "IF EXISTS"),
                sql.SQL(", ").join(extensions),
                _flag(cascade, "CASCADE"),
            )
        )

    def backfill(
        self, table: TableName, set: Mapping[str, str], *, where: str | None = None, batch_size: int = 1000
    ) -> None:
        """Queue ``UPDATE table SET column = expression ... WHERE where`` to run after the deploy, in batches.

        The deploy only queues it (in the migration's transaction, which also checks that the table has a
        single-column primary key and that the expressions are valid SQL); see ``lambda_db_setup.background``.
        """
        where_text = f"backfill {table!r}"
        parts = _table_parts(table)
        if not isinstance(set, Mapping) or not set:
            raise ValueError(f"{where_text}: set must map at least one column to an SQL expression")
        assignments = [
            (_identifier(column, where_text).string, _raw(expression, f"{where_text}: set {column!r}").string)
            for column, expression in set.items()
        ]
        if where is not None:
            _raw(where, f"{where_text}: where")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{where_text}: batch_size must be a positive whole number, got {batch_size!r}")
        self.statements += background_queue.enqueue_backfill(
            self._queue_name(where_text), self._next_job(), parts, assignments, where, batch_size
        )

    def background_sql(self, statement: str) -> None:
        """Queue one statement to run after the deploy, outside a transaction and without a time limit
        (``CREATE INDEX CONCURRENTLY``, ``ALTER TABLE ... VALIDATE CONSTRAINT``)."""
        text = _raw(statement, "background_sql").string
        if len(split_statements(text)) != 1:
            raise ValueError("background_sql: give exactly one statement (each runs on its own, in order)")
        text = split_statements(text)[0]
        self.statements += background_queue.enqueue_statement(
            self._queue_name("background_sql"), self._next_job(), text
        )

    def require_finished(self, migration: str) -> None:
        """Fail this migration (and the deploy) unless the background work ``migration`` queued has finished."""
        name = _identifier(migration, "require_finished").string
        self.statements.append(background_queue.require_finished(name))

    def _queue_name(self, where: str) -> str:
        if self.migration is None:
            raise ValueError(f"{where}: background work needs the migration's name (a builder from Migration.build)")
        return self.migration

    def _next_job(self) -> int:
        self.background_jobs += 1
        return self.background_jobs

    def _alter_table(self, table: TableName, actions: Sequence[sql.Composable]) -> None:
        self.statements.append(
            sql.SQL("ALTER TABLE ") + _table(table) + sql.SQL("\n  ") + sql.SQL(",\n  ").join(actions)
        )


def _words(*parts: sql.Composable | None) -> sql.Composed:
    """The given clauses separated by spaces; ``None`` marks an option left out."""
    return sql.SQL(" ").join(part for part in parts if part is not None)


def _flag(enabled: bool, keyword: str) -> sql.SQL | None:
    return sql.SQL(keyword) if enabled else None


def _identifier(name: object, where: str) -> sql.Identifier:
    """One quoted identifier; PostgreSQL cannot store an empty one or a NUL character."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"{where}: {name!r} is not a valid identifier (a non-empty string without NUL)")
    return sql.Identifier(name)


def _table_parts(name: object) -> tuple[str, ...]:
    """``(name,)`` or ``(schema, name)``, each part checked; a string is never split on dots."""
    if isinstance(name, str):
        parts: tuple[object, ...] = (name,)
    elif isinstance(name, tuple) and len(name) == 2:
        parts = name
    else:
        raise ValueError(f"table name {name!r}: expected a string or a (schema, name) tuple")
    return tuple(_identifier(part, f"table name {name!r}").string for part in parts)


def _table(name: object) -> sql.Identifier:
    """``"name"`` or ``"schema"."name"``."""
    return sql.Identifier(*_table_parts(name))


def _names(names: object, where: str) -> list[sql.Identifier]:
    """A column (or extension) name, or a non-empty list of them, as identifiers."""
    items = [names] if isinstance(names, str) else names
    if not isinstance(items, Iterable) or isinstance(items, Mapping):
        raise ValueError(f"{where}: expected a name or a list of names, got {names!r}")
    identifiers = [_identifier(item, where) for item in items]
    if not identifiers:
        raise ValueError(f"{where}: the list of names is empty")
    return identifiers


def _parenthesised(identifiers: Sequence[sql.Identifier]) -> sql.Composed:
    return sql.SQL("(") + sql.SQL(", ").join(identifiers) + sql.SQL(")")


def _raw(text: object, where: str) -> sql.SQL:
    """Raw SQL where node-pg-migrate also takes it (types, CHECK expressions, predicates)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: expected non-empty SQL text, got {text!r}")
    return sql.SQL(text)


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected True or False, got {value!r}")
    return value


def _value(value: object, where: str) -> sql.Composable:
    """A quoted literal; ``func()`` values go in raw, mappings become JSON."""
    if isinstance(value, PgLiteral):
        return value.as_sql()
    if isinstance(value, Mapping):
        value = Json(value)
    try:
        psycopg2.extensions.adapt(value)
    except psycopg2.ProgrammingError:
        raise ValueError(
            f"{where}: cannot use a {type(value).__name__} as an SQL value; wrap raw SQL in func()"
        ) from None
    return sql.Literal(value)


def _collate(collation: str | None, where: str) -> sql.Composable | None:
    return sql.SQL("COLLATE ") + _identifier(collation, f"{where}: collation") if collation is not None else None


def _referential_action(value: object, where: str) -> sql.SQL:
    """ON DELETE / ON UPDATE action, checked against PostgreSQL's five (any case)."""
    action = " ".join(value.upper().split()) if isinstance(value, str) else None
    if action not in REFERENTIAL_ACTIONS:
        raise ValueError(f"{where}: {value!r} is not one of {', '.join(sorted(REFERENTIAL_ACTIONS))}")
    return sql.SQL(action)


def _references(table: object, where: str) -> sql.Identifier:
    """The referenced table; node-pg-migrate's ``"table(column)"`` string form is refused, not parsed."""
    if isinstance(table, str) and table.endswith(")") and "(" in table:
        raise ValueError(
            f"{where}: references {table!r} looks like node-pg-migrate's 'table(column)' form;"
            " give the table in references and the column in references_column"
        )
    try:
        return _table(table)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _unknown_option(key: object, known: frozenset[str], where: str) -> ValueError:
    """An error for a misspelt option, suggesting the right one (``notNull`` -> ``not_null``)."""
    by_squashed = {option.replace("_", ""): option for option in known}
    close = difflib.get_close_matches(str(key).replace("_", "").lower(), by_squashed, n=1, cutoff=0.75)
    guess = by_squashed[close[0]] if close else None
    hint = f"; did you mean {guess!r}?" if guess else f"; known options: {', '.join(sorted(known))}"
    return ValueError(f"{where}: unknown option {key!r}{hint}")


def _column_definition(table: TableName, column: str, options: str | ColumnOptions) -> sql.Composed:
    """``"name" type [COLLATE] [PRIMARY KEY] [NOT NULL] [UNIQUE] [DEFAULT] [CHECK] [REFERENCES ...]``."""
    where = f"table {table!r}, column {column!r}"
    name = _identifier(column, where)
    if isinstance(options, str):
        return _words(name, _raw(options, f"{where}: type"))
    if not isinstance(options, Mapping):
        raise ValueError(f"{where}: expected a type string or a dict of column options, got {options!r}")
    for key in options:
        if key not in _COLUMN_OPTIONS:
            raise _unknown_option(key, _COLUMN_OPTIONS, where)
    if "type" not in options:
        raise ValueError(f"{where}: the 'type' option is required")
    flags = {flag: _bool(options.get(flag, False), f"{where}: {flag}") for flag in _COLUMN_FLAGS}
    references = options.get("references")
    if references is None:
        for option in ("references_column", "on_delete", "on_update"):
            if option in options:
                raise ValueError(f"{where}: {option} needs references")
    return _words(
        name,
        _raw(options["type"], f"{where}: type"),
        _collate(options.get("collation"), where),
        _flag(flags["primary_key"], "PRIMARY KEY"),
        _flag(flags["not_null"], "NOT NULL"),
        _flag(flags["unique"], "UNIQUE"),
        sql.SQL("DEFAULT ") + _value(options["default"], f"{where}: default") if "default" in options else None,
        _check(options["check"], where) if "check" in options else None,
        _references_clause(
            references,
            options.get("references_column"),
            options.get("on_delete"),
            options.get("on_update"),
            where,
        )
        if references is not None
        else None,
    )


def _check(expression: object, where: str) -> sql.Composed:
    return sql.SQL("CHECK (") + _raw(expression, f"{where}: check") + sql.SQL(")")


def _references_clause(
    table: object, columns: object, on_delete: object, on_update: object, where: str
) -> sql.Composed:
    return _words(
        sql.SQL("REFERENCES"),
        _references(table, where),
        _parenthesised(_names(columns, f"{where}: referenced columns")) if columns is not None else None,
        sql.SQL("ON DELETE ") + _referential_action(on_delete, f"{where}: on_delete")
        if on_delete is not None
        else None,
        sql.SQL("ON UPDATE ") + _referential_action(on_update, f"{where}: on_update")
        if on_update is not None
        else None,
    )


def _table_constraints(table: TableName, constraints: TableConstraints) -> list[sql.Composable]:
    """PRIMARY KEY, UNIQUE, CHECK and FOREIGN KEY clauses after the columns, all unnamed."""
    where = f"table {table!r}, constraints"
    if not isinstance(constraints, Mapping):
        raise ValueError(f"{where}: expected a dict")
    for key in constraints:
        if key not in _CONSTRAINT_OPTIONS:
            raise _unknown_option(key, _CONSTRAINT_OPTIONS, where)
    clauses: list[sql.Composable] = []
    if "primary_key" in constraints:
        clauses.append(
            sql.SQL("PRIMARY KEY ") + _parenthesised(_names(constraints["primary_key"], f"{where}: primary_key"))
        )
    if "unique" in constraints:
        for column_set in _unique_sets(constraints["unique"]):
            clauses.append(sql.SQL("UNIQUE ") + _parenthesised(_names(column_set, f"{where}: unique")))
    if "check" in constraints:
        checks = constraints["check"]
        for expression in [checks] if isinstance(checks, str) else checks:
            clauses.append(_check(expression, where))
    if "foreign_keys" in constraints:
        foreign_keys = constraints["foreign_keys"]
        for foreign_key in [foreign_keys] if isinstance(foreign_keys, Mapping) else foreign_keys:
            clauses.append(_foreign_key(foreign_key, f"{where}: foreign key"))
    return clauses


def _unique_sets(unique: object) -> list[object]:
    """node-pg-migrate's rule: a list holding any list is several sets, otherwise it is one set."""
    if isinstance(unique, str):
        return [unique]
    if isinstance(unique, Sequence) and any(not isinstance(item, str) for item in unique):
        return list(unique)
    return [unique]


def _foreign_key(options: object, where: str) -> sql.Composed:
    if not isinstance(options, Mapping):
        raise ValueError(f"{where}: expected a dict, got {options!r}")
    for key in options:
        if key not in _FOREIGN_KEY_OPTIONS:
            raise _unknown_option(key, _FOREIGN_KEY_OPTIONS, where)
    for required in ("columns", "references"):
        if required not in options:
            raise ValueError(f"{where}: the {required!r} option is required")
    return (
        sql.SQL("FOREIGN KEY ")
        + _parenthesised(_names(options["columns"], f"{where}: columns"))
        + sql.SQL(" ")
        + _references_clause(
            options["references"],
            options.get("references_columns"),
            options.get("on_delete"),
            options.get("on_update"),
            where,
        )
    )


def _index_name(table: TableName, columns: ColumnNames, name: str | None, *, unique: bool) -> str:
    """node-pg-migrate's default index name: ``{table}_{col1}_{col2}[_unique]_index``."""
    if name is not None:
        return name
    column_list = [columns] if isinstance(columns, str) else list(columns)
    suffix = "_unique_index" if unique else "_index"
    return f"{_table_parts(table)[-1]}_{'_'.join(column_list)}{suffix}"
