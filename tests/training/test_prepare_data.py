"""Data preparation: a user's CSV or JSONL becomes contract train/test JSONL, uploaded under datasets/<name>/."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from training_code import prepare_data


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def ticket_rows(count_per_label: int) -> list[dict[str, str]]:
    labels = ["card_arrival", "pin_blocked", "exchange_rate"]
    return [
        {"body": f"  message {i} about {label} ", "intent": label, "id": str(i)}
        for label in labels
        for i in range(count_per_label)
    ]


def test_a_csv_with_custom_columns_is_split_per_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_csv(tmp_path / "tickets.csv", ticket_rows(10))
    args = ["file", "--train", str(source), "--text-column", "body", "--label-column", "intent", "--name", "tickets"]

    exit_code = prepare_data.main([*args, "--out-dir", str(tmp_path / "out"), "--test-fraction", "0.2"])

    assert exit_code == 0
    train = read_jsonl(tmp_path / "out" / "train" / "train.jsonl")
    test = read_jsonl(tmp_path / "out" / "test" / "test.jsonl")
    assert (len(train), len(test)) == (24, 6)
    assert {row["label"] for row in test} == {"card_arrival", "pin_blocked", "exchange_rate"}
    assert set(train[0]) == {"text", "label"}
    assert train[0]["text"] == train[0]["text"].strip()
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"] == 3
    assert "train_s3_uri" not in summary  # nothing uploaded without --bucket


def test_jsonl_train_and_test_files_are_taken_as_given(tmp_path: Path) -> None:
    for split, count in (("train", 4), ("test", 2)):
        rows = [{"text": f"{split} {i}", "label": "top_up_failed"} for i in range(count)]
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    args = ["file", "--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl")]

    exit_code = prepare_data.main([*args, "--name", "mine", "--out-dir", str(tmp_path / "out")])

    assert exit_code == 0
    assert read_jsonl(tmp_path / "out" / "test" / "test.jsonl") == [
        {"text": "test 0", "label": "top_up_failed"},
        {"text": "test 1", "label": "top_up_failed"},
    ]


def test_a_missing_column_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write_csv(tmp_path / "tickets.csv", ticket_rows(2))

    exit_code = prepare_data.main(["file", "--train", str(source), "--name", "t", "--out-dir", str(tmp_path)])

    assert exit_code == 2
    assert "needs columns 'text' and 'label'" in capsys.readouterr().err


@mock_aws
def test_splits_are_uploaded_under_the_dataset_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="data-bucket")
    source = write_csv(tmp_path / "tickets.csv", ticket_rows(5))

    args = ["file", "--train", str(source), "--text-column", "body", "--label-column", "intent", "--name", "tickets"]

    exit_code = prepare_data.main([*args, "--out-dir", str(tmp_path / "out"), "--bucket", "data-bucket"], s3_client=s3)

    assert exit_code == 0
    keys = sorted(item["Key"] for item in s3.list_objects_v2(Bucket="data-bucket")["Contents"])
    assert keys == ["datasets/tickets/test/test.jsonl", "datasets/tickets/train/train.jsonl"]
    summary = json.loads(capsys.readouterr().out)
    assert summary["train_s3_uri"] == "s3://data-bucket/datasets/tickets/train/"
    assert summary["test_s3_uri"] == "s3://data-bucket/datasets/tickets/test/"
    body = s3.get_object(Bucket="data-bucket", Key="datasets/tickets/train/train.jsonl")["Body"].read().decode()
    assert all(set(json.loads(line)) == {"text", "label"} for line in body.splitlines())


def test_the_script_runs_from_a_plain_path(tmp_path: Path) -> None:
    import subprocess
    import sys

    source = write_csv(tmp_path / "tickets.csv", ticket_rows(3))
    args = ["--text-column", "body", "--label-column", "intent", "--name", "t", "--out-dir", str(tmp_path / "o")]
    completed = subprocess.run(
        [sys.executable, str(Path(prepare_data.__file__)), "file", "--train", str(source), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["train_rows"] == 6
