"""Reconcile Lambda: an EventBridge schedule event -> one reconciler pass (lambdas/reconcile.py).

Output (for logs and the invocation record): `{checked, watched, unwatched, unrecorded, stopped, recorded, dry_run,
message}`.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import aws, reconcile
from lambdas.handlers.observability import instrumented, logger

_settings = functools.cache(reconcile.ReconcileSettings.from_env)


@instrumented
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Stop what runs unwatched and record what ended unrecorded; publish both when there is any."""
    result = reconcile.reconcile(
        _settings(),
        sagemaker=aws.client("sagemaker"),
        dynamodb=aws.client("dynamodb"),
        stepfunctions=aws.client("stepfunctions"),
        sns=aws.client("sns"),
    )
    logger.info("reconciled", extra={k: result[k] for k in ("checked", "unwatched", "unrecorded", "stopped")})
    return result
