"""The Hugging Face token is read from Secrets Manager by ARN, in the ARN's region, and never leaks."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tests.training.conftest import run_main
from training_code.hf_token import TokenError, read_hf_token, region_from_arn, token_from_secret_string

TOKEN = "hf_SECRETtokenVALUE123"


@mock_aws
@pytest.mark.parametrize("secret_string", [TOKEN, json.dumps({"token": TOKEN}), json.dumps({"HF_TOKEN": TOKEN})])
def test_token_is_read_from_the_secret_in_the_arns_region(secret_string: str) -> None:
    client = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = client.create_secret(Name="hf-token", SecretString=secret_string)["ARN"]

    assert read_hf_token(arn) == TOKEN


@mock_aws
def test_a_missing_secret_is_reported_without_any_secret_material() -> None:
    arn = "arn:aws:secretsmanager:us-west-2:123456789012:secret:nope-AbCdEf"

    with pytest.raises(TokenError, match=r"cannot read hf_token_secret_arn=.*: ResourceNotFoundException"):
        read_hf_token(arn)


def test_region_comes_from_the_arn() -> None:
    assert region_from_arn("arn:aws:secretsmanager:ap-south-1:123456789012:secret:hf-AbCdEf") == "ap-south-1"
    with pytest.raises(TokenError, match="is not a Secrets Manager secret ARN"):
        region_from_arn("hf-token")


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
    result = run_main(job, job.argv("org/private-model", hf_token_secret_arn=arn, max_seq_length=20))

    assert result.exit_code == 1
    assert seen == [TOKEN]
    captured = capfd.readouterr()
    assert TOKEN not in result.stdout + captured.out + captured.err
    assert TOKEN not in (job.output_dir / "failure").read_text()
