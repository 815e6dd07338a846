"""Service-quota increase requests as a custom resource (Provider framework)."""

from __future__ import annotations

from aws_cdk import Aws, CustomResource, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.config import Config
from stacks.constructs.hardened import HardenedFunction, retained_log_group
from stacks.nag import acknowledge, arn_ref


class QuotaRequests(Construct):
    """For each configured (instance type, usage): request an increase when the applied quota is lower.

    Never fails a deployment because AWS declines: the outcome per target is custom-resource data and the
    `Summary` attribute feeds a stack output.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, log_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self.function = HardenedFunction(
            self,
            "Handler",
            config=config,
            log_key=log_key,
            handler="lambdas.handlers.quota_requests.handler",
            description="Requests SageMaker training quota increases",
            timeout=Duration.minutes(2),
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="ReadQuotas",
                # The List* APIs have no resource-level permissions.
                actions=[
                    "servicequotas:ListServiceQuotas",
                    "servicequotas:ListAWSDefaultServiceQuotas",
                    "servicequotas:ListRequestedServiceQuotaChangeHistoryByQuota",
                    # The applied value of a quota ListServiceQuotas does not list (lambdas/quotas.py).
                    "servicequotas:GetServiceQuota",
                ],
                resources=["*"],
            )
        )
        self.function.add_to_role_policy(
            iam.PolicyStatement(
                sid="RequestSageMakerQuotas",
                actions=["servicequotas:RequestServiceQuotaIncrease"],
                resources=[f"arn:{Aws.PARTITION}:servicequotas:{Aws.REGION}:{Aws.ACCOUNT_ID}:sagemaker/*"],
            )
        )
        provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.function,
            log_group=retained_log_group(self, "ProviderLogs", config, log_key),
        )
        role = self.function.role
        assert role is not None  # a HardenedFunction always gets a role of its own
        acknowledge(
            role,
            "IAM5[Resource::*]",
            "servicequotas:List*, GetServiceQuota and X-Ray tracing support no resource-level permissions; all are "
            "read-only.",
        )
        acknowledge(
            role,
            "IAM5[Resource::arn:<AWS::Partition>:servicequotas:<AWS::Region>:<AWS::AccountId>:sagemaker/*]",
            "Quota codes are looked up by name at deploy time; the grant is limited to SageMaker's quotas.",
        )
        acknowledge(
            provider,
            "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "The Provider framework's own onEvent Lambda is defined by CDK with this managed policy (logs only).",
        )
        acknowledge(
            provider,
            f"IAM5[Resource::{arn_ref(self.function)}:*]",
            "The Provider framework invokes only our handler function and its versions (ARN:*).",
        )
        targets = [
            {"InstanceType": q.instance_type, "Usage": q.usage, "DesiredValue": str(q.desired_value)}
            for q in config.quota_requests
        ]
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=provider.service_token,
            resource_type="Custom::SageMakerQuotaRequests",
            # A changed target list re-runs the requests (CloudFormation sends Update); an unchanged one does not.
            properties={"QuotaRequests": targets},
        )

    @property
    def summary(self) -> str:
        """Outcome of every target, one line each (a CloudFormation token)."""
        return self.resource.get_att_string("Summary")
