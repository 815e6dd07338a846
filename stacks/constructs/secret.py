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
            removal_policy=RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY,
        )
        # No value at all: the token must never pass through CloudFormation, and the L2's default
        # GenerateSecretString would store a random password that training would send to the Hub as a token (401).
        # Without SecretString and GenerateSecretString, CloudFormation creates an empty secret (no AWSCURRENT
        # version: GetSecretValue answers ResourceNotFoundException) until the user runs put-secret-value (README).
        cfn_secret = secret.node.default_child
        assert isinstance(cfn_secret, secretsmanager.CfnSecret)
        cfn_secret.add_property_deletion_override("GenerateSecretString")
        acknowledge(
            secret,
            "SMG4",
            "A Hugging Face token is issued by huggingface.co; no Lambda can rotate it. Users rotate it there "
            "and put the new value here (README: Hugging Face token).",
        )
        self.secret = secret
