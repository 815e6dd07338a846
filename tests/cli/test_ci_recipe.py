"""The CI recipe: examples/ci/github-actions.yml parses, and its shell steps (examples/ci/run-study.sh and the
cancel step) run with the real AWS CLI against a moto server: exit 0 only for a SUCCEEDED execution whose report
passes the quality gate."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto.server import ThreadedMotoServer

# Runs the real AWS CLI against a moto server executing the state machine: seconds per test.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / "examples" / "ci" / "github-actions.yml"
REGION = "us-east-1"
BUCKET = "ci-data"
ROLE = "arn:aws:iam::123456789012:role/ci-sfn"
GOOD_JOB = {"job_name": "ci-run-mistral-7b-lora", "status": "Completed", "accuracy": 0.91, "parse_rate": 1.0}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1 that really executes state machine definitions."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    request = urllib.request.Request(
        f"{url}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).read()
    yield url
    server.stop()


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id="ci", aws_secret_access_key="ci"
    )


def _deploy(endpoint: str, stack: str, definition: dict[str, Any]) -> None:
    """A state machine with `definition`, and a CloudFormation stack whose StateMachineArn output names it (what
    the recipe looks up)."""
    arn = _client("stepfunctions", endpoint).create_state_machine(
        name=stack, definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    template = {
        "Parameters": {"Arn": {"Type": "String"}},
        "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"StateMachineArn": {"Value": {"Ref": "Arn"}}},
    }
    _client("cloudformation", endpoint).create_stack(
        StackName=stack,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "Arn", "ParameterValue": arn}],
    )


def _reporting(endpoint: str, run: str, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """A definition that ends as the real one does: the Report step's output, with report.json/md in S3."""
    s3 = _client("s3", endpoint)
    s3.create_bucket(Bucket=BUCKET)
    report = {"run_id": run, "jobs": jobs, "totals": {"jobs": len(jobs)}}
    s3.put_object(Bucket=BUCKET, Key=f"reports/{run}/report.json", Body=json.dumps(report).encode())
    s3.put_object(Bucket=BUCKET, Key=f"reports/{run}/report.md", Body=f"# Run {run}\n".encode())
    output = {
        "run_id": run,
        "report_json_uri": f"s3://{BUCKET}/reports/{run}/report.json",
        "report_md_uri": f"s3://{BUCKET}/reports/{run}/report.md",
        "message": "done",
    }
    return {"StartAt": "Report", "States": {"Report": {"Type": "Pass", "Result": output, "End": True}}}


