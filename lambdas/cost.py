"""Money: hourly prices (Price List API, catalog fallback), estimates before launch, costs after.

All amounts are `Decimal`: the ledger stores DynamoDB numbers, and binary floats would make a retried Record write
`3.0000000000000004` where the first wrote `3.0`.

SageMaker bills managed spot as fewer *billable* seconds at the on-demand rate, so one formula covers both:
cost = billable seconds x instance count x on-demand hourly price / 3600.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas import catalog

logger = logging.getLogger(__name__)

PRICE_SOURCE_API = "pricing-api"
PRICE_SOURCE_CATALOG = "catalog"
_CENT = Decimal("0.01")
_COST_QUANTUM = Decimal("0.0001")  # a CPU smoke job costs fractions of a cent; keep them visible
_SECONDS_PER_HOUR = Decimal(3600)

# Billing usage-type prefixes (`USE1-Train:ml.g5.xlarge`). Regions not listed fall back to the catalog price.
BILLING_REGION_PREFIXES = {
    "us-east-1": "USE1",
    "us-east-2": "USE2",
    "us-west-1": "USW1",
    "us-west-2": "USW2",
    "ca-central-1": "CAN1",
    "sa-east-1": "SAE1",
    "eu-west-1": "EU",
    "eu-west-2": "EUW2",
    "eu-west-3": "EUW3",
    "eu-central-1": "EUC1",
    "eu-central-2": "EUC2",
    "eu-north-1": "EUN1",
    "eu-south-1": "EUS1",
    "ap-northeast-1": "APN1",
    "ap-northeast-2": "APN2",
    "ap-northeast-3": "APN3",
    "ap-southeast-1": "APS1",
    "ap-southeast-2": "APS2",
    "ap-south-1": "APS3",
    "ap-east-1": "APE1",
    "me-south-1": "MES1",
    "af-south-1": "AFS1",
    # Regions opened later, with their billing codes (usage types like `ILC1-Train:ml.g5.xlarge`). Missing them
    # priced jobs there at the catalog's us-east-1 prices without a word.
    "il-central-1": "ILC1",
    "me-central-1": "MEC1",
    "ap-southeast-3": "APS4",
    "ca-west-1": "CAW1",
}


def to_decimal(value: Any) -> Decimal:
    """A Decimal from an int, float, str or Decimal, via `str` so 0.1 stays 0.1."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(frozen=True)
class Price:
    """An on-demand training price and where it came from."""

    hourly_usd: Decimal
    source: str  # PRICE_SOURCE_API or PRICE_SOURCE_CATALOG


def training_usage_type(instance_type: str, region: str) -> str | None:
    """The Price List usage type of SageMaker training on `instance_type` in `region`, if the region is known."""
    prefix = BILLING_REGION_PREFIXES.get(region)
    return f"{prefix}-Train:{instance_type}" if prefix else None


def _on_demand_usd(price_item: dict[str, Any]) -> Decimal | None:
    # terms.OnDemand.<offer>.priceDimensions.<dimension>.pricePerUnit.USD, per hour.
    for offer in price_item.get("terms", {}).get("OnDemand", {}).values():
        for dimension in offer.get("priceDimensions", {}).values():
            usd = dimension.get("pricePerUnit", {}).get("USD")
            if usd is not None and Decimal(usd) > 0:
                return Decimal(usd)
    return None


def lookup_hourly_price(pricing: Any, instance_type: str, region: str) -> Price:
    """On-demand training price of `instance_type` in `region`: the Price List API, else the catalog's.

    Any API failure (no permission, no network, an unexpected shape) falls back to the catalog with a warning:
    the estimate is a guard rail, not a bill, and a missing Price List must not block training.
    """
    usage_type = training_usage_type(instance_type, region)
    if usage_type is None:
        # Said out loud: the catalog's prices are us-east-1's, so a job elsewhere may cost more than estimated.
        logger.warning(
            "no Price List billing code for region %s; %s is priced at the catalog's us-east-1 price",
            region,
            instance_type,
        )
    else:
        try:
            paginator = pricing.get_paginator("get_products")
            pages = paginator.paginate(
                ServiceCode="AmazonSageMaker",
                Filters=[
                    {"Type": "TERM_MATCH", "Field": "productFamily", "Value": "ML Instance"},
                    {"Type": "TERM_MATCH", "Field": "usagetype", "Value": usage_type},
                ],
                FormatVersion="aws_v1",
            )
            for page in pages:
                for raw in page.get("PriceList", []):
                    item = json.loads(raw) if isinstance(raw, str) else raw
                    if item.get("product", {}).get("attributes", {}).get("usagetype") != usage_type:
                        continue
                    usd = _on_demand_usd(item)
                    if usd is not None:
                        return Price(usd, PRICE_SOURCE_API)
            logger.warning("no Price List entry for %s; using the catalog price", usage_type)
        except (ClientError, BotoCoreError, ValueError, KeyError, TypeError) as exc:
            logger.warning("Price List lookup for %s failed (%s); using the catalog price", usage_type, exc)
    return Price(to_decimal(catalog.INSTANCES[instance_type].hourly_price_usd), PRICE_SOURCE_CATALOG)


def estimated_max_cost_usd(max_runtime_seconds: int, instance_count: int, hourly_price_usd: Any) -> Decimal:
    """The most a job can cost: it is stopped at its runtime bound. Rounded *up* to the cent (a ceiling)."""
    cost = Decimal(max_runtime_seconds) * instance_count * to_decimal(hourly_price_usd) / _SECONDS_PER_HOUR
    return cost.quantize(_CENT, rounding=ROUND_CEILING)


def job_cost_usd(billable_seconds: int, instance_count: int, hourly_price_usd: Any) -> Decimal:
    """What a finished (or failed, or stopped) job cost."""
    cost = Decimal(billable_seconds) * instance_count * to_decimal(hourly_price_usd) / _SECONDS_PER_HOUR
    return cost.quantize(_COST_QUANTUM, rounding=ROUND_HALF_UP)


def spot_savings_pct(billable_seconds: int, training_seconds: int) -> Decimal:
    """(1 - billable/training) x 100, SageMaker's own definition; 0 when nothing trained."""
    if training_seconds <= 0:
        return Decimal(0).quantize(_CENT)
    pct = (1 - Decimal(billable_seconds) / Decimal(training_seconds)) * 100
    return max(pct, Decimal(0)).quantize(_CENT, rounding=ROUND_HALF_UP)


def cost_per_accuracy_point(cost_usd: Any, accuracy: Any) -> Decimal | None:
    """Dollars per intent-accuracy percentage point; None when there is no (positive) accuracy to divide by."""
    if accuracy is None or cost_usd is None:
        return None
    points = to_decimal(accuracy) * 100
    if points <= 0:
        return None
    return (to_decimal(cost_usd) / points).quantize(_COST_QUANTUM, rounding=ROUND_HALF_UP)
