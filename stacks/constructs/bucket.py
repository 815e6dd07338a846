"""The data bucket (datasets, checkpoints, models, reports) and its access-log bucket."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.config import Config
from stacks.nag import acknowledge, arn_ref

# The S3 layout contract: who may touch which prefix.
DATASETS_PREFIX = "datasets/"
CHECKPOINTS_PREFIX = "checkpoints/"
MODELS_PREFIX = "models/"
REPORTS_PREFIX = "reports/"


class DataBucket(Construct):
    """A private, TLS-only, KMS-encrypted, versioned bucket with access logs and lifecycle rules."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            # Server access log delivery cannot write to SSE-KMS buckets: S3-managed keys are the only option.
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-access-logs", expiration=Duration.days(config.access_log_expiry_days))
            ],
            removal_policy=removal,
            auto_delete_objects=False,
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=key,
            bucket_key_enabled=True,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)
                ),
                s3.LifecycleRule(
                    id="expire-noncurrent-versions",
                    noncurrent_version_expiration=Duration.days(config.noncurrent_version_expiry_days),
                ),
                # Checkpoints exist only so that an interrupted spot job can resume; nobody needs them later.
                s3.LifecycleRule(
                    id="expire-checkpoints",
                    prefix=CHECKPOINTS_PREFIX,
                    expiration=Duration.days(config.checkpoint_expiry_days),
                ),
                # SageMaker re-uploads the same checkpoint keys at every save, so versioning would keep every
                # overwritten save (~81 GB each for 7B full fine-tuning) for the bucket-wide 30 days. A resume only
                # ever reads the current version: drop the others after 1 day (the shortest S3 allows; where two
                # rules overlap, S3 applies the shorter expiration), and the delete markers left once expired.
                s3.LifecycleRule(
                    id="expire-noncurrent-checkpoints",
                    prefix=CHECKPOINTS_PREFIX,
                    noncurrent_version_expiration=Duration.days(config.checkpoint_noncurrent_version_expiry_days),
                    expired_object_delete_marker=True,
                ),
            ],
            removal_policy=removal,
        )

    def grant_training_access(self, role: iam.IRole) -> None:
        """Give a SageMaker execution role exactly its prefixes, in the bucket policy and in its own policy:
        read datasets and checkpoints (resume), write checkpoints and models."""
        statements = [
            iam.PolicyStatement(
                sid="TrainingReadsDatasetsAndCheckpoints",
                actions=["s3:GetObject"],
                resources=[
                    self.bucket.arn_for_objects(f"{DATASETS_PREFIX}*"),
                    self.bucket.arn_for_objects(f"{CHECKPOINTS_PREFIX}*"),
                ],
            ),
            iam.PolicyStatement(
                sid="TrainingWritesCheckpointsAndModels",
                actions=["s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject"],
                resources=[
                    self.bucket.arn_for_objects(f"{CHECKPOINTS_PREFIX}*"),
                    self.bucket.arn_for_objects(f"{MODELS_PREFIX}*"),
                ],
            ),
            iam.PolicyStatement(
                sid="TrainingListsItsPrefixes",
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{DATASETS_PREFIX}*", f"{CHECKPOINTS_PREFIX}*"]}},
            ),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
            resource_statement = statement.copy()
            resource_statement.add_arn_principal(role.role_arn)
            self.bucket.add_to_resource_policy(resource_statement)
        for prefix in (DATASETS_PREFIX, CHECKPOINTS_PREFIX, MODELS_PREFIX):
            acknowledge(
                role,
                f"IAM5[Resource::{arn_ref(self.bucket)}/{prefix}*]",
                f"Object keys under {prefix} are per dataset/run/job and unknown at deploy time; "
                "the grant is limited to this one prefix of the S3 layout contract.",
            )