def _workflow() -> dict[str, Any]:
    document = yaml.safe_load(WORKFLOW.read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def _expand(value: str, contexts: dict[str, dict[str, str]]) -> str:
    """GitHub's `${{ context.name }}` expressions (the only form the recipe uses)."""

    def lookup(match: re.Match[str]) -> str:
        context, name = match[1], match[2]
        return contexts[context][name]

    return re.sub(r"\$\{\{\s*(\w+)\.(\w+)\s*\}\}", lookup, str(value))


def _run_steps(
    endpoint: str, tmp_path: Path, stack: str, *, cancelled: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the study job's `run` steps as a GitHub runner would (bash -eo pipefail, the step's env), the `uses`
    steps replaced by what they provide (a checkout, credentials); returns the last step that ran."""
    workflow = _workflow()
    inputs = {name: spec["default"] for name, spec in workflow["on"]["workflow_dispatch"]["inputs"].items()}
    contexts = {"inputs": inputs, "vars": {"FINETUNE_CI_ROLE_ARN": ROLE}, "env": dict(workflow["env"])}
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the checkout
    summary = tmp_path / "summary.md"
    base_env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # the venv's aws and python3
        "HOME": str(tmp_path),
        "AWS_ENDPOINT_URL": endpoint,
        # What configure-aws-credentials exports (the AWS CLI v1 reads the region from AWS_DEFAULT_REGION).
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "ci",
        "AWS_SECRET_ACCESS_KEY": "ci",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_RUN_ATTEMPT": "1",
        "GITHUB_STEP_SUMMARY": str(summary),
        **{name: _expand(value, contexts) for name, value in workflow["env"].items()},
        "STACK_NAME": stack,
    }
    result = None
    for step in workflow["jobs"]["study"]["steps"]:
        if "run" not in step or (step.get("if") == "cancelled()") != cancelled:
            continue
        env = {**base_env, **{name: _expand(value, contexts) for name, value in step.get("env", {}).items()}}
        env["POLL_SECONDS"] = "0.2"  # the recipe polls every minute
        result = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode:
            break
    assert result is not None
    return result


def test_the_workflow_assumes_a_role_by_oidc_and_runs_the_recipe_script() -> None:
    workflow = _workflow()
    assert workflow["permissions"]["id-token"] == "write"
    steps = workflow["jobs"]["study"]["steps"]
    [credentials] = [s for s in steps if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")]
    assert credentials["with"]["role-to-assume"] == "${{ vars.FINETUNE_CI_ROLE_ARN }}"
    assert any("examples/ci/run-study.sh" in s.get("run", "") for s in steps)
    # No expression is pasted into a shell script (script injection): inputs arrive as environment variables.
    assert not any("${{" in s.get("run", "") for s in steps)


def test_a_succeeded_run_that_passes_the_gate_exits_0_and_fills_the_job_summary(endpoint, tmp_path) -> None:
    _deploy(endpoint, "CiGood", _reporting(endpoint, "ci-4242-1", [GOOD_JOB]))

    result = _run_steps(endpoint, tmp_path, "CiGood")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "quality gate: passed" in result.stdout
    assert (tmp_path / "summary.md").read_text() == "# Run ci-4242-1\n"
    assert json.loads((tmp_path / "report" / "report.json").read_text())["jobs"] == [GOOD_JOB]


def test_a_succeeded_run_below_the_quality_bar_exits_1(endpoint, tmp_path) -> None:
    weak = {**GOOD_JOB, "accuracy": 0.42, "parse_rate": 0.5}
    _deploy(endpoint, "CiWeak", _reporting(endpoint, "ci-4242-1", [weak]))

    result = _run_steps(endpoint, tmp_path, "CiWeak")

    assert result.returncode == 1
    assert "parse rate 0.5 below 0.95" in result.stderr and "best accuracy 0.4200 below 0.8" in result.stderr


def test_a_failed_execution_exits_1_with_its_error_and_no_report(endpoint, tmp_path) -> None:
    failing = {
        "StartAt": "Plan",
        "States": {"Plan": {"Type": "Fail", "Error": "BudgetExceeded", "Cause": "estimated $412.00 exceeds $50"}},
    }
    _deploy(endpoint, "CiFailed", failing)

    result = _run_steps(endpoint, tmp_path, "CiFailed")

    assert result.returncode == 1
    assert "execution FAILED" in result.stderr and "BudgetExceeded estimated $412.00 exceeds $50" in result.stderr
    assert not (tmp_path / "report" / "report.json").exists()


def test_cancelling_the_workflow_stops_the_execution(endpoint, tmp_path) -> None:
    # Given a running execution whose ARN the recipe saved
    _deploy(
        endpoint, "CiLong", {"StartAt": "Train", "States": {"Train": {"Type": "Wait", "Seconds": 600, "End": True}}}
    )
    sfn = _client("stepfunctions", endpoint)
    machine = next(m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "CiLong")
    arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="ci-long")["executionArn"]
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "execution-arn").write_text(arn + "\n")

    # When the workflow's cancel step runs
    result = _run_steps(endpoint, tmp_path, "CiLong", cancelled=True)

    # Then the execution is stopped
    assert result.returncode == 0, result.stderr
    assert sfn.describe_execution(executionArn=arn)["status"] == "ABORTED"
