"""What each workflow principal may do, as data: one table that the Workflow construct applies and the IAM
completeness gate (tests/workflow/test_iam_gate.py) proves, call by call, against the synthesized policies.

A row names actions, the resource they act on (a construct of this app, or a pattern under one), the conditions
that narrow them, and, where a wildcard cannot be avoided, the cdk-nag acknowledgement's reason. Grants that CDK
derives from a construct itself are not repeated here: each function's own log group and X-Ray (HardenedFunction),
the state machine's log delivery, X-Ray and task integrations (lambda:InvokeFunction, sns:Publish). The gate
checks those as service-side needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from aws_cdk import aws_iam as iam
from aws_cdk import aws_secretsmanager as secretsmanager

from lambdas.ledger import CALIBRATION_INDEX, MODEL_APPROACH_INDEX
from stacks.constructs.bucket import DATASETS_PREFIX, MODELS_PREFIX, REPORTS_PREFIX
from stacks.nag import acknowledge, nag_resource


class Target(StrEnum):
    """A resource of this app that a grant acts on; Workflow supplies each one's ARN (`GrantTargets`)."""

    BUCKET = "the data bucket"
    REPORTS = "objects under reports/ in the data bucket"
    MODELS = "objects under models/ in the data bucket"
    LEDGER = "the ledger table"
    LEDGER_INDEX = "the ledger's model x approach index"
    CALIBRATION_INDEX = "the ledger's calibration index"
    DATA_KEY = "the data key"
    TOPIC = "the notification topic"
    TOKEN_SECRET = "the Hugging Face token secret"
    STATE_MACHINE = "the fine-tuning state machine"
    SAGEMAKER_ROLE = "the SageMaker execution role"
    TRAINING_JOBS = "this deployment's training jobs (training-job/<job name prefix>*)"
    ANY = "* (actions without resource-level permissions)"


GrantTargets = Mapping[Target, str]


@dataclass(frozen=True)
class Grant:
    """One policy statement: `actions` on `target`, narrowed by `conditions`.

    `wildcard_reason` is required when the target's ARN or an action contains `*`: it becomes the cdk-nag
    IAM5 acknowledgement for exactly that resource or action on this principal's role."""

    actions: tuple[str, ...]
    target: Target
    conditions: Mapping[str, Mapping[str, str | list[str]]] = field(default_factory=dict)
    wildcard_reason: str = ""


_JOB_NAMES_REASON = "Training-job names are generated per run; every job this app creates starts with the prefix."

_DESCRIBE_JOBS = Grant(("sagemaker:DescribeTrainingJob",), Target.TRAINING_JOBS, wildcard_reason=_JOB_NAMES_REASON)
_WRITE_REPORTS = Grant(
    ("s3:PutObject",),
    Target.REPORTS,
    wildcard_reason="Report keys are per run (reports/<run id>/...); the grant is limited to the reports/ prefix.",
)
# The ledger and the bucket are encrypted with the data key: DynamoDB and S3 use it on the caller's behalf, so
# a writer needs a data key and a reader must decrypt.
_DATA_KEY_WRITER = Grant(("kms:Decrypt", "kms:GenerateDataKey"), Target.DATA_KEY)
# The topic is encrypted with the data key too, and SNS refuses a publisher that cannot use it. AWS documents
# the publisher's permission as GenerateDataKey* + Decrypt; it also covers the ledger and bucket writes above.
_TOPIC_KEY_PUBLISHER = Grant(
    ("kms:Decrypt", "kms:GenerateDataKey*"),
    Target.DATA_KEY,
    wildcard_reason="SNS encrypts each message under the topic's key on the publisher's behalf; AWS documents the "
    "publisher permission as kms:GenerateDataKey*. The grant is on the one data key.",
)

