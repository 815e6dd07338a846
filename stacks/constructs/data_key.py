"""The customer-managed KMS key that encrypts the project's data at rest."""

from __future__ import annotations

from aws_cdk import Aws, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import Config


class DataKey(Construct):
    """One rotating KMS key for the data bucket, ledger, token secret, topic and every retained log group.

    Why KMS over S3-managed keys: decrypting a model, dataset or token then needs an explicit key grant on top
    of the S3/IAM permission, every decrypt is in CloudTrail, and disabling the key cuts off all data at once.
    The S3 bucket key keeps the per-request KMS cost negligible.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            description=f"{config.resource_prefix}: fine-tuning data, ledger, token secret, notifications and logs",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        # CloudWatch Logs encrypts a log group's events with the key itself, as the regional service principal, and
        # names the log group in the encryption context: this account's and region's log groups only (AWS:
        # "Encrypt log data in CloudWatch Logs using AWS KMS"). Key policies need no resource but the key: "*".
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccountAndRegion",
                principals=[iam.ServicePrincipal(f"logs.{config.region}.amazonaws.com")],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{config.region}:{Aws.ACCOUNT_ID}:*"
                        )
                    }
                },
            )
        )
