"""Lint the SQL of pending migrations with squawk before it reaches a live database.

What is linted is exactly what ``up`` would run against this database: the engine's dry run renders every
pending migration (Python migrations through the builder, ``.sql`` files split into statements).

How. squawk reads all pending migrations as one file, in order, with ``--assume-in-transaction``. squawk then
knows that a table created earlier in the file is new, so ``CREATE INDEX`` or a foreign key on a table created
in the same run passes, while the same statement on a table that already exists here is flagged. (Linting
each file on its own would flag the first; explicit BEGIN/COMMIT per migration makes squawk forget created
tables at each COMMIT. squawk 2.70 applies this knowledge to index and constraint rules, not to
``adding-required-field``, ``adding-field-with-default`` or ``changing-column-type``: on a new table those
need a declared ignore.) Findings are mapped back to their migration by line ranges. Migrations
that run without a transaction (``pgm.no_transaction()`` / ``-- pgm:no-transaction``) are treated as such:
``ban-concurrent-index-creation-in-transaction`` does not apply to them, and they are linted once more on
their own, without the transaction assumption, for ``prefer-robust-stmts``: a failed one is run again, so its
statements must be re-runnable. Rules whose concern the engine itself handles are excluded (`ENGINE_HANDLED`).

Point it at a database in the state of the one you deploy to; on an empty database every table the pending
migrations create counts as new.

Knowingly ignoring a rule: a migration declares it, with a reason, for the whole migration:

- ``.sql``: a line of its own anywhere in the file: ``-- squawk-ignore rule-name: reason``
  (several rules: ``-- squawk-ignore rule-a, rule-b: reason``);
- ``.py``: a module-level literal ``SQUAWK_IGNORE = {"rule-name": "reason"}``.

A declaration without a reason, naming a rule squawk does not know, or in any other form (squawk's own
line-level ``-- squawk-ignore rule`` comments included: they are not honoured) is a problem that fails the
check. An ignore that matches nothing here is reported but does not fail (it may match on another database).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .discovery import Migration
from .errors import LintError
from .results import MigrationOutcome
from .sqltext import excerpt, split_statements

# Rules about concerns the engine takes care of itself, so a migration need not (and should not) repeat them.
ENGINE_HANDLED = {
    "require-lock-timeout": "the engine sets lock_timeout (default 5 s) on its session before any migration runs",
    "require-statement-timeout": (
        "the engine sets statement_timeout (configurable; under the Lambda never past its deadline)"
    ),
}
IN_TRANSACTION_ONLY = "ban-concurrent-index-creation-in-transaction"  # moot for no-transaction migrations
RERUN_RULE = "prefer-robust-stmts"  # what matters for a migration that runs without a transaction
SQUAWK_TIMEOUT_SECONDS = 120
EXCERPT = 160

_RULE = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_IGNORE_LINE = re.compile(r"^\s*--\s*squawk-ignore(?:-file)?(?=\s|$)(?P<rest>.*)$")
_DECLARATION = re.compile(rf"^\s*(?P<rules>{_RULE}(?:\s*,\s*{_RULE})*)\s*(?::|\s--)\s*(?P<reason>.*?)\s*$")
_RULES_ONLY = re.compile(rf"^\s*(?P<rules>{_RULE}(?:\s*,\s*{_RULE})*)\s*(?::|--)?\s*$")
_INVALID_RULE = re.compile(r"invalid rule name (\S+)")


@dataclass(frozen=True)
class Finding:
    """One squawk finding in one migration.

    ``statement`` is an excerpt of the statement at fault and ``code`` the line of it squawk points at;
    ``line`` is that line's number in the file for a ``.sql`` migration, None for a ``.py`` one (whose SQL the
    builder writes).
    """

    file: str
    rule: str
    message: str
    help: str | None
    statement: str
    code: str = ""
    line: int | None = None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


@dataclass(frozen=True)
class IgnoredFinding:
    finding: Finding
    reason: str


@dataclass
class MigrationLint:
    """The result for one pending migration."""

    file: str
    use_transaction: bool = True
    findings: list[Finding] = field(default_factory=list)
    ignored: list[IgnoredFinding] = field(default_factory=list)
    ignores: dict[str, str] = field(default_factory=dict)  # declared: rule -> reason
    problems: list[str] = field(default_factory=list)  # declarations that are themselves wrong

    @property
    def ok(self) -> bool:
        return not self.findings and not self.problems

    @property
    def unused_ignores(self) -> list[str]:
        used = {ignored.finding.rule for ignored in self.ignored}
        return [rule for rule in self.ignores if rule not in used]


@dataclass
class LintReport:
    """Every pending migration's findings, ignored findings (with reasons) and declaration problems."""

    migrations: list[MigrationLint]
    squawk_version: str = ""
    excluded: dict[str, str] = field(default_factory=lambda: dict(ENGINE_HANDLED))

    @property
    def ok(self) -> bool:
        return all(migration.ok for migration in self.migrations)

    @property
    def findings(self) -> list[Finding]:
        return [finding for migration in self.migrations for finding in migration.findings]

    @property
    def ignored(self) -> list[IgnoredFinding]:
        return [ignored for migration in self.migrations for ignored in migration.ignored]

    @property
    def problems(self) -> list[str]:
        return [f"{migration.file}: {problem}" for migration in self.migrations for problem in migration.problems]