# A run's jobs by name as well as by tag: ListTrainingJobs reads no search index (and has no resource-level
# permissions); a listed job's tags come from ListTags.
_LIST_JOBS = Grant(
    ("sagemaker:ListTrainingJobs",),
    Target.ANY,
    wildcard_reason="sagemaker:ListTrainingJobs supports no resource-level permissions; it is read-only and the "
    "caller keeps only names with this deployment's prefix.",
)
_STOP_JOBS = Grant(
    ("sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob", "sagemaker:ListTags"),
    Target.TRAINING_JOBS,
    wildcard_reason=_JOB_NAMES_REASON,
)

GRANTS: Mapping[str, tuple[Grant, ...]] = {
    "Plan": (
        # Plan checks that the dataset's train/ and test/ prefixes have objects; nothing outside datasets/.
        Grant(("s3:ListBucket",), Target.BUCKET, conditions={"StringLike": {"s3:prefix": [f"{DATASETS_PREFIX}*"]}}),
        Grant(
            ("pricing:GetProducts", "servicequotas:ListServiceQuotas"),
            Target.ANY,
            wildcard_reason="pricing:GetProducts and servicequotas:ListServiceQuotas support no resource-level "
            "permissions; both are read-only.",
        ),
        # A gated model needs the token: Plan checks the secret has a value (metadata only, never the value).
        Grant(("secretsmanager:DescribeSecret",), Target.TOKEN_SECRET),
        # Recent jobs like each planned one calibrate its estimate (lambdas/calibration.py): a Query on that index
        # only, never the table; DynamoDB decrypts the items with the data key on Plan's behalf.
        Grant(("dynamodb:Query",), Target.CALIBRATION_INDEX),
        Grant(("kms:Decrypt",), Target.DATA_KEY),
    ),
    "Launch": (
        Grant(
            ("sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob"),
            Target.TRAINING_JOBS,
            wildcard_reason=_JOB_NAMES_REASON,
        ),
        # CreateTrainingJob with Tags is also authorized as AddTags; the condition keeps AddTags from tagging
        # (or re-tagging) any job outside its creation.
        Grant(
            ("sagemaker:AddTags",),
            Target.TRAINING_JOBS,
            conditions={"StringEquals": {"sagemaker:TaggingAction": "CreateTrainingJob"}},
            wildcard_reason=_JOB_NAMES_REASON,
        ),
        Grant(
            ("iam:PassRole",),
            Target.SAGEMAKER_ROLE,
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ),
    ),
    "Status": (_DESCRIBE_JOBS,),
    "Record": (
        _DESCRIBE_JOBS,
        Grant(("dynamodb:PutItem",), Target.LEDGER),
        _DATA_KEY_WRITER,
        # The model artifact's size: jobs upload their model uncompressed, so Record sums the sizes ListObjectsV2
        # reports under the job's models/<model>-<approach>/<job>/output/model/ prefix. It reads no object.
        Grant(("s3:ListBucket",), Target.BUCKET, conditions={"StringLike": {"s3:prefix": [f"{MODELS_PREFIX}*"]}}),
        # The job's GPU utilization from its hosts' metrics in /aws/sagemaker/TrainingJobs.
        Grant(
            ("cloudwatch:GetMetricData",),
            Target.ANY,
            wildcard_reason="cloudwatch:GetMetricData supports no resource-level permissions; it is read-only and "
            "Record queries only its own jobs' hosts.",
        ),
    ),
    "Classify": (_DESCRIBE_JOBS,),
    # Another instance type's price and quota (lambdas/remedies.py); both read-only.
    "Remedy": (
        Grant(
            ("pricing:GetProducts", "servicequotas:ListServiceQuotas"),
            Target.ANY,
            wildcard_reason="pricing:GetProducts and servicequotas:ListServiceQuotas support no resource-level "
            "permissions; both are read-only.",
        ),
    ),
    "Report": (
        Grant(("dynamodb:Query", "dynamodb:PutItem"), Target.LEDGER),
        # Earlier runs of each job's model x approach, for the report's comparison (a Query on the index, no scan).
        Grant(("dynamodb:Query",), Target.LEDGER_INDEX),
        _WRITE_REPORTS,
        _DATA_KEY_WRITER,
        # Each job's per-sample answers for the paired test (lambdas/paired.py): predictions.jsonl under its
        # uncompressed model prefix (or, for a job with a model.tar.gz, the output.tar.gz next to it).
        Grant(
            ("s3:GetObject",),
            Target.MODELS,
            wildcard_reason="Job output keys are per job (models/<model>-<approach>/<job>/output/model/"
            "predictions.jsonl); the grant is limited to the models/ prefix, and Report reads only that small file "
            "(or a GZIP job's output.tar.gz).",
        ),
    ),
    # Runs when an execution fails, times out or is aborted: stops the run's jobs, records and reports them.
    "Cleanup": (
        Grant(
            ("sagemaker:Search",),
            Target.ANY,
            wildcard_reason="sagemaker:Search supports no resource-level permissions; it is read-only and Cleanup "
            "filters by the run_id tag.",
        ),
        _LIST_JOBS,
        _STOP_JOBS,
        Grant(("dynamodb:PutItem", "dynamodb:Query"), Target.LEDGER),
        _WRITE_REPORTS,
        Grant(("sns:Publish",), Target.TOPIC),
        _TOPIC_KEY_PUBLISHER,
    ),
    # On a schedule: stops jobs no running execution watches and records ended jobs the ledger lacks.
    "Reconcile": (
        _LIST_JOBS,
        _STOP_JOBS,
        # Which runs are being watched: the state machine's RUNNING executions.
        Grant(("states:ListExecutions",), Target.STATE_MACHINE),
        Grant(("dynamodb:PutItem", "dynamodb:Query"), Target.LEDGER),
        Grant(("sns:Publish",), Target.TOPIC),
        _TOPIC_KEY_PUBLISHER,
    ),
    # lambda:InvokeFunction and sns:Publish come with the tasks themselves (CDK grants what the definition uses).
    "StateMachine": (_TOPIC_KEY_PUBLISHER,),
}


