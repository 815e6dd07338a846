"""Typed, validated settings read from the CDK context key `finetune` (cdk.json or `-c finetune=...`).

Every setting has a default, so `cdk synth` works on a fresh clone. Any invalid value raises `ConfigError`
at synth with the key and the allowed values, before a single resource is defined.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from lambdas import catalog
from lambdas.remedies import RemedyPolicy, parse_policy

CONTEXT_KEY = "finetune"

# Usages whose quotas SageMaker names "<instance type> for <usage> usage".
QUOTA_USAGES = tuple(catalog.TRAINING_QUOTA_USAGE.values())
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
# Managed spot: Plan sets MaxWaitTimeInSeconds to this factor x MaxRuntimeInSeconds.
SPOT_WAIT_FACTOR = catalog.SPOT_MAX_WAIT_FACTOR
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")
# Regions outside the commercial `aws` partition (China, GovCloud, ISO). See `_require_commercial_region`.
_OTHER_PARTITION_REGION = re.compile(r"^(cn-|[a-z]{2}-gov-|[a-z]{2}-iso[a-z]*-)")
# Job-name prefix: the readable part (from resource_prefix) + "-" + a hash of the stack, at most 22 characters
# so a 63-character job name keeps >= 25 characters for the run id and the model (lambdas/naming.py).
JOB_PREFIX_READABLE_MAX = 15
JOB_PREFIX_HASH_CHARS = 6
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_VERSION = re.compile(r"^\d+(\.\d+){1,2}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class ConfigError(ValueError):
    """An invalid setting; the message names the context key and what is allowed."""


@dataclass(frozen=True)
class QuotaRequest:
    """Desired SageMaker quota for one instance type and usage."""

    instance_type: str
    usage: str
    desired_value: int


@dataclass(frozen=True)
class DlcVersion:
    """Hugging Face PyTorch training DLC to run jobs in (resolved to an image URI with sagemaker-core)."""

    transformers_version: str = "5.3.0"
    pytorch_version: str = "2.9.0"
    python_version: str = "py312"


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff with full jitter for every Lambda task of the state machine."""

    interval_seconds: int = 2
    max_attempts: int = 6
    backoff_rate: float = 2.0
    max_delay_seconds: int = 60


# Launch's `ResourceLimitReached` (CreateTrainingJob's ResourceLimitExceeded: the account's instance quota is in use,
# e.g. by another run). Only waiting frees it, so: long intervals and no jitter (a jittered retry may come at once).
# 300 s x 1.5^n capped at 1 h, 8 retries: 300, 450, 675, 1013, 1519, 2278, 3417, 3600 s = about 3.7 h of waiting
# before the job is recorded Failed. Plan's execution-limit check must leave room for it.
DEFAULT_QUOTA_RETRY = RetryPolicy(interval_seconds=300, max_attempts=8, backoff_rate=1.5, max_delay_seconds=3600)
# Status's errors (DescribeTrainingJob failing after botocore's retries, Lambda faults): the job bills on whatever the
# API says, so the workflow keeps asking rather than stop watching it. 60 s x 2^n capped at 30 min, 40 retries, no
# jitter: 60 + 120 + ... + 960 + 35 x 1800 s = about 18 h, longer than AWS's longest regional API incidents; then the
# execution fails (JobUnwatched) and Cleanup stops and records the run's jobs.
DEFAULT_WATCH_RETRY = RetryPolicy(interval_seconds=60, max_attempts=40, backoff_rate=2.0, max_delay_seconds=1800)


