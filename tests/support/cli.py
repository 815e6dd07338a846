"""CLI test helpers: run the `finetune` app as a user would against an emulated account (the real stack in moto,
scripted training jobs), and answer what moto lacks."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner, Result

from finetune.cli import Session, app
from finetune.deployment import StackOutputs
from finetune.local.runner import DATA_BUCKET, TABLE_NAME, LocalAccount

# Wide enough that Rich never folds a job name or an ARN across lines in what the tests read.
TERMINAL = {"COLUMNS": "250"}


def outputs_of(account: LocalAccount) -> StackOutputs:
    """What DescribeStacks would answer for the emulated stack."""
    return StackOutputs(
        bucket_name=DATA_BUCKET, ledger_table_name=TABLE_NAME, state_machine_arn=account.state_machine_arn
    )


def finetune(account: LocalAccount | None, *args: str, **session_fields: Any) -> Result:
    """Run `finetune ARGS` as a user would, its AWS calls going to the emulated account (`session_fields`: Session
    fields to set, e.g. a stand-in `load_dataset`)."""
    session = Session(poll_seconds=0.2, **session_fields)
    if account is not None:
        session.resolve_outputs = lambda _session, _stack: outputs_of(account)
    return CliRunner().invoke(app, list(args), obj=session, env=TERMINAL)


def answer_quota_requests(account: LocalAccount, requests: list[dict[str, Any]]) -> None:
    """Service Quotas' request history for the emulated account (moto lacks ListRequestedServiceQuotaChangeHistory):
    answered through the local services' hook, so the request is still validated against the real API model."""
    account.services._operations[("service-quotas", "ListRequestedServiceQuotaChangeHistory")] = lambda _params: {
        "RequestedQuotas": requests
    }
