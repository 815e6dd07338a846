"""The one comparison of a run's needs with SageMaker's training quotas (lambdas/quotas.py), and its sentence."""

from __future__ import annotations

from finetune.quota_requests import shortfalls_in
from lambdas import catalog
from lambdas.quotas import parse_shortfalls, quota_shortfalls


def test_only_known_quotas_below_the_need_are_short() -> None:
    # Given quotas for two of three instance types, one of them below what the run holds at once
    values = {
        catalog.training_quota_name("ml.g5.xlarge", spot=True): 1.0,
        catalog.training_quota_name("ml.g6.xlarge", spot=True): 4.0,
    }
    needed = {"ml.g5.xlarge": 2, "ml.g6.xlarge": 4, "ml.g6e.xlarge": 3}

    # When they are compared for a spot run
    shortfalls = quota_shortfalls(values, needed, spot=True)

    # Then only the known, lower one is short (an unlisted quota is unknown: the caller decides)
    assert [(s.instance_type, s.value, s.needed) for s in shortfalls] == [("ml.g5.xlarge", 1.0, 2)]


def test_the_shortfall_sentence_parses_back_to_the_quota_and_its_need() -> None:
    # Given the sentence Plan's QuotaExceeded holds for a short on-demand quota
    [shortfall] = quota_shortfalls(
        {catalog.training_quota_name("ml.g5.2xlarge", spot=False): 0}, {"ml.g5.2xlarge": 3}, spot=False
    )
    message = f"SageMaker quota too low: {shortfall.describe()}. Request an increase"

    # When the CLI reads it back
    # Then it finds the quota by name and what the run needs
    assert parse_shortfalls(message) == {"ml.g5.2xlarge for training job usage": 3}
    assert shortfalls_in(message) == {"ml.g5.2xlarge for training job usage": 3}