@dataclass(frozen=True)
class Config:
    """All deploy-time settings of the app."""

    region: str = "us-east-1"
    # Prefixes every resource and training-job name; IAM scopes CreateTrainingJob to it.
    resource_prefix: str = "finetune"
    dlc: DlcVersion = field(default_factory=DlcVersion)
    # Empty: the stack creates an empty secret and the user puts the token in it. Set: import that secret by name.
    hf_token_secret_name: str = ""
    # Checkpoints only matter while a job may resume; a month covers any max-wait window.
    checkpoint_expiry_days: int = 30
    noncurrent_version_expiry_days: int = 30
    # SageMaker overwrites the same checkpoint keys at every save; a resume needs only the current version, and each
    # overwritten one (~81 GB per 7B full-fine-tuning save) would otherwise be kept noncurrent_version_expiry_days.
    checkpoint_noncurrent_version_expiry_days: int = 1
    access_log_expiry_days: int = 365
    log_retention_days: int = 365
    retain_data: bool = True
    table_deletion_protection: bool = True
    # The types the planner chooses for the study (lambdas/catalog.DEFAULTS): spot quotas of the g6/g6e families
    # start at 0 in new accounts, so a deployment asks for them; g5 stays as the remedies' first fallback.
    quota_requests: tuple[QuotaRequest, ...] = (
        QuotaRequest("ml.g6.xlarge", "spot training job", 1),
        QuotaRequest("ml.g6.2xlarge", "spot training job", 1),
        QuotaRequest("ml.g6e.xlarge", "spot training job", 1),
        QuotaRequest("ml.g6e.2xlarge", "spot training job", 1),
        QuotaRequest("ml.g5.xlarge", "spot training job", 1),
        QuotaRequest("ml.g5.2xlarge", "spot training job", 1),
    )
    # Guards an accidental start: the study matrix on on-demand prices is far above this.
    default_budget_usd: float = 50.0
    max_concurrency: int = 3
    status_poll_seconds: int = 300
    lambda_retry: RetryPolicy = field(default_factory=RetryPolicy)
    quota_retry: RetryPolicy = DEFAULT_QUOTA_RETRY
    watch_retry: RetryPolicy = DEFAULT_WATCH_RETRY
    # The reconciler (lambdas/reconcile.py): how often it compares SageMaker's jobs with the ledger and the running
    # executions, and how far back it looks for ended jobs the ledger lacks.
    reconcile_interval_minutes: int = 60
    reconcile_lookback_days: int = 14
    # How long Cleanup waits for the jobs it stopped to reach Stopped (then it records SageMaker's billable time;
    # past it, the cost so far is estimated from the elapsed training time). SageMaker gives a stopped script 120 s.
    cleanup_stop_wait_seconds: int = 300
    max_runtime_hours: float = 8.0
    # The execution must outlive the longest job: max runtime + max spot wait + reporting.
    execution_timeout_hours: int = 48
    notification_emails: tuple[str, ...] = ()
    # How failed jobs are retried (lambdas/remedies.py); an execution's `remedies` input overrides it field by field.
    remedies: RemedyPolicy = field(default_factory=RemedyPolicy)

    @property
    def stack_name(self) -> str:
        """Name of the fine-tuning stack: the resource prefix in CamelCase (`finetune` -> `Finetune`)."""
        return "".join(part.capitalize() for part in self.resource_prefix.split("-"))

    @property
    def job_name_prefix(self) -> str:
        """Prefix of every training job this deployment launches, e.g. `finetune-3f9c2a`.

        `training-job/finetune*` would also match other projects' jobs (and another deployment's), so IAM patterns,
        Cleanup's search and the job names use the resource prefix plus a stable hash of this deployment's stack
        name and region, computed at synth (so redeploys keep it, and running jobs stay in scope).
        """
        digest = hashlib.sha256(f"{self.stack_name}/{self.region}".encode()).hexdigest()[:JOB_PREFIX_HASH_CHARS]
        readable = self.resource_prefix[:JOB_PREFIX_READABLE_MAX].rstrip("-")
        return f"{readable}-{digest}"


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"invalid context value {CONTEXT_KEY}.{key}={value!r}: allowed {allowed}")


def _require_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _fail(key, value, f"an integer >= {minimum}")
    return value


def _require_number(key: str, value: Any, minimum_exclusive: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= minimum_exclusive:
        raise _fail(key, value, f"a number > {minimum_exclusive}")
    return float(value)


def _require_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, value, "true or false")
    return value


