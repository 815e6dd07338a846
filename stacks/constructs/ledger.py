"""The DynamoDB cost ledger: one row per job and one SUMMARY row per run."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from lambdas.ledger import (
    CALIBRATION_INDEX,
    CALIBRATION_KEY,
    MODEL_APPROACH_INDEX,
    MODEL_APPROACH_KEY,
    MODEL_APPROACH_SORT_KEY,
)
from stacks.config import Config


class Ledger(Construct):
    """On-demand, point-in-time-recoverable, KMS-encrypted table keyed `pk = RUN#<run>`, `sk = JOB#<job>|SUMMARY`,
    with one index by model x approach (newest first) so a report can place a run next to earlier ones without a
    scan, and one by calibration key (newest first) so Plan calibrates its estimates from recent jobs like them."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=config.table_deletion_protection,
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        self.table.add_global_secondary_index(
            index_name=MODEL_APPROACH_INDEX,
            partition_key=dynamodb.Attribute(name=MODEL_APPROACH_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=MODEL_APPROACH_SORT_KEY, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        self.table.add_global_secondary_index(
            index_name=CALIBRATION_INDEX,
            partition_key=dynamodb.Attribute(name=CALIBRATION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=MODEL_APPROACH_SORT_KEY, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
