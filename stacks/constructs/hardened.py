"""Hardened building blocks: every Lambda and state machine of the app is one of these, so security and
observability settings live in one place and every use inherits them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.config import Config, RetryPolicy
from stacks.nag import acknowledge
from stacks.packaging import stage_lambda_package

# The newest Lambda Python runtime. Powertools and the AWS SDK come in the function's own asset at the pinned versions
# (stacks/packaging.py), not from a public layer or the runtime's bundled SDK: docs/runtime.md.
RUNTIME = lambda_.Runtime.PYTHON_3_14

# Lambda service faults that are always safe to retry, our own typed throttling error, and the two ways a function
# timeout surfaces in Step Functions (`Sandbox.Timedout`: the function hit its timeout; ClientExecutionTimeout: the
# invoke itself timed out). Retrying a timeout is safe because every handler is idempotent (deterministic job
# names, rows that are pure functions of their inputs, reports that overwrite).
RETRYABLE_ERRORS = (
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
    "Sandbox.Timedout",
    "Throttled",
)

# botocore's standard retry mode sleeps up to min(20 s, 2^(attempt-1)) s (full jitter) between attempts.
_BOTOCORE_MAX_BACKOFF_SECONDS = 20


def botocore_call_budget_seconds(max_attempts: int, connect_timeout: float, read_timeout: float) -> float:
    """The longest one AWS call of a Lambda can take before botocore gives up: every attempt hangs for the connect
    and read timeouts, and every retry sleeps its longest backoff. With lambdas/aws.py's defaults (4 attempts,
    5 s connect, 20 s read): 4 x 25 s + (1 + 2 + 4) s = 107 s."""
    backoff = sum(min(_BOTOCORE_MAX_BACKOFF_SECONDS, 2 ** (attempt - 1)) for attempt in range(1, max_attempts))
    return max_attempts * (connect_timeout + read_timeout) + backoff


def default_call_budget_seconds() -> float:
    """`botocore_call_budget_seconds` for the client configuration every Lambda of this app uses (lambdas/aws.py)."""
    from lambdas import aws

    return botocore_call_budget_seconds(aws.DEFAULT_MAX_ATTEMPTS, aws.DEFAULT_CONNECT_TIMEOUT, aws.DEFAULT_READ_TIMEOUT)


# A function's own work on top of its slowest AWS call (cold start with Powertools, JSON, the other fast calls).
FUNCTION_MARGIN_SECONDS = 50


LAMBDA_MAX_TIMEOUT_MINUTES = 15


def lambda_timeout(calls_at_worst: int = 1) -> Duration:
    """A Lambda timeout above the worst-case budget of `calls_at_worst` sequential AWS calls (each may exhaust all
    but its last attempt and still succeed) plus the function's own work, rounded up to a minute, at most Lambda's
    15 minutes. A timeout below one call's budget (Status once had 120 s against 190 s) turns a slow-but-recovering
    API into `Sandbox.Timedout`; past 15 minutes the state machine retries the timeout (idempotent handlers)."""
    seconds = calls_at_worst * default_call_budget_seconds() + FUNCTION_MARGIN_SECONDS
    return Duration.minutes(min(LAMBDA_MAX_TIMEOUT_MINUTES, -(-int(seconds) // 60)))


DEFAULT_TIMEOUT = lambda_timeout(1)


def lambda_code() -> lambda_.Code:
    """The single Lambda asset: `lambdas/` staged as an importable package with its pinned runtime libraries."""
    return lambda_.Code.from_asset(str(stage_lambda_package()))


class HardenedFunction(lambda_.Function):
    """A Python Lambda with its own least-privilege role, its own retained log group, X-Ray tracing,
    the pinned Powertools and SDK in its asset, the current runtime and a bounded timeout. Grant it only what its
    handler calls."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        handler: str,
        description: str,
        log_key: kms.IKey,
        environment: Mapping[str, str] | None = None,
        timeout: Duration = DEFAULT_TIMEOUT,
        memory_size: int = 512,
    ) -> None:
        log_group = retained_log_group(scope, f"{construct_id}Logs", config, log_key)
        role = iam.Role(
            scope,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of {construct_id} only",
        )
        # Only its own log group: no AWSLambdaBasicExecutionRole (that allows every log group in the account).
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        super().__init__(
            scope,
            construct_id,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            code=lambda_code(),
            handler=handler,
            description=description,
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            timeout=timeout,
            memory_size=memory_size,
            environment={
                "POWERTOOLS_SERVICE_NAME": config.resource_prefix,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                **(environment or {}),
            },
        )
        acknowledge(
            role,
            "IAM5[Resource::*]",
            "X-Ray tracing (xray:PutTraceSegments, xray:PutTelemetryRecords) supports no resource-level permissions.",
        )


class HardenedStateMachine(sfn.StateMachine):
    """A Standard state machine that always logs ALL events (with execution data) and traces with X-Ray."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        definition_body: sfn.DefinitionBody,
        timeout: Duration,
        log_key: kms.IKey,
    ) -> None:
        log_group = retained_log_group(scope, f"{construct_id}Logs", config, log_key)
        super().__init__(
            scope,
            construct_id,
            definition_body=definition_body,
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
        )
        acknowledge(
            self.role,
            "IAM5[Resource::*]",
            "X-Ray tracing and CloudWatch Logs delivery (logs:CreateLogDelivery & co.) support no resource-level "
            "permissions; Step Functions requires them for ALL-level logging.",
        )


def add_lambda_retry(tasks: Iterable[sfn.TaskStateBase], policy: RetryPolicy) -> None:
    """Give every task the same retry policy: exponential backoff with full jitter, capped delay."""
    for task in tasks:
        task.add_retry(
            errors=list(RETRYABLE_ERRORS),
            interval=Duration.seconds(policy.interval_seconds),
            max_attempts=policy.max_attempts,
            backoff_rate=policy.backoff_rate,
            max_delay=Duration.seconds(policy.max_delay_seconds),
            jitter_strategy=sfn.JitterType.FULL,
        )


_RETENTION_BY_DAYS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    120: logs.RetentionDays.FOUR_MONTHS,
    150: logs.RetentionDays.FIVE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    545: logs.RetentionDays.EIGHTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
    1096: logs.RetentionDays.THREE_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    2192: logs.RetentionDays.SIX_YEARS,
    2557: logs.RetentionDays.SEVEN_YEARS,
    2922: logs.RetentionDays.EIGHT_YEARS,
    3288: logs.RetentionDays.NINE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def retained_log_group(scope: Construct, construct_id: str, config: Config, key: kms.IKey) -> logs.LogGroup:
    """A log group with the configured retention, encrypted with the data key (whose policy lets CloudWatch Logs
    of this account and region use it: stacks/constructs/data_key.py), kept on stack deletion when data is retained.
    Logs carry execution inputs and outputs (ALL-level state machine logging): the same data the key protects."""
    return logs.LogGroup(
        scope,
        construct_id,
        retention=_RETENTION_BY_DAYS[config.log_retention_days],
        encryption_key=key,
        removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
    )
