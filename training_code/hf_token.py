"""Hugging Face token from AWS Secrets Manager, read at run time by ARN (never passed as a hyperparameter).

The job receives only the secret's ARN; the token is fetched here with the job's execution role, handed to
`from_pretrained(token=...)`, and never logged, printed or written anywhere. (Named `hf_token`, not `secrets`:
`train.py`'s folder is on sys.path in the container and would shadow the standard library's `secrets`.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# Keys under which a JSON secret may hold the token (a plain-text secret is the token itself).
TOKEN_KEYS = ("token", "hf_token", "HF_TOKEN", "huggingface_token", "HUGGING_FACE_HUB_TOKEN")


class TokenError(RuntimeError):
    """The token secret could not be read or holds no token (the message never contains the token)."""


def region_from_arn(secret_arn: str) -> str:
    """The region field of `arn:aws:secretsmanager:<region>:<account>:secret:<name>`."""
    parts = secret_arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or not parts[3]:
        raise TokenError(f"hf_token_secret_arn={secret_arn!r} is not a Secrets Manager secret ARN")
    return parts[3]


def token_from_secret_string(secret_string: str) -> str:
    """The token in a secret value: the plain string, or the value of a known key of a JSON object."""
    text = secret_string.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise TokenError("the token secret looks like JSON but does not parse") from None
        values = [document[key] for key in TOKEN_KEYS if isinstance(document.get(key), str)]
        if not values and len(document) == 1 and isinstance(next(iter(document.values())), str):
            values = list(document.values())
        if not values or not values[0].strip():
            raise TokenError(f"the token secret is a JSON object without a token under any of {', '.join(TOKEN_KEYS)}")
        return values[0].strip()
    if not text:
        raise TokenError("the token secret is empty")
    return text


def read_hf_token(secret_arn: str, client_factory: Callable[..., Any] | None = None) -> str:
    """Fetch the Hugging Face token from Secrets Manager (client in the ARN's region)."""
    region = region_from_arn(secret_arn)
    if client_factory is None:
        import boto3

        client_factory = boto3.client
    client = client_factory("secretsmanager", region_name=region)
    try:
        response = client.get_secret_value(SecretId=secret_arn)
    except Exception as exc:  # botocore errors carry no secret material; keep only their class and code
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        raise TokenError(f"cannot read hf_token_secret_arn={secret_arn}: {code}") from None
    if "SecretString" not in response:
        raise TokenError(f"the secret {secret_arn} has no SecretString (binary secrets are not supported)")
    return token_from_secret_string(response["SecretString"])
