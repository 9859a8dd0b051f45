"""Every setting in one table: its type, default, environment variable, CLI flag and CDK context key.

The CLI's flags, the Lambda's environment (``infra/``), ``cdk.json``'s defaults and the README's settings
table are derived from `SETTINGS` or checked against it by the tests. The CLI and the Lambda read the same
environment variables; a flag wins over its variable. Every error names the variable or flag at fault, so
a misconfigured stack fails its deploy with a reason that says what to fix.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

APPLICATION_NAME = "lambda_db_setup"  # how pg_stat_activity shows a runner, and how `unlock` recognises one
PROXY_PORT = 5432  # RDS Proxy for PostgreSQL always listens here, whatever port the cluster uses
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING_SSL_MODES = ("verify-ca", "verify-full")
PROJECT_TABLE = "[tool.lambda_db_setup]"  # the pyproject.toml table the CLI reads defaults from
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1: a longer name would be cut silently


@dataclass(frozen=True)
class Setting:
    """One setting. ``kind`` is int, float, bool, str or Path; None as default means unset."""

    name: str
    kind: type
    default: Any
    meaning: str
    env: str | None = None
    flag: str | None = None
    context: str | None = None
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    identifier: bool = False  # a PostgreSQL name: used exactly as written (quoted), so checked as one

    def parse(self, text: str, source: str) -> Any:
        """``text`` as this setting's type; ``source`` (the variable or flag) is named in the error."""
        if self.kind is bool:
            return _choice(text.lower(), ("true", "false"), source) == "true"
        if self.choices:
            return _choice(text, self.choices, source)
        if self.kind in (int, float):
            return _number(text, self.kind, self.minimum, source)
        if self.identifier:
            return _identifier(text, source)
        return Path(text) if self.kind is Path else text


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "database_url", str, None, "PostgreSQL URL; unset: the embedded PostgreSQL 16",
        env="DATABASE_URL", flag="--database-url",
    ),
    Setting(
        "migrations_dir", Path, Path("migrations"),
        "the migrations directory; relative: to the project root for the CLI (a flag: to the working directory),"
        " to the working directory for the Lambda (its asset root)",
        env="MIGRATIONS_DIR", flag="--migrations-dir",
    ),
    Setting(
        "migrations_schema", str, "public",
        "schema of the tracking table (node-pg-migrate's --migrations-schema); created if missing",
        env="MIGRATIONS_SCHEMA", flag="--migrations-schema", context="migrationsSchema", identifier=True,
    ),
    Setting(
        "migrations_table", str, "pgmigrations",
        "name of the tracking table (node-pg-migrate's --migrations-table), exactly as written (case kept)",
        env="MIGRATIONS_TABLE", flag="--migrations-table", context="migrationsTable", identifier=True,
    ),
    Setting(
        "lock_wait_seconds", float, 30.0,
        "seconds to wait for the migration lock (the Lambda waits less when its time is short)",
        env="LOCK_WAIT_SECONDS", flag="--lock-wait", minimum=0,
    ),
    Setting(
        "lock_timeout_ms", int, 5000, "PostgreSQL `lock_timeout` for each migration statement",
        env="LOCK_TIMEOUT_MS", flag="--lock-timeout-ms", context="lockTimeoutMs", minimum=0,
    ),
    Setting(
        "statement_timeout_ms", int, 0,
        "PostgreSQL `statement_timeout`; 0 means none (the Lambda never lets one run past its own time)",
        env="STATEMENT_TIMEOUT_MS", flag="--statement-timeout-ms", context="statementTimeoutMs", minimum=0,
    ),
    Setting(
        "adopt_existing_schema", bool, True,
        "a database with no history whose tables the migrations create is recorded as migrated when a"
        " rolled-back rehearsal matches it exactly, and refused with the differences when it does not",
        env="ADOPT_EXISTING_SCHEMA", flag="--adopt-existing", context="adoptExistingSchema",
    ),
    Setting(
        "single_transaction", bool, False,
        "run consecutive transactional migrations in one transaction: all commit, or a failure rolls all back;"
        " a no-transaction migration ends one and starts the next",
        env="SINGLE_TRANSACTION", flag="--single-transaction", context="singleTransaction",
    ),
    Setting(
        "lint_before_apply", bool, False,
        "lint the pending migrations with squawk and refuse flagged ones before applying any",
        env="LINT_BEFORE_APPLY", context="lintBeforeApply",
    ),
    Setting(
        "squawk_binary", str, None, "the squawk executable; unset: the one beside Python, else on PATH",
        env="SQUAWK_BINARY",
    ),
    Setting(
        "admin_secret_arn", str, None,
        "the admin secret (RDS JSON: username, password, host, port, dbname); the Lambda requires it",
        env="DB_SECRET_ARN",
    ),
    Setting(
        "proxy_endpoint", str, None, "where the Lambda connects (`host` or `host:port`); unset: the secret's host",
        env="DB_PROXY_ENDPOINT",
    ),
    Setting(
        "iam_auth", bool, False,
        "log in with an RDS IAM auth token for the admin user instead of the secret's password (the proxy"
        " requires IAM authentication)",
        env="DB_IAM_AUTH", context="iamAuth",
    ),
    Setting(
        "sslmode", str, "verify-full", "libpq `sslmode` of the Lambda's connection",
        env="DB_SSLMODE", choices=SSL_MODES,
    ),
    Setting(
        "ca_bundle", str, None,
        "CA bundle for verify-ca / verify-full; unset: certifi's (Amazon Root CA 1-4 included)",
        env="DB_CA_BUNDLE",
    ),
    Setting(
        "connect_timeout_seconds", int, 10, "seconds per connection attempt (retried until the deadline)",
        env="DB_CONNECT_TIMEOUT_SECONDS", minimum=2,
    ),
    Setting(
        "run_budget_seconds", int, None,
        "seconds the whole deploy-time run may take from on_event's start (CloudFormation waits one hour);"
        " unset: no limit beyond each invocation's",
        env="RUN_BUDGET_SECONDS", minimum=1,
    ),
    Setting(
        "lambda_function", str, None,
        "the deployed migration function (output MigrationFunctionName): the CLI runs status, check, unlock,"
        " up --dry-run, forget --dry-run and (with --confirm) down, repair, baseline, forget and unlock --terminate"
        " in it",
        env="DB_MIGRATIONS_LAMBDA", flag="--lambda",
    ),
    Setting(
        "embedded_dir", Path, Path(".pgdata"),
        "the embedded PostgreSQL 16's data directory (the CLI's when no database URL is given); relative: to the"
        " project root (a flag: to the working directory)",
        env="LAMBDA_DB_SETUP_EMBEDDED_DIR", flag="--embedded-dir",
    ),
    Setting(
        "test_database_url", str, None,
        "the server the pytest plugin creates and drops its databases on (never `DATABASE_URL`); unset: a"
        " throw-away embedded PostgreSQL 16 per test run",
        env="LAMBDA_DB_SETUP_TEST_URL",
    ),
    Setting(
        "background_state_machine_arn", str, None,
        "the background migrations' state machine: a deploy that leaves queued work starts it",
        env="BACKGROUND_STATE_MACHINE_ARN",
    ),
    Setting(
        "service_name", str, "db-migrations", "the `service` of every log line and metric",
        env="POWERTOOLS_SERVICE_NAME",
    ),
    Setting(
        "metrics_namespace", str, "DbMigrations", "CloudWatch namespace of the run's metrics",
        env="POWERTOOLS_METRICS_NAMESPACE", context="metricsNamespace",
    ),
    Setting(
        "log_level", str, "INFO", "the handler's log level",
        env="POWERTOOLS_LOG_LEVEL", context="logLevel", choices=LOG_LEVELS,
    ),
)  # fmt: skip
BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The value of every setting in `SETTINGS`, typed; build it with `load` (CLI) or `from_env` (Lambda)."""

    database_url: str | None
    migrations_dir: Path
    migrations_schema: str
    migrations_table: str
    lock_wait_seconds: float
    lock_timeout_ms: int
    statement_timeout_ms: int
    adopt_existing_schema: bool
    single_transaction: bool
    lint_before_apply: bool
    squawk_binary: str | None
    admin_secret_arn: str | None
    proxy_endpoint: str | None
    iam_auth: bool
    sslmode: str
    ca_bundle: str | None
    connect_timeout_seconds: int
    run_budget_seconds: int | None
    lambda_function: str | None
    embedded_dir: Path
    test_database_url: str | None
    background_state_machine_arn: str | None
    service_name: str
    metrics_namespace: str
    log_level: str

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        flags: Mapping[str, Any] | None = None,
        project: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Each setting from its flag (already typed), else its variable, else pyproject.toml, else its default."""
        env = os.environ if environ is None else environ
        given = flags or {}
        from_project = _project_values(project or {})
        values = {}
        for setting in SETTINGS:
            text = env.get(setting.env, "").strip() if setting.env else ""
            if setting.name in given:
                values[setting.name] = given[setting.name]
            elif text:
                values[setting.name] = setting.parse(text, setting.env)
            else:
                values[setting.name] = from_project.get(setting.name, setting.default)
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The Lambda's settings: the secrets required, the directory and CA bundle checked, before anything runs."""
        settings = cls.load(environ)
        if settings.admin_secret_arn is None:
            raise ConfigurationError(f"{BY_NAME['admin_secret_arn'].env} is not set")
        _endpoint(settings.proxy_endpoint)  # a bad endpoint fails now, before any secret is read
        if not settings.migrations_dir.is_dir():
            raise ConfigurationError(f"MIGRATIONS_DIR: migrations directory {settings.migrations_dir} does not exist")
        return cls(**{**settings.as_dict(), "ca_bundle": _ca_bundle(settings)})

    def as_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}

    @property
    def proxy_host(self) -> str | None:
        return _endpoint(self.proxy_endpoint)[0]

    @property
    def proxy_port(self) -> int:
        return _endpoint(self.proxy_endpoint)[1]