@dataclass
class _Piece:
    """One statement of the linted text: where it sits there and in its migration file."""

    migration: int
    text: str
    first_line: int  # 0-based, in the linted text
    last_line: int
    file_line: int | None  # 1-based line of its first line in a .sql file


def lint(outcomes: list[MigrationOutcome], server_version: int, squawk_binary: str | None = None) -> LintReport:
    """Lint what a dry run of ``up`` rendered (``outcomes``) for a server of ``server_version``; changes nothing.

    The caller has already discovered, planned and rendered: nothing is read twice.
    """
    squawk = _squawk_binary(squawk_binary)
    report = LintReport(migrations=[], squawk_version=_run([squawk, "--version"]).stdout.strip())
    if not outcomes:
        return report
    migrations = [outcome.migration for outcome in outcomes]
    for migration, outcome in zip(migrations, outcomes, strict=True):
        result = MigrationLint(migration.file_name, use_transaction=outcome.use_transaction)
        result.ignores, result.problems = _declared_ignores(migration, outcome)
        report.migrations.append(result)
    _check_rule_names(squawk, report)

    pieces, text = _linted_text(migrations, outcomes)
    pg_version = f"--pg-version={server_version // 10000}.{server_version % 10000}"
    findings = _squawk(squawk, text, [pg_version, "--assume-in-transaction"])
    for raw in findings:
        piece = _piece_at(pieces, raw["line"])
        if raw["rule_name"] == IN_TRANSACTION_ONLY and not outcomes[piece.migration].use_transaction:
            continue
        _record(report.migrations[piece.migration], migrations[piece.migration], piece, raw)
    for index, outcome in enumerate(outcomes):
        if outcome.use_transaction:
            continue
        own_pieces, own_text = _linted_text([migrations[index]], [outcome])
        for raw in _squawk(squawk, own_text, [pg_version]):
            if raw["rule_name"] == RERUN_RULE:
                _record(report.migrations[index], migrations[index], _piece_at(own_pieces, raw["line"]), raw)
    return report


def format_report(report: LintReport) -> str:
    """The report as text for a terminal or a CI log: failing findings first, then what was ignored and why."""
    lines: list[str] = []
    for migration in report.migrations:
        for finding in migration.findings:
            lines.append(f"{finding.where}: {finding.rule}: {finding.message}")
            if finding.help:
                lines.append(f"  help: {finding.help}")
            lines.append(f"  in: {finding.statement}")
            if finding.code and finding.code != finding.statement:
                lines.append(f"  at: {finding.code}")
        lines.extend(f"{migration.file}: {problem}" for problem in migration.problems)
    ignored_lines = []
    for migration in report.migrations:
        counts: dict[str, int] = {}
        for ignored in migration.ignored:
            counts[ignored.finding.rule] = counts.get(ignored.finding.rule, 0) + 1
        ignored_lines.extend(
            f"  {migration.file}: {rule} ({count}x): {migration.ignores[rule]}" for rule, count in counts.items()
        )
    if ignored_lines:
        lines.append("ignored, with reasons:")
        lines.extend(ignored_lines)
    unused = [f"{migration.file}: {rule}" for migration in report.migrations for rule in migration.unused_ignores]
    if unused:
        lines.append(f"ignores matching nothing here (fine if they match elsewhere): {'; '.join(unused)}")
    pending = len(report.migrations)
    ignored_count = len(report.ignored)
    tail = f"{ignored_count} finding(s) ignored with reasons; {report.squawk_version or 'squawk'}"
    if report.ok:
        lines.append(f"check: ok: {pending} pending migration(s) linted, no findings; {tail}")
    else:
        failing = sum(not migration.ok for migration in report.migrations)
        lines.append(
            f"check: failed: {len(report.findings)} finding(s) and {len(report.problems)} problem(s) in {failing}"
            f" of {pending} pending migration(s); {tail}"
        )
    return "\n".join(lines)


