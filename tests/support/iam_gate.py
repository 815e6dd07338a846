"""The IAM completeness gate: is every request this app makes in AWS allowed by the synthesized policy of the
role that makes it? moto does not enforce IAM or KMS, so the offline runs alone would pass where an account refuses.

A `Need` is one authorization AWS performs: a role, an IAM action, a resource ARN and the condition keys the request
carries. Needs come from three places:

1. The calls the handlers made in offline runs (`finetune.local.calls`), each named as the IAM action it is
   authorized as, on the ARN derived from its parameters.
2. What a call makes a service do as the caller: KMS use on the key of an encrypted bucket, table, topic or secret;
   iam:PassRole and tag-on-create for CreateTrainingJob; and everything the training job then does as its
   execution role with what the request names (channels, code, output, checkpoints, image, secret, logs, metrics).
3. Service-side needs no call shows: each Lambda writes its own log group and traces; the state machine invokes
   the functions and publishes to the topic its definition names, and delivers its logs and traces.

Policies are the template's identity policies resolved with the offline account's physical names. Actions match
with policyuniverse (its action list expands wildcards), ARNs are split with policyuniverse's parser and each
segment matched with IAM's `*`/`?` rules, and the condition operators this app uses are evaluated. Any statement
shape or call the gate does not know raises, so nothing new passes unexamined.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import importlib.util
import json
import re
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from policyuniverse.arn import ARN
from policyuniverse.expander_minimizer import get_actions_from_statement

from finetune.local.calls import AwsCall
from finetune.local.cfn import Resolver
from finetune.local.services import model_artifact_uri
from lambdas import naming


def _import_parliament() -> types.ModuleType:
    """parliament 1.6.4 (the latest) finds its data files with `pkg_resources.resource_filename`, which setuptools
    no longer ships; give it that one function, backed by importlib.resources, when pkg_resources is missing."""
    if importlib.util.find_spec("pkg_resources") is None:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    import parliament

    return parliament


parliament = _import_parliament()


class UnknownToGate(ValueError):
    """A call, statement or template shape the gate cannot evaluate yet: teach it rather than skip it."""


@dataclass(frozen=True)
class Need:
    """One authorization AWS performs: may `role` do `action` on `resource`, given the request's condition keys?"""

    role: str  # logical id of the role in the template
    action: str
    resource: str
    reason: str = field(compare=False)  # what needs it (the first call that did), for the failure message
    context: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        keys = "".join(f" [{key}={value}]" for key, value in self.context)
        return f"{self.role} needs {self.action} on {self.resource}{keys} ({self.reason})"