def _require_match(key: str, value: Any, pattern: re.Pattern[str], allowed: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise _fail(key, value, allowed)
    return value


def _require_instance_type(key: str, value: Any) -> str:
    if isinstance(value, str) and (unsupported := catalog.unsupported_reason(value)):
        raise _fail(key, value, f"an instance type the training image runs on, not {unsupported}")
    if value not in catalog.trainable_instances():
        raise _fail(key, value, "one of " + ", ".join(sorted(catalog.trainable_instances())))
    return value


def _parse_quota_requests(value: Any) -> tuple[QuotaRequest, ...]:
    key = "quota_requests"
    if not isinstance(value, list):
        raise _fail(key, value, "a list of {instance_type, usage, desired_value}")
    parsed = []
    for index, item in enumerate(value):
        item_key = f"{key}[{index}]"
        if not isinstance(item, Mapping) or set(item) != {"instance_type", "usage", "desired_value"}:
            raise _fail(item_key, item, "an object with exactly instance_type, usage, desired_value")
        usage = item["usage"]
        if usage not in QUOTA_USAGES:
            raise _fail(f"{item_key}.usage", usage, "one of " + ", ".join(QUOTA_USAGES))
        parsed.append(
            QuotaRequest(
                instance_type=_require_instance_type(f"{item_key}.instance_type", item["instance_type"]),
                usage=usage,
                desired_value=_require_int(f"{item_key}.desired_value", item["desired_value"], 0),
            )
        )
    return tuple(parsed)


def _parse_nested(key: str, cls: type, value: Any, default: Any = None) -> Any:
    if not isinstance(value, Mapping):
        raise _fail(key, value, "an object with keys " + ", ".join(f.name for f in fields(cls)))
    unknown = set(value) - {f.name for f in fields(cls)}
    if unknown:
        raise _fail(
            f"{key}.{sorted(unknown)[0]}", value[sorted(unknown)[0]], "keys " + ", ".join(f.name for f in fields(cls))
        )
    return cls(**{**(default if default is not None else cls()).__dict__, **value})


def _parse_retry(key: str, value: Any, default: RetryPolicy) -> RetryPolicy:
    retry = _parse_nested(key, RetryPolicy, value, default) if isinstance(value, Mapping) else value
    if not isinstance(retry, RetryPolicy):
        raise _fail(key, value, "an object with keys " + ", ".join(f.name for f in fields(RetryPolicy)))
    _require_int(f"{key}.interval_seconds", retry.interval_seconds, 1)
    _require_int(f"{key}.max_attempts", retry.max_attempts, 0)
    _require_number(f"{key}.backoff_rate", retry.backoff_rate, 0.99)
    _require_int(f"{key}.max_delay_seconds", retry.max_delay_seconds, 1)
    return retry


def _parse_remedies(value: Any) -> RemedyPolicy:
    if isinstance(value, RemedyPolicy):
        return value
    if not isinstance(value, Mapping):
        raise _fail("remedies", value, "an object with keys " + ", ".join(f.name for f in fields(RemedyPolicy)))
    try:
        return parse_policy(value)
    except ValueError as exc:
        raise ConfigError(f"invalid context value {CONTEXT_KEY}.{exc}") from None


def _require_commercial_region(key: str, region: str) -> str:
    """Refuse regions outside the `aws` partition, with the reason.

    The Price List API endpoints and the Hugging Face DLC registries this app uses are those of the commercial
    partition; China and GovCloud have others. Refusing at synth beats a deploy that fails on an image URI.
    """
    if _OTHER_PARTITION_REGION.match(region):
        raise _fail(
            key,
            region,
            "a region of the commercial aws partition (aws-cn, aws-us-gov and ISO regions are not supported: the "
            "Price List API and the DLC images this app uses are commercial-only)",
        )
    return region


def load_config(context: Mapping[str, Any] | None) -> Config:
    """Build a validated `Config` from the `finetune` context object (missing keys take their defaults)."""
    raw = dict(context or {})
    known = {f.name for f in fields(Config)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(unknown[0], raw[unknown[0]], "keys " + ", ".join(sorted(known)))
    merged = {**Config().__dict__, **raw}

    dlc = _parse_nested("dlc", DlcVersion, merged["dlc"]) if isinstance(merged["dlc"], Mapping) else merged["dlc"]
    if not isinstance(dlc, DlcVersion):
        raise _fail("dlc", merged["dlc"], "an object")
    _require_match("dlc.transformers_version", dlc.transformers_version, _VERSION, "a version like 5.3.0")
    _require_match("dlc.pytorch_version", dlc.pytorch_version, _VERSION, "a version like 2.9.0")
    _require_match("dlc.python_version", dlc.python_version, re.compile(r"^py3\d{1,2}$"), "like py312")

    retry = _parse_retry("lambda_retry", merged["lambda_retry"], RetryPolicy())
    quota_retry = _parse_retry("quota_retry", merged["quota_retry"], DEFAULT_QUOTA_RETRY)
    watch_retry = _parse_retry("watch_retry", merged["watch_retry"], DEFAULT_WATCH_RETRY)

    quota_requests = merged["quota_requests"]
    if not isinstance(quota_requests, tuple):
        quota_requests = _parse_quota_requests(quota_requests)

    emails = merged["notification_emails"]
    if isinstance(emails, str) or not isinstance(emails, (list, tuple)):
        raise _fail("notification_emails", emails, "a list of e-mail addresses")
    for index, email in enumerate(emails):
        _require_match(f"notification_emails[{index}]", email, _EMAIL, "an e-mail address")

    retention = merged["log_retention_days"]
    if retention not in LOG_RETENTION_DAYS:
        raise _fail("log_retention_days", retention, "one of " + ", ".join(map(str, LOG_RETENTION_DAYS)))

    secret_name = merged["hf_token_secret_name"]
    if not isinstance(secret_name, str) or (secret_name and not re.match(r"^[A-Za-z0-9/_+=.@-]{1,512}$", secret_name)):
        raise _fail("hf_token_secret_name", secret_name, "empty or a Secrets Manager secret name")

    max_runtime_hours = _require_number("max_runtime_hours", merged["max_runtime_hours"], 0)
    execution_timeout_hours = _require_int("execution_timeout_hours", merged["execution_timeout_hours"], 1)
    # A spot job may wait for capacity as long as it may run (MaxWait = 2 x MaxRuntime), then be recorded.
    if execution_timeout_hours <= SPOT_WAIT_FACTOR * max_runtime_hours:
        raise _fail(
            "execution_timeout_hours",
            execution_timeout_hours,
            f"more than {SPOT_WAIT_FACTOR} x max_runtime_hours ({SPOT_WAIT_FACTOR * max_runtime_hours:g})",
        )

    remedies = _parse_remedies(merged["remedies"])

    region = _require_match("region", merged["region"], _REGION, "an AWS region name like us-east-1")
    return Config(
        region=_require_commercial_region("region", region),
        resource_prefix=_require_match(
            "resource_prefix", merged["resource_prefix"], _PREFIX, "1-20 chars [a-z0-9-], starting with a letter"
        ),
        dlc=dlc,
        hf_token_secret_name=secret_name,
        checkpoint_expiry_days=_require_int("checkpoint_expiry_days", merged["checkpoint_expiry_days"], 1),
        noncurrent_version_expiry_days=_require_int(
            "noncurrent_version_expiry_days", merged["noncurrent_version_expiry_days"], 1
        ),
        checkpoint_noncurrent_version_expiry_days=_require_int(
            "checkpoint_noncurrent_version_expiry_days", merged["checkpoint_noncurrent_version_expiry_days"], 1
        ),
        access_log_expiry_days=_require_int("access_log_expiry_days", merged["access_log_expiry_days"], 1),
        log_retention_days=retention,
        retain_data=_require_bool("retain_data", merged["retain_data"]),
        table_deletion_protection=_require_bool("table_deletion_protection", merged["table_deletion_protection"]),
        quota_requests=quota_requests,
        default_budget_usd=_require_number("default_budget_usd", merged["default_budget_usd"], 0),
        max_concurrency=_require_int("max_concurrency", merged["max_concurrency"], 1),
        status_poll_seconds=_require_int("status_poll_seconds", merged["status_poll_seconds"], 1),
        lambda_retry=retry,
        quota_retry=quota_retry,
        watch_retry=watch_retry,
        reconcile_interval_minutes=_require_int("reconcile_interval_minutes", merged["reconcile_interval_minutes"], 1),
        reconcile_lookback_days=_require_int("reconcile_lookback_days", merged["reconcile_lookback_days"], 1),
        cleanup_stop_wait_seconds=_require_int("cleanup_stop_wait_seconds", merged["cleanup_stop_wait_seconds"], 0),
        max_runtime_hours=max_runtime_hours,
        execution_timeout_hours=execution_timeout_hours,
        notification_emails=tuple(emails),
        remedies=remedies,
    )
