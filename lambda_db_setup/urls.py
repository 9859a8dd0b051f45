"""Database URLs, safely: refuse the ones libpq would misread, describe a target, know what to scrub from output.

A password with a raw '/' or '@' makes libpq read pieces of it as host, port or database name, which error
messages then print. Nothing here ever returns or prints a password.
"""

from __future__ import annotations

import re
from contextlib import suppress
from urllib.parse import unquote

import psycopg2
from psycopg2.extensions import parse_dsn

from .errors import ConfigurationError

URL_SCHEME = re.compile(r"^postgres(ql)?://", re.IGNORECASE)
PERCENT_ENCODE = "percent-encode it: @ as %40, / as %2F, ? as %3F, # as %23, % as %25"


def check_database_url(url: str, source: str) -> dict[str, str]:
    """The parts of a connection string (URL or key=value), or a usage error naming ``source``.

    libpq ends the user name and password at the first '/' or '@': a raw one in the password shifts
    its pieces into the host, port or database name, which would then be printed. Such a URL is refused.
    """
    if URL_SCHEME.match(url):
        before_query = url.split("://", 1)[1].split("?", 1)[0]
        at = before_query.find("@")
        if before_query.count("@") > 1 or "/" in before_query[: max(at, 0)]:
            raise ConfigurationError(
                f"{source}: the password or user name holds a raw '@' or '/' (the URL is not shown); {PERCENT_ENCODE}"
            )
    try:
        parts = parse_dsn(url)
    except psycopg2.ProgrammingError:  # libpq quotes the bad part, which may be the password
        parts = {"port": "invalid"}
    if not re.fullmatch(r"[\d,]*", parts.get("port", "")):
        raise ConfigurationError(
            f"{source}: not a valid PostgreSQL URL or key=value string (not shown: it may hold a password);"
            f" if the password has special characters, {PERCENT_ENCODE}"
        )
    return parts


def describe_target(url: str, source: str = "the database URL") -> str:
    """user@host:port/dbname of a connection string, never its password."""
    parts = check_database_url(url, source)
    host = parts.get("host", "localhost")
    return f"{parts.get('user', '')}@{host}:{parts.get('port', '5432')}/{parts.get('dbname', '')}".lstrip("@")


def url_secrets(url: str | None) -> tuple[str, ...]:
    """Every piece of ``url`` that may be a password (also as the user meant it, and decoded), longest first."""
    if not url:
        return ()
    found = {url, *re.findall(r"password\s*=\s*'?([^'&\s]+)", url)}
    with suppress(psycopg2.ProgrammingError):
        found.add(parse_dsn(url).get("password", ""))
    if URL_SCHEME.match(url):
        userinfo = url.split("://", 1)[1].rpartition("@")[0]
        found |= {userinfo, userinfo.partition(":")[2]}
    found |= {unquote(text) for text in found}
    return tuple(sorted((text for text in found if text), key=len, reverse=True))
