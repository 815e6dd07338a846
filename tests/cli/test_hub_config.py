"""finetune/hub_config.py: the CLI sizes Hub models from config.json (a stubbed Hub or a local file), no network."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from finetune import hub_config
from lambdas.errors import InvalidExecutionInput
from tests.support.cli import finetune

CONFIGS = Path(__file__).parents[1] / "lambdas" / "hf_configs"
# LoRA, not QLoRA: bitsandbytes leaves an MoE model's routed experts 16-bit, so 4-bit replicas of this model need
# 80 GB GPUs (tests/lambdas/test_lambda_hub_architecture.py::test_a_4bit_moe_model_keeps_its_routed_experts_in_16_bit).
MOE_INPUT = {"experiments": [{"model": "Qwen/Qwen3-30B-A3B", "approach": "lora"}], "budget_usd": 500}


def test_hub_models_get_their_architecture_from_the_hub_once_per_model() -> None:
    # Given an input naming one Hub model twice and a catalog model, and a Hub (stubbed) serving its config.json
    asked: list[str] = []

    def download(*, repo_id: str, filename: str) -> str:
        asked.append(f"{repo_id}/{filename}")
        return str(CONFIGS / "Qwen3-30B-A3B.json")

    doc = {
        "experiments": [
            *MOE_INPUT["experiments"],
            {"model": "Qwen/Qwen3-30B-A3B", "approach": "lora"},
            {"model": "mistral-7b", "approach": "lora"},
        ]
    }
    # When the CLI sizes the input
    sized = hub_config.with_architectures(doc, {}, warn=pytest.fail, download=download)
    # Then the Hub was asked once, both Hub experiments carry the shape, the catalog model none
    assert asked == ["Qwen/Qwen3-30B-A3B/config.json"]
    assert sized["experiments"][0]["architecture"]["experts"] == 128
    assert sized["experiments"][1]["architecture"] == sized["experiments"][0]["architecture"]
    assert "architecture" not in sized["experiments"][2] and "architecture" not in doc["experiments"][0]


def test_an_unreachable_hub_warns_and_leaves_the_model_to_plan() -> None:
    warnings: list[str] = []

    def download(**_: Any) -> str:
        raise OSError("offline")

    sized = hub_config.with_architectures(MOE_INPUT, {}, warn=warnings.append, download=download)
    assert "architecture" not in sized["experiments"][0]
    assert "--model-config" in warnings[0]


def test_model_config_file_sizes_the_one_hub_model_offline(tmp_path: Path) -> None:
    # Given the model's config.json as a local file and the input as a file
    (tmp_path / "in.json").write_text(json.dumps(MOE_INPUT))
    shutil.copy(CONFIGS / "Qwen3-30B-A3B.json", tmp_path / "config.json")
    # When the estimate is asked with --model-config FILE (no Hub)
    result = finetune(
        None, "estimate", str(tmp_path / "in.json"), "--model-config", str(tmp_path / "config.json"), "--format", "json"
    )
    # Then the job is planned for the 30.5B MoE model, its compute on the 3.35B active parameters
    assert result.exit_code == 0, result.output
    [job] = json.loads(result.stdout)["jobs"]
    assert job["sized_from"] == "input"
    assert job["parameters"] == pytest.approx(30.5e9, rel=0.01)
    assert job["active_parameters"] == pytest.approx(3.35e9, rel=0.01)


def test_unsizable_config_and_unknown_model_config_are_field_errors(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "deepseek_v3"}))
    with pytest.raises(InvalidExecutionInput) as raised:
        hub_config.with_architectures(
            MOE_INPUT,
            {"Qwen/Qwen3-30B-A3B": tmp_path / "config.json", "org/other": tmp_path / "config.json"},
            warn=pytest.fail,
        )
    paths = [path for path, _ in raised.value.problems]
    assert paths == ["--model-config", "experiments[0].architecture"]


def test_a_bare_model_config_file_needs_exactly_one_hub_model() -> None:
    assert hub_config.parse_model_configs(["c.json"], MOE_INPUT) == {"Qwen/Qwen3-30B-A3B": Path("c.json")}
    with pytest.raises(InvalidExecutionInput):
        hub_config.parse_model_configs(["c.json"], {"experiments": [{"model": "mistral-7b", "approach": "lora"}]})
