"""Prepare an intent dataset as train/test JSON Lines and upload it to `s3://<bucket>/datasets/<name>/{train,test}/`.

    # Your own CSV or JSONL (column names configurable; without --test, a stratified split of --train)
    python training_code/prepare_data.py file --train tickets.csv --text-column body --label-column intent \\
        --name tickets --out-dir data/tickets --bucket my-bucket

Rows follow the dataset contract `{"text": ..., "label": ...}`. The printed JSON gives the S3 URIs to put in an
execution input (`dataset.train_s3_uri`, `dataset.test_s3_uri`); without --bucket nothing is uploaded. Banking77
from the Hugging Face Hub, and uploads to a deployed stack's bucket by name: `finetune data` (finetune/cli.py).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

if __package__ in (None, ""):
    # Same bootstrap as train.py: run as a script, this folder is the package `training_code`.
    _HERE = Path(__file__).resolve().parent
    if "training_code" not in sys.modules:
        _package = types.ModuleType("training_code")
        _package.__path__ = [str(_HERE)]
        sys.modules["training_code"] = _package
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

# Imported after the bootstrap above, which makes `training_code` importable when run as a script.
import argparse
import csv
import json
import random
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from training_code.data import DataError, Example, write_jsonl

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV (header line) or JSON Lines file, chosen by suffix."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    if suffix in (".jsonl", ".json", ".ndjson"):
        with path.open(encoding="utf-8") as handle:
            rows = []
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            return rows
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv or .jsonl)")


def to_examples(rows: Sequence[dict[str, Any]], text_column: str, label_column: str, source: str) -> list[Example]:
    """Examples from rows, whitespace normalised; rows without text or label are an error naming the row."""
    examples = []
    for number, row in enumerate(rows, start=1):
        if text_column not in row or label_column not in row:
            raise DataError(
                f"{source} row {number}: needs columns {text_column!r} and {label_column!r}, has {sorted(row)}"
            )
        text, label = str(row[text_column] or "").strip(), str(row[label_column] or "").strip()
        if not text or not label:
            raise DataError(f"{source} row {number}: empty {text_column!r} or {label_column!r}")
        examples.append(Example(text=" ".join(text.split()), label=label))
    return examples


def stratified_split(
    examples: Sequence[Example], test_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Split per label so every label keeps at least one train row (the label set is what train contains)."""
    if not 0 < test_fraction < 1:
        raise DataError(f"--test-fraction={test_fraction} must be between 0 and 1")
    by_label: dict[str, list[Example]] = defaultdict(list)
    for example in examples:
        by_label[example.label].append(example)
    rng = random.Random(seed)
    train, test = [], []
    for label in sorted(by_label):
        rows = by_label[label][:]
        rng.shuffle(rows)
        held_out = min(round(len(rows) * test_fraction), len(rows) - 1)
        test.extend(rows[:held_out])
        train.extend(rows[held_out:])
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test


def write_splits(out_dir: Path, train: Sequence[Example], test: Sequence[Example]) -> dict[str, Path]:
    """`<out_dir>/train/train.jsonl` and `<out_dir>/test/test.jsonl` (the channel layout of the training job)."""
    if not train or not test:
        raise DataError(f"both splits need rows: {len(train)} train, {len(test)} test")
    paths = {"train": out_dir / "train" / "train.jsonl", "test": out_dir / "test" / "test.jsonl"}
    write_jsonl(paths["train"], train)
    write_jsonl(paths["test"], test)
    return paths


