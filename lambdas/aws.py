"""boto3 clients, built once per container with one retry/timeout policy.

Standard retry mode retries throttling and transient errors with exponential backoff and jitter; what still fails
after `max_attempts` surfaces as a typed error (e.g. `Throttled`) for the state machine's own retry.
Timeouts are short because every caller is a Lambda with its own timeout: a hung connection must not eat it.
"""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

# Total attempts, the first call included (botocore's `total_max_attempts`). With 5 s connect and 20 s read timeouts one
# call gives up after at most 4 x 25 s + 1 + 2 + 4 s of backoff = 107 s, so even Report's five sequential calls fit a
# 10-minute Lambda (stacks/constructs/hardened.py sizes every timeout from these three numbers).
DEFAULT_MAX_ATTEMPTS = 4
DEFAULT_CONNECT_TIMEOUT = 5
DEFAULT_READ_TIMEOUT = 20
USER_AGENT_EXTRA = "finetune-workflow"

# The Price List API answers only in these regions; any of them returns every region's prices.
_PRICING_ENDPOINT_REGIONS = {"eu": "eu-central-1", "ap": "ap-south-1", "me": "ap-south-1", "il": "eu-central-1"}


def client_config(*, max_attempts: int = DEFAULT_MAX_ATTEMPTS, read_timeout: int = DEFAULT_READ_TIMEOUT) -> Config:
    """The botocore config every client of this package uses (`max_attempts` counts the first call)."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        read_timeout=read_timeout,
        user_agent_extra=USER_AGENT_EXTRA,
    )


@functools.cache
def _session() -> boto3.session.Session:
    # One session per process: its loader caches the service models, so each further client costs milliseconds.
    return boto3.session.Session()


@functools.cache
def client(
    service_name: str,
    region_name: str | None = None,
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    read_timeout: int = DEFAULT_READ_TIMEOUT,
) -> Any:
    """A cached boto3 client: the same arguments return the same client for the container's lifetime."""
    return _session().client(
        service_name,
        region_name=region_name,
        config=client_config(max_attempts=max_attempts, read_timeout=read_timeout),
    )


def pricing_endpoint_region(region: str) -> str:
    """The nearest region that serves the Price List API (us-east-1, eu-central-1 or ap-south-1)."""
    return _PRICING_ENDPOINT_REGIONS.get(region.split("-", 1)[0], "us-east-1")


def pricing_client(region: str) -> Any:
    """Price List client. Few attempts and a short timeout: the catalog price is a fine fallback, waiting is not."""
    return client("pricing", pricing_endpoint_region(region), max_attempts=2, read_timeout=10)


def service_quotas_client(region: str) -> Any:
    """Service Quotas client; quota lookups are advisory, so they also fail fast."""
    return client("service-quotas", region, max_attempts=3, read_timeout=10)


def reset_clients() -> None:
    """Drop cached clients and the session (tests that start/stop AWS mocks, or attach Stubbers to fresh clients).

    The session goes too: botocore copies its global event handlers into a session when it is created, so a
    session made before a mock library registered its hooks would keep sending requests to the real endpoints."""
    client.cache_clear()
    _session.cache_clear()
