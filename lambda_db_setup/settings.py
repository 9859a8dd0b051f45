"""The Lambda handler's configuration, read from environment variables and validated in one place.

Every error names the variable at fault, so a misconfigured stack fails its deploy with a reason that
says what to fix instead of a stack trace from deep inside a connection attempt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"  # /var/task/migrations in the asset
PROXY_PORT = 5432  # RDS Proxy for PostgreSQL always listens here, whatever port the cluster uses
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING_SSL_MODES = ("verify-ca", "verify-full")


class ConfigurationError(ValueError):
    """An environment variable is missing or has a value the handler cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything a Create/Update run needs to know besides the event and the secrets' contents."""

    admin_secret_arn: str
    app_rw_secret_arn: str
    app_tc_secret_arn: str
    proxy_host: str | None
    proxy_port: int
    sslmode: str
    ca_bundle: str | None
    connect_timeout_seconds: int
    lock_timeout_ms: int
    statement_timeout_ms: int
    migrations_dir: Path
    lint_before_apply: bool
    adopt_existing_schema: bool

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check every variable once, so a bad one fails the run before anything is touched."""
        env = _Environment(os.environ if environ is None else environ)
        proxy_host, proxy_port = env.endpoint("DB_PROXY_ENDPOINT")
        sslmode = env.choice("DB_SSLMODE", SSL_MODES, default="verify-full")
        return cls(
            admin_secret_arn=env.required("DB_SECRET_ARN"),
            app_rw_secret_arn=env.required("APP_RW_SECRET_ARN"),
            app_tc_secret_arn=env.required("APP_TC_SECRET_ARN"),
            proxy_host=proxy_host,
            proxy_port=proxy_port,
            sslmode=sslmode,
            ca_bundle=env.ca_bundle("DB_CA_BUNDLE") if sslmode in VERIFYING_SSL_MODES else None,
            connect_timeout_seconds=env.integer("DB_CONNECT_TIMEOUT_SECONDS", default=10, minimum=2),
            lock_timeout_ms=env.integer("LOCK_TIMEOUT_MS", default=5000, minimum=0),
            statement_timeout_ms=env.integer("STATEMENT_TIMEOUT_MS", default=0, minimum=0),
            migrations_dir=env.directory("MIGRATIONS_DIR", default=DEFAULT_MIGRATIONS_DIR),
            lint_before_apply=env.boolean("LINT_BEFORE_APPLY", default=False),
            adopt_existing_schema=env.boolean("ADOPT_EXISTING_SCHEMA", default=True),
        )


@dataclass(frozen=True)
class _Environment:
    """Typed reads of environment variables; each failure names its variable."""

    values: Mapping[str, str]

    def _get(self, name: str) -> str | None:
        value = self.values.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            raise ConfigurationError(f"{name} is not set")
        return value

    def choice(self, name: str, choices: tuple[str, ...], *, default: str) -> str:
        value = self._get(name) or default
        if value not in choices:
            raise ConfigurationError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
        return value

    def boolean(self, name: str, *, default: bool) -> bool:
        return self.choice(name, ("true", "false"), default=str(default).lower()) == "true"

    def integer(self, name: str, *, default: int, minimum: int) -> int:
        value = self._get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigurationError(f"{name} must be a whole number; got {value!r}") from None
        if number < minimum:
            raise ConfigurationError(f"{name} must be at least {minimum}; got {number}")
        return number

    def endpoint(self, name: str) -> tuple[str | None, int]:
        """``host`` or ``host:port``; unset means: use the host and port of the admin secret."""
        value = self._get(name)
        if value is None:
            return None, PROXY_PORT
        host, colon, port = value.rpartition(":")
        if not colon:
            return value, PROXY_PORT
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(f"{name} must be a host name or host:port; got {value!r}")
        return host, int(port)

    def ca_bundle(self, name: str) -> str:
        value = self._get(name)
        if value is None:
            import certifi  # only verifying TLS modes need it

            value = certifi.where()
        if not Path(value).is_file():
            raise ConfigurationError(f"{name}: CA bundle {value} is not a file")
        return value

    def directory(self, name: str, *, default: Path) -> Path:
        value = self._get(name)
        path = Path(value) if value else default
        if not path.is_dir():
            raise ConfigurationError(f"{name}: migrations directory {path} does not exist")
        return path