# -- internals ---------------------------------------------------------------------------------------


def _squawk_binary(configured: str | None) -> str:
    """``configured`` (``SQUAWK_BINARY``: the Lambda's bundled one), else the one beside this Python, else on PATH."""
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise LintError(f"SQUAWK_BINARY: {configured} is not an executable file")
        return configured
    beside_python = Path(sys.executable).parent / "squawk"
    found = str(beside_python) if beside_python.exists() else shutil.which("squawk")
    if not found:
        raise LintError("squawk not found: install squawk-cli (pip install squawk-cli) or set SQUAWK_BINARY")
    return found


def _run(command: list[str], cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, cwd=cwd, timeout=SQUAWK_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LintError(f"squawk could not run: {error}") from error


def _squawk(squawk: str, text: str, flags: list[str]) -> list[dict]:
    """squawk's findings for ``text`` as JSON objects (``line`` is 0-based)."""
    with tempfile.TemporaryDirectory(prefix="lambda-db-setup-lint-") as directory:
        path = Path(directory) / "pending_migrations.sql"
        path.write_text(text, encoding="utf-8")
        excluded = f"--exclude={','.join(ENGINE_HANDLED)}"
        completed = _run([squawk, "--reporter=json", excluded, *flags, path.name], cwd=directory)
    if completed.returncode not in (0, 1):
        raise LintError(f"squawk failed (exit {completed.returncode}): {' '.join(completed.stderr.split())}")
    try:
        findings = json.loads(completed.stdout or "[]")
    except json.JSONDecodeError as error:
        raise LintError(f"squawk's JSON report could not be read ({error}): {completed.stdout[:200]!r}") from error
    if not isinstance(findings, list):
        raise LintError(f"squawk's JSON report is not a list: {completed.stdout[:200]!r}")
    return findings


def _linted_text(migrations: list[Migration], outcomes: list[MigrationOutcome]) -> tuple[list[_Piece], str]:
    """All statements, one migration after another, each ending in ';'; with where each one sits."""
    lines: list[str] = []
    pieces: list[_Piece] = []
    for index, (migration, outcome) in enumerate(zip(migrations, outcomes, strict=True)):
        lines.append(f"-- migration {migration.file_name}")
        source = migration.text if migration.kind == "sql" else None
        search_from = 0
        for statement in outcome.sql:
            for text in split_statements(statement):
                file_line = None
                if source is not None and (offset := source.find(text, search_from)) >= 0:
                    file_line = source.count("\n", 0, offset) + 1
                    search_from = offset + len(text)
                # squawk would honour its own ignore comments: only declarations with reasons count here
                body = text.replace("squawk-ignore", "squawk-noted")
                body += "\n;" if "--" in body.rsplit("\n", 1)[-1] else ";"
                first = len(lines)
                lines.extend(body.split("\n"))
                pieces.append(_Piece(index, text, first, len(lines) - 1, file_line))
    return pieces, "\n".join(lines) + "\n"


def _piece_at(pieces: list[_Piece], line: int) -> _Piece:
    for piece in pieces:
        if piece.first_line <= line <= piece.last_line:
            return piece
    raise LintError(f"squawk reported line {line + 1}, which holds no statement of a pending migration")


def _record(result: MigrationLint, migration: Migration, piece: _Piece, raw: dict) -> None:
    piece_lines = piece.text.split("\n")
    offset = min(max(raw["line"] - piece.first_line, 0), len(piece_lines) - 1)
    finding = Finding(
        file=migration.file_name,
        rule=str(raw.get("rule_name", "unknown")),
        message=str(raw.get("message", "")).strip(),
        help=(str(raw["help"]).strip() or None) if raw.get("help") else None,
        statement=excerpt(piece.text, EXCERPT),
        code=piece_lines[offset].strip(),
        line=piece.file_line + offset if piece.file_line else None,
    )
    if finding in result.findings or any(ignored.finding == finding for ignored in result.ignored):
        return  # the same finding from both passes of a no-transaction migration
    if finding.rule in result.ignores:
        result.ignored.append(IgnoredFinding(finding, result.ignores[finding.rule]))
    else:
        result.findings.append(finding)


def _declared_ignores(migration: Migration, outcome: MigrationOutcome) -> tuple[dict[str, str], list[str]]:
    if migration.kind == "sql":
        return _sql_ignores(migration.text)
    ignores, problems = _python_ignores(migration.text)
    if any("squawk-ignore" in statement for statement in outcome.sql):
        problems.append(
            "a squawk-ignore comment in its SQL is not read in a .py migration;"
            ' declare SQUAWK_IGNORE = {"rule-name": "reason"} at module level'
        )
    return ignores, problems


def _sql_ignores(text: str) -> tuple[dict[str, str], list[str]]:
    ignores: dict[str, str] = {}
    problems: list[str] = []
    usage = "write a line of its own: -- squawk-ignore rule-name: why it does not apply here"
    for number, line in enumerate(text.splitlines(), start=1):
        if "squawk-ignore" not in line:
            continue
        comment = _IGNORE_LINE.match(line)
        declaration = _DECLARATION.match(comment["rest"]) if comment else None
        if declaration and declaration["reason"]:
            for rule in re.split(r"\s*,\s*", declaration["rules"]):
                ignores[rule] = declaration["reason"]
        elif comment and (bare := _RULES_ONLY.match(comment["rest"])):
            problems.append(f"line {number}: ignores {bare['rules']} without a reason; {usage}")
        else:
            problems.append(f"line {number}: cannot read this squawk-ignore; {usage}")
    return ignores, problems


def _python_ignores(text: str) -> tuple[dict[str, str], list[str]]:
    usage = 'SQUAWK_IGNORE must be a literal {"rule-name": "why it does not apply here"} dict'
    for node in ast.parse(text).body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        if not any(isinstance(target, ast.Name) and target.id == "SQUAWK_IGNORE" for target in targets):
            continue
        try:
            value = ast.literal_eval(node.value) if node.value is not None else None
        except ValueError:
            value = None
        if not isinstance(value, dict):
            return {}, [f"line {node.lineno}: {usage}"]
        ignores: dict[str, str] = {}
        problems: list[str] = []
        for rule, reason in value.items():
            if not isinstance(rule, str) or not re.fullmatch(_RULE, rule):
                problems.append(f"line {node.lineno}: SQUAWK_IGNORE key {rule!r} is not a rule name; {usage}")
            elif not isinstance(reason, str) or not reason.strip():
                problems.append(f"line {node.lineno}: SQUAWK_IGNORE ignores {rule} without a reason; {usage}")
            else:
                ignores[rule] = reason.strip()
        return ignores, problems
    return {}, []


def _check_rule_names(squawk: str, report: LintReport) -> None:
    """Ask squawk which declared rule names it does not know (it rejects an unknown --exclude)."""
    declared = {rule for migration in report.migrations for rule in migration.ignores}
    unknown: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="lambda-db-setup-lint-") as directory:
        (Path(directory) / "empty.sql").write_text("")
        while declared - unknown:
            names = ",".join(sorted(declared - unknown))
            completed = _run([squawk, f"--exclude={names}", "empty.sql"], cwd=directory)
            invalid = _INVALID_RULE.search(completed.stderr)
            if completed.returncode == 0 or invalid is None or invalid[1] in unknown:
                break
            unknown.add(invalid[1])
    for migration in report.migrations:
        for rule in sorted(unknown & set(migration.ignores)):
            del migration.ignores[rule]
            migration.problems.append(
                f"ignores {rule}, which is not a squawk rule (see https://squawkhq.com/docs/rules)"
            )
