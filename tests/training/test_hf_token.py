"""The Hugging Face token is read from Secrets Manager by ARN, in the ARN's region, and never leaks.

An unset token is no token: a secret without a value, an empty one or the generated placeholder sends none.
"""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from tests.support.training import run_main
from training_code.hf_token import TokenError, read_hf_token, region_from_arn, token_from_secret_string

TOKEN = "hf_SECRETtokenVALUE123"
# What CloudFormation/CDK puts in a secret created without a value (GenerateSecretString: 32 random characters).
PLACEHOLDER = "x9#Lk2!qP0z^Rw8&Tn4$Yb6@Mc1*Vd3%"
ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:hf-token-AbCdEf"


@mock_aws
@pytest.mark.parametrize("secret_string", [TOKEN, json.dumps({"token": TOKEN}), json.dumps({"HF_TOKEN": TOKEN})])
def test_token_is_read_from_the_secret_in_the_arns_region(secret_string: str) -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = client.create_secret(Name="hf-token", SecretString=secret_string)["ARN"]

    assert read_hf_token(arn) == TOKEN


@mock_aws
def test_a_secret_created_without_a_value_sends_no_token(caplog: pytest.LogCaptureFixture) -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = client.create_secret(Name="hf-token")["ARN"]  # no SecretString: no AWSCURRENT version

    assert read_hf_token(arn) is None
    assert "has no current value" in caplog.text


def test_get_secret_value_without_a_current_version_sends_no_token() -> None:
    # Given Secrets Manager's answer for a secret that has no AWSCURRENT version (the real error shape)
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    stubber = Stubber(client)
    stubber.add_client_error(
        "get_secret_value",
        service_error_code="ResourceNotFoundException",
        service_message="Secrets Manager can't find the specified secret value for staging label: AWSCURRENT",
        expected_params={"SecretId": ARN},
    )

    # When the token is read, Then none is sent
    with stubber:
        assert read_hf_token(ARN, client_factory=lambda *args, **kwargs: client) is None
    stubber.assert_no_pending_responses()


# (The API cannot return an empty SecretString: its minimum length is 1. Whitespace and empty fields can occur.)
@pytest.mark.parametrize(
    "secret_string", [" ", PLACEHOLDER, json.dumps({"token": ""}), json.dumps({"token": PLACEHOLDER})]
)
def test_an_empty_or_placeholder_secret_sends_no_token_and_logs_no_value(
    secret_string: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    stubber = Stubber(client)
    response = {"ARN": ARN, "Name": "hf-token", "VersionId": "a" * 32, "SecretString": secret_string}
    stubber.add_response("get_secret_value", response, {"SecretId": ARN})

    with stubber:
        token = read_hf_token(ARN, client_factory=lambda *args, **kwargs: client)

    assert token is None
    assert "no token is sent" in caplog.text
    assert PLACEHOLDER not in caplog.text


def test_an_unreadable_secret_is_reported_without_any_secret_material() -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    stubber = Stubber(client)
    stubber.add_client_error("get_secret_value", service_error_code="AccessDeniedException", service_message="no")

    with stubber, pytest.raises(TokenError, match=r"cannot read hf_token_secret_arn=.*: AccessDeniedException"):
        read_hf_token(ARN, client_factory=lambda *args, **kwargs: client)


def test_region_comes_from_the_arn() -> None:
    assert region_from_arn("arn:aws:secretsmanager:ap-south-1:123456789012:secret:hf-AbCdEf") == "ap-south-1"
    with pytest.raises(TokenError, match="is not a Secrets Manager secret ARN"):
        region_from_arn("hf-token")


def test_an_empty_value_is_no_token() -> None:
    assert token_from_secret_string("") is None
    assert token_from_secret_string("\n") is None


def test_a_json_secret_without_a_token_key_is_an_error() -> None:
    with pytest.raises(TokenError, match="without a token"):
        token_from_secret_string(json.dumps({"user": "a", "password": "b"}))


@mock_aws
def test_the_token_reaches_from_pretrained_and_never_the_logs(
    monkeypatch: pytest.MonkeyPatch, make_job, tiny_models: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoTokenizer

    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="hf-token", SecretString=TOKEN)["ARN"]
    seen: list[str | None] = []
    load_local = AutoTokenizer.from_pretrained

    def tokenizer_from_hub(model_id: str, token: str | None = None, **kwargs):
        seen.append(token)  # the Hub id resolves to the tiny model, as if downloaded with the token
        return load_local(tiny_models["llama"])

    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", tokenizer_from_hub)
    job = make_job()

    # max_seq_length too small: the run stops after the tokenizer, before any model download.
    result = run_main(job, job.argv("org/private-model", hf_token_secret_arn=arn, max_seq_length=16))

    assert result.exit_code == 1
    assert seen == [TOKEN]
    captured = capfd.readouterr()
    assert TOKEN not in result.stdout + captured.out + captured.err
    assert TOKEN not in (job.output_dir / "failure").read_text()


@mock_aws
def test_with_the_generated_placeholder_in_the_secret_no_token_reaches_from_pretrained(
    monkeypatch: pytest.MonkeyPatch, make_job, tiny_models: dict[str, Path]
) -> None:
    from transformers import AutoTokenizer

    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="hf-token", SecretString=PLACEHOLDER)["ARN"]
    seen: list[str | None] = []
    load_local = AutoTokenizer.from_pretrained

    def tokenizer_from_hub(model_id: str, token: str | None = None, **kwargs):
        seen.append(token)
        return load_local(tiny_models["llama"])

    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained", tokenizer_from_hub)
    job = make_job()

    run_main(job, job.argv("org/public-model", hf_token_secret_arn=arn, max_seq_length=16))

    assert seen == [None]  # a public model downloads without a token instead of failing with 401
