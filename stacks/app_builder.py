"""Builds the CDK app from configuration, with cdk-nag AwsSolutions checks on every synth."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_cdk import App, Environment, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.config import CONTEXT_KEY, Config, load_config
from stacks.finetune_stack import FineTuneStack
from stacks.images import training_image
from stacks.packaging import REPO_ROOT
from stacks.quota_stack import QuotaStack


def build_app(app: App | None = None, context: Mapping[str, Any] | None = None) -> App:
    """Define the two stacks in `app` (a new one with `context` when not given) and return the app."""
    app = app or App(context=dict(context or {}))
    config: Config = load_config(app.node.try_get_context(CONTEXT_KEY))
    image = training_image(config)
    # Region from config (the DLC image and quota names are regional); account from the CLI's credentials.
    env = Environment(region=config.region)
    main = FineTuneStack(app, config.stack_name, config=config, image=image, env=env)
    # The quota stack's log groups are encrypted with the data key too (a cross-stack reference: deploy order is
    # Finetune, then FinetuneQuotas; `cdk deploy --all` and `cdk destroy --all` follow it).
    QuotaStack(app, f"{config.stack_name}Quotas", config=config, log_key=main.data_key, env=env)
    Tags.of(app).add("project", config.resource_prefix)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app


def cdk_json_context(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The context `cdk synth` would use (cdk.json's feature flags and settings), with the `finetune`
    settings shallow-merged with `overrides`. Tests and the offline runner synthesize through this."""
    context = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]
    context[CONTEXT_KEY] = {**context.get(CONTEXT_KEY, {}), **dict(overrides or {})}
    return context
