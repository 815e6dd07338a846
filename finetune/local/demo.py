"""`make demo`: the whole pipeline offline — the synthesized state machine in moto's ASL interpreter, the real
handlers, real training of a tiny model on the CPU, each job launched through the SageMaker training toolkit as the
DLC launches it — ending with the cost/quality report.

    python -m finetune.local.demo [--input examples/demo.json] [--data my-dataset/] [--out demo-out] [--runs 2]

Exit code 0 when the execution succeeded, 1 when it failed (the Plan error is printed), 2 on bad arguments.
Costs are estimates for the equivalent SageMaker job on the catalog's instance type, computed exactly as in AWS
from the local wall time (no spot discount locally).

With `--runs 2` (`make demo RUNS=2`) the same input runs twice against the same emulated account: the first run's
jobs are in the ledger when the second is planned, so the second run's estimates are calibrated by them
(lambdas/calibration.py). After each run the demo prints every job's estimated and actual seconds and the
calibration it was estimated with.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from finetune.local import user_data

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INPUT = REPO_ROOT / "examples" / "demo.json"
DATASET_DIR = REPO_ROOT / "examples" / "datasets" / "banking77-mini"
# The execution input names this Hub-style id; the local backend resolves it to the tiny model built here.
DEMO_MODEL_ID = "demo/tiny-llama"


@dataclass(frozen=True)
class DemoResult:
    """What a demo run produced (also what the tests assert on)."""

    exit_code: int
    execution: Any  # finetune.local.runner.ExecutionResult (the last run's)
    out_dir: Path | None
    training_processes_started: int
    executions: tuple[Any, ...] = ()  # every run's ExecutionResult, in order


def build_demo_model(models_dir: Path, demo_data: user_data.DemoData | None = None) -> Path:
    """The tiny Llama the demo fine-tunes, built offline once per dataset (its tokenizer learns the data's words)."""
    from finetune.local.tiny_model import build_tiny_model

    if demo_data is None:
        demo_data = user_data.DemoData(user_data.DEFAULT_DATASET, "classification", DATASET_DIR)
    # banking77-mini keeps its original folder name: an existing build/ stays valid.
    suffix = "" if demo_data.directory.resolve() == DATASET_DIR.resolve() else f"-{demo_data.fingerprint}"
    target = models_dir / f"tiny-llama{suffix}"
    if (target / "config.json").is_file():
        return target
    return build_tiny_model("llama", target, user_data.corpus(demo_data))


def prepare_data(
    execution_input: dict[str, Any], data_dir: Path | None, models_dir: Path
) -> tuple[user_data.DemoData, Path]:
    """The demo's data step: the input's dataset (`data_dir`, else the shipped folder of its name) read and validated
    by the training code's readers for its task, and the tiny model whose tokenizer learned its words."""
    demo_data = user_data.resolve(execution_input, data_dir)
    user_data.corpus(demo_data)  # reads and validates both splits before anything is built, synthesized or started
    return demo_data, build_demo_model(models_dir, demo_data)


def run_demo(
    execution_input: dict[str, Any],
    *,
    out_root: Path,
    work_dir: Path,
    stream: TextIO | None = None,
    adjust_request: Callable[[dict[str, Any]], None] | None = None,
    runs: int = 1,
    data_dir: Path | None = None,
) -> DemoResult:
    """Run the execution offline `runs` times against one emulated account and write each run's report, ledger
    and job folders under `out_root/<run id>/`; from the second run on, estimates are calibrated by the earlier
    runs' jobs (the estimate-vs-actual table printed after each run shows it).

    `adjust_request` may alter a CreateTrainingJob request before the local backend runs it (tests inject
    faults this way). `data_dir` (train.jsonl, test.jsonl) is uploaded under the input's dataset name instead of the
    shipped dataset of that name (finetune/local/user_data.py)."""
    from finetune.local.backends import SubprocessTrainingBackend
    from finetune.local.runner import LocalAccount, synthesize
    from finetune.local.tiny_model import bertscore_model_path

    # Looked up at call time (not as a default argument) so redirected or captured stdout is honoured.
    stream = stream or sys.stdout
    print("Synthesizing the app (cdk-nag checks included)...", file=stream, flush=True)
    demo_data, model_path = prepare_data(execution_input, data_dir, work_dir / "models")
    workflow = synthesize()
    backend = SubprocessTrainingBackend(
        work_dir / "jobs" / uuid.uuid4().hex[:8],
        model_paths={DEMO_MODEL_ID: str(model_path)},
        extra_hyperparameters={"bertscore_model": bertscore_model_path()},
    )
    if adjust_request is not None:
        original_create = backend.create

        def create(request: dict[str, Any]) -> None:
            adjust_request(request)
            original_create(request)

        backend.create = create  # type: ignore[method-assign]

    account = LocalAccount(workflow, backend)
    printer = _ProgressPrinter(backend, stream)
    executions: list[Any] = []
    with account.running():
        user_data.upload(account, demo_data)
        for run in range(1, runs + 1):
            started = time.monotonic()
            label = f" (run {run} of {runs})" if runs > 1 else ""
            print(f"Starting the execution in the local state machine{label}...", file=stream, flush=True)
            execution = account.execute(execution_input, f"demo-{uuid.uuid4().hex[:8]}", on_poll=printer.update)
            printer.update()
            executions.append(execution)
            elapsed = time.monotonic() - started
            if execution.status != "SUCCEEDED":
                print(f"\nExecution {execution.status} at {execution.failed_state}: {execution.error}", file=stream)
                print(_cause_message(execution.cause), file=stream)
                print(f"Training jobs launched: {len(execution.create_training_job_calls)}", file=stream)
                return DemoResult(1, execution, None, len(backend.jobs), tuple(executions))
            out_dir = _write_outputs(out_root, execution, backend)
            report_md = execution.reports[f"reports/{execution.run_id}/report.md"].decode()
            print("\n" + report_md, file=stream)
            print(f"Execution SUCCEEDED in {elapsed:.0f} s. Outputs: {out_dir}", file=stream)
            print("Costs are estimates for the same jobs on the listed SageMaker instance types.", file=stream)
            if runs > 1:
                print(estimate_table(run_rows(execution)), file=stream, flush=True)
    if runs > 1:
        errors = [estimate_error(run_rows(e)) for e in executions]
        print(
            "Estimate error (geometric mean of actual / estimated seconds, as a factor >= 1) by run: "
            + ", ".join(f"run {i} x{error:.2f}" for i, error in enumerate(errors, start=1)),
            file=stream,
        )
    return DemoResult(0, execution, out_dir, len(backend.jobs), tuple(executions))


def run_rows(execution: Any) -> list[dict[str, Any]]:
    """The job rows of one execution's run (the emulated ledger holds every run's)."""
    return [r for r in execution.ledger_rows if r.get("run_id") == execution.run_id and r["sk"].startswith("JOB#")]


def _measured(rows: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float, float]]:
    """(row, estimated total seconds, actual total seconds) of every row that has both."""
    measured = []
    for row in rows:
        estimated = (row.get("estimated_seconds") or {}).get("total")
        actual = (row.get("actual_seconds") or {}).get("total")
        if estimated and actual:
            measured.append((row, float(estimated), float(actual)))
    return measured