def upload(s3_client: Any, bucket: str, name: str, paths: dict[str, Path]) -> dict[str, str]:
    """Upload the splits to `s3://<bucket>/datasets/<name>/{train,test}/`; return the two prefix URIs."""
    uris = {}
    for split, path in paths.items():
        key = f"datasets/{name}/{split}/{path.name}"
        s3_client.upload_file(str(path), bucket, key)
        uris[f"{split}_s3_uri"] = f"s3://{bucket}/datasets/{name}/{split}/"
    return uris


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (`file`: a CSV or JSONL file of your own)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sources = parser.add_subparsers(dest="source", required=True)
    file = sources.add_parser("file", help="a CSV or JSONL file of your own")
    file.add_argument("--train", type=Path, required=True, help="CSV or JSONL file with the training rows")
    file.add_argument("--test", type=Path, help="CSV or JSONL test file (default: split --train)")
    file.add_argument("--text-column", default="text", help="column holding the message (default: text)")
    file.add_argument("--label-column", default="label", help="column holding the intent (default: label)")
    file.add_argument("--test-fraction", type=float, default=0.2, help="held-out share without --test (0.2)")
    file.add_argument("--name", required=True, help="dataset name in S3")
    file.add_argument("--out-dir", type=Path, help="local folder for train/ and test/ (default: data/NAME)")
    file.add_argument("--bucket", help="upload to s3://BUCKET/datasets/NAME/{train,test}/")
    file.add_argument("--region", help="AWS region of the bucket's client (default: your AWS configuration)")
    file.add_argument("--seed", type=int, default=42, help="seed of the stratified split (42)")
    file.add_argument(
        "--task",
        choices=("classification", "sft"),
        default="classification",
        help="classification: {text, label} rows; sft: {messages} or {prompt, completion} JSONL rows (needs --test)",
    )
    return parser


def main(argv: Sequence[str] | None = None, s3_client: Any = None) -> int:
    """Prepare (and optionally upload) a dataset; print a JSON summary. Returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if not _NAME_RE.match(args.name):
            raise DataError(f"--name={args.name!r}: use lowercase letters, digits, '.', '_' or '-' (max 63)")
        if args.task == "sft":
            return _prepare_sft(args, s3_client)
        train = to_examples(read_rows(args.train), args.text_column, args.label_column, str(args.train))
        if args.test is not None:
            test = to_examples(read_rows(args.test), args.text_column, args.label_column, str(args.test))
        else:
            train, test = stratified_split(train, args.test_fraction, args.seed)
        paths = write_splits(args.out_dir or Path("data") / args.name, train, test)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary: dict[str, Any] = {
        "name": args.name,
        "train_rows": len(train),
        "test_rows": len(test),
        "labels": len({example.label for example in train}),
        **{f"{split}_path": str(path) for split, path in paths.items()},
    }
    return _upload_and_summarize(args, s3_client, paths, summary)


def _upload_and_summarize(
    args: argparse.Namespace, s3_client: Any, paths: dict[str, Path], summary: dict[str, Any]
) -> int:
    """Upload the channel files when --bucket is given (either task), then print the summary as JSON; exit code 0."""
    if args.bucket:
        if s3_client is None:
            import boto3

            s3_client = boto3.client("s3", region_name=args.region)
        summary.update(upload(s3_client, args.bucket, args.name, paths))
    print(json.dumps(summary, indent=2))
    return 0


def _prepare_sft(args: argparse.Namespace, s3_client: Any) -> int:
    """task=sft: check both files with the training code's own reader (errors name the line and field), copy them
    into the channel layout unchanged and upload them like classification data."""
    import shutil

    from training_code import sft

    if args.test is None:
        raise DataError("--task sft needs --test: instruction rows have no label to stratify a split by")
    out_dir = args.out_dir or Path("data") / args.name
    paths = {"train": out_dir / "train" / "train.jsonl", "test": out_dir / "test" / "test.jsonl"}
    counts = {}
    for split, source in (("train", args.train), ("test", args.test)):
        if source.suffix.lower() not in (".jsonl", ".ndjson"):
            raise DataError(f"{source}: --task sft reads JSON Lines (.jsonl)")
        paths[split].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, paths[split])
        try:
            counts[split] = len(sft.read_sft_dir(paths[split].parent))
        except DataError as exc:  # name the user's file, not the copy
            raise DataError(str(exc).replace(str(paths[split]), str(source))) from None
        if not counts[split]:
            raise DataError(f"{source}: no rows")
    summary: dict[str, Any] = {"name": args.name, "task": "sft", **{f"{k}_rows": v for k, v in counts.items()}}
    summary.update({f"{split}_path": str(path) for split, path in paths.items()})
    return _upload_and_summarize(args, s3_client, paths, summary)


if __name__ == "__main__":
    sys.exit(main())
