"""Full fine-tuning, LoRA and QLoRA on tiny offline models: they load, train, learn, evaluate and merge.

Learning bars are measured on the bundled banking77-mini data (6 intents, 96 held-out phrasings) with compact
prompts (the labels are learned, not listed) and constrained decoding, the defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from lambdas import catalog
from lambdas.catalog import METRICS, parse_metric_lines
from tests.support.training import ARCHITECTURES, Job, create_job, dataset_rows, run_main
from training_code import phases, telemetry
from training_code.config import parse_hyperparameters, resolve_learning_rate


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_architecture_loads_trains_one_step_and_generates(
    architecture: str, tiny_models: dict[str, Path], make_job
) -> None:
    job = make_job(architecture)

    result = run_main(
        job,
        job.argv(
            tiny_models[architecture], approach="lora", max_steps=1, eval_samples=4, bertscore_model="none", seed=1
        ),
    )

    assert result.exit_code == 0, result.stdout
    assert job.training_config()["global_step"] == 1
    metrics = job.metrics()
    assert metrics["eval_samples"] == 4
    assert "train_loss" in metrics
    assert (job.model_dir / "adapter_model.safetensors").is_file()


def test_full_fine_tuning_learns_the_intents_of_held_out_phrasings(tiny_models: dict[str, Path], make_job) -> None:
    job = make_job("full")

    result = run_main(
        job,
        job.argv(tiny_models["llama"], approach="full", max_steps=300, logging_steps=50, bertscore_model="none"),
    )

    assert result.exit_code == 0, result.stdout
    metrics = job.metrics()
    assert metrics["eval_intent_accuracy"] >= 0.9
    assert metrics["eval_samples"] == len(dataset_rows("test"))
    assert (job.model_dir / "model.safetensors").is_file()  # a full model, not an adapter
    assert not (job.model_dir / "adapter_config.json").exists()


@dataclass
class LoraRun:
    """The job folder and stdout of the shared LoRA run."""

    job: Job
    stdout: str
    argv: list[str]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path], bertscore_model: str) -> LoraRun:
    """One LoRA run to 400 steps with merge_adapter and offline BERTScore (shared by the tests below)."""
    job = create_job(tmp_path_factory.mktemp("lora"))
    argv = job.argv(
        tiny_models["llama"],
        approach="lora",
        max_steps=400,
        lora_dropout=0,
        seed=3,
        logging_steps=50,
        merge_adapter=True,
        bertscore_model=bertscore_model,
    )
    result = run_main(job, argv)
    assert result.exit_code == 0, result.stdout
    return LoraRun(job=job, stdout=result.stdout, argv=argv)


def test_lora_learns_the_intents_of_held_out_phrasings(lora_run: LoraRun) -> None:
    metrics = lora_run.job.metrics()

    assert metrics["eval_intent_accuracy"] >= 0.8
    assert 0.0 < metrics["eval_bertscore_f1"] <= 1.0


def test_final_metric_lines_cover_the_catalog_and_match_metrics_json(lora_run: LoraRun) -> None:
    printed = parse_metric_lines(lora_run.stdout)
    job = lora_run.job
    metrics = job.metrics()

    # Every catalog metric is printed (train_step as progress) but task sft's own (exact match: a classification job
    # reports intent accuracy), and metrics.json holds the same final values. The phase timings
    # (training_code/phases.py) are printed as each phase ends, and the resolved hyperparameters once when decided:
    # neither is kept in metrics.json.
    phase_metrics = set(phases.PHASE_METRICS) | set(telemetry.RESOLVED_METRICS)
    quality = catalog.TASK_QUALITY_METRICS
    sft_only = set(quality[catalog.SFT]) - set(quality[catalog.CLASSIFICATION])
    assert set(printed) | phase_metrics == {metric.name for metric in METRICS} - sft_only | phase_metrics
    for name, value in printed.items():
        if name != "train_step" and name not in phase_metrics:
            assert metrics[name] == pytest.approx(value, rel=1e-5)
    assert "missing" not in metrics  # every metric was computed
    assert (job.output_data_dir / "metrics.json").read_text() == (job.model_dir / "metrics.json").read_text()
    assert 0.0 <= metrics["train_padding_fraction"] < 0.1  # length-grouped batches leave little padding
    assert metrics["train_tokens_per_second"] > 0


def test_the_hyperparameters_actually_used_are_printed_once_as_resolved_lines(lora_run: LoraRun) -> None:
    # Given the shared LoRA run, launched with no learning rate (auto) and max_seq_length auto
    job = lora_run.job
    config = job.training_config()
    assert config["hyperparameters"]["learning_rate"] is None
    # When its stdout is parsed as SageMaker parses it
    printed = parse_metric_lines(lora_run.stdout)
    # Then each resolved line is printed exactly once, and the learning rate is the automatic rule's value
    for name in telemetry.RESOLVED_METRICS:
        assert len([line for line in lora_run.stdout.splitlines() if line.startswith(f"{name}=")]) == 1, name
    resolved = config["resolved"]
    rule = resolve_learning_rate(parse_hyperparameters(lora_run.argv), resolved["num_parameters"])
    assert printed["resolved_learning_rate"] == rule == resolved["learning_rate"]
    hyperparameters = config["hyperparameters"]
    batch = hyperparameters["per_device_batch_size"] * hyperparameters["gradient_accumulation_steps"]
    assert printed["resolved_effective_batch_size"] == batch == resolved["effective_batch_size"]
    assert printed["resolved_max_seq_length"] == resolved["max_seq_length"]
    assert printed["resolved_world_size"] == 1 and resolved["strategy"] == "single"


def test_the_merged_model_is_timed_apart_from_the_adapter(lora_run: LoraRun) -> None:
    metrics = lora_run.job.metrics()

    assert metrics["eval_inference_seconds"] > 0  # the adapter on the base, unmerged
    assert metrics["eval_inference_seconds_merged"] > 0
    assert metrics["eval_seconds_per_sample_merged"] == pytest.approx(
        metrics["eval_inference_seconds_merged"] / metrics["eval_samples"]
    )
    assert "eval_inference_seconds_merged=" in lora_run.stdout


def test_the_label_set_and_prompt_format_travel_with_the_model(lora_run: LoraRun) -> None:
    job = lora_run.job
    labels = sorted({row["label"] for row in dataset_rows("train")})

    for directory in (job.model_dir, job.model_dir / "merged"):
        card = json.loads((directory / "labels.json").read_text())
        assert card["labels"] == labels
        assert card["prompt_style"] == "compact"
        assert "{labels}" not in card["prompt_template"]
    assert job.training_config()["labels"] == labels


def test_merged_model_reloads_and_predicts_like_the_adapter(lora_run: LoraRun, tiny_models: dict[str, Path]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training_code import evaluation

    job = lora_run.job
    card = json.loads((job.model_dir / "labels.json").read_text())
    prompts = [card["prompt_template"].format(text=row["text"]) for row in dataset_rows("test")[:32]]
    tokenizer = AutoTokenizer.from_pretrained(job.model_dir)
    adapter_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_models["llama"]), job.model_dir)
    merged_model = AutoModelForCausalLM.from_pretrained(job.model_dir / "merged")

    with_adapter = evaluation.generate(adapter_model, tokenizer, prompts, 16, 16, "cpu").outputs
    merged = evaluation.generate(merged_model, tokenizer, prompts, 16, 16, "cpu").outputs

    assert merged == with_adapter
    assert not any(name.endswith(".lora_A.default.weight") for name, _ in merged_model.named_parameters())


def test_qlora_trains_on_cpu(tiny_models: dict[str, Path], make_job) -> None:
    job = make_job("qlora")

    result = run_main(
        job,
        job.argv(
            tiny_models["llama"],
            approach="qlora",
            max_steps=40,
            logging_steps=10,
            lora_dropout=0,
            eval_samples=8,
            bertscore_model="none",
        ),
    )

    assert result.exit_code == 0, result.stdout
    losses = [float(line.split("train_loss=")[1].rstrip(";")) for line in result.stdout.splitlines() if "step=" in line]
    assert len(losses) == 5  # step 1, then every 10 steps
    assert losses[-1] < losses[0] * 0.7
    resolved = job.training_config()["resolved"]
    assert resolved["gradient_checkpointing"] is True
    assert (job.model_dir / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize("architecture", ["llama", "gpt-neox"])
def test_padding_free_batches_give_the_loss_of_padded_batches(architecture: str, tiny_models: dict[str, Path]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tokenizer = AutoTokenizer.from_pretrained(tiny_models[architecture])
    model = AutoModelForCausalLM.from_pretrained(tiny_models[architecture]).eval()
    texts = [row["text"] for row in dataset_rows("train")[:6]]
    examples = [{"input_ids": tokenizer(text)["input_ids"]} for text in texts]

    def loss(padding_free: bool) -> torch.Tensor:
        batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free)(examples)
        inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")}
        with torch.no_grad():  # use_cache=False as in training: with a cache, position_ids don't delimit sequences
            logits = model(**inputs, use_cache=False)
        log_probs = torch.log_softmax(logits.logits[:, :-1].float(), dim=-1)
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        return -(log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)[mask]).mean()

    # The flattened batch carries sequence boundaries in position_ids only; attention must not cross them.
    assert loss(padding_free=True).item() == pytest.approx(loss(padding_free=False).item(), rel=1e-4)


def test_constrained_decoding_outputs_only_known_labels(tiny_models: dict[str, Path], make_job) -> None:
    job = make_job("constrained")

    result = run_main(
        job,
        job.argv(tiny_models["mistral"], approach="lora", max_steps=5, eval_samples=16, bertscore_model="none"),
    )

    assert result.exit_code == 0, result.stdout
    assert job.training_config()["hyperparameters"]["decoding"] == "constrained"  # the default
    assert job.metrics()["eval_parse_rate"] == 1.0  # an undertrained model still only picks among the labels


def _short_run(job: Job, model: Path, **hyperparameters) -> list[str]:
    """A one-step LoRA run evaluated on 4 samples: enough to reach every stage after training."""
    defaults = {"approach": "lora", "max_steps": 1, "eval_samples": 4, "bertscore_model": "none"}
    return job.argv(model, **{**defaults, **hyperparameters})


def test_a_bertscore_failure_after_training_leaves_the_model_and_the_other_metrics(
    monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path], bertscore_model: str, make_job
) -> None:
    from training_code import evaluation

    scored_before_training = evaluation.bertscore_f1

    def out_of_memory_after_training(predictions, *args, **kwargs):
        if predictions == ["ok"]:  # prepare_bertscore's trial pair, before training, on the CPU
            return scored_before_training(predictions, *args, **kwargs)
        raise RuntimeError("CUDA out of memory")

    # Given an encoder that loads and scores before training but fails when scoring after it (GPU memory)
    monkeypatch.setattr(evaluation, "bertscore_f1", out_of_memory_after_training)
    job = make_job()

    # When the job runs
    result = run_main(job, _short_run(job, tiny_models["llama"], bertscore_model=bertscore_model))

    # Then it succeeds with the model, the other metrics, and the reason BERTScore is missing
    assert result.exit_code == 0, result.stdout
    metrics = job.metrics()
    assert metrics["missing"] == {"eval_bertscore_f1": "RuntimeError: CUDA out of memory"}
    assert metrics["eval_samples"] == 4
    assert "eval_intent_accuracy" in metrics
    assert (job.model_dir / "adapter_model.safetensors").is_file()


def test_an_unavailable_bertscore_encoder_fails_the_job_before_any_model_loads(
    monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path], make_job
) -> None:
    from training_code import modeling

    def forbidden(*args, **kwargs):
        raise AssertionError("the model was loaded although BERTScore could not be")

    monkeypatch.setattr(modeling, "load_model", forbidden)
    job = make_job()

    result = run_main(job, _short_run(job, tiny_models["llama"], bertscore_model=str(job.root / "no-such-encoder")))

    assert result.exit_code == 1
    assert job.failure().startswith("EvaluationSetupError: bertscore_model=")


def test_a_failed_evaluation_records_every_eval_metric_as_missing_and_keeps_the_model(
    monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path], make_job
) -> None:
    from training_code import evaluation

    def crash(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(evaluation, "generate", crash)
    job = make_job()

    result = run_main(job, _short_run(job, tiny_models["llama"]))

    assert result.exit_code == 0, result.stdout
    metrics = job.metrics()
    assert set(metrics["missing"]) == set(evaluation.EVAL_METRICS)
    assert "train_loss" in metrics
    assert (job.model_dir / "adapter_model.safetensors").is_file()
    assert (job.model_dir / "labels.json").is_file()


def test_a_failed_merge_keeps_the_adapter_and_records_the_merged_metrics_as_missing(
    monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path], make_job
) -> None:
    from training_code import modeling

    def out_of_memory(*args, **kwargs):
        raise MemoryError("cannot allocate the full-precision base")

    monkeypatch.setattr(modeling, "load_merged", out_of_memory)
    job = make_job()

    result = run_main(job, _short_run(job, tiny_models["llama"], merge_adapter=True))

    assert result.exit_code == 0, result.stdout
    metrics = job.metrics()
    reason = "merge failed: MemoryError: cannot allocate the full-precision base"
    assert metrics["missing"]["eval_inference_seconds_merged"] == reason
    assert metrics["missing"]["eval_seconds_per_sample_merged"] == reason
    assert "eval_intent_accuracy" in metrics
    assert (job.model_dir / "adapter_model.safetensors").is_file()
    assert not (job.model_dir / "merged").exists()


def test_a_full_fine_tune_trained_with_fp32_weights_is_saved_in_its_training_precision(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    # Given a fully trained model whose weights are fp32 although training ran in bf16 (FSDP upcasts trainable flat
    # parameters; fp16 runs keep fp32 masters) and its fp32 state dict, as the final save receives it
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training_code import modeling

    model = AutoModelForCausalLM.from_pretrained(tiny_models["llama"], dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    fp32_bytes = sum(tensor.numel() * 4 for tensor in model.state_dict().values())

    # When the final model is saved for a bf16 run
    out = modeling.save_full_model(model, tokenizer, model.state_dict(), tmp_path / "model", torch.bfloat16)

    # Then every weight is written in bf16 (half the bytes), and it loads back as bf16 with its tokenizer
    with safe_open(out / "model.safetensors", framework="pt") as weights:
        names = weights.keys()  # a safetensors handle, not a dict: it cannot be iterated
        assert {weights.get_slice(name).get_dtype() for name in names} == {"BF16"}
    assert (out / "model.safetensors").stat().st_size < 0.55 * fp32_bytes
    assert AutoModelForCausalLM.from_pretrained(out, dtype="auto").dtype == torch.bfloat16
    assert (out / "tokenizer.json").is_file()


def test_dora_trains_on_cpu_and_saves_a_magnitude_vector_per_adapted_layer(
    tiny_models: dict[str, Path], make_job
) -> None:
    # Given the tiny Llama and approach dora (PEFT's LoRA with use_dora=True)
    job = make_job("dora")
    # When it trains a few steps on the CPU
    result = run_main(
        job,
        job.argv(
            tiny_models["llama"],
            approach="dora",
            max_steps=20,
            logging_steps=10,
            lora_dropout=0,
            eval_samples=4,
            bertscore_model="none",
        ),
    )
    # Then it trains and saves a DoRA adapter: A, B and a trained magnitude vector for every adapted linear layer
    assert result.exit_code == 0, result.stdout
    from safetensors.torch import load_file

    adapter_config = json.loads((job.model_dir / "adapter_config.json").read_text())
    assert adapter_config["use_dora"] is True
    weights = load_file(str(job.model_dir / "adapter_model.safetensors"))
    magnitudes = [name for name in weights if "lora_magnitude_vector" in name]
    lora_a = [name for name in weights if "lora_A" in name]
    assert magnitudes and len(magnitudes) == len(lora_a)
    assert job.training_config()["resolved"]["gradient_checkpointing"] is False  # a tiny CPU model, as for LoRA
