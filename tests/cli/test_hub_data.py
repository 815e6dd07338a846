"""`finetune data banking77`: PolyAI/banking77 through the pinned `datasets`, with a stand-in loader (no Hub)."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import boto3
import pytest

from finetune import hub_data
from finetune.local.backends import ScriptedOutcome
from finetune.local.runner import DATA_BUCKET, REGION
from tests.support.cli import finetune
from tests.support.workflow import GOOD_METRICS
from training_code.banking77 import LABELS
from training_code.data import DataError

TRAIN = [{"text": "my card has not arrived", "label": 11}, {"text": "how do I activate my card", "label": 0}]
TEST = [{"text": "card still not here", "label": 11}, {"text": "activate the card please", "label": 0}]


class _Split(list):
    """A list of rows with the ClassLabel features a `datasets.Dataset` split carries."""

    def __init__(self, rows: list[dict[str, Any]], names: tuple[str, ...] = LABELS) -> None:
        super().__init__(rows)
        self.features = {"label": SimpleNamespace(names=list(names))}


class _Hub:
    """A stand-in for `datasets.load_dataset`: refuses the script at the default revision when `has_script`."""

    def __init__(self, has_script: bool, splits: dict[str, Any] | None = None) -> None:
        self.has_script, self.calls = has_script, []
        self.splits = splits or {"train": _Split(TRAIN), "test": _Split(TEST)}

    def __call__(self, repo: str, revision: str | None = None) -> dict[str, Any]:
        self.calls.append((repo, revision))
        if self.has_script and revision is None:
            # datasets>=4's own words (datasets/load.py).
            raise RuntimeError("Dataset scripts are no longer supported, but found banking77.py")
        return self.splits


def test_a_repository_with_a_loading_script_is_read_from_the_hubs_parquet_conversion() -> None:
    hub = _Hub(has_script=True)

    train, test, revision = hub_data.load_banking77(hub)

    assert hub.calls == [("PolyAI/banking77", None), ("PolyAI/banking77", "refs/convert/parquet")]
    assert revision == "refs/convert/parquet"
    assert [(e.text, e.label) for e in train] == [
        ("my card has not arrived", "card_arrival"),
        ("how do I activate my card", "activate_my_card"),
    ]
    assert [e.label for e in test] == ["card_arrival", "activate_my_card"]


def test_a_script_free_repository_loads_directly() -> None:
    # Plain lists (no features): the published label order applies.
    hub = _Hub(has_script=False, splits={"train": TRAIN, "test": TEST})

    train, _test, revision = hub_data.load_banking77(hub)

    assert hub.calls == [("PolyAI/banking77", None)] and revision is None
    assert train[0].label == "card_arrival"


def test_other_loader_errors_and_unexpected_labels_are_not_hidden() -> None:
    def offline(repo: str, revision: str | None = None) -> Any:
        raise ConnectionError("no network")

    with pytest.raises(ConnectionError):
        hub_data.load_banking77(offline)
    renamed = _Hub(has_script=False, splits={"train": _Split(TRAIN, ("x",) * 77), "test": _Split(TEST)})
    with pytest.raises(DataError, match="label names differ"):
        hub_data.load_banking77(renamed)
    out_of_range = _Hub(has_script=False, splits={"train": [{"text": "hi", "label": 77}], "test": TEST})
    with pytest.raises(DataError, match=r"train\[0\]: label 77"):
        hub_data.load_banking77(out_of_range)


def test_data_banking77_uploads_checked_named_rows_to_the_bucket(account_with) -> None:
    # Given a deployed stack and the Hub's repository still holding its loading script
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))
    hub = _Hub(has_script=True)

    # When the user prepares Banking77
    result = finetune(account, "data", "banking77", "--name", "b77", load_dataset=hub)

    # Then the Parquet conversion was read and contract rows with label names are in datasets/b77/{train,test}/
    assert result.exit_code == 0, result.output
    assert "refs/convert/parquet" in result.stderr
    s3 = boto3.client("s3", region_name=REGION)
    body = s3.get_object(Bucket=DATA_BUCKET, Key="datasets/b77/train/train.jsonl")["Body"].read().decode()
    assert [json.loads(line) for line in body.splitlines()] == [
        {"text": "my card has not arrived", "label": "card_arrival"},
        {"text": "how do I activate my card", "label": "activate_my_card"},
    ]
    assert s3.head_object(Bucket=DATA_BUCKET, Key="datasets/b77/test/test.jsonl")["ContentLength"] > 0


def test_data_banking77_refuses_a_bad_row_and_uploads_nothing(account_with) -> None:
    account = account_with(lambda _request: ScriptedOutcome(metrics=GOOD_METRICS))
    hub = _Hub(has_script=False, splits={"train": [*TRAIN, {"text": "", "label": 3}], "test": TEST})

    result = finetune(account, "data", "banking77", "--name", "bad", load_dataset=hub)

    assert result.exit_code == 2
    assert "PolyAI/banking77 train[2]: no text" in result.stderr
    listed = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=DATA_BUCKET, Prefix="datasets/bad/")
    assert listed["KeyCount"] == 0
