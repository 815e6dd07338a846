"""Security properties of the synthesized templates (the same ones `cdk synth` writes)."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk.assertions import Match


def _resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == resource_type}


def _statements(policy_resource: dict[str, Any]) -> list[dict[str, Any]]:
    return policy_resource["Properties"]["PolicyDocument"]["Statement"]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _role_statements(synthesized, role_logical_prefix: str) -> list[dict[str, Any]]:
    """Every statement of the inline/default policies attached to the role whose logical id starts with the prefix."""
    roles = [k for k in _resources(synthesized.main_json, "AWS::IAM::Role") if k.startswith(role_logical_prefix)]
    assert len(roles) == 1, roles
    statements = []
    for policy in _resources(synthesized.main_json, "AWS::IAM::Policy").values():
        if {"Ref": roles[0]} in policy["Properties"]["Roles"]:
            statements += _statements(policy)
    return statements


def _data_bucket(synthesized) -> tuple[str, dict[str, Any]]:
    buckets = {
        k: v
        for k, v in _resources(synthesized.main_json, "AWS::S3::Bucket").items()
        if "LoggingConfiguration" in v["Properties"]
    }
    assert len(buckets) == 1
    return next(iter(buckets.items()))


def test_every_bucket_blocks_public_access_and_is_encrypted(synthesized) -> None:
    buckets = _resources(synthesized.main_json, "AWS::S3::Bucket")
    assert len(buckets) == 2  # data + its access logs
    for bucket in buckets.values():
        props = bucket["Properties"]
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }
        assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def test_data_bucket_uses_the_rotating_kms_key_versioning_and_access_logs(synthesized) -> None:
    _, bucket = _data_bucket(synthesized)
    props = bucket["Properties"]
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["BucketKeyEnabled"] is True
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["LoggingConfiguration"]["DestinationBucketName"]
    synthesized.main.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})


def test_data_bucket_lifecycle_aborts_uploads_expires_old_versions_and_checkpoints(synthesized) -> None:
    _, bucket = _data_bucket(synthesized)
    rules = {rule["Id"]: rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert rules["expire-checkpoints"]["Prefix"] == "checkpoints/"
    assert rules["expire-checkpoints"]["ExpirationInDays"] == 30


def test_overwritten_checkpoint_versions_are_dropped_after_one_day_not_thirty(synthesized) -> None:
    # Every checkpoint save overwrites the same keys (~81 GB for 7B full): versioning must not keep them a month.
    _, bucket = _data_bucket(synthesized)
    rules = {rule["Id"]: rule for rule in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    rule = rules["expire-noncurrent-checkpoints"]
    assert rule["Prefix"] == "checkpoints/" and rule["Status"] == "Enabled"
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    assert rule["ExpiredObjectDeleteMarker"] is True


def test_every_bucket_policy_denies_plain_http(synthesized) -> None:
    policies = _resources(synthesized.main_json, "AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        denies = [s for s in _statements(policy) if s["Effect"] == "Deny"]
        assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in denies)
        assert any("s3:TlsVersion" in json.dumps(s.get("Condition", {})) for s in denies)


def test_bucket_policy_grants_the_sagemaker_role_exactly_its_prefixes(synthesized) -> None:
    bucket_id, _ = _data_bucket(synthesized)
    policy = next(
        p
        for p in _resources(synthesized.main_json, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    )
    allows = [s for s in _statements(policy) if s["Effect"] == "Allow"]
    granted = {}
    for statement in allows:
        assert "Fn::GetAtt" in json.dumps(statement["Principal"])  # the role, not an account or "*"
        for action in _as_list(statement["Action"]):
            granted.setdefault(action, set()).update(json.dumps(r) for r in _as_list(statement["Resource"]))
    assert set(granted) == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:ListBucket",
    }
    assert all("datasets/*" in r or "checkpoints/*" in r for r in granted["s3:GetObject"])
    assert all("checkpoints/*" in r or "models/*" in r for r in granted["s3:PutObject"])
    assert not any("datasets/" in r for r in granted["s3:PutObject"])


def test_ledger_is_on_demand_recoverable_encrypted_and_protected(synthesized) -> None:
    synthesized.main.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like(
                {
                    "BillingMode": "PAY_PER_REQUEST",
                    "KeySchema": [
                        {"AttributeName": "pk", "KeyType": "HASH"},
                        {"AttributeName": "sk", "KeyType": "RANGE"},
                    ],
                    "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
                    "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
                    "DeletionProtectionEnabled": True,
                }
            ),
            "DeletionPolicy": "Retain",
        },
    )


def test_ledger_has_an_index_by_model_and_approach_and_one_by_calibration_key_newest_first(synthesized) -> None:
    synthesized.main.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": "model-approach",
                    "KeySchema": [
                        {"AttributeName": "model_approach", "KeyType": "HASH"},
                        {"AttributeName": "created_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": "calibration",
                    "KeySchema": [
                        {"AttributeName": "calibration_key", "KeyType": "HASH"},
                        {"AttributeName": "created_at", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
            ]
        },
    )


def test_token_secret_is_created_empty_and_uses_the_data_key(synthesized) -> None:
    secrets = _resources(synthesized.main_json, "AWS::SecretsManager::Secret")
    assert len(secrets) == 1
    props = next(iter(secrets.values()))["Properties"]
    # Neither a value nor a generated random one (which training would send to the Hub as a token: 401).
    # Without both, CloudFormation creates an empty secret; the user puts the token in it (README).
    assert "SecretString" not in props
    assert "GenerateSecretString" not in props
    assert "KmsKeyId" in props


def test_no_policy_anywhere_grants_a_wildcard_action(synthesized) -> None:
    for template in (synthesized.main_json, synthesized.quotas.to_json()):
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::IAM::Policy":
                continue
            for statement in _statements(resource):
                for action in _as_list(statement["Action"]):
                    assert action != "*" and not action.endswith(":*"), action


def test_no_role_has_a_managed_policy_except_cdks_own_provider_framework(synthesized) -> None:
    for logical_id, role in _resources(synthesized.main_json, "AWS::IAM::Role").items():
        assert "ManagedPolicyArns" not in role["Properties"], logical_id


def test_sagemaker_role_is_least_privilege(synthesized) -> None:
    statements = _role_statements(synthesized, "SageMakerRole")
    by_action: dict[str, list[Any]] = {}
    for statement in statements:
        for action in _as_list(statement["Action"]):
            by_action.setdefault(action, []).extend(_as_list(statement["Resource"]))
    # ECR pull is scoped to the one Hugging Face DLC repository.
    assert all("repository/huggingface-pytorch-training" in json.dumps(r) for r in by_action["ecr:BatchGetImage"])
    # The token secret only, never Secrets Manager at large.
    assert by_action["secretsmanager:GetSecretValue"] == [
        {"Ref": next(iter(_resources(synthesized.main_json, "AWS::SecretsManager::Secret")))}
    ]
    # Logs only for SageMaker training jobs.
    assert all("/aws/sagemaker/TrainingJobs" in json.dumps(r) for r in by_action["logs:PutLogEvents"])
    # Only the resources that have no resource-level permissions are "*", and PutMetricData is namespace-bound.
    star_actions = {a for a, resources in by_action.items() if "*" in resources}
    assert star_actions == {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}
    metrics = next(s for s in statements if s["Action"] == "cloudwatch:PutMetricData")
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}}
    # The code asset: one object, not the assets bucket.
    code_reads = [r for r in by_action["s3:GetObject"] if "cdk-" in json.dumps(r) or "assets" in json.dumps(r)]
    assert code_reads and all(json.dumps(r).endswith('.gz"]]}') for r in code_reads)


def test_launch_may_pass_only_the_sagemaker_role_only_to_sagemaker(synthesized) -> None:
    statements = _role_statements(synthesized, "WorkflowLaunchFunctionRole")
    pass_role = next(s for s in statements if s["Action"] == "iam:PassRole")
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert "SageMakerRole" in json.dumps(pass_role["Resource"])
    create = next(s for s in statements if "sagemaker:CreateTrainingJob" in _as_list(s["Action"]))
    assert f"training-job/{_job_name_prefix()}*" in json.dumps(create["Resource"])


def _job_name_prefix() -> str:
    from stacks.app_builder import cdk_json_context
    from stacks.config import load_config

    return load_config(cdk_json_context()["finetune"]).job_name_prefix


def test_every_lambda_is_current_traced_bounded_and_logs_to_its_own_retained_group(synthesized) -> None:
    functions = _resources(synthesized.main_json, "AWS::Lambda::Function")
    ours = {k: v for k, v in functions.items() if v["Properties"].get("Handler", "").startswith("lambdas.")}
    assert len(ours) == 9  # Plan, Launch, Status, Record, Classify, Remedy, Report, Cleanup, Reconcile
    for function in ours.values():
        props = function["Properties"]
        assert props["Runtime"] == "python3.14"
        assert props["TracingConfig"] == {"Mode": "Active"}
        assert props["Timeout"] <= 900
        assert "LogGroup" in json.dumps(props["LoggingConfig"])
        # Powertools and the SDK travel in the asset at their pinned versions (tests/infra/test_lambda_bundle.py)
        assert "Layers" not in props


def test_state_machine_logs_everything_traces_and_times_out(synthesized) -> None:
    synthesized.main.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineType": "STANDARD",
            "TracingConfiguration": {"Enabled": True},
            "LoggingConfiguration": Match.object_like({"Level": "ALL", "IncludeExecutionData": True}),
        },
    )


def test_stack_outputs_name_what_users_need(synthesized) -> None:
    outputs = synthesized.main_json["Outputs"]
    for name in (
        "BucketName",
        "SageMakerRoleArn",
        "LedgerTableName",
        "HfTokenSecretArn",
        "StateMachineArn",
        "ReportLocation",
    ):
        assert name in outputs
    assert "QuotaRequestOutcomes" in synthesized.quotas.to_json()["Outputs"]


def test_an_existing_token_secret_can_be_imported_by_name_instead_of_created() -> None:
    from aws_cdk import assertions

    from stacks.app_builder import build_app, cdk_json_context

    app = build_app(context=cdk_json_context({"hf_token_secret_name": "team/hf-token"}))
    stack = app.node.find_child("Finetune")
    app.synth()  # nag-clean with the import too
    template = assertions.Template.from_stack(stack).to_json()
    assert not _resources(template, "AWS::SecretsManager::Secret")
    assert ":secret:team/hf-token" in json.dumps(template)
