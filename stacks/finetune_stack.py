"""The fine-tuning stack: data, access and the workflow, composed from one construct per concern."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.config import Config
from stacks.constructs.bucket import REPORTS_PREFIX, DataBucket
from stacks.constructs.dashboard import Dashboard
from stacks.constructs.data_key import DataKey
from stacks.constructs.grants import secret_policy_arn
from stacks.constructs.ledger import Ledger
from stacks.constructs.roles import SageMakerExecutionRole
from stacks.constructs.secret import HfTokenSecret
from stacks.constructs.training_code import TrainingCode
from stacks.constructs.workflow import Workflow
from stacks.images import TrainingImage


class FineTuneStack(Stack):
    """Stateful resources (retained on delete by default) and the workflow that uses them.

    One stack rather than storage + pipeline: cross-stack exports would freeze the bucket, table and role
    (CloudFormation refuses to change an export while it is imported), for no isolation gain that the
    RETAIN policies and the table's deletion protection don't already give.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, image: TrainingImage, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        key = DataKey(self, "DataKey", config=config).key
        self.data_key = key
        data = DataBucket(self, "Data", config=config, key=key)
        ledger = Ledger(self, "Ledger", config=config, key=key)
        hf_token = HfTokenSecret(self, "HfToken", config=config, key=key)
        training_code = TrainingCode(self, "TrainingCode")
        sagemaker = SageMakerExecutionRole(self, "SageMaker", config=config, image=image)

        data.grant_training_access(sagemaker.role)
        training_code.grant_read(sagemaker.role)
        # The job reads the token's value and nothing else (training_code/hf_token.py): not CDK's grant_read,
        # which adds DescribeSecret.
        sagemaker.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue"], resources=[secret_policy_arn(hf_token.secret)]
            )
        )
        # Datasets are read, and checkpoints and models written, under the data key; Launch names the key as the
        # job's OutputDataConfig.KmsKeyId, for which SageMaker requires kms:Encrypt on the execution role.
        key.grant(sagemaker.role, "kms:Decrypt", "kms:GenerateDataKey", "kms:Encrypt")

        self.workflow = Workflow(
            self,
            "Workflow",
            config=config,
            bucket=data.bucket,
            table=ledger.table,
            key=key,
            sagemaker_role=sagemaker.role,
            hf_token_secret=hf_token.secret,
            training_image_uri=image.uri,
            code_s3_uri=training_code.s3_uri,
        )
        self.bucket = data.bucket
        self.table = ledger.table
        # Dashboards are per account, not per region: the job-name prefix (stack and region hashed in) names it.
        self.dashboard = Dashboard(
            self,
            "Dashboard",
            dashboard_name=config.job_name_prefix,
            state_machine=self.workflow.state_machine,
            functions={
                name: getattr(self.workflow, name.lower())
                for name in (
                    "Plan",
                    "Launch",
                    "Status",
                    "Record",
                    "Classify",
                    "Remedy",
                    "Report",
                    "Cleanup",
                    "Reconcile",
                )
            },
            job_name_prefix=config.job_name_prefix,
        ).dashboard

        CfnOutput(self, "BucketName", value=data.bucket.bucket_name, description="Data bucket (datasets/, reports/ …)")
        CfnOutput(self, "SageMakerRoleArn", value=sagemaker.role.role_arn, description="Training job execution role")
        CfnOutput(self, "LedgerTableName", value=ledger.table.table_name, description="DynamoDB cost ledger")
        CfnOutput(
            self, "HfTokenSecretArn", value=hf_token.secret.secret_arn, description="Put your Hugging Face token here"
        )
        CfnOutput(self, "TrainingCodeUri", value=training_code.s3_uri, description="sagemaker_submit_directory")
        CfnOutput(self, "StateMachineArn", value=self.workflow.state_machine.state_machine_arn)
        CfnOutput(
            self,
            "ReportLocation",
            value=f"s3://{data.bucket.bucket_name}/{REPORTS_PREFIX}<run id>/report.md",
            description="Where each run's report lands",
        )
        CfnOutput(self, "NotificationTopicArn", value=self.workflow.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.dashboard.dashboard_name, description="CloudWatch dashboard")
