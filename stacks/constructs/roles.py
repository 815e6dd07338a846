"""The SageMaker execution role training jobs run as."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.config import Config
from stacks.images import TrainingImage
from stacks.nag import acknowledge, nag_resource


class SageMakerExecutionRole(Construct):
    """Least privilege for a training job: pull the one DLC repository, write its own logs and metrics.
    Data access (bucket prefixes, code object, secret, key) is granted by the resources that own it."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, image: TrainingImage) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            # Confused-deputy prevention (SageMaker Developer Guide, "Cross-service confused deputy prevention":
            # use aws:SourceAccount and aws:SourceArn in the role's trust policy): SageMaker may assume this role
            # only on behalf of a SageMaker resource of this account and region.
            assumed_by=iam.ServicePrincipal(
                "sagemaker.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                    "ArnLike": {"aws:SourceArn": f"arn:{Aws.PARTITION}:sagemaker:{config.region}:{Aws.ACCOUNT_ID}:*"},
                },
            ),
            description="Runs fine-tuning training jobs; no managed policies",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PullTrainingImage",
                actions=["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"],
                resources=[
                    f"arn:{Aws.PARTITION}:ecr:{config.region}:{image.registry_account}:repository/{image.repository}"
                ],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="EcrLogin",
                # GetAuthorizationToken has no resource-level permissions.
                actions=["ecr:GetAuthorizationToken"],
                resources=["*"],
            )
        )
        log_group = f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:/aws/sagemaker/TrainingJobs"
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="TrainingJobLogGroup",
                actions=["logs:CreateLogGroup", "logs:DescribeLogStreams"],
                # Log-group actions are authorized against `log-group:NAME:*`; the bare group ARN matches none.
                resources=[f"{log_group}:*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="TrainingJobLogStreams",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{log_group}:log-stream:{config.job_name_prefix}*"],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="TrainingJobMetrics",
                # PutMetricData has no resource-level permissions; the namespace condition scopes it instead.
                actions=["cloudwatch:PutMetricData"],
                resources=["*"],
                conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}},
            )
        )
        acknowledge(
            self.role,
            "IAM5[Resource::*]",
            "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource-level permissions; "
            "PutMetricData is limited to the /aws/sagemaker/TrainingJobs namespace by condition.",
        )
        acknowledge(
            self.role,
            f"IAM5[Resource::{nag_resource(self.role, log_group)}:*]",
            "The `:*` form is how CloudWatch Logs names a log group for CreateLogGroup and DescribeLogStreams; "
            "only those two group-level actions are granted on it, on SageMaker's one training log group.",
        )
        acknowledge(
            self.role,
            f"IAM5[Resource::{nag_resource(self.role, log_group)}:log-stream:{config.job_name_prefix}*]",
            "SageMaker names each log stream after its training job; this app's jobs all start with the prefix.",
        )
