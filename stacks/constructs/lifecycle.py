"""The run lifecycle: when an execution of the state machine ends FAILED, TIMED_OUT or ABORTED, Cleanup stops its
training jobs, records them with their cost so far, writes a partial report and publishes the cause.

Without it, stopping an execution (or its timeout) leaves its jobs billing until MaxRuntime with no ledger row,
no report and no notification: the Map's Record, Report and Notify never run for an execution that did not finish.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambdas.cleanup import EVENT_DETAIL_TYPE, EVENT_SOURCE, LIFECYCLE_STATUSES
from stacks.config import Config
from stacks.constructs.hardened import LAMBDA_MAX_TIMEOUT_MINUTES, HardenedFunction
from stacks.nag import acknowledge

# EventBridge retries delivery (throttling, Lambda unavailable) this long, then puts the event in the queue.
DELIVERY_MAX_AGE = Duration.hours(6)
DELIVERY_RETRIES = 20


class Lifecycle(Construct):
    """The EventBridge rule on this state machine's execution status changes, the Cleanup Lambda it invokes, and a
    queue that keeps every event whose cleanup could not run (delivery failed, or Cleanup failed 3 times)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        state_machine: sfn.IStateMachine,
        environment: dict[str, str],
        reconcile_environment: dict[str, str],
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        # Cleanup waits up to cleanup_stop_wait_seconds for the stopped jobs, then makes ~3 calls per job and ~6 for
        # the report and notification: the longest timeout Lambda allows. Every step is idempotent, so Lambda's two
        # async retries (and a re-delivered event) are safe.
        self.function = HardenedFunction(
            self,
            "CleanupFunction",
            config=config,
            log_key=log_key,
            handler="lambdas.handlers.cleanup.handler",
            description="Stops, records and reports the training jobs of an execution that failed, timed out or "
            "was stopped",
            environment=environment,
            timeout=Duration.minutes(LAMBDA_MAX_TIMEOUT_MINUTES),
        )
        # SQS-managed encryption: EventBridge can deliver to it without a key-policy grant, and the events hold only
        # the execution's name, status, input and cause (no data, no token).
        self.dead_letters = sqs.Queue(
            self,
            "Unhandled",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(
            self.dead_letters,
            "SQS3",
            "This queue IS the dead-letter destination (of the lifecycle rule's target and of Cleanup's async "
            "invocations); a dead-letter queue of its own would only move the same events one queue further.",
        )
        self.rule = events.Rule(
            self,
            "ExecutionEndedEarly",
            description="Executions of the fine-tuning state machine that FAILED, TIMED_OUT or were ABORTED",
            event_pattern=events.EventPattern(
                source=[EVENT_SOURCE],
                detail_type=[EVENT_DETAIL_TYPE],
                detail={"stateMachineArn": [state_machine.state_machine_arn], "status": list(LIFECYCLE_STATUSES)},
            ),
        )
        self._deliver(self.rule, self.function)

        # The reconciler (lambdas/reconcile.py): on a schedule, every job with this deployment's prefix is either
        # watched by a running execution or ended and recorded; what is not is stopped and recorded, and notified.
        # It is the last line behind Cleanup: a job Search never showed it, a SUCCEEDED run with a job still running.
        self.reconciler = HardenedFunction(
            self,
            "ReconcileFunction",
            config=config,
            log_key=log_key,
            handler="lambdas.handlers.reconcile.handler",
            description="Stops training jobs no execution watches and records ended jobs the ledger lacks",
            environment=reconcile_environment,
            timeout=Duration.minutes(LAMBDA_MAX_TIMEOUT_MINUTES),
        )
        self.schedule = events.Rule(
            self,
            "ReconcileSchedule",
            description="Runs the fine-tuning reconciler (no training job bills unwatched or unrecorded)",
            schedule=events.Schedule.rate(Duration.minutes(config.reconcile_interval_minutes)),
        )
        self._deliver(self.schedule, self.reconciler)

    def _deliver(self, rule: events.Rule, function: HardenedFunction) -> None:
        """`rule` invokes `function` asynchronously: EventBridge retries delivery, Lambda retries the function twice
        (every handler is idempotent), and whatever still fails is kept in the dead-letter queue, not lost."""
        function.configure_async_invoke(
            retry_attempts=2,
            max_event_age=DELIVERY_MAX_AGE,
            on_failure=destinations.SqsDestination(self.dead_letters),
        )
        rule.add_target(
            targets.LambdaFunction(
                function,
                dead_letter_queue=self.dead_letters,
                max_event_age=DELIVERY_MAX_AGE,
                retry_attempts=DELIVERY_RETRIES,
            )
        )
