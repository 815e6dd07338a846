"""Environment variables parsed into typed, frozen settings (one class per function that needs any).

Each handler parses its settings once per container (the first invocation, i.e. the cold start) and a missing or
malformed variable raises `ConfigurationError` naming it, instead of a KeyError deep inside an AWS call.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from lambdas.errors import ConfigurationError
from lambdas.remedies import RemedyPolicy, parse_policy

DEFAULT_PROJECT_TAG = "finetune"


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigurationError(f"environment variable {name} is missing or empty")
    return value


def _region(env: Mapping[str, str]) -> str:
    # Lambda always sets AWS_REGION; AWS_DEFAULT_REGION keeps local runs and tests working.
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigurationError("environment variable AWS_REGION is missing or empty")
    return region


def _positive_number(env: Mapping[str, str], name: str) -> float:
    raw = _require(env, name)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"environment variable {name} must be a number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ConfigurationError(f"environment variable {name} must be a positive finite number, got {raw!r}")
    return value


def _positive_int(env: Mapping[str, str], name: str) -> int:
    raw = _require(env, name)
    if not (raw.isdigit() and int(raw) > 0):
        raise ConfigurationError(f"environment variable {name} must be a positive integer, got {raw!r}")
    return int(raw)


def _s3_uri(env: Mapping[str, str], name: str) -> str:
    value = _require(env, name)
    if not value.startswith("s3://"):
        raise ConfigurationError(f"environment variable {name} must be an s3:// URI, got {value!r}")
    return value


def _job_name_prefix(env: Mapping[str, str]) -> str:
    # Job names allow [a-zA-Z0-9-] and 63 chars; a long prefix would squeeze out the run and model parts.
    value = _require(env, "JOB_NAME_PREFIX")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]{0,23}", value):
        raise ConfigurationError(
            f"environment variable JOB_NAME_PREFIX must be 1-24 characters of [A-Za-z0-9-] "
            f"starting with a letter or digit, got {value!r}"
        )
    return value


@dataclass(frozen=True)
class PlanSettings:
    """What Plan needs: where datasets live, the default budget, the job-name prefix, the region for prices, the token
    secret (to refuse gated models without a token) and the execution's limits."""

    bucket_name: str
    default_budget_usd: float
    job_name_prefix: str
    region: str
    hf_token_secret_arn: str
    # The state machine's own TimeoutSeconds and its Status polling interval: the run must fit the first, and the polls
    # of all its jobs the execution's event history.
    execution_timeout_seconds: int
    status_poll_seconds: int
    # Optional: the Map's MaxConcurrency (None: every job at once). Quota and execution-limit checks use it.
    max_concurrency: int | None = None
    # Optional: the deployment's runtime bound; a job's default is the catalog's per-model/approach bound capped by it.
    default_max_runtime_hours: float | None = None
    # Optional: the ledger, whose recorded jobs calibrate the estimates ("" : the time model's table alone).
    table_name: str = ""
    # Optional: the deployment's remedy policy (REMEDY_DEFAULTS, as Remedy reads it): its max_attempts bounds the
    # attempts, and so the history events, of each job.
    remedy_defaults: RemedyPolicy = field(default_factory=RemedyPolicy)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PlanSettings:
        """Parse from `env` (default: `os.environ`)."""
        env = os.environ if env is None else env
        raw_concurrency = env.get("MAX_CONCURRENCY", "").strip()
        if raw_concurrency and not (raw_concurrency.isdigit() and int(raw_concurrency) > 0):
            raise ConfigurationError(
                f"environment variable MAX_CONCURRENCY must be a positive integer, got {raw_concurrency!r}"
            )
        return cls(
            bucket_name=_require(env, "BUCKET_NAME"),
            default_budget_usd=_positive_number(env, "DEFAULT_BUDGET_USD"),
            job_name_prefix=_job_name_prefix(env),
            region=_region(env),
            hf_token_secret_arn=_require(env, "HF_TOKEN_SECRET_ARN"),
            execution_timeout_seconds=_positive_int(env, "EXECUTION_TIMEOUT_SECONDS"),
            status_poll_seconds=_positive_int(env, "STATUS_POLL_SECONDS"),
            max_concurrency=int(raw_concurrency) if raw_concurrency else None,
            default_max_runtime_hours=(
                _positive_number(env, "DEFAULT_MAX_RUNTIME_HOURS") if env.get("DEFAULT_MAX_RUNTIME_HOURS") else None
            ),
            table_name=env.get("TABLE_NAME", "").strip(),
            remedy_defaults=_remedy_defaults(env),
        )


