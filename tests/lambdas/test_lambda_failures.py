"""The failure classifier: real-shaped CreateTrainingJob errors and DescribeTrainingJob outcomes -> failure class,
with the deciding text kept as evidence."""

from __future__ import annotations

import pytest

from lambdas import failures
from lambdas.failures import FailureClass

# (what the workflow saw, the class, a piece of text the evidence must keep). Texts follow SageMaker's own shapes:
# CreateTrainingJob error messages as botocore reports them (through the workflow's typed errors, "Error: message"),
# DescribeTrainingJob FailureReason / SecondaryStatus, and training_code/train.py's failure file.
CASES = [
    # -- quota_exhausted ------------------------------------------------------------------------------------------
    (
        {
            "error": "QuotaExhausted: finetune-abc-run-mistral-7b-lora-1a2b3c4d: The account-level service limit "
            "'ml.g5.2xlarge for spot training job usage' is 0 Instances, with current utilization of 0 Instances and "
            "a request delta of 1 Instances. Please use AWS Service Quotas to request an increase for this quota."
        },
        FailureClass.QUOTA_EXHAUSTED,
        "ml.g5.2xlarge for spot training job usage",
    ),
    (
        {
            "error": "ResourceLimitReached: job-1: The account-level service limit 'ml.p3.8xlarge for training job "
            "usage' is 2 Instances, with current utilization of 3 Instances and a request delta of 1 Instances. "
            "Please contact AWS support to request an increase for this limit."
        },
        FailureClass.QUOTA_EXHAUSTED,
        "ml.p3.8xlarge for training job usage",
    ),
    # -- throttled ------------------------------------------------------------------------------------------------
    (
        {"error": "Throttled: CreateTrainingJob job-1 throttled: Rate exceeded"},
        FailureClass.THROTTLED,
        "Rate exceeded",
    ),
    (
        {
            "error": "ThrottlingException: An error occurred (ThrottlingException) when calling the CreateTrainingJob "
            "operation (reached max retries: 4): Rate exceeded"
        },
        FailureClass.THROTTLED,
        "ThrottlingException",
    ),
    # -- capacity_unavailable -------------------------------------------------------------------------------------
    (
        {
            "secondary_status": "Failed",
            "failure_reason": "CapacityError: Unable to provision requested ML compute capacity. Please retry using "
            "a different ML instance type.",
        },
        FailureClass.CAPACITY_UNAVAILABLE,
        "Unable to provision requested ML compute capacity",
    ),
    (
        {
            "secondary_status": "Failed",
            "failure_reason": "InsufficientInstanceCapacity: We currently do not have sufficient ml.p4d.24xlarge "
            "capacity in the Availability Zone you requested (us-east-1a).",
        },
        FailureClass.CAPACITY_UNAVAILABLE,
        "ml.p4d.24xlarge",
    ),
    # -- spot_wait_exceeded ---------------------------------------------------------------------------------------
    (
        {"secondary_status": "MaxWaitTimeExceeded", "failure_reason": ""},
        FailureClass.SPOT_WAIT_EXCEEDED,
        "MaxWaitTimeExceeded",
    ),
    (
        {
            "secondary_status": "Interrupted",
            "failure_reason": "",
            "transitions": [
                {"Status": "Training", "StatusMessage": "Training image download completed. Training in progress."},
                {"Status": "Interrupted", "StatusMessage": "The job was interrupted because spot capacity was lost."},
            ],
        },
        FailureClass.SPOT_WAIT_EXCEEDED,
        "Interrupted",
    ),
    # -- out_of_memory --------------------------------------------------------------------------------------------
    (
        {
            "secondary_status": "Failed",
            "failure_reason": "AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "
            '"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total '
            'capacity of 22.06 GiB of which 1.21 GiB is free."',
        },
        FailureClass.OUT_OF_MEMORY,
        "CUDA out of memory",
    ),
    (
        {
            "secondary_status": "Failed",
            "failure_reason": "AlgorithmError: OutOfMemoryError: CUDA out of memory. Tried to allocate 512.00 MiB",
        },
        FailureClass.OUT_OF_MEMORY,
        "OutOfMemoryError",
    ),
    (
        {
            "secondary_status": "Failed",
            "failure_reason": 'AlgorithmError: ExecuteUserScriptError:\nExitCode 137\nErrorMessage ""\nCommand '
            '"/opt/conda/bin/torchrun --nnodes 1 --nproc_per_node 4 train.py"',
        },
        FailureClass.OUT_OF_MEMORY,
        "ExitCode 137",
    ),
    # -- runtime_exceeded -----------------------------------------------------------------------------------------
    (
        {"secondary_status": "MaxRuntimeExceeded", "failure_reason": ""},
        FailureClass.RUNTIME_EXCEEDED,
        "MaxRuntimeExceeded",
    ),
    (
        {
            "secondary_status": "Stopped",
            "failure_reason": "MaxRuntimeExceeded: Training job runtime exceeded MaxRuntimeInSeconds provided",
        },
        FailureClass.RUNTIME_EXCEEDED,
        "MaxRuntimeInSeconds",
    ),
    # -- data_error (training_code/data.py's DataError messages) ---------------------------------------------------
    (
        {
            "secondary_status": "Failed",
            "failure_reason": "AlgorithmError: DataError: the train channel needs at least 2 distinct labels, found "
            "['card_arrival']",
        },
        FailureClass.DATA_ERROR,
        "at least 2 distinct labels",
    ),
    (
        {
            "secondary_status": "Failed",
            "failure_reason": "AlgorithmError: DataError: /opt/ml/input/data/train/train.jsonl:17: not valid JSON "
            "(Expecting ',' delimiter)",
        },
        FailureClass.DATA_ERROR,
        "not valid JSON",
    ),
    (
        {
            "secondary_status": "Failed",
            "failure_reason": "AlgorithmError: 3 of 10003 training examples and 0 of 500 evaluation prompts (with 8 "
            "tokens of answer room) are longer than max_seq_length=32 tokens (longest 41)",
        },
        FailureClass.DATA_ERROR,
        "max_seq_length",
    ),
    # -- user_code_error ------------------------------------------------------------------------------------------
    (
        {
            "secondary_status": "Failed",
            "failure_reason": 'AlgorithmError: ExecuteUserScriptError:\nExitCode 1\nErrorMessage "Traceback (most '
            'recent call last):\n  File "/opt/ml/code/train.py", line 12, in <module>\nModuleNotFoundError: No '
            "module named 'trl2'\"",
        },
        FailureClass.USER_CODE_ERROR,
        "ModuleNotFoundError",
    ),
    (
        {
            "secondary_status": "Failed",
            "failure_reason": "AlgorithmError: ConfigError: --approach dora is not one of full, lora, qlora",
        },
        FailureClass.USER_CODE_ERROR,
        "ConfigError",
    ),
    (
        {
            "error": "LaunchRejected: CreateTrainingJob job-1 refused (ValidationException): Instance type "
            "ml.p5.48xlarge is not supported in this region."
        },
        FailureClass.USER_CODE_ERROR,
        "ValidationException",
    ),
    # -- unknown --------------------------------------------------------------------------------------------------
    (
        {"secondary_status": "Failed", "failure_reason": "InternalServerError: We encountered an internal error."},
        FailureClass.UNKNOWN,
        "internal error",
    ),
    ({"secondary_status": "Stopped", "failure_reason": ""}, FailureClass.UNKNOWN, "Stopped"),
    ({"error": "States.Timeout"}, FailureClass.UNKNOWN, "States.Timeout"),
]


