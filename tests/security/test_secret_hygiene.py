"""Secret hygiene: a recognisable fake Hugging Face token in the token secret must never show up anywhere the
workflow, the demo or the training code writes: CreateTrainingJob requests, every AWS call a handler makes, handler
and training logs, ledger rows, reports, notifications, metrics, lifecycle events, checkpoints and model artifacts.

Each test counts the places it scanned (and asserts a floor), so a scan that silently looks at nothing fails.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from finetune.local.backends import ScriptedOutcome
from finetune.local.runner import ExecutionResult, LocalAccount
from tests.support.training import run_main
from tests.support.workflow import GOOD_METRICS, approach_of

# Shaped like a real user token (hf_ + letters and digits), or the training code rightly treats it as "no token".
CANARY = "hf_FAKECANARYt0k3n9d2f7a41c6e8b3"
# What a careless encoder could turn it into: the token JSON-escaped is the same text; these are the other forms.
FORMS = (CANARY, CANARY[::-1], CANARY.encode().hex())


class Scan:
    """Looks for the canary (and its reversed and hex forms) in text, JSON values and files; counts the places."""

    def __init__(self) -> None:
        self.places: list[str] = []
        self.leaks: list[str] = []

    def value(self, place: str, value: Any) -> None:
        """A string, bytes, or anything JSON-able (requests, rows, events)."""
        if isinstance(value, bytes):
            text = value.decode("utf-8", errors="replace")
        elif isinstance(value, str):
            text = value
        else:
            text = json.dumps(value, default=str)
        self.places.append(place)
        if any(form in text for form in FORMS):
            self.leaks.append(place)

    def tree(self, place: str, root: Path) -> None:
        """Every file under `root` (binary safe: model weights, tokenizer files, checkpoints)."""
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            data = path.read_bytes()
            self.places.append(f"{place}/{path.relative_to(root)}")
            if any(form.encode() in data for form in FORMS):
                self.leaks.append(f"{place}/{path.relative_to(root)}")

    def execution(self, prefix: str, account: LocalAccount, result: ExecutionResult) -> None:
        """Everything an offline execution left: requests, AWS calls, ledger, reports, notifications, events."""
        for name, job in account.services.training_jobs.items():
            self.value(f"{prefix} CreateTrainingJob {name}", job["request"])
        for index, call in enumerate(account.calls.calls):
            self.value(f"{prefix} call {index} {call.function} {call.operation}", dict(call.params))
        for row in result.ledger_rows:
            self.value(f"{prefix} ledger {row['sk']}", row)
        for key, body in result.reports.items():
            self.value(f"{prefix} s3 {key}", body)
        for index, message in enumerate(result.notifications):
            self.value(f"{prefix} notification {index}", message)
        for index, delivery in enumerate(result.lifecycle):
            self.value(f"{prefix} lifecycle {index}", delivery)
        self.value(f"{prefix} execution output", {"output": result.output, "cause": result.cause})

    def assert_clean(self, at_least: int) -> None:
        assert not self.leaks, f"the token leaked into: {self.leaks}"
        assert len(self.places) >= at_least, f"scanned only {len(self.places)} places"
        print(f"\nsecret hygiene: scanned {len(self.places)} places, no token")  # shown with -s


@pytest.fixture
def scan(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> Iterator[Scan]:
    """A Scan that, at the end, also reads every log record and everything printed to stdout/stderr (Powertools'
    JSON logs and EMF metrics go to stdout)."""
    caplog.set_level(logging.DEBUG)
    found = Scan()
    yield found
    captured = capfd.readouterr()
    found.value("captured stdout (handler logs, EMF metrics)", captured.out)
    found.value("captured stderr", captured.err)
    found.value("log records", "\n".join(f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records))
    assert not found.leaks, f"the token leaked into: {found.leaks}"


def test_the_token_never_leaves_the_secret_in_workflow_runs(account_with, scan: Scan) -> None:
    # Given the token secret holds the canary and the run includes a gated model (Plan checks the secret)
    def outcome(request: dict[str, Any]) -> ScriptedOutcome:
        if "canary-stopped" in request["TrainingJobName"]:
            return ScriptedOutcome(polls_in_progress=10_000)  # still training when the operator stops the run
        if approach_of(request) == "full":
            return ScriptedOutcome(status="Failed", secondary_status="Failed", failure_reason="AlgorithmError: boom")
        return ScriptedOutcome(metrics=GOOD_METRICS)

    account = account_with(outcome)
    account.put_hf_token(CANARY)
    gated = {
        "experiments": [
            {"model": "llama2-7b", "approach": "lora"},
            {"model": "llama2-7b", "approach": "qlora"},
            {"model": "mistral-7b", "approach": "full"},
        ],
        "budget_usd": 500,
        "max_runtime_hours": 2,
    }

    result = account.execute(gated, "canary-run")
    refused = account.execute({"experiments": [{"model": "llama2-7b", "approach": "prefix-tuning"}]}, "canary-refused")
    stopped_arn = account.start({**gated, "experiments": gated["experiments"][:1]}, "canary-stopped")
    deadline = time.monotonic() + 60
    while not any("canary-stopped" in name for name in account.services.training_jobs):
        assert time.monotonic() < deadline, "the stopped run never launched its job"
        time.sleep(0.2)
    account.stop_execution(stopped_arn, error="OperatorStop", cause="stop")
    stopped = account.wait(stopped_arn)

    # Then the token appears in none of what the runs produced
    assert result.status == "SUCCEEDED" and refused.status == "FAILED" and stopped.status == "ABORTED"
    assert len(account.services.training_jobs) >= 3
    for prefix, execution in (("run", result), ("refused", refused), ("stopped", stopped)):
        scan.execution(prefix, account, execution)
    scan.assert_clean(at_least=40)


def test_the_token_never_leaves_the_secret_in_the_demo(tmp_path: Path, scan: Scan) -> None:
    from finetune.local.demo import DEFAULT_INPUT, run_demo

    # Given a small demo run with the canary stored in the token secret (as after the README's deploy step)
    create_resources = LocalAccount._create_resources

    def with_token(self: LocalAccount) -> None:
        create_resources(self)
        self.put_hf_token(CANARY)

    execution_input = json.loads(DEFAULT_INPUT.read_text())
    execution_input["experiments"] = [{**execution_input["experiments"][1], "max_steps": 4}]  # one LoRA job
    execution_input["eval_samples"] = 4
    stream = io.StringIO()
    with mock.patch.object(LocalAccount, "_create_resources", with_token):
        demo = run_demo(execution_input, out_root=tmp_path / "out", work_dir=tmp_path / "work", stream=stream)

    # Then neither its printout, its outputs, nor its job folders (logs, checkpoints, model) hold the token
    assert demo.exit_code == 0, stream.getvalue()
    scan.value("demo printout", stream.getvalue())
    scan.execution("demo", mock.Mock(services=mock.Mock(training_jobs={}), calls=mock.Mock(calls=[])), demo.execution)
    scan.tree("demo out", tmp_path / "out")
    scan.tree("demo jobs", tmp_path / "work" / "jobs")
    scan.assert_clean(at_least=20)


@mock_aws
def test_the_training_code_uses_the_token_and_writes_it_nowhere(
    make_job, tiny_models: dict[str, Path], scan: Scan, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training_code import modeling

    # Given the secret holds the canary and the job trains a "Hub" model (resolved to a tiny local one) with it
    arn = boto3.client("secretsmanager", region_name="us-east-1").create_secret(Name="hf", SecretString=CANARY)["ARN"]
    local = str(tiny_models["llama"])
    tokens_used: list[str | None] = []
    for name in ("load_tokenizer", "inspect_model"):
        original = getattr(modeling, name)
        monkeypatch.setattr(modeling, name, _resolving(original, local, tokens_used))
    load_model = modeling.load_model

    def load_model_from_hub(config: Any, runtime: Any, token: str | None, local_rank: int) -> Any:
        tokens_used.append(token)
        return load_model(dataclasses.replace(config, model_id=local), runtime, token, local_rank)

    monkeypatch.setattr(modeling, "load_model", load_model_from_hub)
    job = make_job()
    argv = job.argv(
        "org/private-model",  # type: ignore[arg-type]
        hf_token_secret_arn=arn,
        approach="lora",
        max_steps=4,
        eval_samples=4,
        per_device_batch_size=4,
        lora_modules_to_save="lm_head",
        bertscore_model="none",
        save_interval_seconds=60,
    )

    result = run_main(job, argv)

    # Then the token reached the loaders, and no log, metric, checkpoint or artifact holds it
    assert result.exit_code == 0, result.stdout
    assert tokens_used and all(token == CANARY for token in tokens_used)
    scan.value("training stdout (metric lines, logs)", result.stdout)
    scan.tree("SM_MODEL_DIR", job.model_dir)
    scan.tree("SM_OUTPUT_DIR", job.output_dir)
    scan.tree("checkpoints", job.checkpoint_dir)
    scan.assert_clean(at_least=8)


def _resolving(original: Any, local: str, tokens_used: list[str | None]) -> Any:
    def load(model_id: str, token: str | None) -> Any:
        tokens_used.append(token)
        return original(local, token)

    return load


def test_the_scan_finds_a_planted_token_in_values_files_and_encoded_forms(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x00\x01" + CANARY.encode() + b"\xff")
    (tmp_path / "clean.txt").write_text("nothing here")
    found = Scan()
    found.tree("planted", tmp_path)
    found.value("row", {"failure_reason": f"401 for token {CANARY}"})
    found.value("hex", CANARY.encode().hex())
    found.value("clean", {"ok": True})
    assert found.leaks == ["planted/weights.bin", "row", "hex"]
    assert len(found.places) == 5
