"""A captured terminal session of every `finetune` command against the offline emulation (no AWS, no Hub).

    python -m finetune.tour [--out transcript.txt]

The stack is the synthesized app in moto (the real state machine and handlers, finetune/local/runner.py); training
jobs are scripted (finetune/local/backends.py: they end Completed after a few polls with fixed metrics and 10 billed
minutes), so the numbers show the plumbing, not a model's quality. Three stand-ins are declared as they are used:
the Hub (`data banking77` reads a two-row stand-in through the same loader), the training job's CloudWatch streams
(written here as SageMaker would), and Service Quotas' request history (moto has none; one open request is shown).
Each command prints as `$ finetune ...` followed by what a user would see (stdout, then stderr) and its exit status.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

REPO_ROOT = Path(__file__).resolve().parents[1]
MINI = REPO_ROOT / "examples" / "datasets" / "banking77-mini"
METRICS = {"eval_intent_accuracy": 0.9, "eval_parse_rate": 1.0, "eval_rougeL": 0.92, "eval_bertscore_f1": 0.95}


def _hub_stand_in(repo: str, revision: str | None = None) -> dict[str, Any]:
    # As PolyAI/banking77 answers datasets>=4: the loading script is refused, the Parquet conversion loads.
    if revision is None:
        raise RuntimeError("Dataset scripts are no longer supported, but found banking77.py")
    return {
        "train": [{"text": "my card has not arrived yet", "label": 11}, {"text": "activate my new card", "label": 0}],
        "test": [{"text": "where is my card", "label": 11}, {"text": "how to activate the card", "label": 0}],
    }


class _Tour:
    """The session's state: where the transcript goes, the emulated account, and how many commands surprised."""

    def __init__(self, stream: TextIO, account: Any) -> None:
        self.stream = stream
        self.account = account
        self.unexpected = 0

    def finetune(self, *args: str, expect: int = 0, **session_fields: Any) -> str:
        """Run one `finetune` command as a user would, append it to the transcript, and count a surprising exit."""
        from typer.testing import CliRunner

        from finetune.cli import Session, app
        from finetune.deployment import StackOutputs
        from finetune.local.runner import DATA_BUCKET, TABLE_NAME

        session = Session(poll_seconds=0.5, **session_fields)
        state_machine_arn = self.account.state_machine_arn
        session.resolve_outputs = lambda _boto, _name: StackOutputs(DATA_BUCKET, TABLE_NAME, state_machine_arn)
        result = CliRunner().invoke(app, list(args), obj=session, env={"COLUMNS": "160"})
        self.stream.write(f"$ finetune {' '.join(args)}\n{result.stdout}")
        if result.stderr:
            self.stream.write("".join(f"[stderr] {line}\n" for line in result.stderr.splitlines()))
        self.stream.write(f"[exit {result.exit_code}]\n\n")
        self.unexpected += result.exit_code != expect
        return result.stdout

    def data_and_quotas(self) -> None:
        """Upload the datasets, then `quotas` with one open request, with a short quota and with enough."""
        import boto3

        from finetune.local.runner import REGION
        from lambdas import catalog

        self.finetune("data", "banking77-mini", "--name", "banking77")
        self.finetune("data", "banking77", "--name", "banking77-hub", load_dataset=_hub_stand_in)
        quotas = boto3.client("service-quotas", region_name=REGION).list_service_quotas(ServiceCode="sagemaker")
        codes = {q["QuotaName"]: q["QuotaCode"] for q in quotas["Quotas"]}
        # moto has no quota request history: answer it as Service Quotas would, with one open request.
        xlarge = codes[catalog.training_quota_name("ml.g5.xlarge", spot=True)]
        self.account.services._operations[("service-quotas", "ListRequestedServiceQuotaChangeHistory")] = lambda _p: {
            "RequestedQuotas": [{"Id": "r-1", "QuotaCode": xlarge, "DesiredValue": 4.0, "Status": "PENDING"}]
        }
        self.finetune("quotas", "--matrix", "study")
        self.account.services.quota_value = 1.0
        self.finetune("quotas", "--matrix", "study", expect=1)
        self.account.services.quota_value = 10.0

    def runs_logs_and_reports(self) -> None:
        """Two runs waited on, a job's logs (written as SageMaker would), then report, runs and compare."""
        import boto3

        from finetune.local.runner import REGION

        for run in ("tour-a", "tour-b"):
            self.finetune("start", "--model", "mistral-7b", "--approach", "qlora", "--name", run, "--wait")
        job = self.account.services.create_calls[0]
        logs = boto3.client("logs", region_name=REGION)
        group = "/aws/sagemaker/TrainingJobs"
        logs.create_log_group(logGroupName=group)
        now = int(time.time() * 1000)
        lines = ["loading model", "step 10 loss 1.92", "eval_intent_accuracy=0.9;"]
        logs.create_log_stream(logGroupName=group, logStreamName=f"{job}/algo-1-1764115200")
        logs.put_log_events(
            logGroupName=group,
            logStreamName=f"{job}/algo-1-1764115200",
            logEvents=[{"timestamp": now + i, "message": line} for i, line in enumerate(lines)],
        )
        self.finetune("logs", job, "--follow")
        self.finetune("report", "tour-a")
        self.finetune("report", "tour-a", "--format", "md")
        self.finetune("runs")
        self.finetune("compare", "tour-a", "tour-b")

    def stop_and_reconcile(self) -> None:
        """A run stopped while its job trains, watched to its end, then a reconciler pass with nothing to do."""
        import boto3

        from finetune.local.runner import REGION

        self.finetune("start", "--model", "mistral-7b", "--approach", "lora", "--name", "tour-stop")
        deadline = time.monotonic() + 60
        while len(self.account.services.create_calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        self.finetune("stop", "tour-stop")
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = next(
            e["executionArn"]
            for e in sfn.list_executions(stateMachineArn=self.account.state_machine_arn)["executions"]
            if e["name"] == "tour-stop"
        )
        self.account.wait(arn)
        self.finetune("watch", "tour-stop", expect=1)
        # Every job is watched or recorded by now: the reconciler's pass finds nothing to do.
        self.finetune("reconcile", "--dry-run")


def run_tour(stream: TextIO, workflow: Any = None) -> int:
    """Run the session, writing the transcript to `stream`; 0 when every command exited as expected. `workflow`: an
    already synthesized app (finetune.local.runner.SynthesizedWorkflow), else synthesized here."""
    from finetune.local.backends import ScriptedOutcome, ScriptedTrainingBackend
    from finetune.local.runner import LocalAccount, synthesize

    def outcome(request: dict[str, Any]) -> ScriptedOutcome:
        still_training = request["HyperParameters"]["approach"].strip('"') == "lora"
        return ScriptedOutcome(metrics=METRICS, polls_in_progress=10_000 if still_training else 2)

    # moto logs the ASL interpreter's internals (e.g. a stopped execution's aborted Map) where a user sees nothing.
    logging.getLogger("moto").setLevel(logging.CRITICAL)
    tour = _Tour(stream, LocalAccount(workflow or synthesize(), ScriptedTrainingBackend(outcome)))
    tour.finetune("validate", "examples/smoke.json")
    tour.finetune("estimate", "--matrix", "study")
    with tour.account.running():
        tour.account.put_hf_token("hf_offline_tour_token")
        tour.data_and_quotas()
        tour.runs_logs_and_reports()
        tour.stop_and_reconcile()
        tour.finetune("start", "--matrix", "study", "--budget", "10", expect=2)
    return 1 if tour.unexpected else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Write the transcript to --out (default: stdout)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="transcript file (default: stdout)")
    args = parser.parse_args(argv)
    if args.out is None:
        return run_tour(sys.stdout)
    with args.out.open("w", encoding="utf-8") as stream:
        return run_tour(stream)


if __name__ == "__main__":
    sys.exit(main())