@dataclass(frozen=True)
class LaunchSettings:
    """What Launch needs to build a CreateTrainingJob request."""

    sagemaker_role_arn: str
    hf_token_secret_arn: str
    training_image_uri: str
    code_s3_uri: str
    region: str
    project_tag: str
    # The data key: SageMaker encrypts model artifacts with it (without it, with the account's aws/s3 key).
    data_key_arn: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LaunchSettings:
        """Parse from `env` (default: `os.environ`)."""
        env = os.environ if env is None else env
        return cls(
            sagemaker_role_arn=_require(env, "SAGEMAKER_ROLE_ARN"),
            hf_token_secret_arn=_require(env, "HF_TOKEN_SECRET_ARN"),
            training_image_uri=_require(env, "TRAINING_IMAGE_URI"),
            code_s3_uri=_s3_uri(env, "CODE_S3_URI"),
            region=_region(env),
            project_tag=env.get("PROJECT_TAG", "").strip() or DEFAULT_PROJECT_TAG,
            data_key_arn=_require(env, "DATA_KEY_ARN"),
        )


@dataclass(frozen=True)
class RecordSettings:
    """What Record needs: the ledger table, and the job-name prefix that names the deployment in its metrics."""

    table_name: str
    job_name_prefix: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RecordSettings:
        """Parse from `env` (default: `os.environ`)."""
        env = os.environ if env is None else env
        return cls(table_name=_require(env, "TABLE_NAME"), job_name_prefix=_job_name_prefix(env))


@dataclass(frozen=True)
class ReportSettings:
    """What Report needs: the ledger to read and the bucket to write reports to."""

    table_name: str
    bucket_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ReportSettings:
        """Parse from `env` (default: `os.environ`)."""
        env = os.environ if env is None else env
        return cls(table_name=_require(env, "TABLE_NAME"), bucket_name=_require(env, "BUCKET_NAME"))


@dataclass(frozen=True)
class CleanupSettings:
    """What Cleanup needs: the ledger, the bucket for the partial report, the topic, whose jobs are this deployment's,
    and how long to wait for stopped jobs to reach Stopped (their billable time is final only then)."""

    table_name: str
    bucket_name: str
    topic_arn: str
    job_name_prefix: str
    stop_wait_seconds: int
    # When (seconds after it started) Cleanup looks for the run's jobs a second time: a Launch that was mid-call when
    # the execution ended creates its job after the first look (lambdas/cleanup.py). Unset: no wait before it.
    resweep_seconds: int = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CleanupSettings:
        """Parse from `env` (default: `os.environ`)."""
        env = os.environ if env is None else env
        raw_wait = _require(env, "CLEANUP_STOP_WAIT_SECONDS")
        if not raw_wait.isdigit():
            raise ConfigurationError(
                f"environment variable CLEANUP_STOP_WAIT_SECONDS must be an integer >= 0, got {raw_wait!r}"
            )
        return cls(
            table_name=_require(env, "TABLE_NAME"),
            bucket_name=_require(env, "BUCKET_NAME"),
            topic_arn=_require(env, "TOPIC_ARN"),
            job_name_prefix=_job_name_prefix(env),
            stop_wait_seconds=int(raw_wait),
            resweep_seconds=int(env.get("CLEANUP_RESWEEP_SECONDS", "0") or 0),
        )


@dataclass(frozen=True)
class RemedySettings:
    """What Remedy needs: the region (prices, quotas) and the deployment's default remedy policy (stacks/config.py
    `remedies`, as JSON in REMEDY_DEFAULTS; an execution's `remedies` input overrides it field by field)."""

    region: str
    defaults: RemedyPolicy

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RemedySettings:
        """Parse from `env` (default: `os.environ`)."""
        env = os.environ if env is None else env
        return cls(region=_region(env), defaults=_remedy_defaults(env))


def _remedy_defaults(env: Mapping[str, str]) -> RemedyPolicy:
    """The deployment's remedy policy from REMEDY_DEFAULTS (JSON; unset: the policy's defaults)."""
    raw = env.get("REMEDY_DEFAULTS", "").strip() or "{}"
    try:
        return parse_policy(json.loads(raw))
    except (ValueError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"environment variable REMEDY_DEFAULTS is not a remedy policy: {exc}") from None


# Failure injection (`inject_failure` in the execution input) is for the offline demo only: the offline runner sets
# this variable; no deployed function has it, so Plan refuses the field in AWS.
ALLOW_FAILURE_INJECTION = "FINETUNE_ALLOW_FAILURE_INJECTION"


def failure_injection_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process is the offline runner (the only place injected failures are honoured)."""
    env = os.environ if env is None else env
    return env.get(ALLOW_FAILURE_INJECTION, "").strip().lower() == "true"


# Cached per container: the first invocation parses, later ones reuse. Tests call `clear_cache()`.
plan_settings = functools.cache(PlanSettings.from_env)
launch_settings = functools.cache(LaunchSettings.from_env)
record_settings = functools.cache(RecordSettings.from_env)
report_settings = functools.cache(ReportSettings.from_env)
cleanup_settings = functools.cache(CleanupSettings.from_env)
remedy_settings = functools.cache(RemedySettings.from_env)


def clear_cache() -> None:
    """Forget parsed settings (tests, or an in-process runner that changes the environment)."""
    for cached in (plan_settings, launch_settings, record_settings, report_settings, cleanup_settings, remedy_settings):
        cached.cache_clear()
