"""Why a training job failed: one failure class per remedy, from what CreateTrainingJob and DescribeTrainingJob say.

Pure and table-driven, like the catalog beside it: `RULES` is read top to bottom and the first rule whose pattern
matches the text it looks at decides the class; the matched text (the whole line around the match) is kept as the
evidence, so a ledger row and a report say *why* in SageMaker's own words. Order matters where texts overlap: an
out-of-memory or a dataset error surfaces inside an `ExecuteUserScriptError` too, so those rules come before the
generic user-code one.

The texts are real shapes:
- CreateTrainingJob `ResourceLimitExceeded`: "The account-level service limit 'ml.p3.2xlarge for training job usage' is
  0 Instances, with current utilization of 0 Instances and a request delta of 1 Instances. Please contact AWS support
  to request an increase for this limit." (the quota's name is the quoted part);
- DescribeTrainingJob `FailureReason` for capacity: "CapacityError: Unable to provision requested ML compute
  capacity. Please retry using a different ML instance type." / "InsufficientInstanceCapacity ...";
- script failures: "AlgorithmError: ExecuteUserScriptError: ... ExitCode 1 ErrorMessage ..." from the training
  toolkit, or "AlgorithmError: <ExceptionType>: <message>" from the failure file training_code/train.py writes
  (`DataError: ...` for the dataset errors of training_code/data.py, `OutOfMemoryError: CUDA out of memory ...`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

EVIDENCE_MAX = 512  # enough for SageMaker's one-paragraph reasons; keeps ledger rows and SFN payloads small


class FailureClass(StrEnum):
    """What went wrong, as far as the remedy is concerned (lambdas/remedies.py has one policy per class)."""

    QUOTA_EXHAUSTED = "quota_exhausted"
    CAPACITY_UNAVAILABLE = "capacity_unavailable"
    SPOT_WAIT_EXCEEDED = "spot_wait_exceeded"
    OUT_OF_MEMORY = "out_of_memory"
    RUNTIME_EXCEEDED = "runtime_exceeded"
    USER_CODE_ERROR = "user_code_error"
    DATA_ERROR = "data_error"
    THROTTLED = "throttled"
    UNKNOWN = "unknown"


class Source(StrEnum):
    """Which text a rule looks at."""

    ERROR = "error"  # CreateTrainingJob's error code and message (or the workflow's typed error for it)
    SECONDARY = "secondary"  # DescribeTrainingJob's final SecondaryStatus (and the transitions' statuses)
    REASON = "reason"  # DescribeTrainingJob's FailureReason (and the transitions' messages)


@dataclass(frozen=True)
class Rule:
    """`pattern` (case-insensitive) found in the `source` text means `failure_class`."""

    failure_class: FailureClass
    source: Source
    pattern: str


RULES: tuple[Rule, ...] = (
    # -- CreateTrainingJob refused the job ------------------------------------------------------------------------
    # Codes as botocore reports them, and the workflow's typed errors that carry them (lambdas/errors.py).
    Rule(FailureClass.QUOTA_EXHAUSTED, Source.ERROR, r"ResourceLimitExceeded|ResourceLimitReached|QuotaExhausted"),
    Rule(FailureClass.QUOTA_EXHAUSTED, Source.ERROR, r"account-level service limit"),
    Rule(
        FailureClass.THROTTLED,
        Source.ERROR,
        r"ThrottlingException|Throttling\b|TooManyRequestsException|RequestLimitExceeded|Throttled|Rate exceeded",
    ),
    Rule(FailureClass.CAPACITY_UNAVAILABLE, Source.ERROR, r"InsufficientInstanceCapacity|CapacityError"),
    # Validation errors (an instance type this region lacks, a bad request) and everything else a retry cannot fix.
    Rule(FailureClass.USER_CODE_ERROR, Source.ERROR, r"ValidationException|InvalidHyperparameter|JobNameConflict"),
    # -- The job ran (or waited) and ended without completing -----------------------------------------------------
    Rule(FailureClass.SPOT_WAIT_EXCEEDED, Source.SECONDARY, r"^MaxWaitTimeExceeded$"),
    Rule(FailureClass.RUNTIME_EXCEEDED, Source.SECONDARY, r"^MaxRuntimeExceeded$"),
    # A spot reclaim that SageMaker could not recover from within MaxWait: the same remedy as no capacity at all.
    Rule(FailureClass.SPOT_WAIT_EXCEEDED, Source.SECONDARY, r"^Interrupted$"),
    Rule(
        FailureClass.CAPACITY_UNAVAILABLE,
        Source.REASON,
        r"CapacityError|InsufficientInstanceCapacity|InsufficientCapacity|Unable to provision requested ML compute",
    ),
    Rule(FailureClass.SPOT_WAIT_EXCEEDED, Source.REASON, r"MaxWaitTimeExceeded|max wait time"),
    Rule(FailureClass.RUNTIME_EXCEEDED, Source.REASON, r"MaxRuntimeExceeded|max(imum)? run ?time"),
    Rule(
        FailureClass.OUT_OF_MEMORY,
        Source.REASON,
        r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory|ExitCode:? 137|exit code:? 137"
        r"|Out of memory|OOMKilled|Killed.*signal 9",
    ),
    # training_code/data.py: `DataError` (unusable rows, one label, too-long examples, an empty test channel).
    Rule(FailureClass.DATA_ERROR, Source.REASON, r"\bDataError\b"),
    Rule(
        FailureClass.DATA_ERROR,
        Source.REASON,
        r"not valid JSON|expected an object with text and label|missing or empty '(text|label)'"
        r"|needs at least 2 distinct labels|are longer than max_seq_length|channel .* has no rows",
    ),
    Rule(
        FailureClass.USER_CODE_ERROR,
        Source.REASON,
        # An exception the script raised (SageMaker's own InternalServerError is not the script's).
        r"ExecuteUserScriptError|Traceback \(most recent call last\)|AlgorithmError: \w*(Error|Exception)\b"
        r"|ImportModuleError|InstallRequirementsError",
    ),
)

_COMPILED = tuple((rule, re.compile(rule.pattern, re.IGNORECASE | re.MULTILINE)) for rule in RULES)


@dataclass(frozen=True)
class Classification:
    """A failure's class and the text that decided it (`evidence`)."""

    failure_class: FailureClass
    evidence: str

    def as_dict(self) -> dict[str, str]:
        """JSON for the state machine and the ledger."""
        return {"failure_class": str(self.failure_class), "failure_evidence": self.evidence}


