"""The Hugging Face token secret. Only its ARN ever travels (to Lambdas and training jobs)."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks.config import Config
from stacks.nag import acknowledge


class HfTokenSecret(Construct):
    """Creates an empty secret for the user to fill (`aws secretsmanager put-secret-value`), or imports one by name."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        if config.hf_token_secret_name:
            self.secret: secretsmanager.ISecret = secretsmanager.Secret.from_secret_name_v2(
                self, "Imported", config.hf_token_secret_name
            )
            return
        secret = secretsmanager.Secret(
            self,
            "Secret",
            description="Hugging Face access token for gated models; put the token here, never in job inputs",
            encryption_key=key,
            # No value in the template: the token must never pass through CloudFormation. AWS fills a random
            # placeholder that the user overwrites with `aws secretsmanager put-secret-value` (README).
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        acknowledge(
            secret,
            "SMG4",
            "A Hugging Face token is issued by huggingface.co; no Lambda can rotate it. Users rotate it there "
            "and put the new value here (README: Hugging Face token).",
        )
        self.secret = secret
