"""Linting pending migrations with squawk: dangerous statements on existing tables are reported with their file;
tables created in the same run are new; ignores need a reason; the project's migrations pass.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from lambda_db_setup import lint as linting
from lambda_db_setup.engine import Engine
from lambda_db_setup.errors import LintError, MigrationFileError
from lambda_db_setup.lint import ENGINE_HANDLED, format_report
from tests import safety
from tests.helpers import write_py, write_sql
from tests.safety import PROJECT_ROOT, catalog

module_database_url = safety.module_database_url
database_url = safety.database_url

PROJECT_MIGRATIONS = PROJECT_ROOT / "migrations"


def existing_items_table(conn, migrations_dir: Path) -> None:
    """An applied migration: `items` exists before the pending ones run."""
    write_sql(migrations_dir, "1000_items", "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, code text);")
    Engine(conn, migrations_dir).up()


def lint(conn, migrations_dir: Path) -> linting.LintReport:
    """What `check` does: lint a dry run's rendering of the pending migrations."""
    rendered = Engine(conn, migrations_dir).up(dry_run=True).would_run
    return linting.lint(rendered, conn.server_version, os.environ.get("SQUAWK_BINARY"))


def rules(report) -> list[tuple[str, str]]:
    return [(finding.file, finding.rule) for finding in report.findings]


def test_dangerous_statements_on_an_existing_table_are_reported_with_their_file(conn, migrations_dir) -> None:
    existing_items_table(conn, migrations_dir)
    write_sql(
        migrations_dir,
        "2000_index_items",
        "CREATE INDEX IF NOT EXISTS items_code_idx ON items (code);",
        header="-- Index items by code.\n\n",
    )
    write_py(migrations_dir, "3000_required_column", 'pgm.sql("ALTER TABLE items ADD COLUMN owner bigint NOT NULL")')
    before = catalog(conn)
    report = lint(conn, migrations_dir)
    assert not report.ok
    assert rules(report) == [
        ("2000_index_items.sql", "require-concurrent-index-creation"),
        ("3000_required_column.py", "adding-required-field"),
    ]
    index, column = report.findings
    assert (index.line, index.code) == (4, "CREATE INDEX IF NOT EXISTS items_code_idx ON items (code)")
    assert index.help == "Use `concurrently` to avoid blocking writes."
    assert column.line is None and column.statement == "ALTER TABLE items ADD COLUMN owner bigint NOT NULL"
    assert not {rule for _, rule in rules(report)} & set(ENGINE_HANDLED)  # the engine sets the timeouts
    assert catalog(conn) == before  # a dry run: nothing changed
    text = format_report(report)
    assert text.splitlines()[0] == (
        "2000_index_items.sql:4: require-concurrent-index-creation: During normal index creation, table updates"
        " are blocked, but reads are still allowed."
    )
    assert "3000_required_column.py: adding-required-field: " in text
    assert text.splitlines()[-1] == (
        f"check: failed: 2 finding(s) and 0 problem(s) in 2 of 2 pending migration(s); 0 finding(s) ignored with"
        f" reasons; {report.squawk_version}"
    )
    assert re.fullmatch(r"squawk \d+\.\d+\.\d+", report.squawk_version)


def test_tables_created_earlier_in_the_same_run_are_new(conn, migrations_dir) -> None:
    write_sql(migrations_dir, "1000_items", "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, code text);")
    write_py(
        migrations_dir,
        "2000_index_and_key",
        'pgm.sql("CREATE TABLE IF NOT EXISTS owners (id bigint PRIMARY KEY)")\n'
        'pgm.sql("ALTER TABLE items ADD COLUMN IF NOT EXISTS owner bigint")\n'
        'pgm.sql("CREATE INDEX IF NOT EXISTS items_code_idx ON items (code)")\n'
        'pgm.sql("ALTER TABLE items ADD CONSTRAINT items_owner_fk FOREIGN KEY (owner) REFERENCES owners (id)")',
    )
    report = lint(conn, migrations_dir)
    assert report.findings == [] and report.ok, format_report(report)
    assert (
        format_report(report)
        .splitlines()[-1]
        .startswith("check: ok: 2 pending migration(s) linted, no findings; 0 finding(s) ignored with reasons; squawk ")
    )
    Engine(conn, migrations_dir).up(1)  # now items exists before the second migration runs
    assert rules(lint(conn, migrations_dir)) == [
        ("2000_index_and_key.py", "require-concurrent-index-creation"),
        ("2000_index_and_key.py", "constraint-missing-not-valid"),
        ("2000_index_and_key.py", "adding-foreign-key-constraint"),
    ]


