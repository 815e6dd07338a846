"""Run the synthesized state machine offline: the real definition in moto's ASL interpreter, the real handlers
in-process with the environment the stack gives them, and training jobs on a local backend.

Used by `make demo` (subprocess training with `training_code/train.py`) and by the workflow tests (a scripted
backend), so both exercise exactly the path an execution takes in AWS.

When an execution ends, the runner does what EventBridge does in AWS: it builds the "Step Functions Execution
Status Change" event exactly as AWS shapes it, matches it against every `AWS::Events::Rule` of the template (moto's
own event-pattern matcher) and invokes each matching rule's Lambda targets with it (the lifecycle's Cleanup).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from unittest import mock

import boto3

from finetune.local.calls import CallLog, attributed_to, recording
from finetune.local.cfn import Resolver
from finetune.local.services import LocalServices, TrainingBackend, local_services
from lambdas import naming
from lambdas.settings import ALLOW_FAILURE_INJECTION

if TYPE_CHECKING:  # moto is imported lazily below; its types only annotate
    from moto.core.config import DefaultConfig
    from moto.events.utils import EventMessageType

ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
DATA_BUCKET = "finetune-local-data"
TABLE_NAME = "finetune-local-ledger"
STATE_MACHINE_NAME = "finetune-local"
# Settings that make an offline run quick: short polls and retry intervals; everything else is cdk.json's.
FAST_SETTINGS = {
    "status_poll_seconds": 1,
    "lambda_retry": {"interval_seconds": 1, "max_attempts": 2, "backoff_rate": 1.0, "max_delay_seconds": 1},
    "quota_retry": {"interval_seconds": 1, "max_attempts": 2, "backoff_rate": 1.0, "max_delay_seconds": 1},
    "watch_retry": {"interval_seconds": 1, "max_attempts": 4, "backoff_rate": 1.0, "max_delay_seconds": 1},
    "cleanup_stop_wait_seconds": 5,
}
# Execution statuses after which EventBridge emits a status change (RUNNING is emitted too, but at the start).
ENDED_STATUSES = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")


@dataclass(frozen=True)
class SynthesizedWorkflow:
    """What the runner takes from the synthesized template."""

    template: dict[str, Any]
    training_code_tarball: Path


@dataclass
class ExecutionResult:
    """The outcome of one execution, with what it left in the emulated account."""

    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    failed_state: str | None
    ledger_rows: list[dict[str, Any]]
    reports: dict[str, bytes]
    create_training_job_calls: list[str]
    notifications: list[str] = field(default_factory=list)
    # What EventBridge delivered when the execution ended: one entry per invoked rule target
    # ({"function", "event", "result"} or {"function", "event", "error"}).
    lifecycle: list[dict[str, Any]] = field(default_factory=list)
    stop_training_job_calls: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str | None:
        """The run id from the report (None when the execution failed before it)."""
        return (self.output or {}).get("run_id")


def synthesize(overrides: Mapping[str, Any] | None = None) -> SynthesizedWorkflow:
    """Synthesize the app with cdk.json's context (plus `overrides` of the `finetune` settings)."""
    from aws_cdk import Stack

    from stacks.app_builder import build_app, cdk_json_context
    from stacks.packaging import BUILD_DIR

    app = build_app(context=cdk_json_context({**FAST_SETTINGS, **dict(overrides or {})}))
    assembly = app.synth()
    main_name = Stack.of(app.node.find_child("Finetune")).stack_name
    main = next(s for s in assembly.stacks if s.stack_name == main_name)
    return SynthesizedWorkflow(
        template=main.template, training_code_tarball=BUILD_DIR / "training_code" / "sourcedir.tar.gz"
    )


def _deployed_status_poll_seconds() -> int:
    """The status poll interval of cdk.json's settings, as a deployment has it (FAST_SETTINGS shortens it locally)."""
    from stacks.app_builder import cdk_json_context
    from stacks.config import CONTEXT_KEY, load_config

    return load_config(cdk_json_context()[CONTEXT_KEY]).status_poll_seconds


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def _only(
    template: dict[str, Any], resource_type: str, predicate: Callable[[str, dict], bool] = lambda *_: True
) -> str:
    matches = [k for k, v in _resources(template, resource_type).items() if predicate(k, v)]
    if len(matches) != 1:
        raise ValueError(f"expected one {resource_type}, found {matches}")
    return matches[0]


