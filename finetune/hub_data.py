"""Banking77 from the Hugging Face Hub as dataset-contract rows (`{"text", "label"}` with label *names*).

PolyAI/banking77 on the Hub still holds a loading script (`banking77.py`), and `datasets` 4.0 and later refuse
those ("Dataset scripts are no longer supported, but found banking77.py"; huggingface/datasets#7693). The Hub keeps
an automatic Parquet conversion of such datasets on the `refs/convert/parquet` branch, which loads without the
script: so the loader tries the repository as it is first (a future script-free version loads directly) and falls
back to that branch only on this refusal. Any other error (no network, no such dataset) is raised as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from training_code.banking77 import LABELS
from training_code.data import DataError, Example

BANKING77 = "PolyAI/banking77"
PARQUET_REVISION = "refs/convert/parquet"
SCRIPT_REFUSED = "Dataset scripts are no longer supported"

# `datasets.load_dataset`'s shape (repo id, revision=...) -> a mapping of split name to rows.
LoadDataset = Callable[..., Mapping[str, Any]]


def load_hub_dataset(repo: str, load_dataset: LoadDataset | None = None) -> tuple[Mapping[str, Any], str | None]:
    """The dataset's splits and the revision they came from (None: the repository's default branch)."""
    load = load_dataset or _hub_load_dataset()
    try:
        return load(repo), None
    except RuntimeError as exc:
        if SCRIPT_REFUSED not in str(exc):
            raise
    return load(repo, revision=PARQUET_REVISION), PARQUET_REVISION


def _hub_load_dataset() -> LoadDataset:
    from datasets import load_dataset  # the pinned `datasets`; imported only when downloading

    return load_dataset


def label_names(split: Any) -> Sequence[str]:
    """The split's ClassLabel names when it carries them (the Parquet conversion keeps the features), else the
    published Banking77 order; refused when the Hub's names differ from the published ones."""
    features = getattr(split, "features", None) or {}
    names = getattr(features.get("label"), "names", None) if isinstance(features, Mapping) else None
    if names is not None and tuple(names) != LABELS:
        raise DataError(f"{BANKING77}'s label names differ from training_code/banking77.py's 77: {list(names)[:5]}…")
    return LABELS


def to_examples(split: Any, names: Sequence[str], source: str) -> list[Example]:
    """Rows with integer label ids → examples with label names; a row without text or with an unknown id is refused
    with its index."""
    examples = []
    for index, row in enumerate(split):
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{source}[{index}]: no text")
        if not isinstance(label, int) or not 0 <= label < len(names):
            raise DataError(f"{source}[{index}]: label {label!r} is not one of the {len(names)} label ids")
        examples.append(Example(text=text, label=names[label]))
    return examples


def load_banking77(load_dataset: LoadDataset | None = None) -> tuple[list[Example], list[Example], str | None]:
    """Banking77's train and test examples and the revision read (`refs/convert/parquet` when the script was
    refused)."""
    dataset, revision = load_hub_dataset(BANKING77, load_dataset)
    names = label_names(dataset["train"])
    return (
        to_examples(dataset["train"], names, f"{BANKING77} train"),
        to_examples(dataset["test"], names, f"{BANKING77} test"),
        revision,
    )
