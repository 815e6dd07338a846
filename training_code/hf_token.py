"""Hugging Face token from AWS Secrets Manager, read at run time by ARN (never passed as a hyperparameter).

The job receives only the secret's ARN; the token is fetched here with the job's execution role, handed to
`from_pretrained(token=...)`, and never logged, printed or written anywhere. (Named `hf_token`, not `secrets`:
`train.py`'s folder is on sys.path in the container and would shadow the standard library's `secrets`.)

An unset token is no token. The stack creates the secret before anyone has a token to put in it, so the secret may
have no value at all (GetSecretValue answers ResourceNotFoundException: there is no AWSCURRENT version), an empty
value, or the random placeholder Secrets Manager generates. Sending a placeholder to the Hub makes every download
fail with 401, public models included; so in all three cases no token is sent, with a warning (never the value).
Real Hugging Face tokens start with `hf_`. A gated model then fails at the Hub, which is why Plan refuses gated
models whose secret has no current version before any GPU time is billed.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)

# Keys under which a JSON secret may hold the token (a plain-text secret is the token itself).
TOKEN_KEYS = ("token", "hf_token", "HF_TOKEN", "huggingface_token", "HUGGING_FACE_HUB_TOKEN")
# User access tokens are `hf_` + letters and digits; anything else (a generated placeholder, a password) is not one.
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]+")
# GetSecretValue's answer for a secret without an AWSCURRENT version (created without a value).
_NO_VALUE_CODE = "ResourceNotFoundException"


class TokenError(RuntimeError):
    """The token secret could not be read (the message never contains the token)."""


def region_from_arn(secret_arn: str) -> str:
    """The region field of `arn:aws:secretsmanager:<region>:<account>:secret:<name>`."""
    parts = secret_arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or not parts[3]:
        raise TokenError(f"hf_token_secret_arn={secret_arn!r} is not a Secrets Manager secret ARN")
    return parts[3]


def looks_like_hf_token(value: str) -> bool:
    """Whether `value` has the shape of a Hugging Face user access token (`hf_` + letters and digits)."""
    return _TOKEN_RE.fullmatch(value) is not None


def token_from_secret_string(secret_string: str) -> str | None:
    """The token in a secret value (plain string, or a JSON object under a known key); None when it holds none.

    None means "no token": an empty value, an empty token field, or a value that is not shaped like a Hugging Face
    token (the placeholder Secrets Manager generates). A JSON object with no known key is a configuration error.
    """
    text = secret_string.strip()
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            raise TokenError("the token secret looks like JSON but does not parse") from None
        values = [document[key] for key in TOKEN_KEYS if isinstance(document.get(key), str)]
        if not values and len(document) == 1 and isinstance(next(iter(document.values())), str):
            values = list(document.values())
        if not values:
            raise TokenError(f"the token secret is a JSON object without a token under any of {', '.join(TOKEN_KEYS)}")
        text = values[0].strip()
    if not text:
        LOG.warning("the Hugging Face token secret is empty: no token is sent (gated models will be refused)")
        return None
    if not looks_like_hf_token(text):
        LOG.warning(
            "the Hugging Face token secret holds a value that is not a Hugging Face token (tokens start with hf_; "
            "this looks like the placeholder generated with the secret): no token is sent, gated models will be "
            "refused. Put your token in the secret to use them."
        )
        return None
    return text


def _error_code(exc: Exception) -> str:
    """The AWS error code of a botocore ClientError, or the exception's class name (never its message)."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)


def read_hf_token(secret_arn: str, client_factory: Callable[..., Any] | None = None) -> str | None:
    """Fetch the Hugging Face token from Secrets Manager (client in the ARN's region); None when none is set."""
    region = region_from_arn(secret_arn)
    if client_factory is None:
        import boto3

        client_factory = boto3.client
    client = client_factory("secretsmanager", region_name=region)
    try:
        response = client.get_secret_value(SecretId=secret_arn)
    except Exception as exc:  # botocore errors carry no secret material; keep only their code
        code = _error_code(exc)
        if code == _NO_VALUE_CODE:
            LOG.warning(
                "hf_token_secret_arn=%s has no current value, or does not exist (%s): no Hugging Face token is "
                "sent, gated models will be refused",
                secret_arn,
                code,
            )
            return None
        raise TokenError(f"cannot read hf_token_secret_arn={secret_arn}: {code}") from None
    if "SecretString" not in response:
        raise TokenError(f"the secret {secret_arn} has no SecretString (binary secrets are not supported)")
    return token_from_secret_string(response["SecretString"])