@dataclass(frozen=True)
class Mutation:
    """The template minus one grant: one action (or one of several resources) of one statement of one policy."""

    policy: str  # logical id of the AWS::IAM::Policy
    role: str
    statement: int
    element: str  # the policy element it is removed from: "Action" or "Resource"
    removed: Any  # the action, or the (unresolved) resource

    def apply(self, template: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `template` without this grant (a statement left with nothing is dropped)."""
        mutated = copy.deepcopy(dict(template))
        statements = mutated["Resources"][self.policy]["Properties"]["PolicyDocument"]["Statement"]
        statement = statements[self.statement]
        remaining = [value for value in _as_list(statement[self.element]) if value != self.removed]
        if remaining:
            statement[self.element] = remaining
        else:
            del statements[self.statement]
        return mutated


# --- What a call is authorized as ---------------------------------------------------------------------------------

# API operations authorized as an IAM action of another name (everything else is `<iam prefix>:<operation>`).
_ACTION_OF_OPERATION = {("s3", "ListObjectsV2"): "s3:ListBucket", ("s3", "HeadObject"): "s3:GetObject"}

# How each service names the resource of a request, from its parameters.
_RESOURCE_OF: dict[str, Callable[[Mapping[str, Any], str, str], str]] = {
    "s3": lambda p, _r, _a: f"arn:aws:s3:::{p['Bucket']}" + (f"/{p['Key']}" if "Key" in p else ""),
    # A Query on an index is authorized against the index's ARN, not the table's.
    "dynamodb": lambda p, r, a: (
        f"arn:aws:dynamodb:{r}:{a}:table/{p['TableName']}" + (f"/index/{p['IndexName']}" if "IndexName" in p else "")
    ),
    # SageMaker lower-cases the name in the ARN it authorizes.
    "sagemaker": lambda p, r, a: (
        p.get("ResourceArn") or f"arn:aws:sagemaker:{r}:{a}:training-job/{p['TrainingJobName']}".lower()
    ),
    "secretsmanager": lambda p, _r, _a: _require_arn(p["SecretId"]),
    "sns": lambda p, _r, _a: p["TopicArn"],
    # ListExecutions is authorized against the state machine whose executions it lists.
    "stepfunctions": lambda p, _r, _a: p["stateMachineArn"],
}

# Condition keys a request carries, for the conditions our policies use.
_CONTEXT_OF: dict[tuple[str, str], Callable[[Mapping[str, Any]], dict[str, str]]] = {
    ("s3", "ListObjectsV2"): lambda p: {"s3:prefix": p.get("Prefix", "")},
}

# KMS use a service makes as the caller when the resource is encrypted with a customer-managed key.
# S3 (SSE-KMS, bucket key too) and DynamoDB ask for a data key to write and decrypt to read (DynamoDB's table key
# under the caller's permissions); SNS encrypts each message; Secrets Manager decrypts the value.
_KMS_USE = {
    "s3:PutObject": ("kms:GenerateDataKey",),
    "s3:GetObject": ("kms:Decrypt",),
    "dynamodb:PutItem": ("kms:Decrypt", "kms:GenerateDataKey"),
    "dynamodb:Query": ("kms:Decrypt",),
    "sns:Publish": ("kms:GenerateDataKey", "kms:Decrypt"),
    "secretsmanager:GetSecretValue": ("kms:Decrypt",),
}
# Actions on an encrypted resource that read no encrypted data.
_NO_KMS_USE = {"s3:ListBucket", "s3:AbortMultipartUpload", "s3:DeleteObject", "secretsmanager:DescribeSecret"}

# Step Functions with logging at any level, and with X-Ray tracing (AWS: "IAM policies for logging to CloudWatch
# Logs" and "X-Ray and Step Functions"); none of these actions has resource-level permissions.
_STATE_MACHINE_LOG_DELIVERY = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)
_STATE_MACHINE_TRACING = (
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
)
_LAMBDA_TRACING = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")

# Where SageMaker writes a training job's logs and metrics (AWS: "CreateTrainingJob API: Execution Role Permissions").
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
_TRAINING_METRICS_NAMESPACE = "/aws/sagemaker/TrainingJobs"
# Any object the training job reads under a channel or checkpoint prefix.
_ANY_OBJECT = "part-00000"

# Local stand-ins for physical values the offline account does not create (policies still name them).
_LOCAL_VALUES: dict[str, tuple[str, str]] = {  # resource type -> (Ref, Arn)
    "AWS::S3::Bucket": ("{name}", "arn:aws:s3:::{name}"),
    "AWS::DynamoDB::Table": ("{name}", "arn:aws:dynamodb:{region}:{account}:table/{name}"),
    "AWS::KMS::Key": ("{name}", "arn:aws:kms:{region}:{account}:key/{name}"),
    "AWS::SNS::Topic": ("arn:aws:sns:{region}:{account}:{name}", ""),
    "AWS::SecretsManager::Secret": ("arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf", ""),
    # CloudFormation's Arn of a log group ends in `:*`, the form log-group actions are authorized against.
    "AWS::Logs::LogGroup": ("{name}", "arn:aws:logs:{region}:{account}:log-group:{name}:*"),
    "AWS::IAM::Role": ("{name}", "arn:aws:iam::{account}:role/{name}"),
    "AWS::Lambda::Function": ("{name}", "arn:aws:lambda:{region}:{account}:function:{name}"),
    "AWS::StepFunctions::StateMachine": ("arn:aws:states:{region}:{account}:stateMachine:{name}", ""),
    "AWS::Events::Rule": ("{name}", "arn:aws:events:{region}:{account}:rule/{name}"),
    "AWS::SQS::Queue": ("https://sqs.{region}.amazonaws.com/{account}/{name}", "arn:aws:sqs:{region}:{account}:{name}"),
}


class Gate:
    """Needs and policies of one synthesized template, resolved with the offline account's physical values."""

    def __init__(self, template: Mapping[str, Any], resolver: Resolver) -> None:
        self.template = template
        self.resolver = _with_local_values(template, resolver)
        self._role_by_arn = {
            self.resolver.resolve({"Fn::GetAtt": [logical_id, "Arn"]}): logical_id
            for logical_id in self._resources("AWS::IAM::Role")
        }
        self._keys = self._encryption_keys()

    # -- the template ------------------------------------------------------------------------------------------------
    def _resources(self, resource_type: str) -> dict[str, Mapping[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == resource_type}

    def role_of_arn(self, arn: str) -> str:
        """Logical id of the role with this (local) ARN."""
        if arn not in self._role_by_arn:
            raise UnknownToGate(f"no role of the template has the ARN {arn}")
        return self._role_by_arn[arn]

    def principal_names(self) -> dict[str, str]:
        """A readable name per role: the grants-table name of the function that uses it, `StateMachine`, or
        `TrainingJob` for the role SageMaker assumes."""
        names = {}
        for function in self._resources("AWS::Lambda::Function").values():
            props = function["Properties"]
            module = props["Handler"].rsplit(".", 2)[-2]
            names[self.role_of_arn(self.resolver.resolve(props["Role"]))] = module.capitalize()
        for machine in self._resources("AWS::StepFunctions::StateMachine").values():
            names[self.role_of_arn(self.resolver.resolve(machine["Properties"]["RoleArn"]))] = "StateMachine"
        for logical_id, role in self._resources("AWS::IAM::Role").items():
            if "sagemaker.amazonaws.com" in json.dumps(role["Properties"]["AssumeRolePolicyDocument"]):
                names[logical_id] = "TrainingJob"
        return names

    def policies(self, template: Mapping[str, Any] | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every identity-policy statement per role, resolved (of `template`, a mutated copy, when given)."""
        template = template or self.template
        statements: dict[str, list[dict[str, Any]]] = {}
        for logical_id, resource in template["Resources"].items():
            props = resource.get("Properties", {})
            if resource["Type"] == "AWS::IAM::Role" and (props.get("Policies") or props.get("ManagedPolicyArns")):
                raise UnknownToGate(f"{logical_id}: inline or managed policies are not evaluated; use AWS::IAM::Policy")
            if resource["Type"] != "AWS::IAM::Policy":
                continue
            document = self.resolver.resolve(props["PolicyDocument"])
            for role_ref in props.get("Roles", []):
                statements.setdefault(role_ref["Ref"], []).extend(document["Statement"])
        return statements

    def mutations(self) -> list[Mutation]:
        """Every single-grant removal: each action of each statement, and each resource of a multi-resource one."""
        found = []
        for logical_id, resource in self._resources("AWS::IAM::Policy").items():
            props = resource["Properties"]
            for role_ref in props.get("Roles", []):
                for index, statement in enumerate(props["PolicyDocument"]["Statement"]):
                    found += [
                        Mutation(logical_id, role_ref["Ref"], index, "Action", action)
                        for action in _as_list(statement["Action"])
                    ]
                    resources = _as_list(statement["Resource"])
                    if len(resources) > 1:
                        found += [Mutation(logical_id, role_ref["Ref"], index, "Resource", r) for r in resources]
        return found

    def _encryption_keys(self) -> dict[str, str]:
        """The customer-managed key of each encrypted bucket, table, topic and secret, by the resource's ARN."""
        keys = {}
        for logical_id, bucket in self._resources("AWS::S3::Bucket").items():
            for rule in bucket["Properties"].get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration", []):
                default = rule["ServerSideEncryptionByDefault"]
                if default["SSEAlgorithm"] == "aws:kms" and "KMSMasterKeyID" in default:
                    keys[self.resolver.resolve({"Fn::GetAtt": [logical_id, "Arn"]})] = default["KMSMasterKeyID"]
        for logical_id, table in self._resources("AWS::DynamoDB::Table").items():
            if "KMSMasterKeyId" in (sse := table["Properties"].get("SSESpecification", {})):
                keys[self.resolver.resolve({"Fn::GetAtt": [logical_id, "Arn"]})] = sse["KMSMasterKeyId"]
        for logical_id, topic in self._resources("AWS::SNS::Topic").items():
            if "KmsMasterKeyId" in topic["Properties"]:
                keys[self.resolver.resolve({"Ref": logical_id})] = topic["Properties"]["KmsMasterKeyId"]
        for logical_id, secret in self._resources("AWS::SecretsManager::Secret").items():
            if "KmsKeyId" in secret["Properties"]:
                keys[self.resolver.resolve({"Ref": logical_id})] = secret["Properties"]["KmsKeyId"]
        return {arn: _require_arn(self.resolver.resolve(key)) for arn, key in keys.items()}

    def _key_of(self, resource: str) -> str | None:
        """The key the resource (an object of an encrypted bucket, an index of an encrypted table included) is
        encrypted with, if any."""
        if resource.startswith("arn:aws:s3:::"):
            resource = resource.split("/", 1)[0]
        elif resource.startswith("arn:aws:dynamodb:"):
            resource = resource.split("/index/", 1)[0]
        return self._keys.get(resource)

    # -- needs -------------------------------------------------------------------------------------------------------
    def needs(self, calls: Iterable[AwsCall]) -> list[Need]:
        """Everything the recorded calls and the template's own services need, without duplicates."""
        needs: dict[Need, None] = {}
        for need in [*self.call_needs(calls), *self.service_side_needs()]:
            needs.setdefault(need)
        return list(needs)

    def call_needs(self, calls: Iterable[AwsCall]) -> Iterator[Need]:
        """What each recorded call is authorized as, and what it makes services do as the caller."""
        functions = self._resources("AWS::Lambda::Function")
        for call in calls:
            role = self.role_of_arn(self.resolver.resolve(functions[call.function]["Properties"]["Role"]))
            action = _ACTION_OF_OPERATION.get((call.service, call.operation), f"{call.iam_prefix}:{call.operation}")
            resource = self._resource_of(call, action)
            context = _CONTEXT_OF.get((call.service, call.operation), lambda _p: {})(call.params)
            reason = f"{call.function} called {call.service}.{call.operation}"
            yield from self._with_kms(Need(role, action, resource, reason, tuple(sorted(context.items()))))
            if action == "sagemaker:CreateTrainingJob":
                yield from self._create_training_job_needs(role, resource, call.params, reason)

    def _resource_of(self, call: AwsCall, action: str) -> str:
        if not _has_resource_types(action):
            return "*"
        if call.service not in _RESOURCE_OF:
            raise UnknownToGate(f"how does {call.service}.{call.operation} name its resource? Teach _RESOURCE_OF")
        return _RESOURCE_OF[call.service](call.params, self.resolver.region, self.resolver.account_id)

    def _with_kms(self, need: Need) -> Iterator[Need]:
        yield need
        key = self._key_of(need.resource)
        if key is None or need.action in _NO_KMS_USE:
            return
        if need.action not in _KMS_USE:
            raise UnknownToGate(f"does {need.action} use the key of {need.resource}? Teach _KMS_USE or _NO_KMS_USE")
        for action in _KMS_USE[need.action]:
            yield Need(need.role, action, key, f"{need.action} on an encrypted resource, for {need.reason}")

    def _create_training_job_needs(
        self, role: str, job_arn: str, request: Mapping[str, Any], reason: str
    ) -> Iterator[Need]:
        yield Need(
            role,
            "iam:PassRole",
            request["RoleArn"],
            reason,
            (("iam:PassedToService", "sagemaker.amazonaws.com"),),
        )
        if request.get("Tags"):
            # Tags on create are authorized as AddTags too, with the creating action as TaggingAction.
            yield Need(role, "sagemaker:AddTags", job_arn, reason, (("sagemaker:TaggingAction", "CreateTrainingJob"),))
        yield from self._training_job_needs(request)

    def _training_job_needs(self, request: Mapping[str, Any]) -> Iterator[Need]:
        """What the training job does as its execution role with what the request names."""
        role = self.role_of_arn(request["RoleArn"])
        job = request["TrainingJobName"]
        region, account = self.resolver.region, self.resolver.account_id
        reason = f"training job {job} (SageMaker, as its execution role)"

        def need(action: str, resource: str, **context: str) -> Iterator[Need]:
            yield from self._with_kms(Need(role, action, resource, reason, tuple(sorted(context.items()))))

        def prefix_access(uri: str, actions: Iterable[str]) -> Iterator[Need]:
            bucket, prefix = naming.split_s3_uri(uri)
            yield from need("s3:ListBucket", f"arn:aws:s3:::{bucket}", **{"s3:prefix": prefix})
            for action in actions:
                yield from need(action, f"arn:aws:s3:::{bucket}/{prefix}{_ANY_OBJECT}")

        registry, _, repository = request["AlgorithmSpecification"]["TrainingImage"].partition("/")
        image_account, _, _, image_region, *_ = registry.split(".")
        repository_arn = f"arn:aws:ecr:{image_region}:{image_account}:repository/{repository.split(':')[0]}"
        yield from need("ecr:GetAuthorizationToken", "*")
        for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"):
            yield from need(action, repository_arn)
        for channel in request.get("InputDataConfig", []):
            yield from prefix_access(channel["DataSource"]["S3DataSource"]["S3Uri"], ["s3:GetObject"])
        hyperparameters = {k: json.loads(v) for k, v in request.get("HyperParameters", {}).items()}
        code_bucket, code_key = naming.split_s3_uri(hyperparameters["sagemaker_submit_directory"])
        yield from need("s3:GetObject", f"arn:aws:s3:::{code_bucket}/{code_key}")
        if secret := hyperparameters.get("hf_token_secret_arn"):
            yield from need("secretsmanager:GetSecretValue", secret)
        # The model folder's files uncompressed under a prefix (CompressionType NONE), or one model.tar.gz; either
        # is uploaded in parts, and a failed upload is aborted.
        output_bucket, model_key = naming.split_s3_uri(model_artifact_uri(request["OutputDataConfig"], job))
        model = f"arn:aws:s3:::{output_bucket}/{model_key}" + (_ANY_OBJECT if model_key.endswith("/") else "")
        for action in ("s3:PutObject", "s3:AbortMultipartUpload"):
            yield from need(action, model)
        if output_key := request["OutputDataConfig"].get("KmsKeyId"):
            # CreateTrainingJob's OutputDataConfig: with a KmsKeyId "the execution role must include permissions to
            # call kms:Encrypt"; the SSE-KMS upload itself needs GenerateDataKey (and Decrypt for its multipart parts).
            for action in ("kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"):
                yield from need(action, _require_arn(output_key))
        if checkpoints := request.get("CheckpointConfig", {}).get("S3Uri"):
            # Resume reads them back; SageMaker keeps the S3 prefix in sync with the local folder, deletions included.
            yield from prefix_access(
                checkpoints, ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"]
            )
        log_group = f"arn:aws:logs:{region}:{account}:log-group:{TRAINING_LOG_GROUP}"
        for action in ("logs:CreateLogGroup", "logs:DescribeLogStreams"):
            yield from need(action, f"{log_group}:*")
        for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
            yield from need(action, f"{log_group}:log-stream:{job}/algo-1-1700000000")
        yield from need("cloudwatch:PutMetricData", "*", **{"cloudwatch:namespace": _TRAINING_METRICS_NAMESPACE})

    def service_side_needs(self) -> Iterator[Need]:
        """Needs no client call shows: the Lambdas' own logs and traces, the state machine's integrations."""
        logs = f"arn:aws:logs:{self.resolver.region}:{self.resolver.account_id}"
        for logical_id, function in self._resources("AWS::Lambda::Function").items():
            props = function["Properties"]
            role = self.role_of_arn(self.resolver.resolve(props["Role"]))
            reason = f"Lambda runs {logical_id}"
            stream = f"{logs}:log-group:{self.resolver.resolve(props['LoggingConfig']['LogGroup'])}:log-stream:1"
            for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
                yield Need(role, action, stream, reason)
            if props.get("TracingConfig", {}).get("Mode") == "Active":
                yield from (Need(role, action, "*", reason) for action in _LAMBDA_TRACING)
        for logical_id, config in self._resources("AWS::Lambda::EventInvokeConfig").items():
            # Lambda delivers a failed (or succeeded) asynchronous invocation to its destination as the function's
            # execution role (Cleanup's undeliverable events go to the Unhandled queue).
            function = self.resolver.resolve(config["Properties"]["FunctionName"])
            role = self.role_of_arn(self.resolver.resolve(self._function_role(function)))
            for outcome, destination in config["Properties"].get("DestinationConfig", {}).items():
                arn = _require_arn(self.resolver.resolve(destination["Destination"]))
                if not arn.startswith("arn:aws:sqs:"):
                    raise UnknownToGate(f"{logical_id}: what does a {outcome} destination {arn} need? Teach the gate")
                yield Need(role, "sqs:SendMessage", arn, f"Lambda delivers {function}'s {outcome} invocations")
        for logical_id, machine in self._resources("AWS::StepFunctions::StateMachine").items():
            props = machine["Properties"]
            role = self.role_of_arn(self.resolver.resolve(props["RoleArn"]))
            definition = json.loads(self.resolver.resolve(props["DefinitionString"]))
            for name, state in _task_states(definition):
                yield from self._integration_needs(role, f"{logical_id} state {name}", state)
            if props.get("LoggingConfiguration"):
                yield from (Need(role, a, "*", f"{logical_id} logs") for a in _STATE_MACHINE_LOG_DELIVERY)
            if props.get("TracingConfiguration", {}).get("Enabled"):
                yield from (Need(role, a, "*", f"{logical_id} traces") for a in _STATE_MACHINE_TRACING)

    def _function_role(self, function_name: str) -> Any:
        """The Role property of the function the offline account named `function_name` (its logical id)."""
        for logical_id, function in self._resources("AWS::Lambda::Function").items():
            if self.resolver.resolve({"Ref": logical_id}) == function_name:
                return function["Properties"]["Role"]
        raise UnknownToGate(f"no function named {function_name} in the template")

    def _integration_needs(self, role: str, reason: str, state: Mapping[str, Any]) -> Iterator[Need]:
        parameters = state.get("Parameters", {})
        integration = state["Resource"].removeprefix("arn:aws:states:::")
        if integration.startswith("arn:aws:lambda:"):  # a function's ARN as the Resource: invoked directly
            yield Need(role, "lambda:InvokeFunction", integration, reason)
        elif integration == "lambda:invoke":
            yield Need(role, "lambda:InvokeFunction", parameters["FunctionName"], reason)
        elif integration == "sns:publish":
            yield from self._with_kms(Need(role, "sns:Publish", parameters["TopicArn"], reason))
        else:
            raise UnknownToGate(f"{reason}: what does the {state['Resource']} integration need? Teach the gate")

    # -- evaluation --------------------------------------------------------------------------------------------------
    def keys_not_delegating_to_iam(self) -> list[str]:
        """Keys whose policy does not let the account's IAM policies grant their use: identity grants on them would
        do nothing, and the gate, which evaluates identity policies, would wrongly pass."""
        return [
            logical_id
            for logical_id, key in self._resources("AWS::KMS::Key").items()
            if not any(
                statement["Effect"] == "Allow"
                and statement["Action"] == "kms:*"
                and self.resolver.resolve(statement["Principal"].get("AWS"))
                == f"arn:aws:iam::{self.resolver.account_id}:root"
                and "Condition" not in statement
                for statement in key["Properties"]["KeyPolicy"]["Statement"]
            )
        ]

    def denied(self, needs: Iterable[Need], template: Mapping[str, Any] | None = None) -> list[Need]:
        """The needs no statement of their role's identity policies allows."""
        policies = self.policies(template)
        return [need for need in needs if not allows(policies.get(need.role, []), need)]


def allows(statements: Iterable[Mapping[str, Any]], need: Need) -> bool:
    """Whether an Allow statement covers the need (action, resource and conditions)."""
    for statement in statements:
        # A Deny would need deny-wins evaluation, NotResource/NotAction an inverted match: none is written here.
        if statement["Effect"] != "Allow" or {"NotAction", "NotResource"} & set(statement):
            raise UnknownToGate(f"only Allow statements with Action and Resource are evaluated: {statement}")
        if (
            any(action_matches(pattern, need.action) for pattern in _as_list(statement["Action"]))
            and any(arn_matches(pattern, need.resource) for pattern in _as_list(statement["Resource"]))
            and _conditions_hold(statement.get("Condition", {}), dict(need.context))
        ):
            return True
    return False


def arn_matches(pattern: str, arn: str) -> bool:
    """IAM's resource match: each ARN segment against the pattern's segment, `*` and `?` as wildcards within it
    (the resource segment may hold `/` and `:`). A `*` in `arn` itself is a literal character, as in IAM."""
    if pattern == "*":
        return True
    want, have = ARN(pattern), ARN(arn)
    if want.error or have.error:
        raise UnknownToGate(f"not an ARN: {pattern if want.error else arn}")
    segments = ("partition", "tech", "region", "account_number", "name")
    return all(_glob(getattr(want, s) or "").fullmatch(getattr(have, s) or "") for s in segments)


# Condition operators our policies use; IAM compares keys case-insensitively, values as written.
_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda actual, expected: actual == expected,
    "StringLike": lambda actual, expected: _glob(expected).fullmatch(actual) is not None,
}


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]], context: Mapping[str, str]) -> bool:
    context = {key.lower(): value for key, value in context.items()}
    for operator, entries in conditions.items():
        if operator not in _OPERATORS:
            raise UnknownToGate(f"condition operator {operator} is not evaluated yet; teach _OPERATORS")
        for key, expected in entries.items():
            actual = context.get(key.lower())
            # A key the request does not carry fails the condition (no ...IfExists operator is supported).
            if actual is None or not any(_OPERATORS[operator](actual, str(value)) for value in _as_list(expected)):
                return False
    return True


