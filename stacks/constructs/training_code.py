"""The training code asset: `training_code/` as a deterministic tar.gz file asset."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from stacks.packaging import BUILD_DIR, REPO_ROOT, build_source_tarball


class TrainingCode(Construct):
    """Publishes `training_code/` as `sourcedir.tar.gz`, the form `sagemaker_submit_directory` requires."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        tarball = build_source_tarball(REPO_ROOT / "training_code", BUILD_DIR / "training_code" / "sourcedir.tar.gz")
        self.asset = s3_assets.Asset(self, "Asset", path=str(tarball))

    @property
    def s3_uri(self) -> str:
        """`s3://bucket/key.tar.gz` of the published code."""
        return self.asset.s3_object_url

    def grant_read(self, role: iam.IRole) -> None:
        """Read this one object only (not the whole CDK assets bucket)."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.asset.bucket.arn_for_objects(self.asset.s3_object_key)],
            )
        )
