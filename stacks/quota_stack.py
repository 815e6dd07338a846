"""Account-level side effects: SageMaker quota increase requests."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_kms as kms
from constructs import Construct

from stacks.config import Config
from stacks.constructs.quotas import QuotaRequests


class QuotaStack(Stack):
    """Kept apart so a user can deploy without it, and so its lifecycle never touches data or the pipeline."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, log_key: kms.IKey, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.requests = QuotaRequests(self, "QuotaRequests", config=config, log_key=log_key)
        CfnOutput(self, "QuotaRequestOutcomes", value=self.requests.summary, description="Per instance type and usage")