def test_ignored_rule_with_a_reason_passes(conn, migrations_dir) -> None:
    existing_items_table(conn, migrations_dir)
    write_sql(
        migrations_dir,
        "2000_index_items",
        "CREATE INDEX IF NOT EXISTS items_code_idx ON items (code);",
        header="-- squawk-ignore require-concurrent-index-creation: items holds 40 rows, built in milliseconds\n",
    )
    write_py(
        migrations_dir,
        "3000_required_column",
        'pgm.sql("ALTER TABLE items ADD COLUMN owner bigint NOT NULL")',
    )
    path = migrations_dir / "3000_required_column.py"
    path.write_text(
        'SQUAWK_IGNORE = {"adding-required-field": "items is empty in every environment"}\n\n\n' + path.read_text()
    )
    report = lint(conn, migrations_dir)
    assert report.ok, format_report(report)
    assert [(i.finding.file, i.finding.rule, i.reason) for i in report.ignored] == [
        ("2000_index_items.sql", "require-concurrent-index-creation", "items holds 40 rows, built in milliseconds"),
        ("3000_required_column.py", "adding-required-field", "items is empty in every environment"),
    ]
    text = format_report(report)
    assert text.splitlines()[:3] == [
        "ignored, with reasons:",
        "  2000_index_items.sql: require-concurrent-index-creation (1x): items holds 40 rows, built in milliseconds",
        "  3000_required_column.py: adding-required-field (1x): items is empty in every environment",
    ]


@pytest.mark.parametrize(
    "comment",
    [
        "-- squawk-ignore require-concurrent-index-creation",
        "-- squawk-ignore require-concurrent-index-creation:",
        "-- squawk-ignore require-concurrent-index-creation:    ",
    ],
    ids=["squawk-style", "colon", "blank-reason"],
)
def test_ignore_without_a_reason_fails(conn, migrations_dir, comment: str) -> None:
    existing_items_table(conn, migrations_dir)
    write_sql(migrations_dir, "2000_index_items", f"{comment}\nCREATE INDEX IF NOT EXISTS items_idx ON items (code);")
    report = lint(conn, migrations_dir)
    assert not report.ok
    assert report.problems == [
        "2000_index_items.sql: line 2: ignores require-concurrent-index-creation without a reason; write a line of its"
        " own: -- squawk-ignore rule-name: why it does not apply here"
    ]
    assert rules(report) == [("2000_index_items.sql", "require-concurrent-index-creation")]  # not honoured either


def test_ignore_in_another_form_fails(conn, migrations_dir) -> None:
    existing_items_table(conn, migrations_dir)
    write_sql(
        migrations_dir,
        "2000_index_items",
        "CREATE INDEX IF NOT EXISTS items_idx ON items (code); /* squawk-ignore require-concurrent-index-creation */",
    )
    report = lint(conn, migrations_dir)
    assert report.problems == [
        "2000_index_items.sql: line 2: cannot read this squawk-ignore; write a line of its own:"
        " -- squawk-ignore rule-name: why it does not apply here"
    ]
    assert rules(report) == [("2000_index_items.sql", "require-concurrent-index-creation")]


@pytest.mark.parametrize(
    ("declaration", "problem"),
    [
        (
            'SQUAWK_IGNORE = {"adding-required-field": ""}',
            "SQUAWK_IGNORE ignores adding-required-field without a reason",
        ),
        (
            'SQUAWK_IGNORE = {"adding-required-field": None}',
            "SQUAWK_IGNORE ignores adding-required-field without a reason",
        ),
        ('SQUAWK_IGNORE = ["adding-required-field"]', 'SQUAWK_IGNORE must be a literal {"rule-name":'),
        ('SQUAWK_IGNORE = dict(x="y")', 'SQUAWK_IGNORE must be a literal {"rule-name":'),
        ('SQUAWK_IGNORE = {"Adding Required": "why"}', "SQUAWK_IGNORE key 'Adding Required' is not a rule name"),
    ],
    ids=["empty", "none", "list", "call", "bad-key"],
)
def test_python_ignore_declarations_need_a_literal_reason(conn, migrations_dir, declaration, problem) -> None:
    existing_items_table(conn, migrations_dir)
    path = write_py(migrations_dir, "2000_column", 'pgm.sql("ALTER TABLE items ADD COLUMN owner bigint NOT NULL")')
    path.write_text(f"{declaration}\n\n\n{path.read_text()}")
    report = lint(conn, migrations_dir)
    assert not report.ok
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"2000_column.py: line 1: {problem}")
    assert rules(report) == [("2000_column.py", "adding-required-field")]


