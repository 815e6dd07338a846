"""`make demo INPUT=… DATA=dir`: a user's own dataset (either task) is validated by the training code's readers,
uploaded under the input's dataset name and learned by the tiny model's tokenizer.

The workflow runs with scripted training jobs (no training): what is tested here is the DATA path, not training (the
chat demo trains in test_sft.py and `make demo INPUT=examples/chat-sft.json`)."""

from __future__ import annotations

import functools
import io
import json
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import boto3
import pytest
from transformers import AutoTokenizer

from finetune.local import tiny_model, user_data
from finetune.local.backends import ScriptedOutcome, ScriptedTrainingBackend
from finetune.local.demo import DEMO_MODEL_ID, main, prepare_data
from finetune.local.runner import DATA_BUCKET, REGION, LocalAccount

# A word that is in no shipped dataset: the tiny tokenizer keeps it in one or two pieces only if it learned the user's
# data (a byte-level BPE that never saw it splits its 11 letters into many short pieces).
USER_WORD = "Zorblefrost"
CHAT_ROWS = [
    {"messages": [{"role": "user", "content": f"Where is {USER_WORD}?"}, {"role": "assistant", "content": "Aisle 3."}]}
    for _ in range(6)
] + [{"prompt": f"Price of {USER_WORD}?", "completion": " Four dollars."}] * 3
CLASSIFICATION_ROWS = [{"text": f"my {USER_WORD} broke", "label": "repair"}, {"text": "hello", "label": "greet"}] * 4


@pytest.fixture(autouse=True)
def untrained_tiny_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny model's tokenizer is what the DATA path changes; skipping its weights' pretraining keeps this fast."""
    untrained = functools.partial(tiny_model.build_tiny_model, pretrain_steps=0)
    monkeypatch.setattr(tiny_model, "build_tiny_model", untrained)


def _write_dataset(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    for split in user_data.SPLITS:
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder


def _input(task: str, dataset_name: str) -> dict[str, Any]:
    return {
        "experiments": [{"model": DEMO_MODEL_ID, "approach": "lora", "params_billion": 0.00025, "max_steps": 2}],
        "dataset": {"name": dataset_name},
        "task": task,
        "eval_samples": "all",
        "max_runtime_hours": 1,
        "budget_usd": 20,
    }


@pytest.mark.parametrize(
    ("task", "rows", "metric"),
    [("sft", CHAT_ROWS, "eval_exact_match"), ("classification", CLASSIFICATION_ROWS, "eval_intent_accuracy")],
)
def test_a_users_dataset_is_validated_uploaded_under_the_inputs_name_and_taught_to_the_tokenizer(
    workflow: Any, tmp_path: Path, task: str, rows: list[dict[str, Any]], metric: str
) -> None:
    # Given a user's folder of train.jsonl and test.jsonl for the task, and an input naming a dataset "my-<task>"
    folder = _write_dataset(tmp_path / "mine", rows)
    execution_input = _input(task, f"my-{task}")

    # When the demo's data step prepares it
    demo_data, model_path = prepare_data(execution_input, folder, tmp_path / "models")

    # Then the tiny model's tokenizer learned the user's words
    assert demo_data.name == f"my-{task}" and demo_data.task == task
    assert model_path.name == f"tiny-llama-{demo_data.fingerprint}"
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    assert len(tokenizer(USER_WORD, add_special_tokens=False)["input_ids"]) <= 2

    # When the workflow runs on it (training scripted)
    seen: dict[str, Any] = {}

    def outcome_for(request: dict[str, Any]) -> ScriptedOutcome:
        channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
        seen["channels"] = channels
        s3 = boto3.client("s3", region_name=REGION)
        seen["train"] = s3.get_object(Bucket=DATA_BUCKET, Key=f"datasets/my-{task}/train/train.jsonl")["Body"].read()
        seen["task"] = request["HyperParameters"]["task"].strip('"')
        return ScriptedOutcome(metrics={metric: 0.5, "eval_rougeL": 0.6})

    account = LocalAccount(workflow, ScriptedTrainingBackend(outcome_for))
    with account.running():
        user_data.upload(account, demo_data)
        execution = account.execute(execution_input, f"user-data-{task}")

    # Then the job read the user's files under the input's dataset name, with the input's task
    assert execution.status == "SUCCEEDED", execution.cause
    assert seen["channels"]["train"].endswith(f"/datasets/my-{task}/train/")
    assert seen["channels"]["test"].endswith(f"/datasets/my-{task}/test/")
    assert seen["train"] == (folder / "train.jsonl").read_bytes()
    assert seen["task"] == task
    # and the report ranks it by the task's primary metric
    report = json.loads(execution.reports[f"reports/{execution.run_id}/report.json"])
    assert [(job["primary_metric"], job["accuracy"]) for job in report["jobs"]] == [(metric, 0.5)]


def test_a_bad_row_in_the_users_data_stops_the_demo_before_anything_starts_naming_its_line_and_field(
    tmp_path: Path,
) -> None:
    # Given a chat dataset whose second train row has an assistant turn without content
    folder = _write_dataset(tmp_path / "mine", CHAT_ROWS)
    lines = (folder / "train.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]})
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    input_path = tmp_path / "input.json"
    input_path.write_text(json.dumps(_input("sft", "my-chats")))

    # When the demo is started on it
    errors = io.StringIO()
    with redirect_stderr(errors):
        code = main(["--input", str(input_path), "--data", str(folder), "--work-dir", str(tmp_path / "work")])

    # Then it exits 2 naming the file, the line and the field, and built nothing
    assert code == 2
    assert "train.jsonl" in errors.getvalue() and ":2" in errors.getvalue() and "content" in errors.getvalue()
    assert not (tmp_path / "work").exists()


def test_a_data_folder_without_a_test_split_is_refused_naming_the_missing_file(tmp_path: Path) -> None:
    # Given a folder with train.jsonl only
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "train.jsonl").write_text(json.dumps(CHAT_ROWS[0]) + "\n")
    # Then the demo's dataset cannot be resolved, and the error names test.jsonl
    with pytest.raises(user_data.DemoDataError, match=r"test\.jsonl is missing"):
        user_data.resolve(_input("sft", "my-chats"), folder)