def action_matches(pattern: str, action: str) -> bool:
    """Whether a policy's action (wildcards allowed) covers `action`."""
    return action.lower() in _expanded(pattern)


@functools.cache
def _expanded(pattern: str) -> frozenset[str]:
    # policyuniverse expands a wildcard against its list of known actions (lower-cased).
    return frozenset(get_actions_from_statement({"Action": pattern}))


@functools.cache
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


@functools.cache
def _has_resource_types(action: str) -> bool:
    """Whether IAM authorizes `action` against a resource ARN (parliament's copy of the IAM reference); actions
    without resource-level permissions are authorized against `*`."""
    prefix, name = action.split(":")
    parliament.expand_action(action)  # raises for an action IAM does not know: a wrong operation mapping
    service = next(s for s in parliament.iam_definition if s["prefix"] == prefix)
    privilege = next(p for p in service["privileges"] if p["privilege"].lower() == name.lower())
    return any(r["resource_type"] for r in privilege["resource_types"])


def _task_states(definition: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for name, state in definition["States"].items():
        if state["Type"] == "Task":
            yield name, state
        for nested in (state.get("ItemProcessor"), state.get("Iterator"), *state.get("Branches", [])):
            if nested:
                yield from _task_states(nested)


def _with_local_values(template: Mapping[str, Any], resolver: Resolver) -> Resolver:
    """A copy of `resolver` with a stand-in value for every resource the offline account did not create."""
    complete = Resolver(resolver.account_id, resolver.region, dict(resolver.refs), dict(resolver.attributes))
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] not in _LOCAL_VALUES:
            continue
        ref, arn = _LOCAL_VALUES[resource["Type"]]
        values = {"name": logical_id.lower(), "region": resolver.region, "account": resolver.account_id}
        complete.refs.setdefault(logical_id, ref.format(**values))
        if arn:
            complete.attributes.setdefault((logical_id, "Arn"), arn.format(**values))
    return complete


