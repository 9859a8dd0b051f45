"""Open the admin connection: TLS verified against a CA bundle, bounded waits, retries while time is left.

A proxy or cluster that is still starting answers with transient errors, so connection failures are
retried with exponential backoff until the deadline; an Aurora Serverless v2 cluster paused at 0 ACUs
refuses connections for the seconds it takes to resume, which is logged as waiting for it. Failures no
retry can fix (wrong password, unknown database or role, refused TLS) fail at once. Error messages name
host, port, database and user, never the password (libpq's messages never include it either).
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import psycopg2
from psycopg2.extensions import connection as Connection

from .credentials import AdminLogin
from .errors import ConnectError
from .settings import VERIFYING_SSL_MODES, Settings

logger = logging.getLogger(__name__)

MIN_CONNECT_TIMEOUT_SECONDS = 2  # libpq's floor: connect_timeout=1 behaves as 2
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
WRONG_PASSWORD = "password authentication failed"  # libpq's text for SQLSTATE 28P01
# libpq reports connection-time errors as text only (pgcode is None); these texts are not transient.
PERMANENT_FAILURES = (
    WRONG_PASSWORD,
    "authentication failed",
    "no pg_hba.conf entry",
    "does not exist",  # database or role
    "has no credentials",  # RDS Proxy: no secret registered for this user
    "certificate",  # verification failed, does not match the host name, or the CA file is unreadable
    "server does not support SSL",
)
UNVERIFIED = "certificate verify failed"  # the CA bundle holds no CA of the server's chain
REFUSED = "Connection refused"  # libpq's text when nothing listens yet: a paused cluster resuming, say


@dataclass(frozen=True)
class Target:
    """Where the connection goes: the proxy endpoint when configured, else the secret's host."""

    host: str
    port: int
    dbname: str
    user: str

    def describe(self) -> str:
        return f"{self.host}:{self.port} (database {self.dbname}, user {self.user})"


def target(login: AdminLogin, settings: Settings) -> Target:
    """The proxy endpoint when configured, else the secret's host; the secret's database and user."""
    host, port = (settings.proxy_host, settings.proxy_port) if settings.proxy_host else (login.host, login.port)
    return Target(host=host, port=port, dbname=login.dbname, user=login.username)


def connect(login: AdminLogin, settings: Settings, *, deadline: float, application_name: str) -> Connection:
    """Connect as the admin, retrying transient failures until ``deadline`` (a ``time.monotonic()`` value).

    With ``iam_auth`` the password is an RDS auth token for the target (signed locally, valid 15 minutes),
    made for each attempt, so a long wait for a resuming cluster never outlives its token.
    """
    where = target(login, settings)
    started = time.monotonic()
    backoff = FIRST_BACKOFF_SECONDS
    attempt = 0
    waited_for_resume = False
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        if left < MIN_CONNECT_TIMEOUT_SECONDS:
            raise ConnectError(f"no time left to connect to {where.describe()} (attempt {attempt})")
        password = auth_token(where) if settings.iam_auth else login.password
        parameters = _parameters(where, password, settings, application_name)
        try:
            conn = psycopg2.connect(**parameters, connect_timeout=int(min(settings.connect_timeout_seconds, left)))
        except psycopg2.OperationalError as error:
            reason = _one_line(error)
            _raise_permanent(error, reason, where, settings)
            pause = min(backoff, MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0)
            if time.monotonic() + pause + MIN_CONNECT_TIMEOUT_SECONDS > deadline:
                raise ConnectError(
                    f"cannot reach {where.describe()} after {attempt} attempt(s) in"
                    f" {time.monotonic() - started:.1f}s: {reason}"
                ) from error
            if REFUSED in reason and not waited_for_resume:
                logger.info("waiting for the database to resume: %s refused the connection", where.describe())
                waited_for_resume = True
            time.sleep(pause)
            backoff *= 2
            continue
        if waited_for_resume:
            logger.info("the database resumed: connected after %.1fs", time.monotonic() - started)
        return conn


def auth_token(where: Target) -> str:
    """An RDS IAM auth token for ``where``'s user, in the region boto3 resolves (``AWS_REGION`` on Lambda)."""
    import boto3  # only the IAM path needs it here

    client = boto3.client("rds")
    return client.generate_db_auth_token(DBHostname=where.host, Port=where.port, DBUsername=where.user)


def _parameters(where: Target, password: str, settings: Settings, application_name: str) -> dict[str, object]:
    parameters: dict[str, object] = {
        "host": where.host,
        "port": where.port,
        "dbname": where.dbname,
        "user": where.user,
        "password": password,
        "sslmode": settings.sslmode,
        "application_name": application_name,
        # notice a dead proxy or server during a long migration instead of waiting for the Lambda timeout
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if settings.sslmode in VERIFYING_SSL_MODES:
        parameters["sslrootcert"] = settings.ca_bundle
    return parameters


def _raise_permanent(error: psycopg2.OperationalError, reason: str, where: Target, settings: Settings) -> None:
    """Raise at once for the failures no retry can fix; an unverified certificate names the bundle tried."""
    if UNVERIFIED in reason:
        raise ConnectError(
            f"cannot connect to {where.describe()}: {reason}; the CA bundle {settings.ca_bundle} (DB_CA_BUNDLE) holds"
            " no CA of the server's certificate chain (an RDS Proxy chains to the Amazon Root CAs, an instance's or"
            " cluster's own endpoint to the Amazon RDS CAs)"
        ) from error
    if WRONG_PASSWORD in reason:
        raise ConnectError(
            f"login to {where.describe()} refused: wrong password (SQLSTATE 28P01);"
            " the admin secret does not match the database"
        ) from error
    if any(text in reason for text in PERMANENT_FAILURES):
        raise ConnectError(f"cannot connect to {where.describe()}: {reason}") from error


def _one_line(error: psycopg2.Error) -> str:
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())
