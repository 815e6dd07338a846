"""The offline demo on your own data: `make demo INPUT=my-input.json DATA=my-dataset/`.

`DATA` is a folder with `train.jsonl` and `test.jsonl` in the format of the input's task (classification:
`{"text", "label"}`; sft: `{"messages": [...]}` or `{"prompt", "completion"}`). The demo checks the rows with the
training code's own readers (the same errors, naming the line and field, that a job would fail with), uploads them
under the input's dataset name, and builds the tiny model's tokenizer from their words, so the whole pipeline runs on
your data before a SageMaker job is paid for. Without `DATA`, a dataset shipped in `examples/datasets/<name>/` is used
when the input names one, else banking77-mini.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_DATASETS = REPO_ROOT / "examples" / "datasets"
DEFAULT_DATASET = "banking77-mini"
SPLITS = ("train", "test")
# Words of the sft fallback chat template (training_code/sft.py), so the tiny tokenizer has tokens for them.
TEMPLATE_WORDS = ("System:", "User:", "Assistant:")


class DemoDataError(ValueError):
    """The demo's data folder or the input's dataset cannot be used (named in the message)."""


@dataclass(frozen=True)
class DemoData:
    """The dataset a demo run uploads: its name in the bucket, its task and its two files."""

    name: str
    task: str
    directory: Path

    def path(self, split: str) -> Path:
        """`train.jsonl` or `test.jsonl`."""
        return self.directory / f"{split}.jsonl"

    @property
    def fingerprint(self) -> str:
        """A short hash of both files: the tiny model built from them is reused only for the same data."""
        digest = hashlib.sha256()
        for split in SPLITS:
            digest.update(self.path(split).read_bytes())
        return digest.hexdigest()[:12]


def resolve(execution_input: dict[str, Any], data_dir: Path | None) -> DemoData:
    """The demo's dataset: `data_dir` under the input's dataset name, or the shipped folder of that name."""
    dataset = execution_input.get("dataset") or {"name": DEFAULT_DATASET}
    if "name" not in dataset:
        raise DemoDataError('the demo uploads data by name: give the input a dataset {"name": ...}, not S3 URIs')
    name = dataset["name"]
    task = execution_input.get("task") or "classification"
    directory = Path(data_dir) if data_dir is not None else SHIPPED_DATASETS / name
    if data_dir is None and not directory.is_dir():
        raise DemoDataError(
            f"no shipped dataset {name!r} in {SHIPPED_DATASETS}; pass DATA=<folder with train.jsonl and test.jsonl>"
        )
    for split in SPLITS:
        if not (directory / f"{split}.jsonl").is_file():
            raise DemoDataError(f"{directory / f'{split}.jsonl'} is missing: DATA needs train.jsonl and test.jsonl")
    return DemoData(name=name, task=task, directory=directory)


def read_rows(data: DemoData, split: str) -> list[Any]:
    """The split's rows, validated by the training code's reader for the task (`DataError` naming line and field).

    The readers take a channel folder; each split is read alone through a temporary folder linking its file."""
    import shutil
    import tempfile

    from training_code import data as classification
    from training_code import sft

    reader = sft.read_sft_dir if data.task == "sft" else classification.read_jsonl_dir
    with tempfile.TemporaryDirectory() as folder:
        channel = Path(folder) / data.path(split).name
        try:
            channel.symlink_to(data.path(split).resolve())
        except OSError:
            shutil.copy(data.path(split), channel)
        rows = reader(Path(folder))
    if not rows:
        raise DemoDataError(f"{data.path(split)} has no rows")
    return rows


def corpus(data: DemoData) -> list[str]:
    """Every text of both splits the tiny tokenizer should know: messages, prompts, answers, labels."""
    texts: list[str] = list(TEMPLATE_WORDS) if data.task == "sft" else []
    for split in SPLITS:
        for row in read_rows(data, split):
            if data.task == "sft":
                texts += [message["content"] for message in row.messages] + [row.prompt, row.completion]
            else:
                texts += [row.text, row.label]
    return [text for text in texts if text]


def upload(account: Any, data: DemoData) -> None:
    """Put both files where Plan and training look for the input's dataset: `datasets/<name>/{train,test}/`
    (`account`: a running finetune.local.runner.LocalAccount)."""
    account.upload_dataset(data.name, data.path("train"), data.path("test"))