def _require_arn(value: str) -> str:
    if not isinstance(value, str) or not value.startswith("arn:"):
        raise UnknownToGate(f"expected an ARN, got {value!r}")
    return value


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- Lint -------------------------------------------------------------------------------------------------------------

# Permission policies per resource type (trust policies grant no permissions and have no Resource).
_POLICY_DOCUMENTS = {
    "AWS::IAM::Policy": "PolicyDocument",
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::KMS::Key": "KeyPolicy",
}


@dataclass(frozen=True)
class LintFinding:
    """One parliament finding on one policy of the template."""

    resource_type: str
    logical_id: str
    issue: str
    detail: str


def lint_policies(template: Mapping[str, Any], resolver: Resolver) -> list[LintFinding]:
    """parliament's findings (unknown actions and prefixes, resource mismatches, malformed statements, condition
    keys and types) on every permission policy of `template`, resolved with local values, without duplicates."""
    resolver = _with_local_values(template, resolver)
    findings: dict[LintFinding, None] = {}
    for logical_id, resource in template["Resources"].items():
        if (property_name := _POLICY_DOCUMENTS.get(resource["Type"])) is None:
            continue
        document = _strings(resolver.resolve(resource["Properties"][property_name]))
        for finding in parliament.analyze_policy_string(json.dumps(document)).findings:
            findings.setdefault(LintFinding(resource["Type"], logical_id, finding.issue, str(finding.detail)))
    return list(findings)


def _strings(value: Any) -> Any:
    """The document with numbers as strings, as IAM reads them (parliament's type checks expect strings)."""
    if isinstance(value, dict):
        return {key: _strings(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_strings(item) for item in value]
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