def test_ignoring_a_rule_squawk_does_not_know_fails(conn, migrations_dir) -> None:
    existing_items_table(conn, migrations_dir)
    write_sql(
        migrations_dir,
        "2000_index_items",
        "-- squawk-ignore require-concurent-index-creation: typo in the rule name\n"
        "-- squawk-ignore prefer-robust-stmts: nothing to match, which is fine\n"
        "CREATE INDEX IF NOT EXISTS items_idx ON items (code);",
    )
    report = lint(conn, migrations_dir)
    assert report.problems == [
        "2000_index_items.sql: ignores require-concurent-index-creation, which is not a squawk rule"
        " (see https://squawkhq.com/docs/rules)"
    ]
    assert report.migrations[0].unused_ignores == ["prefer-robust-stmts"]
    assert (
        "ignores matching nothing here (fine if they match elsewhere): 2000_index_items.sql: prefer-robust-stmts"
        in (format_report(report))
    )


def test_migrations_without_a_transaction_are_linted_as_such(conn, migrations_dir) -> None:
    existing_items_table(conn, migrations_dir)
    header = "-- pgm:no-transaction\n"
    write_sql(
        migrations_dir, "2000_robust", "CREATE INDEX CONCURRENTLY IF NOT EXISTS a_idx ON items (code);", header=header
    )
    write_sql(migrations_dir, "3000_not_rerunnable", "CREATE INDEX CONCURRENTLY b_idx ON items (code);", header=header)
    write_py(
        migrations_dir, "4000_in_transaction", 'pgm.sql("CREATE INDEX CONCURRENTLY IF NOT EXISTS c_idx ON items (id)")'
    )
    report = lint(conn, migrations_dir)
    assert rules(report) == [
        ("3000_not_rerunnable.sql", "prefer-robust-stmts"),
        ("4000_in_transaction.py", "ban-concurrent-index-creation-in-transaction"),
    ]
    assert [m.use_transaction for m in report.migrations] == [False, False, True]


def test_nothing_pending_is_ok_and_changes_nothing(conn, migrations_dir) -> None:
    report = lint(conn, migrations_dir)
    assert report.ok and report.migrations == []
    assert format_report(report).startswith("check: ok: 0 pending migration(s) linted")
    existing_items_table(conn, migrations_dir)
    assert lint(conn, migrations_dir).migrations == []  # applied migrations are not linted


def test_squawk_binary_comes_from_the_environment_when_set(conn, migrations_dir, tmp_path, monkeypatch) -> None:
    """The Lambda sets SQUAWK_BINARY to the squawk bundled in its asset; a wrong value is named."""
    squawk = tmp_path / "squawk"
    monkeypatch.setenv("SQUAWK_BINARY", str(squawk))
    with pytest.raises(LintError, match=f"^SQUAWK_BINARY: {re.escape(str(squawk))} is not an executable file$"):
        lint(conn, migrations_dir)
    squawk.write_text("#!/bin/sh\necho squawk 0.0.1-stand-in\n")
    squawk.chmod(0o755)
    assert lint(conn, migrations_dir).squawk_version == "squawk 0.0.1-stand-in"


def test_a_broken_migration_fails_the_check_with_the_engine_error(conn, migrations_dir) -> None:
    (migrations_dir / "1000_broken.py").write_text("def up(pgm):\n    pgm.sql(\n")
    with pytest.raises(MigrationFileError, match=r"^1000_broken\.py: line 2: "):
        lint(conn, migrations_dir)


def test_project_migrations_pass_check_with_only_reasoned_style_ignores(conn) -> None:
    """The shipped migrations lint clean; what they ignore are style rules of the inherited schema, with reasons."""
    report = lint(conn, PROJECT_MIGRATIONS)
    assert report.ok, format_report(report)
    assert len(report.migrations) == 14
    assert {ignored.finding.rule for ignored in report.ignored} == {
        "prefer-bigint-over-int",
        "prefer-timestamp-tz",
        "prefer-text-field",
    }