def estimate_error(rows: list[dict[str, Any]]) -> float:
    """How far a run's estimates were from what its jobs took: exp(mean |ln(actual / estimated seconds)|), a factor
    >= 1 (1.0 = exact), over the jobs that have both; NaN when none has."""
    measured = _measured(rows)
    if not measured:
        return math.nan
    return math.exp(sum(abs(math.log(actual / estimated)) for _, estimated, actual in measured) / len(measured))


def estimate_table(rows: list[dict[str, Any]]) -> str:
    """Each job's estimated and actual seconds (total, startup) and the calibration it was estimated with."""
    lines = [
        "",
        f"Estimate vs actual, run {rows[0]['run_id'] if rows else '-'}:",
        "| approach | key | calibration samples | estimated s | actual s | actual / estimated "
        "| startup est. / actual s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, estimated, actual in sorted(_measured(rows), key=lambda m: m[0]["approach"]):
        in_force = row.get("calibration") or {}
        startup = (row["estimated_seconds"].get("startup"), row["actual_seconds"].get("startup"))
        lines.append(
            f"| {row['approach']} | {row.get('calibration_key')} | {in_force.get('samples', 0)} | {estimated:.1f} "
            f"| {actual:.1f} | {actual / estimated:.2f} | {_seconds(startup[0])} / {_seconds(startup[1])} |"
        )
    return "\n".join(lines) + "\n"


def _seconds(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _write_outputs(out_root: Path, execution: Any, backend: Any) -> Path:
    out_dir = out_root / execution.run_id
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, body in execution.reports.items():
        (out_dir / Path(key).name).write_bytes(body)
    (out_dir / "ledger.json").write_text(json.dumps(execution.ledger_rows, indent=2) + "\n")
    jobs_dir = out_dir / "jobs"
    jobs_dir.mkdir(exist_ok=True)
    for name, job in backend.jobs.items():
        link = jobs_dir / name
        if not link.exists():
            link.symlink_to(job.directory.resolve(), target_is_directory=True)
    return out_dir


def _cause_message(cause: str | None) -> str:
    try:
        return json.loads(cause or "")["errorMessage"]
    except (ValueError, KeyError, TypeError):
        return cause or ""


class _ProgressPrinter:
    """Prints one line per job whenever its state, step or loss changes."""

    def __init__(self, backend: Any, stream: TextIO) -> None:
        self.backend, self.stream = backend, stream
        self.last: dict[str, tuple] = {}

    def update(self) -> None:
        for name, state, step, loss in self.backend.progress():
            current = (state, step, None if loss is None else round(loss, 3))
            if self.last.get(name) != current:
                self.last[name] = current
                detail = "" if step is None else f" step {step} loss {loss:.4f}"
                print(f"  {name}: {state}{detail}", file=self.stream, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point for `make demo`."""
    parser = argparse.ArgumentParser(prog="python -m finetune.local.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT, help="execution input JSON (schema v1)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "demo-out", help="where reports land")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="folder with train.jsonl and test.jsonl, uploaded as the input's dataset",
    )
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "build" / "demo", help="job folders, tiny model")
    parser.add_argument(
        "--runs", type=int, default=1, help="run the input this many times in one account (2: see calibration)"
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    try:
        execution_input = json.loads(args.input.read_text())
    except (OSError, ValueError) as error:
        parser.error(f"cannot read execution input {args.input}: {error}")
    try:
        return run_demo(
            execution_input, out_root=args.out, work_dir=args.work_dir, runs=args.runs, data_dir=args.data
        ).exit_code
    except (user_data.DemoDataError, ValueError) as error:  # DataError (training_code.data) is a ValueError
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
