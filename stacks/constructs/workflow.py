"""The fine-tuning workflow: Lambdas, the Standard state machine and the notification topic.

Plan → Map(jobs) [Launch → Wait → Status → Choice(ended?) → Choice(completed?) → Record] → Report → Notify.
A job that did not complete, or whose Launch/Status failed (caught per item), loops through
Classify → Remedy → RecordAttempt → Choice(retry?) → NextAttempt → Launch: every attempt is a ledger row, and the
next attempt is the remedied job under a new attempt name (lambdas/remedies.py), until one completes or the policy
stops (attempts, budget, a cause no retry fixes). If Classify or Remedy itself fails, the attempt is still recorded
(the job may exist and be billed), so one job's failure never sinks the others. Every task retries Lambda faults
(function timeouts included) with backoff and full jitter and has a timeout; Launch also waits out an instance quota
held by other jobs (`ResourceLimitReached`; one the job exceeds on its own, `QuotaExhausted`, goes straight to
Classify). An execution that ends FAILED, TIMED_OUT or ABORTED is cleaned up by the Lifecycle construct
(stacks/constructs/lifecycle.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Aws, Duration
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.config import Config
from stacks.constructs.grants import GrantTargets, Target, apply_grants, secret_policy_arn
from stacks.constructs.hardened import (
    RETRYABLE_ERRORS,
    HardenedFunction,
    HardenedStateMachine,
    add_lambda_retry,
    lambda_timeout,
)
from stacks.constructs.lifecycle import Lifecycle
from stacks.nag import acknowledge, arn_ref

# Each function's timeout covers its sequential AWS calls at their worst-case botocore retry budget (107 s each with
# lambdas/aws.py's client config: see hardened.lambda_timeout), at most Lambda's 15 minutes.
CALLS_AT_WORST = {
    # datasets' ListObjectsV2 x2, the token secret, the calibration Queries (bounded together to one call's budget:
    # lambdas/plan.CALIBRATION_READ_SECONDS), plus Pricing/Service Quotas on their own short clients
    "Plan": 5,
    "Launch": 2,  # CreateTrainingJob, then DescribeTrainingJob when the name already exists
    "Status": 1,  # DescribeTrainingJob
    "Record": 4,  # DescribeTrainingJob (after a Catch), GetMetricData, HeadObject, PutItem
    "Classify": 3,  # DescribeTrainingJob, and twice more after a Catch (training_job.outcome_after_error)
    "Remedy": 2,  # Service Quotas and Pricing, each on its own short client
    "Report": 5,  # Query, 3 x PutObject, PutItem
}
# The Task waits a minute longer than the function may run, so a function timeout surfaces as the retryable
# `Sandbox.Timedout` rather than the Task's own, unretried `States.Timeout`.
TASK_TIMEOUT_MARGIN = Duration.minutes(1)


@dataclass(frozen=True)
class _JobStates:
    """One job's watch loop: launch it, poll its status, record it (or record the failure to)."""

    launch: tasks.LambdaInvoke
    wait: sfn.Wait
    status: tasks.LambdaInvoke
    record: tasks.LambdaInvoke
    record_failure: tasks.LambdaInvoke
    unrecorded: sfn.Pass


@dataclass(frozen=True)
class _HealingStates:
    """A failed attempt's loop: classify it, decide its remedy, record it, and retry or stop."""

    classify: tasks.LambdaInvoke
    remedy: tasks.LambdaInvoke
    record_attempt: tasks.LambdaInvoke
    record_unremedied: tasks.LambdaInvoke
    next_attempt: sfn.Pass
    gave_up: sfn.Pass
    retry: sfn.Choice


# CDK types a Function's role and timeout as optional (an imported function may have neither); a HardenedFunction
# always has both (stacks/constructs/hardened.py creates its role and bounds its timeout), so a None is a bug here.
def own_role(function: HardenedFunction) -> iam.IRole:
    """The function's own execution role."""
    if function.role is None:
        raise ValueError(f"{function.node.id} has no role of its own")
    return function.role


def bounded_timeout(function: HardenedFunction) -> Duration:
    """The function's timeout."""
    if function.timeout is None:
        raise ValueError(f"{function.node.id} has no timeout")
    return function.timeout


