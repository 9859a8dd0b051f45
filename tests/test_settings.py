"""Environment configuration: defaults, and errors that name the variable at fault."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import certifi
import pytest

from lambda_db_setup.errors import ConfigurationError
from lambda_db_setup.settings import BY_NAME, PROXY_PORT, SETTINGS, Settings, project_settings

REQUIRED = {
    "DB_SECRET_ARN": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:admin-AbCdEf",
}


def test_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(REQUIRED | {"MIGRATIONS_DIR": str(tmp_path)})
    assert settings.admin_secret_arn == REQUIRED["DB_SECRET_ARN"]
    assert (settings.proxy_host, settings.proxy_port) == (None, PROXY_PORT)
    assert (settings.sslmode, settings.ca_bundle) == ("verify-full", certifi.where())
    assert (settings.lock_timeout_ms, settings.statement_timeout_ms) == (5000, 0)
    assert settings.connect_timeout_seconds == 10
    assert settings.migrations_dir == tmp_path
    assert settings.lint_before_apply is False
    assert settings.adopt_existing_schema is True


def test_migrations_dir_defaults_to_the_one_in_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    """One default for the CLI and the Lambda, whose working directory is the asset root (/var/task)."""
    project = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(project)
    assert BY_NAME["migrations_dir"].default == Path("migrations")
    assert Settings.from_env(REQUIRED).migrations_dir.resolve() == project / "migrations"


def test_proxy_endpoint_with_and_without_port(tmp_path: Path) -> None:
    proxy = "dbstack-proxy.proxy-abc.eu-central-1.rds.amazonaws.com"
    assert Settings.from_env(REQUIRED | {"DB_PROXY_ENDPOINT": proxy}).proxy_host == proxy
    settings = Settings.from_env(REQUIRED | {"DB_PROXY_ENDPOINT": f"{proxy}:6432"})
    assert (settings.proxy_host, settings.proxy_port) == (proxy, 6432)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("", False)])
def test_lint_before_apply(value: str, expected: bool) -> None:
    assert Settings.from_env(REQUIRED | {"LINT_BEFORE_APPLY": value}).lint_before_apply is expected


def test_ca_bundle_only_for_verifying_modes(tmp_path: Path) -> None:
    bundle = tmp_path / "rds-ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    assert Settings.from_env(REQUIRED | {"DB_CA_BUNDLE": str(bundle)}).ca_bundle == str(bundle)
    assert Settings.from_env(REQUIRED | {"DB_SSLMODE": "disable", "DB_CA_BUNDLE": "/missing"}).ca_bundle is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"DB_SECRET_ARN": ""}, "^DB_SECRET_ARN is not set$"),
        ({"DB_SECRET_ARN": None}, "^DB_SECRET_ARN is not set$"),
        ({"DB_SSLMODE": "on"}, "^DB_SSLMODE must be one of disable, allow, prefer, require, verify-ca, verify-full"),
        ({"DB_CA_BUNDLE": "/missing/ca.pem"}, "^DB_CA_BUNDLE: CA bundle /missing/ca.pem is not a file$"),
        ({"LOCK_TIMEOUT_MS": "5s"}, "^LOCK_TIMEOUT_MS must be a whole number; got '5s'$"),
        ({"STATEMENT_TIMEOUT_MS": "-1"}, "^STATEMENT_TIMEOUT_MS must be at least 0; got -1$"),
        ({"DB_CONNECT_TIMEOUT_SECONDS": "1"}, "^DB_CONNECT_TIMEOUT_SECONDS must be at least 2; got 1$"),
        ({"DB_PROXY_ENDPOINT": "proxy:port"}, "^DB_PROXY_ENDPOINT must be a host name or host:port; got 'proxy:port'"),
        ({"MIGRATIONS_DIR": "/missing"}, "^MIGRATIONS_DIR: migrations directory /missing does not exist$"),
        ({"LINT_BEFORE_APPLY": "yes"}, "^LINT_BEFORE_APPLY must be one of true, false; got 'yes'$"),
    ],
)
def test_errors_name_the_variable(changes: dict[str, str | None], message: str) -> None:
    environ = {key: value for key, value in (REQUIRED | changes).items() if value is not None}
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(environ)


def readme_settings_table() -> str:
    """The README's settings table as the settings table renders it."""

    def cell(value: object) -> str:
        return "" if value is None else f"`{value}`"

    rows = [
        "| setting | environment variable | CLI flag | CDK context | default | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for setting in SETTINGS:
        default = str(setting.default).lower() if isinstance(setting.default, bool) else setting.default
        rows.append(
            f"| {setting.name} | {cell(setting.env)} | {cell(setting.flag)} | {cell(setting.context)}"
            f" | {cell(default)} | {setting.meaning} |"
        )
    return "\n".join(rows)


def test_readme_settings_table_matches_the_code() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert readme_settings_table() in readme, "regenerate the README's settings table:\n" + readme_settings_table()


def test_every_flag_and_variable_belongs_to_one_setting() -> None:
    for attribute in ("env", "flag", "context"):
        values = [getattr(setting, attribute) for setting in SETTINGS if getattr(setting, attribute)]
        assert len(values) == len(set(values)), attribute
    assert [setting.name for setting in SETTINGS] == [field.name for field in fields(Settings)]


def test_a_flag_wins_over_its_variable_which_wins_over_the_default() -> None:
    assert Settings.load({}).lock_timeout_ms == 5000
    assert Settings.load({"LOCK_TIMEOUT_MS": "1234"}).lock_timeout_ms == 1234
    assert Settings.load({"LOCK_TIMEOUT_MS": "1234"}, flags={"lock_timeout_ms": 99}).lock_timeout_ms == 99


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "soon"])
def test_lock_wait_must_be_a_finite_non_negative_number(text: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^LOCK_WAIT_SECONDS must be"):
        Settings.load({"LOCK_WAIT_SECONDS": text})


def test_project_settings_put_ini_keys_between_the_environment_and_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plugin's layering: option (a flag) > environment > ini key > pyproject.toml > default."""
    for setting in SETTINGS:
        if setting.env:
            monkeypatch.delenv(setting.env, raising=False)
    project, outside = tmp_path.resolve() / "project", tmp_path.resolve() / "outside"
    (project / "deep").mkdir(parents=True)
    outside.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.lambda_db_setup]\nmigrations_dir = "db"\ntest_database_url = "postgresql://pyproject/x"\n'
    )
    settings = project_settings(project / "deep")
    assert (settings.migrations_dir, settings.embedded_dir) == (project / "db", project / ".pgdata")
    assert settings.test_database_url == "postgresql://pyproject/x"
    ini = {"test_database_url": "postgresql://ini/x", "migrations_dir": "from_ini"}
    assert project_settings(project / "deep", overrides=ini).test_database_url == "postgresql://ini/x"
    assert project_settings(project / "deep", overrides=ini).migrations_dir == project / "from_ini"
    monkeypatch.setenv("LAMBDA_DB_SETUP_TEST_URL", "postgresql://env/x")
    assert project_settings(project, overrides=ini).test_database_url == "postgresql://env/x"
    flags = {"test_database_url": "postgresql://flag/x"}
    assert project_settings(project, flags, overrides=ini).test_database_url == "postgresql://flag/x"
    assert project_settings(outside).embedded_dir == outside / ".pgdata"
