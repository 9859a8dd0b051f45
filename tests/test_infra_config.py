"""Reading the stack's settings from CDK context (no synthesis: fast)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from aws_cdk import App

from app import CDK_JSON
from infra.stack import StackConfig
from lambda_db_setup.cdk import bundling
from lambda_db_setup.settings import SETTINGS


def test_cdk_json_lists_every_setting_with_the_code_default() -> None:
    context = json.loads(CDK_JSON.read_text())["context"]
    defaults = StackConfig()
    assert {key: context[key] for key in StackConfig.context_keys().values()} == {
        StackConfig.context_keys()[name]: value for name, value in asdict(defaults).items()
    }


def test_the_lambda_bundles_the_squawk_that_check_runs_with() -> None:
    def squawk_pin(requirements: Path) -> list[str]:
        lines = requirements.read_text().splitlines()
        return [line for line in lines if line.startswith("squawk-cli")]

    dev = CDK_JSON.with_name("requirements-dev.txt")
    assert len(squawk_pin(dev)) == 1
    assert squawk_pin(bundling.LINT_REQUIREMENTS) == squawk_pin(dev)


def test_command_line_strings_become_typed_values() -> None:
    app = App(
        context={
            "multiAz": "true",
            "deletionProtection": "false",
            "lockTimeoutMs": "2500",
            "migrationTrigger": "content-hash",
            "instanceClass": "r7g.large",
        }
    )
    config = StackConfig.from_context(app.node)
    assert config.multi_az is True
    assert config.deletion_protection is False
    assert config.lock_timeout_ms == 2500
    assert config.migration_trigger == "content-hash"
    assert config.instance_class == "r7g.large"
    assert config.statement_timeout_ms == 0  # untouched default


def test_safe_first_deploy_defaults() -> None:
    """A first create can roll back (no deletion protection) and fits a new account (no reserved concurrency)."""
    config = StackConfig.from_context(App().node)
    assert config.deletion_protection is False
    assert config.reserved_concurrency == 0
    assert config.adopt_existing_schema is True  # the handler's own default, now explicit
    assert config.alarm_email == ""
    assert StackConfig.from_context(App(context={"deletionProtection": "true"}).node).deletion_protection is True


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("migrationTrigger", "sometimes", "migrationTrigger must be one of always, content-hash"),
        ("logRetentionDays", 10, "logRetentionDays must be one of"),
        ("backupRetentionDays", 0, "backupRetentionDays must be 1 to 35"),
        ("lockTimeoutMs", "soon", "lockTimeoutMs must be a whole number"),
        ("multiAz", "maybe", "multiAz must be true or false"),
        ("statementTimeoutMs", -1, "must not be negative"),
        ("appRotationDays", 0, "appRotationDays must be 1 to 1000"),
        ("alarmEmail", "ops-at-example.com", "alarmEmail must be an e-mail address or empty"),
        ("adoptExistingSchema", "yes", "adoptExistingSchema must be true or false"),
    ],
)
def test_invalid_context_is_refused_with_the_key_named(key: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StackConfig.from_context(App(context={key: value}).node)


def test_every_setting_with_a_context_key_has_the_tables_default_in_cdk_json_and_the_stack() -> None:
    context = json.loads(CDK_JSON.read_text())["context"]
    keys = StackConfig.context_keys()
    with_context = [setting for setting in SETTINGS if setting.context]
    assert {setting.context for setting in with_context} <= set(keys.values())
    for setting in with_context:
        assert context[setting.context] == setting.default, setting.context
        assert getattr(StackConfig(), setting.name) == setting.default, setting.name
        assert keys[setting.name] == setting.context