class _Context:
    """The parts of a Lambda context object that Powertools and the handlers read."""

    def __init__(self, function_name: str, timeout_seconds: int = 120) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LambdaFault:
    """A Lambda-level fault for the next `times` invocations of one handler (`function`: its module's name, e.g.
    "launch"). `when`: "before" fails the invocation without running the handler (a transient Lambda service
    error); "after" runs the handler, then fails (a timeout after its side effects happened); "duplicate" runs the
    handler twice and answers with the second run (an at-least-once double delivery)."""

    function: str
    error_type: str = "Lambda.ServiceException"
    when: str = "before"
    times: int = 1
    hits: int = 0


class LocalAccount:
    """An emulated account holding the stack's resources, its Lambdas dispatched to the real handlers."""

    def __init__(self, workflow: SynthesizedWorkflow, backend: TrainingBackend) -> None:
        self.workflow = workflow
        self.services = LocalServices(backend, ACCOUNT_ID, REGION)
        self.handlers: dict[str, str] = {}
        self.timeouts: dict[str, int] = {}
        self.environment: dict[str, str] = {}
        self.state_machine_arn = ""
        self.topic_arn = ""
        self._stop_reasons: dict[str, dict[str, str]] = {}
        # (event pattern, Lambda target logical ids) of every EventBridge rule in the template, resolved.
        self.rules: list[tuple[dict[str, Any], list[str]]] = []
        # (schedule expression, Lambda target logical ids) of every scheduled rule (the reconciler's): `run_schedules`
        # plays their next tick.
        self.schedules: list[tuple[str, list[str]]] = []
        # Local physical values of the template's resources (the IAM gate resolves the policies with them too).
        self.resolver = Resolver(account_id=ACCOUNT_ID, region=REGION)
        # Every AWS call the handlers make, by function (the IAM gate checks each against its role's policy).
        self.calls = CallLog()
        # Fault injection (tests/faults): Lambda-level faults, and executions to end as TIMED_OUT.
        self.lambda_faults: list[LambdaFault] = []
        self._faults_lock = threading.Lock()
        self._timed_out: set[str] = set()

    @contextmanager
    def running(self) -> Iterator[LocalAccount]:
        """Moto + local services + Lambda dispatch, with the stack's resources created."""
        from moto import mock_aws
        from moto.awslambda_simple.models import LambdaSimpleBackend

        config: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        with (
            mock.patch.dict(os.environ, {"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}),
            mock_aws(config=config),
            local_services(self.services),
            recording(self.calls),
            mock.patch.object(LambdaSimpleBackend, "invoke", self._invoke_patch()),
            _stopped_executions_stay_aborted(),
        ):
            self._create_resources()
            # Handlers read settings at cold start and cache clients: start them cold against this account.
            with mock.patch.dict(os.environ, self.environment), _handlers_restored_afterwards():
                _cold_start_handlers()
                yield self

    def _invoke_patch(self) -> Callable[..., bytes]:
        account = self

        def invoke(
            _backend: Any, function_name: str, _qualifier: Any, body: Any, _headers: Any, response_headers: dict
        ) -> bytes:
            return account.dispatch(function_name, body, response_headers)

        return invoke

    def dispatch(self, function_name: str, body: Any, response_headers: dict[str, str]) -> bytes:
        """Invoke the real handler like Lambda does: an exception becomes a function error named after its class."""
        name = function_name.split(":function:")[-1].split(":")[0]
        module_name, _, attribute = self.handlers[name].rpartition(".")
        handler = getattr(importlib.import_module(module_name), attribute)
        event = json.loads(body) if body else {}
        fault = self._take_lambda_fault(module_name.rsplit(".", 1)[-1])
        if fault is not None and fault.when == "before":
            return _function_error(response_headers, fault.error_type, "injected fault before the handler ran")
        try:
            with attributed_to(name):
                result = handler(event, _Context(name, self.timeouts.get(name, 120)))
                if fault is not None and fault.when == "duplicate":
                    result = handler(event, _Context(name, self.timeouts.get(name, 120)))
        except Exception as error:
            return _function_error(response_headers, type(error).__name__, str(error))
        if fault is not None and fault.when == "after":
            return _function_error(response_headers, fault.error_type, "injected fault after the handler ran")
        return json.dumps(result, default=str).encode()

    def inject_lambda_fault(self, function: str, **fields: Any) -> LambdaFault:
        """Fail the next invocation(s) of the handler in module `function` (see `LambdaFault`)."""
        fault = LambdaFault(function, **fields)
        with self._faults_lock:
            self.lambda_faults.append(fault)
        return fault

    def _take_lambda_fault(self, function: str) -> LambdaFault | None:
        with self._faults_lock:
            for fault in self.lambda_faults:
                if fault.function == function and fault.hits < fault.times:
                    fault.hits += 1
                    return fault
        return None

    def time_out(self, execution_arn: str) -> None:
        """End the execution as its state machine timeout does: TIMED_OUT with States.Timeout (moto's interpreter
        does not enforce TimeoutSeconds; it is stopped here and its status change reads TIMED_OUT, as AWS emits it)."""
        self._timed_out.add(execution_arn)
        self.stop_execution(execution_arn, error="States.Timeout", cause="The execution timed out.")

    def _create_resources(self) -> None:
        """Every resource of the template the workflow touches, as moto resources, in dependency order."""
        role_arn = boto3.client("iam", region_name=REGION).create_role(
            RoleName="local-execution", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        self._create_storage()
        self._create_secret_key_and_topic()
        # The state machine is created last (its definition names the functions), but the reconciler's environment
        # names it: its ARN is known from its name.
        state_machine = _only(self.workflow.template, "AWS::StepFunctions::StateMachine")
        self.resolver.refs[state_machine] = f"arn:aws:states:{REGION}:{ACCOUNT_ID}:stateMachine:{STATE_MACHINE_NAME}"
        functions = self._create_functions(role_arn)
        self._set_local_environment()
        self._create_state_machine_and_rules(state_machine, functions, role_arn)

    def _create_storage(self) -> None:
        """The data bucket and the ledger table, keyed and indexed as the template defines them."""
        template = self.workflow.template
        resolver = self.resolver
        s3 = boto3.client("s3", region_name=REGION)
        data_bucket = _only(template, "AWS::S3::Bucket", lambda _k, v: "LoggingConfiguration" in v["Properties"])
        s3.create_bucket(Bucket=DATA_BUCKET)
        resolver.refs[data_bucket] = DATA_BUCKET
        resolver.attributes[(data_bucket, "Arn")] = f"arn:aws:s3:::{DATA_BUCKET}"

        table = _only(template, "AWS::DynamoDB::Table")
        # Keys and indexes as the template defines them (CloudFormation's shapes are the API's).
        table_properties = template["Resources"][table]["Properties"]
        indexes = table_properties.get("GlobalSecondaryIndexes")
        boto3.client("dynamodb", region_name=REGION).create_table(
            TableName=TABLE_NAME,
            KeySchema=table_properties["KeySchema"],
            AttributeDefinitions=table_properties["AttributeDefinitions"],
            BillingMode="PAY_PER_REQUEST",
            **({"GlobalSecondaryIndexes": indexes} if indexes else {}),
        )
        resolver.refs[table] = TABLE_NAME
        resolver.attributes[(table, "Arn")] = f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{TABLE_NAME}"

    def _create_secret_key_and_topic(self) -> None:
        """The HF token secret (without a value), the KMS key, the SNS topic and the SageMaker role's ARN."""
        template = self.workflow.template
        resolver = self.resolver
        # As the template creates it: without a value (GetSecretValue answers ResourceNotFoundException) until the
        # user puts the token in; `put_hf_token` does that here.
        secret = _only(template, "AWS::SecretsManager::Secret")
        self.hf_token_secret_arn = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="local-hf-token"
        )["ARN"]
        resolver.refs[secret] = self.hf_token_secret_arn

        key = _only(template, "AWS::KMS::Key")
        key_arn = boto3.client("kms", region_name=REGION).create_key(Description="local data key")["KeyMetadata"]["Arn"]
        resolver.refs[key] = key_arn.rsplit("/", 1)[-1]
        resolver.attributes[(key, "Arn")] = key_arn

        topic = _only(template, "AWS::SNS::Topic")
        self.topic_arn = boto3.client("sns", region_name=REGION).create_topic(Name="local-notifications")["TopicArn"]
        resolver.refs[topic] = self.topic_arn

        sagemaker_role = _only(template, "AWS::IAM::Role", lambda k, _v: k.startswith("SageMakerRole"))
        resolver.attributes[(sagemaker_role, "Arn")] = f"arn:aws:iam::{ACCOUNT_ID}:role/local-sagemaker"

    def _create_functions(self, role_arn: str) -> dict[str, Any]:
        """The template's Lambda functions (their handlers, timeouts and resolved environments), and the training
        code asset where CDK would publish it; returns the functions by logical id."""
        template = self.workflow.template
        resolver = self.resolver
        s3 = boto3.client("s3", region_name=REGION)
        # The training code asset goes where CDK would publish it, so Launch's CODE_S3_URI points at real bytes.
        assets_bucket = f"cdk-hnb659fds-assets-{ACCOUNT_ID}-{REGION}"
        s3.create_bucket(Bucket=assets_bucket)
        functions = {
            k: v
            for k, v in _resources(template, "AWS::Lambda::Function").items()
            if v["Properties"].get("Handler", "").startswith("lambdas.")
        }
        lambda_client = boto3.client("lambda", region_name=REGION)
        for logical_id in functions:
            resolver.attributes[(logical_id, "Arn")] = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{logical_id}"
        for logical_id, function in functions.items():
            props = function["Properties"]
            environment = resolver.resolve(props.get("Environment", {}).get("Variables", {}))
            # One process, one environment: the union of every function's variables (none sets a variable to a
            # value another function reads differently).
            self.environment.update(environment)
            self.handlers[logical_id] = props["Handler"]
            self.timeouts[logical_id] = int(props.get("Timeout", 60))
            lambda_client.create_function(
                FunctionName=logical_id,
                Runtime=props["Runtime"],
                Role=role_arn,
                Handler=props["Handler"],
                Code={"ZipFile": _empty_zip()},
                Environment={"Variables": environment},
                Timeout=props.get("Timeout", 60),
            )
        code_uri = self.environment["CODE_S3_URI"]
        bucket, key = naming.split_s3_uri(code_uri)
        s3.put_object(Bucket=bucket, Key=key, Body=self.workflow.training_code_tarball.read_bytes())
        return functions

    def _set_local_environment(self) -> None:
        """What differs offline from the stack's environment, each for a stated reason."""
        # Quieter handler logs on the terminal; everything else is exactly the stack's environment.
        self.environment["POWERTOOLS_LOG_LEVEL"] = os.environ.get("FINETUNE_LOCAL_LOG_LEVEL", "ERROR")
        # Record's EMF metric lines are for CloudWatch; on the terminal they show only with the handler logs.
        verbose = "FINETUNE_LOCAL_LOG_LEVEL" in os.environ
        self.environment["POWERTOOLS_METRICS_DISABLED"] = "false" if verbose else "true"
        # Local time runs fast: jobs take seconds and the Wait state polls every second. Plan's execution-limit check
        # judges the run as it would be deployed, so it gets the deployed poll interval, not the accelerated one
        # (with a 1 s poll every hour-long runtime bound would count as hundreds of thousands of history events).
        self.environment["STATUS_POLL_SECONDS"] = str(_deployed_status_poll_seconds())
        # The offline runner is the one place where an experiment's demo-only `inject_failure` is honoured (by the
        # local training backends); deployed functions lack this variable, so Plan refuses the field there.
        self.environment[ALLOW_FAILURE_INJECTION] = "true"
        # Offline: Plan sizes Hub models from the input (architecture, params_billion), never fetching config.json.
        self.environment["HF_HUB_OFFLINE"] = "1"
        # Cleanup looks for a run's jobs again once an in-flight Launch has returned (Launch's timeout + 1 minute in
        # AWS); here a Launch returns within a second or two.
        self.environment["CLEANUP_RESWEEP_SECONDS"] = "2"

    def _create_state_machine_and_rules(self, state_machine: str, functions: dict[str, Any], role_arn: str) -> None:
        """The state machine from the template's definition, then the EventBridge rules and schedules that target
        the functions."""
        template = self.workflow.template
        resolver = self.resolver
        definition = resolver.resolve(template["Resources"][state_machine]["Properties"]["DefinitionString"])
        self.state_machine_arn = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
            name=STATE_MACHINE_NAME, definition=definition, roleArn=role_arn
        )["stateMachineArn"]
        assert resolver.refs[state_machine] == self.state_machine_arn, self.state_machine_arn

        for rule in _resources(template, "AWS::Events::Rule").values():
            props = rule["Properties"]
            lambda_targets = [
                target["Arn"]["Fn::GetAtt"][0]
                for target in props.get("Targets", [])
                if isinstance(target.get("Arn"), dict) and target["Arn"].get("Fn::GetAtt", [None])[0] in functions
            ]
            if "ScheduleExpression" in props:
                self.schedules.append((props["ScheduleExpression"], lambda_targets))
            else:
                self.rules.append((resolver.resolve(props["EventPattern"]), lambda_targets))

    def upload_dataset(self, name: str, train: Path, test: Path) -> None:
        """Put a dataset where the S3 layout contract says Plan and training find it."""
        s3 = boto3.client("s3", region_name=REGION)
        for split, path in (("train", train), ("test", test)):
            s3.put_object(Bucket=DATA_BUCKET, Key=f"datasets/{name}/{split}/{path.name}", Body=path.read_bytes())

    def put_hf_token(self, token: str) -> None:
        """`aws secretsmanager put-secret-value` on the token secret, as a user does after deploying."""
        boto3.client("secretsmanager", region_name=REGION).put_secret_value(
            SecretId=self.hf_token_secret_arn, SecretString=token
        )

    def start(self, execution_input: dict[str, Any], name: str) -> str:
        """StartExecution; the execution ARN."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        return sfn.start_execution(
            stateMachineArn=self.state_machine_arn, name=name, input=json.dumps(execution_input)
        )["executionArn"]

    def stop_execution(self, execution_arn: str, error: str | None = None, cause: str | None = None) -> None:
        """StopExecution (the execution ends ABORTED; `wait` then delivers its status change)."""
        arguments = {k: v for k, v in {"error": error, "cause": cause}.items() if v is not None}
        boto3.client("stepfunctions", region_name=REGION).stop_execution(executionArn=execution_arn, **arguments)
        self._stop_reasons[execution_arn] = arguments

    def execute(
        self,
        execution_input: dict[str, Any],
        name: str,
        on_poll: Callable[[], None] | None = None,
        timeout_seconds: float = 1800,
    ) -> ExecutionResult:
        """Start an execution, wait for it to end (calling `on_poll` about once a second), collect results."""
        return self.wait(self.start(execution_input, name), on_poll=on_poll, timeout_seconds=timeout_seconds)

    def wait(
        self, arn: str, on_poll: Callable[[], None] | None = None, timeout_seconds: float = 1800
    ) -> ExecutionResult:
        """Wait for the execution to end (calling `on_poll` about once a second), deliver its status change to the
        template's EventBridge rules, and collect the results."""
        sfn = boto3.client("stepfunctions", region_name=REGION)
        deadline = time.monotonic() + timeout_seconds
        while (description := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING":
            if time.monotonic() > deadline:
                sfn.stop_execution(executionArn=arn, error="LocalTimeout")
                raise TimeoutError(f"execution {arn} still running after {timeout_seconds:g} s")
            if on_poll:
                on_poll()
            time.sleep(0.5)
        if description["status"] == "ABORTED":
            # AWS's event carries the error and cause given to StopExecution; moto drops them, the runner kept them.
            description = {**description, **self._stop_reasons.get(arn, {})}
            if arn in self._timed_out:
                description["status"] = "TIMED_OUT"
        lifecycle = self.deliver_status_change(description)
        return ExecutionResult(
            status=description["status"],
            output=json.loads(description["output"]) if description.get("output") else None,
            error=description.get("error"),
            cause=description.get("cause"),
            failed_state=_failed_state(sfn, arn) if description["status"] == "FAILED" else None,
            ledger_rows=self.ledger_rows(),
            reports=self.reports(),
            create_training_job_calls=list(self.services.create_calls),
            notifications=self.notifications(),
            lifecycle=lifecycle,
            stop_training_job_calls=list(self.services.stop_calls),
        )

    def deliver_status_change(self, description: dict[str, Any]) -> list[dict[str, Any]]:
        """What EventBridge does when an execution ends: the status-change event, matched against every rule of the
        template; each matching rule's Lambda targets are invoked with it (in AWS: asynchronously, right away)."""
        from moto.events.models import EventPattern

        event = execution_status_change_event(description, ACCOUNT_ID, REGION)
        delivered = []
        for pattern, functions in self.rules:
            if not EventPattern.load(json.dumps(pattern)).matches_event(cast("EventMessageType", event)):
                continue
            for function in functions:
                response_headers: dict[str, str] = {}
                body = json.loads(self.dispatch(function, json.dumps(event), response_headers))
                outcome = "error" if response_headers.get("x-amz-function-error") else "result"
                delivered.append({"function": function, "event": event, outcome: body})
        return delivered

    def run_schedules(self) -> list[dict[str, Any]]:
        """What EventBridge does at a scheduled rule's next tick: a "Scheduled Event" to each of its Lambda targets;
        one entry per target ({"function", "event", "result"} or {"function", "event", "error"})."""
        delivered = []
        for expression, functions in self.schedules:
            for function in functions:
                event = {
                    "version": "0",
                    "id": str(uuid.uuid4()),
                    "detail-type": "Scheduled Event",
                    "source": "aws.events",
                    "account": ACCOUNT_ID,
                    "time": datetime.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "region": REGION,
                    "resources": [f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/local-{function}"],
                    "detail": {},
                }
                response_headers: dict[str, str] = {}
                body = json.loads(self.dispatch(function, json.dumps(event), response_headers))
                outcome = "error" if response_headers.get("x-amz-function-error") else "result"
                delivered.append({"function": function, "schedule": expression, "event": event, outcome: body})
        return delivered

    def seed_orphan_job(self, name: str, run_id: str, *, like: dict[str, Any] | None = None) -> str:
        """Create a training job no execution watches, as a job a lost Launch (or a person) left behind would be:
        `name` (with the deployment's prefix), tagged with `run_id`, shaped like `like` (a CreateTrainingJob request
        of an earlier job) or a minimal request. Its backend decides how it runs. The job's name."""
        prefix = self.environment["JOB_NAME_PREFIX"]
        job_name = name if name.startswith(f"{prefix}-") else f"{prefix}-{name}"
        request = json.loads(json.dumps(like, default=str)) if like else _minimal_request(self, run_id)
        request["TrainingJobName"] = job_name
        request["CheckpointConfig"] = {
            "S3Uri": f"s3://{DATA_BUCKET}/checkpoints/{run_id}/{job_name}/",
            "LocalPath": "/opt/ml/checkpoints",
        }
        request["Tags"] = [t for t in request.get("Tags", []) if t["Key"] != "run_id"] + [
            {"Key": "run_id", "Value": run_id}
        ]
        boto3.client("sagemaker", region_name=REGION).create_training_job(**request)
        return job_name

    def notifications(self) -> list[str]:
        """Messages the Notify step published to the run topic (moto keeps them on the topic)."""
        from moto.sns.models import sns_backends

        topic = sns_backends[ACCOUNT_ID][REGION].topics[self.topic_arn]
        return [message for _id, message, *_rest in topic.sent_notifications]

    def ledger_rows(self) -> list[dict[str, Any]]:
        """Every ledger item, as plain JSON values."""
        from boto3.dynamodb.types import TypeDeserializer

        deserializer = TypeDeserializer()
        items = boto3.client("dynamodb", region_name=REGION).scan(TableName=TABLE_NAME)["Items"]
        rows = [{k: deserializer.deserialize(v) for k, v in item.items()} for item in items]
        return json.loads(json.dumps(sorted(rows, key=lambda r: (r["pk"], r["sk"])), default=_number))

    def reports(self) -> dict[str, bytes]:
        """Every object under reports/, by key."""
        s3 = boto3.client("s3", region_name=REGION)
        listing = s3.list_objects_v2(Bucket=DATA_BUCKET, Prefix="reports/")
        return {
            o["Key"]: s3.get_object(Bucket=DATA_BUCKET, Key=o["Key"])["Body"].read()
            for o in listing.get("Contents", [])
        }


@contextmanager
def _stopped_executions_stay_aborted() -> Iterator[None]:
    """moto 5.2.5 bug: StopExecution while a Map iterates makes the Map raise (MapIterationAborted, then an
    AttributeError), and that error overwrites the stopped program state, so the execution reads FAILED with a
    States.Runtime cause. In AWS it is ABORTED with the StopExecution's error and cause: keep a stopped one stopped."""
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.asl.eval.program_state import ProgramStopped

    set_error = Environment.set_error

    def set_error_unless_stopped(env: Any, error: Any) -> None:
        if not isinstance(env._program_state, ProgramStopped):
            set_error(env, error)

    with mock.patch.object(Environment, "set_error", set_error_unless_stopped):
        yield


def _epoch_millis(value: Any) -> int | None:
    return int(value.timestamp() * 1000) if isinstance(value, datetime) else None


def execution_status_change_event(description: dict[str, Any], account_id: str, region: str) -> dict[str, Any]:
    """The EventBridge event AWS emits when an execution changes status, from its DescribeExecution: source
    `aws.states`, detail-type "Step Functions Execution Status Change", times in epoch milliseconds, input/output
    as JSON strings (output null unless it succeeded), error/cause null unless set."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": account_id,
        "time": (description.get("stopDate") or datetime.now()).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [description["executionArn"]],
        "detail": {
            "executionArn": description["executionArn"],
            "stateMachineArn": description["stateMachineArn"],
            "name": description["name"],
            "status": description["status"],
            "startDate": _epoch_millis(description.get("startDate")),
            "stopDate": _epoch_millis(description.get("stopDate")),
            "input": description.get("input"),
            "output": description.get("output"),
            "inputDetails": {"included": True},
            "outputDetails": {"included": True} if description.get("output") is not None else None,
            "error": description.get("error"),
            "cause": description.get("cause"),
        },
    }


def _minimal_request(account: LocalAccount, run_id: str) -> dict[str, Any]:
    """A small CreateTrainingJob request of this deployment's shape (one ml.g5.xlarge spot instance, 1 h bound)."""
    return {
        "AlgorithmSpecification": {
            "TrainingImage": account.environment["TRAINING_IMAGE_URI"],
            "TrainingInputMode": "File",
        },
        "RoleArn": f"arn:aws:iam::{ACCOUNT_ID}:role/local-sagemaker",
        "OutputDataConfig": {"S3OutputPath": f"s3://{DATA_BUCKET}/models/orphan/"},
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
        "EnableManagedSpotTraining": True,
        "HyperParameters": {"model_id": '"HuggingFaceTB/SmolLM2-135M"', "approach": '"lora"'},
        "Tags": [{"Key": "model", "Value": "smollm2-135m"}, {"Key": "approach", "Value": "lora"}],
    }


def _number(value: Any) -> Any:
    # DynamoDB numbers come back as Decimal; JSON wants int or float.
    return int(value) if value == int(value) else float(value)


def _failed_state(sfn: Any, execution_arn: str) -> str | None:
    """Name of the state whose failure ended the execution."""
    history = sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
    return entered[-1] if entered else None


@contextmanager
def _handlers_restored_afterwards() -> Iterator[None]:
    """Put back the handler modules this process had imported before the account started cold ones.

    A test that imported a handler keeps its module object; its typed records resolve their annotations through
    `sys.modules[<module>]` (records.parse: typing.get_type_hints), which a cold start had emptied."""
    before = {name: module for name, module in sys.modules.items() if name.startswith("lambdas.handlers.")}
    try:
        yield
    finally:
        _cold_start_handlers()
        sys.modules.update(before)
        package = sys.modules.get("lambdas.handlers")
        for name, module in before.items():
            if package is not None:
                setattr(package, name.rsplit(".", 1)[-1], module)


def _cold_start_handlers() -> None:
    from lambdas import aws, settings

    aws.reset_clients()
    settings.clear_cache()
    for module in [m for m in sys.modules if m.startswith("lambdas.handlers.")]:
        del sys.modules[module]


def _function_error(response_headers: dict[str, str], error_type: str, message: str) -> bytes:
    # As Lambda answers an unhandled error: Step Functions names the error after errorType.
    response_headers["x-amz-function-error"] = "Unhandled"
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()


def _empty_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# handlers run in-process; see finetune.local.runner\n")
    return buffer.getvalue()