class Workflow(Construct):
    """Lambdas with one least-privilege role each, wired into the state machine."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        bucket: s3.IBucket,
        table: dynamodb.ITable,
        key: kms.IKey,
        sagemaker_role: iam.IRole,
        hf_token_secret: secretsmanager.ISecret,
        training_image_uri: str,
        code_s3_uri: str,
    ) -> None:
        super().__init__(scope, construct_id)
        # Encrypted with the data key: every publisher (the state machine role's Notify, Cleanup) needs
        # kms:GenerateDataKey* and kms:Decrypt on it besides sns:Publish, or SNS refuses the message.
        self.topic = sns.Topic(self, "Notifications", master_key=key, enforce_ssl=True, display_name="Fine-tuning runs")
        for email in config.notification_emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

        environment = {
            "BUCKET_NAME": bucket.bucket_name,
            "TABLE_NAME": table.table_name,
            "SAGEMAKER_ROLE_ARN": sagemaker_role.role_arn,
            "HF_TOKEN_SECRET_ARN": hf_token_secret.secret_arn,
            "TRAINING_IMAGE_URI": training_image_uri,
            "CODE_S3_URI": code_s3_uri,
            "DEFAULT_BUDGET_USD": f"{config.default_budget_usd:g}",
            "DEFAULT_MAX_RUNTIME_HOURS": f"{config.max_runtime_hours:g}",
            "JOB_NAME_PREFIX": config.job_name_prefix,
            "PROJECT_TAG": config.resource_prefix,
            "MAX_CONCURRENCY": str(config.max_concurrency),
        }
        grant_targets: GrantTargets = {
            Target.BUCKET: bucket.bucket_arn,
            Target.LEDGER: table.table_arn,
            Target.DATA_KEY: key.key_arn,
            Target.TOPIC: self.topic.topic_arn,
            Target.TOKEN_SECRET: secret_policy_arn(hf_token_secret),
            Target.SAGEMAKER_ROLE: sagemaker_role.role_arn,
            Target.TRAINING_JOBS: (
                f"arn:{Aws.PARTITION}:sagemaker:{Aws.REGION}:{Aws.ACCOUNT_ID}:training-job/{config.job_name_prefix}*"
            ),
        }
        self._add_functions(config, key, environment, grant_targets)
        self._add_state_machine(config, key, grant_targets)
        self._add_lifecycle(config, key, bucket, table, grant_targets)

    def _add_functions(
        self, config: Config, key: kms.IKey, environment: dict[str, str], grant_targets: GrantTargets
    ) -> None:
        """The workflow's seven functions, each with the shared environment plus its own and its row of grants."""
        # Variables only one function reads (docs/architecture.md, Lambda environment), on top of the shared ones.
        extra_environment = {
            # Launch: OutputDataConfig.KmsKeyId, so models are encrypted with the data key, not the account's aws/s3.
            "Launch": {"DATA_KEY_ARN": key.key_arn},
            # Plan: refuses runs whose waves of jobs and status polls cannot finish within the execution timeout.
            # The remedy policy too: its max_attempts multiplies each job's history events.
            "Plan": {
                "EXECUTION_TIMEOUT_SECONDS": str(config.execution_timeout_hours * 3600),
                "STATUS_POLL_SECONDS": str(config.status_poll_seconds),
                "REMEDY_DEFAULTS": json.dumps(config.remedies.as_dict(), sort_keys=True),
            },
            # Remedy: the deployment's remedy policy; an execution's `remedies` input overrides it field by field.
            "Remedy": {"REMEDY_DEFAULTS": json.dumps(config.remedies.as_dict(), sort_keys=True)},
        }

        def function(name: str, description: str) -> HardenedFunction:
            created = HardenedFunction(
                self,
                f"{name}Function",
                config=config,
                log_key=key,
                handler=f"lambdas.handlers.{name.lower()}.handler",
                description=description,
                environment={**environment, **extra_environment.get(name, {})},
                timeout=lambda_timeout(CALLS_AT_WORST[name]),
            )
            # Its grants come with it, from its row of the table (a function without a row fails the synth).
            apply_grants(name, own_role(created), grant_targets)
            return created

        self.plan = function("Plan", "Validates the execution input, expands the matrix, prices and checks quotas")
        self.launch = function("Launch", "Creates one managed-spot, checkpointed training job")
        self.status = function("Status", "Describes one training job, normalised")
        self.record = function("Record", "Writes one job's cost, savings and metrics to the ledger")
        self.classify = function("Classify", "Classifies a failed training job attempt (quota, capacity, OOM, ...)")
        self.remedy = function("Remedy", "Decides a failed attempt's remedy and the next attempt, within budget")
        self.report = function("Report", "Ranks the run's jobs by cost per accuracy point and writes the report")

    def _add_state_machine(self, config: Config, key: kms.IKey, grant_targets: GrantTargets) -> None:
        """The hardened state machine over `_definition`, its role granted its row and the functions it invokes."""
        self.state_machine = HardenedStateMachine(
            self,
            "StateMachine",
            config=config,
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(config)),
            timeout=Duration.hours(config.execution_timeout_hours),
            log_key=key,
        )
        apply_grants("StateMachine", self.state_machine.role, grant_targets)
        for invoked in (self.plan, self.launch, self.status, self.record, self.classify, self.remedy, self.report):
            acknowledge(
                self.state_machine.role,
                f"IAM5[Resource::{arn_ref(invoked)}:*]",
                "CDK's LambdaInvoke grant covers this one function and its versions/aliases (ARN:*), nothing else.",
            )

    def _add_lifecycle(
        self, config: Config, key: kms.IKey, bucket: s3.IBucket, table: dynamodb.ITable, grant_targets: GrantTargets
    ) -> None:
        """Cleanup of ended executions and the hourly reconciler (stacks/constructs/lifecycle.py), with their grants."""
        self.lifecycle = Lifecycle(
            self,
            "Lifecycle",
            config=config,
            state_machine=self.state_machine,
            log_key=key,
            environment={
                "TABLE_NAME": table.table_name,
                "BUCKET_NAME": bucket.bucket_name,
                "TOPIC_ARN": self.topic.topic_arn,
                "JOB_NAME_PREFIX": config.job_name_prefix,
                "CLEANUP_STOP_WAIT_SECONDS": str(config.cleanup_stop_wait_seconds),
                # Look for the run's jobs again once a Launch that was mid-call when the execution ended has
                # certainly returned: Launch's own timeout, plus a minute.
                "CLEANUP_RESWEEP_SECONDS": str(int(bounded_timeout(self.launch).to_seconds()) + 60),
            },
            reconcile_environment={
                "TABLE_NAME": table.table_name,
                "TOPIC_ARN": self.topic.topic_arn,
                "JOB_NAME_PREFIX": config.job_name_prefix,
                "STATE_MACHINE_ARN": self.state_machine.state_machine_arn,
                "RECONCILE_LOOKBACK_DAYS": str(config.reconcile_lookback_days),
                "CLEANUP_STOP_WAIT_SECONDS": str(config.cleanup_stop_wait_seconds),
            },
        )
        self.cleanup = self.lifecycle.function
        self.reconcile = self.lifecycle.reconciler
        # Cleanup and Reconcile are created by the Lifecycle construct; their grants come from their rows of the
        # table like the others'.
        apply_grants("Cleanup", own_role(self.cleanup), grant_targets)
        apply_grants(
            "Reconcile",
            own_role(self.reconcile),
            {**grant_targets, Target.STATE_MACHINE: self.state_machine.state_machine_arn},
        )

    def _invoke(
        self,
        state_id: str,
        function: HardenedFunction,
        result_path: str | None,
        payload: dict | None = None,
        input_path: str | None = None,
    ) -> tasks.LambdaInvoke:
        return tasks.LambdaInvoke(
            self,
            state_id,
            lambda_function=function,
            # Without a payload the (InputPath-selected) state input is the event.
            payload=sfn.TaskInput.from_object(payload) if payload is not None else None,
            input_path=input_path,
            payload_response_only=True,
            # Retries come from add_lambda_retry, with jitter; the built-in one has none.
            retry_on_service_exceptions=False,
            result_path=result_path if result_path is not None else sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(bounded_timeout(function).plus(TASK_TIMEOUT_MARGIN)),
        )

    def _definition(self, config: Config) -> sfn.IChainable:
        """Plan -> Map(one job's loop, with its healing loop) -> Report -> Notify -> Done."""
        plan = self._invoke(
            "Plan",
            self.plan,
            "$.plan",
            {"input": sfn.JsonPath.object_at("$"), "execution_name": sfn.JsonPath.string_at("$$.Execution.Name")},
        )
        job = self._job_states(config)
        healing = self._healing_states()
        report = self._invoke("Report", self.report, "$.report", {"run_id": sfn.JsonPath.string_at("$.plan.run_id")})
        notify = tasks.SnsPublish(
            self,
            "Notify",
            topic=self.topic,
            subject="Fine-tuning run finished",
            message=sfn.TaskInput.from_json_path_at("$.report.message"),
            result_path=sfn.JsonPath.DISCARD,
            task_timeout=sfn.Timeout.duration(Duration.minutes(5)),
        )
        self._add_retries(config, job, healing, others=[plan, report], notify=notify)
        jobs = self._jobs_map(config, job, healing)
        return plan.next(jobs).next(report).next(notify).next(sfn.Succeed(self, "Done", output_path="$.report"))

    def _job_states(self, config: Config) -> _JobStates:
        """Launch, the status poll and the job's ledger row (or the row of its failure)."""
        launch = self._invoke("Launch", self.launch, "$.launch", input_path="$.job")
        wait = sfn.Wait(self, "WaitForJob", time=sfn.WaitTime.duration(Duration.seconds(config.status_poll_seconds)))
        status = self._invoke("Status", self.status, "$.status", {"job_name": sfn.JsonPath.string_at("$.job.job_name")})
        record = self._invoke(
            "Record",
            self.record,
            None,
            {"job": sfn.JsonPath.object_at("$.job"), "status": sfn.JsonPath.object_at("$.status")},
        )
        record_failure = self._invoke(
            "RecordFailure",
            self.record,
            None,
            {"job": sfn.JsonPath.object_at("$.job"), "error": sfn.JsonPath.object_at("$.error")},
        )
        unrecorded = sfn.Pass(self, "Unrecorded", comment="Record kept failing after retries; the run goes on")
        return _JobStates(launch, wait, status, record, record_failure, unrecorded)

    def _healing_states(self) -> _HealingStates:
        """Classify -> Remedy -> RecordAttempt -> RetryJob: a failed attempt's class, remedy and ledger row."""
        # A failed attempt: its class (the whole iteration state is the event: `status`, or a caught `error`) ...
        classify = self._invoke("Classify", self.classify, "$.failure")
        # ... its remedy within the run's policy and budget ...
        remedy = self._invoke(
            "Remedy",
            self.remedy,
            "$.remedy",
            {
                "job": sfn.JsonPath.object_at("$.job"),
                "failure": sfn.JsonPath.object_at("$.failure"),
                "healing": sfn.JsonPath.object_at("$.healing"),
            },
        )
        failed_attempt = {
            "job": sfn.JsonPath.object_at("$.job"),
            "status": sfn.JsonPath.object_at("$.failure.status"),
            "failure": sfn.JsonPath.object_at("$.failure"),
        }
        # ... and its ledger row, with both.
        record_attempt = self._invoke(
            "RecordAttempt", self.record, None, {**failed_attempt, "remedy": sfn.JsonPath.object_at("$.remedy")}
        )
        record_unremedied = self._invoke("RecordUnremedied", self.record, None, failed_attempt)
        # The next attempt's state is its job and the run's remedy settings, nothing of the failed attempt's.
        next_attempt = sfn.Pass(
            self,
            "NextAttempt",
            parameters={"job": sfn.JsonPath.object_at("$.remedy.job"), "healing": sfn.JsonPath.object_at("$.healing")},
        )
        gave_up = sfn.Pass(self, "NoRetry", comment="The remedy policy stopped: the attempts are recorded")
        retry = (
            sfn.Choice(self, "RetryJob")
            .when(sfn.Condition.string_equals("$.remedy.action", "retry"), next_attempt)
            .otherwise(gave_up)
        )
        return _HealingStates(classify, remedy, record_attempt, record_unremedied, next_attempt, gave_up, retry)

    def _add_retries(
        self,
        config: Config,
        job: _JobStates,
        healing: _HealingStates,
        *,
        others: list[tasks.LambdaInvoke],
        notify: tasks.SnsPublish,
    ) -> None:
        """Every task's Retry: Lambda faults with jittered backoff, Launch's quota wait, Status's long watch, and
        Notify's SNS (and KMS) throttling. `others`: Plan and Report."""
        plan, report = others
        # CreateTrainingJob's ResourceLimitExceeded: the instance quota is in use (another run, another job of this
        # one). Only waiting frees it, so a long, config-driven interval (quota_retry), before the Catch records it.
        quota = config.quota_retry
        job.launch.add_retry(
            errors=["ResourceLimitReached"],
            interval=Duration.seconds(quota.interval_seconds),
            max_attempts=quota.max_attempts,
            backoff_rate=quota.backoff_rate,
            max_delay=Duration.seconds(quota.max_delay_seconds),
        )
        add_lambda_retry(
            [
                plan,
                job.launch,
                job.record,
                job.record_failure,
                healing.classify,
                healing.remedy,
                healing.record_attempt,
                healing.record_unremedied,
                report,
            ],
            config.lambda_retry,
        )
        # Status never gives up on a job it cannot describe: the same Lambda faults, its own JobStatusUnavailable
        # (DescribeTrainingJob failing for any other reason) and a crashed function (Lambda.Unknown) are retried for
        # about 18 h (watch_retry), without jitter so that the bound is what it says.
        watch = config.watch_retry
        job.status.add_retry(
            errors=[*RETRYABLE_ERRORS, "JobStatusUnavailable", "Lambda.Unknown"],
            interval=Duration.seconds(watch.interval_seconds),
            max_attempts=watch.max_attempts,
            backoff_rate=watch.backoff_rate,
            max_delay=Duration.seconds(watch.max_delay_seconds),
        )
        # The topic is encrypted with the data key, so Publish also fails when KMS throttles SNS's data-key calls:
        # SNS's Publish errors include KMSThrottlingException (SNS API Reference, Publish, Errors), which Step
        # Functions names `SNS.KMSThrottlingException`.
        notify.add_retry(
            errors=[
                "SNS.SdkClientException",
                "SNS.InternalErrorException",
                "SNS.ThrottledException",
                "SNS.KMSThrottlingException",
            ],
            max_attempts=config.lambda_retry.max_attempts,
            jitter_strategy=sfn.JitterType.FULL,
        )

    def _add_catches(self, job: _JobStates, healing: _HealingStates) -> None:
        """Where each task's errors go: a failed launch or a vanished job to Classify, an unwatched job to a typed
        Fail, a failed Classify/Remedy/Record to the record that still can be written."""
        # A refused launch (quota, capacity, validation) or a job that provably does not exist is a failed attempt
        # like any other.
        job.launch.add_catch(healing.classify, errors=["States.ALL"], result_path="$.error")
        job.status.add_catch(healing.classify, errors=["TrainingJobNotFound"], result_path="$.error")
        # Any other Status error outlived watch_retry: the workflow can no longer see the job, which may be billing.
        # The execution fails with a typed error, and the lifecycle's Cleanup stops and records the run's jobs
        # (the reconciler is the last line behind it).
        unwatched = sfn.Fail(
            self,
            "JobUnwatched",
            error="JobUnwatched",
            cause="Status could not describe a training job for the whole watch_retry budget; the execution fails so "
            "that Cleanup stops and records the run's jobs",
        )
        job.status.add_catch(unwatched, errors=["States.ALL"], result_path="$.error")
        # Classify failing leaves the attempt unclassified: record it as before healing existed.
        healing.classify.add_catch(job.record_failure, errors=["States.ALL"], result_path="$.error")
        healing.remedy.add_catch(healing.record_unremedied, errors=["States.ALL"], result_path="$.remedy_error")
        for task in (job.record, job.record_failure, healing.record_unremedied):
            task.add_catch(job.unrecorded, errors=["States.ALL"], result_path="$.record_error")
        # The row is lost but the remedy stands: the next attempt still runs.
        healing.record_attempt.add_catch(healing.retry, errors=["States.ALL"], result_path="$.record_error")

    def _jobs_map(self, config: Config, job: _JobStates, healing: _HealingStates) -> sfn.Map:
        """The Map over Plan's jobs: each iteration launches and watches its job, heals failed attempts, and ends
        with an empty output."""
        self._add_catches(job, healing)
        healing.classify.next(healing.remedy).next(healing.record_attempt).next(healing.retry)
        healing.next_attempt.next(job.launch)
        # Every iteration ends with an empty output: the Map assembles its iterations' outputs into one result before
        # it discards it, and a whole iteration state (3-10 KB: job, status, failure, remedy) per job could pass
        # Step Functions' 256 KiB payload limit (States.DataLimitExceeded) for a large run.
        done = sfn.Pass(self, "JobDone", comment="The iteration's output is empty", result=sfn.Result.from_object({}))
        for last in (job.record, job.record_failure, healing.record_unremedied, job.unrecorded, healing.gave_up):
            last.next(done)
        ended = (
            sfn.Choice(self, "JobEnded")
            .when(
                sfn.Condition.boolean_equals("$.status.ended", True),
                sfn.Choice(self, "JobCompleted")
                .when(sfn.Condition.string_equals("$.status.status", "Completed"), job.record)
                .otherwise(healing.classify),
            )
            .otherwise(job.wait)
        )
        jobs = sfn.Map(
            self,
            "Jobs",
            items_path="$.plan.jobs",
            item_selector={
                "job": sfn.JsonPath.object_at("$$.Map.Item.Value"),
                "healing": sfn.JsonPath.object_at("$.plan.healing"),
            },
            max_concurrency=config.max_concurrency,
            result_path=sfn.JsonPath.DISCARD,
        )
        jobs.item_processor(job.launch.next(job.wait).next(job.status).next(ended))
        return jobs
