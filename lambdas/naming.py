"""Deterministic names: run ids from execution names, training job names, S3 locations.

The same input always gives the same name, which is what makes Launch idempotent: a retried CreateTrainingJob hits
`ResourceInUse` instead of starting a second, billed, job.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

# SageMaker: `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`.
JOB_NAME_MAX = 63
JOB_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
RUN_ID_MAX = 80  # a Step Functions execution name is at most 80 characters
_HASH_CHARS = 8  # 32 bits: collisions need ~65k names with the same readable part


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def slug(text: str) -> str:
    """Only `[A-Za-z0-9-]`: anything else becomes `-`, runs of `-` collapse, no `-` at either end."""
    return re.sub(r"-{2,}", "-", re.sub(r"[^A-Za-z0-9-]", "-", text)).strip("-")


def run_id_from_execution_name(execution_name: str) -> str:
    """A run id safe for S3 keys, DynamoDB keys and job names, derived from the Step Functions execution name.

    A name that is already safe is kept as is (so operators recognise it); one that had to change gets a short hash
    of the original, so two execution names that differ only in unsafe characters never share a run.
    """
    cleaned = slug(execution_name)[:RUN_ID_MAX]
    if cleaned == execution_name and cleaned:
        return cleaned
    suffix = _digest(execution_name, 6)
    base = cleaned[: RUN_ID_MAX - len(suffix) - 1].rstrip("-")
    return f"{base}-{suffix}" if base else f"run-{suffix}"


def model_slug(model_key: str) -> str:
    """Short name of a model for names and S3 keys: catalog keys as they are, Hub ids without the org."""
    return slug(model_key.rsplit("/", 1)[-1]).lower() or "model"


def variant_key(spec: dict[str, Any]) -> str:
    """A canonical string of what makes a job distinct; hashed into its name."""
    return json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)


def training_job_name(prefix: str, run_id: str, model_key: str, approach: str, variant: str = "") -> str:
    """`<prefix>-<run>-<model>-<approach>-<hash>`, lower case, at most 63 characters of `[a-z0-9-]`.

    The run and model parts are shortened (the model keeps at least half of the room) when the whole would be too
    long; the hash is over the unshortened parts plus `variant` (the job's distinguishing settings), so shortening
    never makes two jobs share a name. Lower case because SageMaker lower-cases names in ARNs, so IAM resource
    patterns (`training-job/<prefix>*`) only match lower-case prefixes anyway.
    """
    digest = _digest("|".join((prefix, run_id, model_key, approach, variant)), _HASH_CHARS)
    head = slug(prefix).lower()
    tail = f"{slug(approach).lower()}-{digest}"
    run_part, model_part = slug(run_id).lower(), model_slug(model_key)
    fixed = len(tail) + (len(head) + 1 if head else 0)
    room = JOB_NAME_MAX - fixed - 2  # two more separators: run-model-tail
    if room < 8:
        raise ValueError(f"job name prefix {prefix!r} leaves no room for the run and model in {JOB_NAME_MAX} chars")
    if len(run_part) + len(model_part) > room:
        model_room = min(len(model_part), max(room // 2, room - len(run_part)))
        model_part = model_part[:model_room].rstrip("-")
        run_part = run_part[: room - len(model_part)].rstrip("-")
    name = "-".join(part for part in (head, run_part, model_part, tail) if part)
    assert JOB_NAME_PATTERN.match(name) and len(name) <= JOB_NAME_MAX, name  # guaranteed by construction
    return name


def attempt_job_name(base_job_name: str, attempt: int) -> str:
    """The training job name of a job's `attempt` (1: the base name itself; n > 1: `<base>-a<n>`), at most 63
    characters. A long base loses characters before its last part (Plan's names end in the hash that makes them
    unique), so attempts of different jobs never share a name."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if attempt == 1:
        return base_job_name
    suffix = f"-a{attempt}"
    if len(base_job_name) + len(suffix) <= JOB_NAME_MAX:
        return base_job_name + suffix
    head, _, tail = base_job_name.rpartition("-")
    if not head:  # one part: shorten it and keep a hash of the whole
        head, tail = base_job_name, _digest(base_job_name, _HASH_CHARS)
    head = head[: JOB_NAME_MAX - len(suffix) - len(tail) - 1].rstrip("-")
    name = f"{head}-{tail}{suffix}"
    assert JOB_NAME_PATTERN.match(name) and len(name) <= JOB_NAME_MAX, name
    return name


def dataset_uris(bucket: str, dataset_name: str) -> tuple[str, str]:
    """Train and test prefixes of a named dataset (S3 layout contract: `datasets/<name>/{train,test}/`)."""
    return f"s3://{bucket}/datasets/{dataset_name}/train/", f"s3://{bucket}/datasets/{dataset_name}/test/"


def dataset_name(train_s3_uri: str) -> str | None:
    """The dataset's name when its train prefix follows the S3 layout (`s3://<bucket>/datasets/<name>/train/`);
    None for data elsewhere (the execution input may name any train/test prefixes)."""
    match = re.fullmatch(r"s3://[^/]+/datasets/([^/]+)/train/?", train_s3_uri or "")
    return match.group(1) if match else None


def checkpoint_uri(bucket: str, run_id: str, job_name: str) -> str:
    """Where SageMaker syncs `/opt/ml/checkpoints` (S3 layout contract: `checkpoints/<run>/<job>/`)."""
    return f"s3://{bucket}/checkpoints/{run_id}/{job_name}/"


def output_uri(bucket: str, model_key: str, approach: str) -> str:
    """SageMaker's output path; the model lands under `<job>/output/model/` (contract: `models/<model>-<approach>/`)."""
    return f"s3://{bucket}/models/{model_slug(model_key)}-{approach}/"


def report_keys(run_id: str) -> tuple[str, str]:
    """S3 keys of a run's JSON and Markdown reports (contract: `reports/<run>/`)."""
    return f"reports/{run_id}/report.json", f"reports/{run_id}/report.md"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key/prefix` -> (`bucket`, `key/prefix`)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key
