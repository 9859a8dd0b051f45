#!/usr/bin/env python3
"""CDK app: settings from context, the stack, and cdk-nag's AwsSolutions checks.

``python app.py`` alone synthesizes to cdk.out/. It starts from cdk.json's context (settings and
feature flags) so that it, the tests and ``npx cdk synth`` build the same template; context given
by the CDK CLI (``-c key=value``) or by ``build(context=...)`` wins over cdk.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks

from infra.stack import DbMigrationsStack, StackConfig

CDK_JSON = Path(__file__).resolve().with_name("cdk.json")


def build(context: dict[str, Any] | None = None, outdir: str | None = None) -> tuple[App, DbMigrationsStack]:
    """The app and its one stack, with cdk-nag registered (it runs, and fails on errors, at synth)."""
    defaults = json.loads(CDK_JSON.read_text())["context"]
    app = App(context={**defaults, **(context or {})}, outdir=outdir)
    config = StackConfig.from_context(app.node)
    stack = DbMigrationsStack(
        app,
        config.full_stack_name,
        config=config,
        description="PostgreSQL 16 behind RDS Proxy, with schema migrations run at deploy time",
    )
    # cdk-nag 3 is a policy-validation plugin, no longer an Aspect.
    Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return app, stack


if __name__ == "__main__":
    # The CDK CLI says where to write (CDK_OUTDIR); run alone, write where the CLI would.
    build(outdir=None if "CDK_OUTDIR" in os.environ else str(CDK_JSON.with_name("cdk.out")))[0].synth()