def environment_variable(name: str) -> str:
    """The environment variable of setting ``name`` (what ``infra/`` puts into the Lambda's environment)."""
    env = BY_NAME[name].env
    if env is None:
        raise KeyError(f"setting {name} has no environment variable")
    return env


def project_settings(
    start: Path, flags: Mapping[str, Any] | None = None, overrides: Mapping[str, str] | None = None
) -> Settings:
    """The settings of a run started in ``start`` (the CLI's working directory, pytest's root directory).

    The project's `PROJECT_TABLE` gives the defaults and ``overrides`` (pytest's ini keys) replace its entries,
    below the environment and ``flags``. Relative paths not given in ``flags`` resolve against the project
    root, or ``start`` outside any project, so every subdirectory of a project finds the same migrations and
    the same embedded database.
    """
    root = find_project_root(start)
    table = read_project_table(root / "pyproject.toml") if root else None
    given = dict(flags or {})
    settings = Settings.load(os.environ, flags=given, project={**(table or {}), **(overrides or {})})
    base = root or start.resolve()
    paths = [s.name for s in SETTINGS if s.kind is Path and s.name not in given and getattr(settings, s.name)]
    return replace(settings, **{name: base / getattr(settings, name) for name in paths})


def find_project_root(start: Path) -> Path | None:
    """The nearest directory from ``start`` up with a pyproject.toml holding `PROJECT_TABLE`, else the nearest
    with a ``migrations/`` beside a pyproject.toml or cdk.json; None: outside any project.

    So the CLI behaves the same from any subdirectory of a project, as git does.
    """
    here = start.resolve()
    candidates = [here, *here.parents]
    for directory in candidates:
        if read_project_table(directory / "pyproject.toml", quiet=True) is not None:
            return directory
    for directory in candidates:
        markers = (directory / "pyproject.toml", directory / "cdk.json")
        if (directory / "migrations").is_dir() and any(marker.is_file() for marker in markers):
            return directory
    return None