@pytest.mark.parametrize(
    ("seen", "expected", "evidence"), CASES, ids=lambda v: str(v)[:40] if isinstance(v, str) else None
)
def test_failures_are_classified_with_their_evidence(seen, expected, evidence) -> None:
    found = failures.classify(**seen)

    assert found.failure_class is expected
    assert evidence in found.evidence
    assert len(found.evidence) <= failures.EVIDENCE_MAX


def test_every_class_has_at_least_two_examples() -> None:
    counts = {kind: sum(1 for _, expected, _ in CASES if expected is kind) for kind in FailureClass}

    assert all(count >= 2 for count in counts.values()), counts


def test_classify_outcome_reads_a_normalised_status() -> None:
    status = {"status": "Stopped", "secondary_status": "MaxWaitTimeExceeded", "failure_reason": None}

    assert failures.classify_outcome(status).failure_class is FailureClass.SPOT_WAIT_EXCEEDED


@pytest.mark.parametrize(
    ("message", "never"),
    [
        ("The account-level service limit 'x' is 0 Instances, with current utilization of 0 Instances and a request "
         "delta of 1 Instances.", True),
        ("The account-level service limit 'x' is 2 Instances, with current utilization of 2 Instances and a request "
         "delta of 1 Instances.", False),
        ("The account-level service limit 'x' is 0", False),  # no numbers: maybe in use, so waiting may help
    ],
)  # fmt: skip
def test_a_quota_the_job_exceeds_on_its_own_is_never_waited_for(message, never) -> None:
    assert failures.quota_can_never_fit(message) is never


def test_the_quota_name_is_read_from_the_message() -> None:
    message = "The account-level service limit 'ml.g5.xlarge for spot training job usage' is 0 Instances"

    assert failures.quota_name(message) == "ml.g5.xlarge for spot training job usage"
    assert failures.quota_name("Rate exceeded") is None