def _evidence(text: str, match: re.Match[str]) -> str:
    """The whole text on one line when it is short enough, else a window of it around the match."""
    whole = " ".join(text.split())
    if len(whole) <= EVIDENCE_MAX:
        return whole
    start = max(0, match.start() - EVIDENCE_MAX // 4)
    return " ".join(text[start:].split())[:EVIDENCE_MAX]


def classify(
    *,
    error: str = "",
    secondary_status: str = "",
    failure_reason: str = "",
    transitions: list[dict[str, Any]] | None = None,
) -> Classification:
    """The class of a failure from CreateTrainingJob's `error` ("Code: message"), or DescribeTrainingJob's final
    `secondary_status`, `failure_reason` and `SecondaryStatusTransitions` (`transitions`: the messages of the
    statuses the job went through, e.g. "Training job interrupted: spot capacity reclaimed")."""
    steps = transitions or []
    texts = {
        Source.ERROR: error or "",
        Source.SECONDARY: "\n".join([secondary_status or "", *(str(t.get("Status", "")) for t in steps[-1:])]),
        Source.REASON: "\n".join(
            [failure_reason or "", *(str(t.get("StatusMessage", "")) for t in steps if t.get("StatusMessage"))]
        ),
    }
    for rule, pattern in _COMPILED:
        text = texts[rule.source]
        if text and (match := pattern.search(text)):
            evidence = _evidence(text, match) if rule.source is not Source.SECONDARY else match.group(0)
            if rule.source is Source.SECONDARY and failure_reason:
                evidence = f"{evidence}: {failure_reason}"[:EVIDENCE_MAX]
            return Classification(rule.failure_class, evidence)
    fallback = error or failure_reason or secondary_status or "no failure reason given"
    return Classification(FailureClass.UNKNOWN, " ".join(fallback.split())[:EVIDENCE_MAX])


def classify_outcome(status: dict[str, Any]) -> Classification:
    """The class of a job's normalised final status (lambdas/training_job.normalise_description)."""
    return classify(
        secondary_status=str(status.get("secondary_status") or ""),
        failure_reason=str(status.get("failure_reason") or ""),
        transitions=status.get("secondary_status_transitions"),
    )


# "The account-level service limit '<name>' is 0 Instances, with current utilization of 0 Instances and a request
# delta of 1 Instances."
_QUOTA_NAME = re.compile(r"service limit '([^']+)'")
_INSTANCE_LIMIT = re.compile(
    r"service limit '(?P<name>[^']+)' is (?P<limit>[\d.]+) Instances?, with current utilization of "
    r"(?P<used>[\d.]+) Instances? and a request delta of (?P<delta>[\d.]+)",
    re.IGNORECASE,
)
# The same sentence for a quota counted in another unit (e.g. 'Longest run time for a training job in seconds' is
# 432000 Seconds ...): a per-job limit, which no other job's end can free.
_QUOTA_UNIT = re.compile(r"service limit '[^']+' is \d+ (\w+)", re.IGNORECASE)


def quota_name(message: str) -> str | None:
    """The Service Quotas name quoted in a ResourceLimitExceeded message, e.g. 'ml.g5.xlarge for spot training job
    usage' (`catalog.parse_training_quota_name` reads a training instance quota's type and pricing mode from it)."""
    found = _QUOTA_NAME.search(message or "")
    return found.group(1) if found else None


def instances_wanted(message: str) -> dict[str, float]:
    """Quota name -> instances in use plus those requested, from each instance-count ResourceLimitExceeded sentence
    in `message` (several may be joined): what the quota must allow for the launch to pass."""
    wanted: dict[str, float] = {}
    for match in _INSTANCE_LIMIT.finditer(message or ""):
        total = float(match["used"]) + float(match["delta"])
        wanted[match["name"]] = max(wanted.get(match["name"], 0), total)
    return wanted


def quota_can_never_fit(message: str) -> bool:
    """True when ResourceLimitExceeded says the job needs more instances than the quota allows at all (a quota of 0
    on a new account), or names a quota that is not an instance count (a runtime or volume limit of the job itself):
    waiting for other jobs to end cannot help, only another setting or a quota increase can."""
    unit = _QUOTA_UNIT.search(message or "")
    if unit and not unit.group(1).lower().startswith("instance"):
        return True
    found = _INSTANCE_LIMIT.search(message or "")
    return found is not None and float(found["delta"]) > float(found["limit"])
