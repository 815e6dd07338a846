"""Plan sizes a Hub model from the input's architecture, else the config.json it fetches from the Hub, else
params_billion; the job spec carries that model, so a remedy's re-plan sizes the same one."""

from __future__ import annotations

import io
import json
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from lambdas import catalog, plan, remedies
from lambdas.errors import InvalidExecutionInput
from lambdas.handlers import plan as plan_handler
from lambdas.remedies import RemedyPolicy
from tests.support.lambdas import BUCKET, PREFIX

CONFIGS = Path(__file__).parent / "hf_configs"
LLAMA_70B = catalog.Architecture.from_hf_config(json.loads((CONFIGS / "Llama-3.1-70B.json").read_text()))
QWEN3_MOE = json.loads((CONFIGS / "Qwen3-30B-A3B.json").read_text())


def jobs_for(execution_input: dict[str, Any], fetch_config: plan.HubConfigFetcher | None = None) -> list[Any]:
    """Plan's specs for an input (catalog prices, no AWS), with the handler's experiment fields attached."""
    doc, experiments = plan.validate_execution_input(execution_input, fetch_config=fetch_config)
    jobs = plan.build_jobs(
        doc, experiments, run_id="run-1", bucket=BUCKET, job_name_prefix=PREFIX, price_of=plan.catalog_price
    )
    return plan_handler.with_experiment_fields(execution_input, jobs, None)


def test_input_architecture_sizes_a_hub_model_and_travels_in_every_spec() -> None:
    # Given a 70B Hub model whose shape the input carries (as the CLI sends it), with baselines
    execution_input = {
        "experiments": [{"model": "org/llama-70b", "approach": "qlora", "architecture": LLAMA_70B.to_dict()}],
        "baselines": True,
    }
    # When Plan builds the jobs
    jobs = jobs_for(execution_input)
    # Then the QLoRA job and the added baseline both carry the 70B shape and say where it came from
    assert [job["approach"] for job in jobs] == ["qlora", "baseline"]
    for job in jobs:
        assert job["architecture"] == LLAMA_70B.to_dict()
        assert job["architecture_source"] == "input"
        assert job["params_billion"] == pytest.approx(70.55, abs=0.01)


@pytest.mark.parametrize(
    "experiment",
    [
        {"params_billion": 70},  # the size only (a guessed shape)
        {"architecture": LLAMA_70B.to_dict()},  # the real shape
    ],
)
def test_remedy_replans_a_70b_hub_model_of_a_run_with_baselines_as_70b(experiment: dict[str, Any]) -> None:
    # Given a 70B Hub model's QLoRA job in a run with baselines (more jobs than experiments, so nothing can be matched
    # to its experiment by position)
    execution_input = {
        "experiments": [{"model": "org/llama-70b", "approach": "qlora", **experiment}],
        "baselines": True,
    }
    job = jobs_for(execution_input)[0]
    # When it runs out of memory and the remedy re-plans it (half the batch, re-estimated)
    decision = remedies.decide(
        job,
        {"status": "Failed", "secondary_status": "Failed", "billable_seconds": 600},
        "out_of_memory",
        "CUDA out of memory",
        RemedyPolicy(),
        reserve_per_job_usd=1000.0,
        price_of=plan.catalog_price,
        quota_of=lambda instance_type, spot: None,
    )
    # Then the re-plan is of the 70B model: its training time is of the same order as Plan's, not a 7B's tenth
    assert decision.retry, decision.cause
    assert remedies._model(decision.job).params_billion == pytest.approx(70, rel=0.01)
    planned, replanned = job["estimated_seconds"]["train"], decision.job["estimated_seconds"]["train"]
    assert replanned > 0.5 * planned