def secret_policy_arn(secret: secretsmanager.ISecret) -> str:
    """The ARN to grant a secret on: one imported by name has a partial ARN, the full one ends in 6 random chars."""
    return secret.secret_full_arn or f"{secret.secret_arn}-??????"


def _resource_arn(grant: Grant, targets: GrantTargets) -> str:
    """The ARN (or pattern) `grant` acts on."""
    if grant.target is Target.ANY:
        return "*"
    if grant.target is Target.REPORTS:
        return f"{targets[Target.BUCKET]}/{REPORTS_PREFIX}*"
    if grant.target is Target.MODELS:
        return f"{targets[Target.BUCKET]}/{MODELS_PREFIX}*"
    if grant.target is Target.LEDGER_INDEX:
        return f"{targets[Target.LEDGER]}/index/{MODEL_APPROACH_INDEX}"
    if grant.target is Target.CALIBRATION_INDEX:
        return f"{targets[Target.LEDGER]}/index/{CALIBRATION_INDEX}"
    return targets[grant.target]


def apply_grants(principal: str, role: iam.IRole, targets: GrantTargets) -> None:
    """Add `principal`'s rows of the table to `role`, acknowledging each wildcard with the row's reason."""
    if principal not in GRANTS:
        raise ValueError(f"{principal} has no row in the grants table (stacks/constructs/grants.py): add what it calls")
    for grant in GRANTS[principal]:
        resource = _resource_arn(grant, targets)
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=list(grant.actions),
                resources=[resource],
                conditions={operator: dict(values) for operator, values in grant.conditions.items()} or None,
            )
        )
        findings = [f"IAM5[Action::{a}]" for a in grant.actions if "*" in a]
        if "*" in (flat := nag_resource(role, resource)):
            findings.append(f"IAM5[Resource::{flat}]")
        if findings and not grant.wildcard_reason:
            raise ValueError(f"{principal}: {grant.actions} on {grant.target} has a wildcard and no reason")
        for finding in findings:
            acknowledge(role, finding, grant.wildcard_reason)