def read_project_table(pyproject: Path, *, quiet: bool = False) -> dict[str, Any] | None:
    """The `PROJECT_TABLE` of ``pyproject``; None when the file or the table is absent.

    A file that is not TOML is an error naming it, unless ``quiet`` (while looking for the project root).
    """
    try:
        document = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        if quiet:
            return None
        raise ConfigurationError(f"{pyproject}: cannot read it as TOML: {error}") from None
    tool = document.get("tool")
    table = tool.get("lambda_db_setup") if isinstance(tool, dict) else None
    if table is not None and not isinstance(table, dict):
        raise ConfigurationError(f"{pyproject}: {PROJECT_TABLE} must be a table, not a value")
    return table


def _project_values(project: Mapping[str, Any]) -> dict[str, Any]:
    """The `PROJECT_TABLE` entries, typed and checked as their variables are; errors name the key."""
    values = {}
    for key, value in project.items():
        source = f"pyproject.toml {PROJECT_TABLE} {key}"
        setting = BY_NAME.get(key)
        if setting is None:
            raise ConfigurationError(f"{source}: no such setting; the settings are {', '.join(BY_NAME)}")
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            raise ConfigurationError(f"{source} must be a string, number or boolean; got {type(value).__name__}")
        values[key] = setting.parse(text, source)
    return values


def _choice(value: str, choices: tuple[str, ...], source: str) -> str:
    if value not in choices:
        raise ConfigurationError(f"{source} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _identifier(text: str, source: str) -> str:
    """A PostgreSQL name: not empty, no NUL character, at most 63 bytes (longer ones PostgreSQL would cut)."""
    if not text or "\x00" in text or len(text.encode("utf-8")) > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"{source} must be a PostgreSQL name: 1 to {MAX_IDENTIFIER_BYTES} bytes of UTF-8, no NUL; got {text!r}"
        )
    return text


def _number(text: str, kind: type, minimum: float | None, source: str) -> int | float:
    try:
        number = kind(text)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise ConfigurationError(f"{source} must be {expected}; got {text!r}") from None
    if not math.isfinite(number):
        raise ConfigurationError(f"{source} must be a finite number; got {text!r}")
    if minimum is not None and number < minimum:
        raise ConfigurationError(f"{source} must be at least {minimum:g}; got {number:g}")
    return number


def _endpoint(value: str | None) -> tuple[str | None, int]:
    """``host`` or ``host:port``; unset means: use the host and port of the admin secret."""
    if value is None:
        return None, PROXY_PORT
    host, colon, port = value.rpartition(":")
    if not colon:
        return value, PROXY_PORT
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"DB_PROXY_ENDPOINT must be a host name or host:port; got {value!r}")
    return host, int(port)


def _ca_bundle(settings: Settings) -> str | None:
    """The CA bundle for a verifying TLS mode (certifi's when unset); None when TLS is not verified."""
    if settings.sslmode not in VERIFYING_SSL_MODES:
        return None
    value = settings.ca_bundle
    if value is None:
        import certifi  # only verifying TLS modes need it

        value = certifi.where()
    if not Path(value).is_file():
        raise ConfigurationError(f"DB_CA_BUNDLE: CA bundle {value} is not a file")
    return value