def test_plan_fetches_config_json_once_per_hub_model_when_the_input_has_no_architecture() -> None:
    # Given a Hub MoE model named by two experiments, no architecture, a Hub that serves its config.json
    asked: list[str] = []

    def fetch(model_id: str) -> dict[str, Any]:
        asked.append(model_id)
        return QWEN3_MOE

    execution_input = {
        "experiments": [
            {"model": "Qwen/Qwen3-30B-A3B", "approach": "lora"},
            # Not qlora: its routed experts stay 16-bit under bitsandbytes, so 4-bit replicas need 80 GB GPUs
            # (test_a_4bit_moe_model_keeps_its_routed_experts_in_16_bit).
            {"model": "Qwen/Qwen3-30B-A3B", "approach": "lora", "lora_r": 8},
        ]
    }
    # When Plan plans them (plan_run wraps the fetcher so each id is asked once)
    jobs = jobs_for(execution_input, plan.cached_fetcher(fetch))
    # Then both are sized from the fetched file: 30.5B parameters, held in memory; compute on the 3.35B active ones
    assert asked == ["Qwen/Qwen3-30B-A3B"]
    assert {job["architecture_source"] for job in jobs} == {"hub"}
    model = catalog.model_of_job(jobs[0])
    assert model.params_billion == pytest.approx(30.5, rel=0.01)
    assert model.active_parameters == pytest.approx(3.35e9, rel=0.01)


@pytest.mark.parametrize("served", [None, {"model_type": "deepseek_v3"}])
def test_a_hub_model_without_a_usable_config_is_sized_from_params_billion(served: dict[str, Any] | None) -> None:
    # Given a Hub that has no readable config (offline, gated) or one of a family the planner cannot size
    jobs = jobs_for(
        {"experiments": [{"model": "org/model", "approach": "lora", "params_billion": 3}]}, lambda _id: served
    )
    # Then the input's size is the last fallback, and the spec says so
    assert jobs[0]["architecture_source"] == "params_billion"
    assert jobs[0]["params_billion"] == 3
    assert catalog.model_of_job(jobs[0]).parameters == 3_000_000_000


@pytest.mark.parametrize(
    ("experiment", "field"),
    [
        ({"model": "mistral-7b", "architecture": LLAMA_70B.to_dict()}, "experiments[0].architecture"),
        ({"model": "org/m", "architecture": {**LLAMA_70B.to_dict(), "kv_heads": 7}}, "experiments[0].architecture"),
        ({"model": "org/m", "architecture": {**LLAMA_70B.to_dict(), "depth": 3}}, "experiments[0].architecture.depth"),
    ],
)
def test_an_architecture_plan_cannot_use_is_a_field_error(experiment: dict[str, Any], field: str) -> None:
    # Given an architecture on a catalog model, one that describes no model, or one with an unknown field
    # When Plan validates the input, Then it refuses naming the field
    with pytest.raises(InvalidExecutionInput) as raised:
        plan.validate_execution_input({"experiments": [{**experiment, "approach": "lora"}]})
    assert field in [path for path, _ in raised.value.problems]


def test_schema_architecture_fields_are_the_architecture_dataclass_fields() -> None:
    schema = plan.load_schema()["properties"]["experiments"]["items"]["properties"]["architecture"]
    assert set(schema["properties"]) == set(LLAMA_70B.to_dict())


class _Response(io.BytesIO):
    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_fetch_hub_config_reads_the_main_revision_with_a_timeout() -> None:
    # Given a Hub answering with a config.json
    seen: dict[str, Any] = {}

    def opener(request: Any, timeout: float) -> _Response:
        seen.update(url=request.full_url, timeout=timeout)
        return _Response(json.dumps(QWEN3_MOE).encode())

    # When Plan fetches it
    found = plan.fetch_hub_config("Qwen/Qwen3-30B-A3B", opener=opener)
    # Then it asked the resolve URL of main, bounded in time, and got the file
    assert seen == {"url": "https://huggingface.co/Qwen/Qwen3-30B-A3B/resolve/main/config.json", "timeout": 5.0}
    assert found == QWEN3_MOE


@pytest.mark.parametrize(
    "failure",
    [
        urllib.error.HTTPError("u", 401, "Unauthorized", {}, None),  # type: ignore[arg-type]  # a gated model
        urllib.error.URLError("no network"),
        TimeoutError("timed out"),
    ],
)
def test_fetch_hub_config_failure_is_none_not_an_error(failure: Exception) -> None:
    def opener(request: Any, timeout: float) -> _Response:
        raise failure

    assert plan.fetch_hub_config("meta-llama/Llama-3.1-70B", opener=opener) is None


def test_plan_handler_does_not_fetch_when_the_hub_is_offline() -> None:
    assert plan_handler.hub_offline({"HF_HUB_OFFLINE": "1"})
    assert not plan_handler.hub_offline({})
