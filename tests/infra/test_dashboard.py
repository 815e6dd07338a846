"""The deployment's CloudWatch dashboard: executions and jobs by status, spend per run, Lambda errors and GPU
utilization, graphing exactly the metrics Record emits and SageMaker publishes (the app synthesizes nag-clean in the
session fixture, with the dashboard in it)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from lambdas import job_resources, run_metrics
from stacks.app_builder import cdk_json_context
from stacks.config import CONTEXT_KEY, load_config

# Functions that are not part of a run: the quota-requests custom resource.
NOT_WORKFLOW_HANDLERS = {"quota_requests"}


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def _body(template: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The dashboard's name, its body as JSON (each intrinsic replaced by `<logical id>`), and its properties."""
    [dashboard] = _resources(template, "AWS::CloudWatch::Dashboard").values()
    props = dashboard["Properties"]
    parts = props["DashboardBody"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else f"<{p.get('Ref', json.dumps(p))}>" for p in parts)
    return props["DashboardName"], json.loads(text), props


@pytest.fixture(scope="module")
def dashboard(synthesized) -> dict[str, Any]:
    name, body, _ = _body(synthesized.main_json)
    return {"name": name, "widgets": {w["properties"]["title"]: w["properties"] for w in body["widgets"]}}


@pytest.fixture(scope="module")
def prefix() -> str:
    return load_config(cdk_json_context().get(CONTEXT_KEY)).job_name_prefix


def _function_id(template: dict[str, Any], handler: str) -> str:
    [logical_id] = [
        k
        for k, v in _resources(template, "AWS::Lambda::Function").items()
        if v["Properties"].get("Handler") == f"lambdas.handlers.{handler}.handler"
    ]
    return logical_id


def _expressions(widget: dict[str, Any]) -> list[str]:
    return [m[0]["expression"] for m in widget["metrics"] if isinstance(m[0], dict)]


def test_one_dashboard_named_after_the_deployment(synthesized, dashboard, prefix) -> None:
    assert dashboard["name"] == prefix
    assert len(dashboard["widgets"]) == 6


def test_executions_are_graphed_by_every_final_status_of_the_state_machine(synthesized, dashboard) -> None:
    [machine] = _resources(synthesized.main_json, "AWS::StepFunctions::StateMachine")
    metrics = dashboard["widgets"]["Executions by status"]["metrics"]
    assert {(m[0], m[1], m[3]) for m in metrics} == {
        ("AWS/States", f"Executions{status}", f"<{machine}>")
        for status in ("Started", "Succeeded", "Failed", "TimedOut", "Aborted")
    }
    assert {m[4]["stat"] for m in metrics} == {"Sum"}


def test_every_workflow_lambda_has_its_errors_graphed(synthesized, dashboard) -> None:
    metrics = dashboard["widgets"]["Lambda errors"]["metrics"]
    graphed = {m[3] for m in metrics if m[:3] == ["AWS/Lambda", "Errors", "FunctionName"]}
    # Every function of the stack that runs a handler of lambdas/handlers/ (a new one included) is graphed.
    handlers = {
        f["Properties"]["Handler"].split(".")[2]
        for f in _resources(synthesized.main_json, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler", "").startswith("lambdas.handlers.")
    } - NOT_WORKFLOW_HANDLERS
    assert {"classify", "remedy", "cleanup"} <= handlers
    assert graphed == {f"<{_function_id(synthesized.main_json, name)}>" for name in handlers}


def _search_schema(expression: str) -> tuple[str, ...]:
    match = re.match(r"SEARCH\('\{([^}]*)\} ", expression)
    assert match, expression
    return tuple(part.strip('"') for part in match.group(1).split(","))


def test_job_and_spend_widgets_search_the_dimension_sets_record_emits(dashboard, prefix) -> None:
    # Given the dimension sets of Record's EMF line
    emitted = run_metrics.emf_documents(
        {"run_id": "r", "status": "Completed", "cost_usd": 1}, deployment=prefix, timestamp_ms=0
    )
    dimension_sets = {
        (directive["Namespace"], metric["Name"], tuple(dims))
        for document in emitted
        for directive in document["_aws"]["CloudWatchMetrics"]
        for metric in directive["Metrics"]
        for dims in directive["Dimensions"]
    }
    # Then each SEARCH names one of them exactly, filtered to this deployment
    for title, metric in (
        ("Training jobs recorded, by final status", "JobsRecorded"),
        ("Spend per run (USD, recorded jobs)", "JobCostUSD"),
    ):
        [expression] = _expressions(dashboard["widgets"][title])
        namespace, *dimensions = _search_schema(expression)
        assert (namespace, metric, tuple(dimensions)) in dimension_sets
        assert f'MetricName="{metric}"' in expression and f'Deployment="{prefix}"' in expression
    # And the period total reads the deployment-wide set
    [total] = dashboard["widgets"]["Spend in the selected period (USD)"]["metrics"]
    assert (run_metrics.NAMESPACE, run_metrics.JOB_COST, (run_metrics.DEPLOYMENT,)) in dimension_sets
    assert total[:4] == [run_metrics.NAMESPACE, run_metrics.JOB_COST, run_metrics.DEPLOYMENT, prefix]


def test_gpu_widget_searches_the_hosts_of_this_deployments_jobs(dashboard, prefix) -> None:
    [widget] = [w for title, w in dashboard["widgets"].items() if title.startswith("GPU utilization")]
    [expression] = _expressions(widget)
    assert _search_schema(expression) == (job_resources.TRAINING_JOB_NAMESPACE, "Host")
    # CloudWatch's documented designator form is `Name=value` (unquoted: partial match), not `Name:value`.
    assert 'MetricName="GPUUtilization"' in expression and f"Host={prefix}" in expression
    assert "Host:" not in expression
    assert expression.endswith("'Average', 60)")
