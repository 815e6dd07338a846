"""`make demo`'s code path end to end: real state machine, real handlers, real CPU training of a tiny model.

The default input is reduced (few steps, few eval samples) to keep the suite fast; everything else is the demo's.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest

from finetune.local.demo import DEFAULT_INPUT, main, run_demo


def _reduced(execution_input: dict) -> dict:
    reduced = copy.deepcopy(execution_input)
    for experiment in reduced["experiments"]:
        experiment["max_steps"] = 6
    reduced["eval_samples"] = 12
    return reduced


@pytest.fixture(scope="module")
def demo_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("demo")
    return root / "out", root / "work"


@pytest.fixture(scope="module")
def default_demo(demo_dirs):
    out_root, work_dir = demo_dirs
    stream = io.StringIO()
    result = run_demo(
        _reduced(json.loads(DEFAULT_INPUT.read_text())), out_root=out_root, work_dir=work_dir, stream=stream
    )
    return result, stream.getvalue()


def test_default_demo_succeeds_with_a_ledger_row_per_approach_and_a_summary(default_demo) -> None:
    result, printed = default_demo
    assert result.exit_code == 0, printed
    rows = result.execution.ledger_rows
    jobs = [row for row in rows if row["sk"].startswith("JOB#")]
    assert sorted(row["approach"] for row in jobs) == ["baseline", "full", "lora", "qlora"]
    assert all(row["status"] == "Completed" for row in jobs), [row.get("failure_reason") for row in jobs]
    assert any(row["sk"] == "SUMMARY" for row in rows)
    assert all(row["training_seconds"] > 0 and row["cost_usd"] > 0 for row in jobs)
    assert all("eval_intent_accuracy" in row["metrics"] for row in jobs)
    # Every demo job asks for the automatic learning rate (null); the row holds the rate the job reported using
    trained = [row for row in jobs if row["approach"] != "baseline"]
    assert all(row["hyperparameters"].get("learning_rate") is None for row in trained)
    assert all(row["resolved"]["learning_rate"] > 0 for row in trained), [row["resolved"] for row in trained]


def test_demo_prints_progress_and_the_report_table(default_demo) -> None:
    _, printed = default_demo
    assert "Training step" in printed
    for approach in ("full", "lora", "qlora", "baseline"):
        assert f"| {approach} |" in printed
    assert "Execution SUCCEEDED" in printed


def test_report_files_are_written_and_agree_with_the_ledger(default_demo) -> None:
    result, _ = default_demo
    out_dir = result.out_dir
    report = json.loads((out_dir / "report.json").read_text())
    assert (out_dir / "report.md").read_text().strip()
    ledger = json.loads((out_dir / "ledger.json").read_text())
    ledger_jobs = {row["job_name"]: row for row in ledger if row["sk"].startswith("JOB#")}
    assert {job["job_name"] for job in report["jobs"]} == set(ledger_jobs)
    for job in report["jobs"]:
        assert job["cost_usd"] == pytest.approx(ledger_jobs[job["job_name"]]["cost_usd"])


def test_each_job_leaves_its_model_and_metrics(default_demo) -> None:
    result, _ = default_demo
    for row in result.execution.ledger_rows:
        if not row["sk"].startswith("JOB#"):
            continue
        model_dir = result.out_dir / "jobs" / row["job_name"] / "model"
        assert (model_dir / "metrics.json").is_file()
        # uploaded uncompressed as SageMaker does with CompressionType NONE, file by file under the job's
        # output/model/ prefix, and Record summed exactly the folder's bytes onto the row
        assert row["artifact_uri"].endswith(f"/{row['job_name']}/output/model/")
        assert row["artifact_bytes"] == sum(p.stat().st_size for p in model_dir.rglob("*") if p.is_file())
        assert row["dataset"]["train_rows"] > 0 and row["dataset"]["test_rows"] > 0
        if row["approach"] == "baseline":  # no weights: the prompt format, a note, the metrics and the answers
            files = sorted(p.name for p in model_dir.iterdir())
            assert files == ["labels.json", "metrics.json", "predictions.jsonl", "training_config.json"]
            continue
        expected = "config.json" if row["approach"] == "full" else "adapter_config.json"
        assert (model_dir / expected).is_file(), sorted(p.name for p in model_dir.iterdir())


def test_each_job_ran_train_py_through_the_sagemaker_training_toolkit(default_demo) -> None:
    result, _ = default_demo
    for row in result.execution.ledger_rows:
        if not row["sk"].startswith("JOB#"):
            continue
        job_dir = result.out_dir / "jobs" / row["job_name"]
        hyperparameters = json.loads((job_dir / "input" / "config" / "hyperparameters.json").read_text())
        assert json.loads(hyperparameters["approach"]) == row["approach"]  # JSON-encoded, as SageMaker writes them
        log = (job_dir / "training.log").read_text()
        assert "Imported framework sagemaker_pytorch_container.training" in log
        assert "Reporting training SUCCESS" in log
        assert (job_dir / "output" / "success").is_file()
        # Multi-GPU instance types set sagemaker_torch_distributed_enabled: the toolkit launches torchrun.
        multi_gpu = "sagemaker_torch_distributed_enabled" in hyperparameters
        assert ("torchrun --nnodes 1 --nproc_per_node 1 train.py" in log) == multi_gpu


@pytest.mark.parametrize(
    ("execution_input", "error"),
    [
        ({"experiments": [{"model": "demo/tiny-llama", "approach": "sft"}]}, "InvalidExecutionInput"),
        (
            {
                "experiments": [{"model": "gpt-neox-20b", "approach": "full"}],
                "dataset": {"name": "banking77-mini"},
                "budget_usd": 1,
            },
            "BudgetExceeded",
        ),
    ],
)
def test_bad_input_fails_at_plan_with_non_zero_exit_and_no_training(
    demo_dirs, tmp_path, execution_input, error
) -> None:
    out_root, work_dir = demo_dirs
    stream = io.StringIO()
    result = run_demo(execution_input, out_root=out_root, work_dir=work_dir, stream=stream)
    assert result.exit_code == 1
    assert result.execution.failed_state == "Plan"
    assert result.execution.error == error
    assert result.training_processes_started == 0
    assert error in stream.getvalue()


def test_cli_exit_code_is_non_zero_for_an_invalid_input_file(demo_dirs, tmp_path, capsys) -> None:
    out_root, work_dir = demo_dirs
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"experiments": [{"model": "demo/tiny-llama", "approach": "lora"}], "colour": "red"}))
    assert main(["--input", str(bad), "--out", str(out_root), "--work-dir", str(work_dir)]) == 1
    assert "colour" in capsys.readouterr().out


def test_a_crashing_job_is_recorded_failed_with_its_reason_while_the_other_completes(demo_dirs) -> None:
    out_root, work_dir = demo_dirs
    execution_input = {
        "experiments": [
            {"model": "demo/tiny-llama", "approach": "lora", "max_steps": 4, "lora_r": 8},
            {"model": "demo/tiny-llama", "approach": "lora", "max_steps": 4, "lora_r": 4},
        ],
        "dataset": {"name": "banking77-mini"},
        "max_runtime_hours": 1,
        "budget_usd": 20,
        "eval_samples": 8,
    }

    def inject_bad_hyperparameter(request: dict) -> None:
        if request["HyperParameters"]["lora_r"] == "4":
            request["HyperParameters"]["approach"] = json.dumps("prefix-tuning")

    result = run_demo(
        execution_input,
        out_root=out_root,
        work_dir=work_dir,
        stream=io.StringIO(),
        adjust_request=inject_bad_hyperparameter,
    )

    assert result.exit_code == 0
    failed = [row for row in result.execution.ledger_rows if row["sk"].startswith("JOB#") and row["status"] == "Failed"]
    completed = [
        row for row in result.execution.ledger_rows if row["sk"].startswith("JOB#") and row["status"] == "Completed"
    ]
    assert len(failed) == 1 and len(completed) == 1, result.execution.ledger_rows
    assert "approach" in failed[0]["failure_reason"]


def test_the_baseline_row_is_a_completed_zero_shot_evaluation_of_the_same_samples(default_demo) -> None:
    result, _ = default_demo
    jobs = {row["approach"]: row for row in result.execution.ledger_rows if row["sk"].startswith("JOB#")}
    baseline = jobs["baseline"]
    assert baseline["status"] == "Completed"
    assert baseline["metrics"]["eval_samples"] == jobs["lora"]["metrics"]["eval_samples"]
    assert baseline["metrics"]["eval_parse_rate"] == 1.0  # constrained decoding
    assert not any(name.startswith("train_") for name in baseline["metrics"])  # nothing trained
    hyperparameters = json.loads(
        (result.out_dir / "jobs" / baseline["job_name"] / "input" / "config" / "hyperparameters.json").read_text()
    )
    assert json.loads(hyperparameters["prompt_style"]) == "listed"
    assert not {"epochs", "lora_r", "max_steps", "learning_rate"} & set(hyperparameters)  # not sent
