"""Multi-process training under torchrun (as SageMaker launches it on multi-GPU instances), on CPU with gloo, and
the evaluation plan after FSDP (which needs GPUs: its decisions are tested by injection)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from lambdas.catalog import METRICS
from tests.support.training import start_training
from training_code import modeling
from training_code.config import TrainConfig
from training_code.evaluation import MERGED_METRICS

GIB = 2**30


def test_torchrun_with_two_processes_trains_lora_and_writes_one_set_of_artifacts(
    tiny_models: dict[str, Path], make_job, processes, tmp_path: Path
) -> None:
    job = make_job("ddp")
    log = tmp_path / "torchrun.log"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    argv = job.argv(tiny_models["llama"], approach="lora", max_steps=10, eval_samples=16, bertscore_model="none")

    process = start_training(job, argv, log, launcher=launcher)
    processes.append(process)
    exit_code = process.wait(timeout=240)
    output = log.read_text()

    assert exit_code == 0, output[-4000:]
    assert job.training_config()["resolved"]["world_size"] == 2
    assert job.training_config()["global_step"] == 10
    # Only rank 0 prints: each final metric line appears exactly once, and so does each progress line.
    lines = output.splitlines()
    for metric in METRICS:
        # BERTScore is off here, the adapter is not merged (no merged inference time), and exact match is the sft
        # task's metric (this job classifies).
        if metric.name not in ("train_step", "eval_bertscore_f1", "eval_exact_match", *MERGED_METRICS):
            assert len([line for line in lines if re.fullmatch(metric.regex, line)]) == 1, metric.name
    assert len([line for line in lines if line.startswith("train_step=10;")]) == 1
    # Rank 0 alone generated all 16 evaluation samples (one GPU's timing, as for every approach).
    assert job.metrics()["eval_samples"] == 16
    assert sorted(path.name for path in job.model_dir.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "labels.json",
        "metrics.json",
        "predictions.jsonl",
        "tokenizer.json",
        "tokenizer_config.json",
        "training_args.bin",
        "training_config.json",
    ]
    # The 30-minute save interval never elapsed and no checkpoint is forced at the last step: the final model is the
    # only save. (How a marker lists every rank's files is tested in test_checkpoints.py.)
    assert list(job.checkpoint_dir.glob("checkpoint-*")) == []
    assert (job.output_data_dir / "metrics.json").is_file()
    assert not (job.output_dir / "failure").exists()


@pytest.mark.parametrize("fsdp", [False, True])
def test_only_rank_0_evaluates_and_it_reloads_only_after_fsdp(fsdp: bool) -> None:
    plans = [modeling.plan_evaluation(rank=rank, fsdp=fsdp) for rank in range(8)]

    assert [plan.evaluates for plan in plans] == [True] + [False] * 7
    assert plans[0].reload is fsdp  # FSDP shards are freed; a DDP replica is whole and is evaluated in place
    assert plans[0].keeps_trained_model is not fsdp
    assert not any(plan.keeps_trained_model for plan in plans[1:])  # the other ranks free everything and leave


def test_after_fsdp_rank_0_spreads_the_model_over_the_node_gpus_filling_gpu_0_first() -> None:
    # Given 8 A100 40GB with the other ranks gone (about 39 GiB free each) and 3 GiB kept free for generation
    device_map, max_memory = modeling.dispatch([39 * GIB] * 8, reserve_bytes=3 * GIB)

    # Then the model is placed sequentially (a model that fits one GPU stays on GPU 0) within 36 GiB per GPU
    assert device_map == "sequential"
    assert max_memory == {index: 36 * GIB for index in range(8)}


def test_the_kv_cache_of_one_evaluation_batch_is_kept_free_on_each_gpu() -> None:
    # GPT-NeoX-20B: 44 layers, 64 heads of 96, no grouped-query attention
    info = modeling.ModelInfo(num_parameters=20_000_000_000, layer_classes=[], kv_values_per_token=2 * 44 * 64 * 96)

    reserve = modeling.inference_reserve_bytes(info, batch_size=8, max_seq_length=64, dtype_bytes=2)

    assert reserve == 2 * 44 * 64 * 96 * 8 * 64 * 2 + modeling.INFERENCE_HEADROOM_BYTES  # 1.1 GB of cache + headroom


class Recorder:
    """Stands in for `from_pretrained`: records what was asked for and returns a model-like object."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def load(self, name: str, **kwargs) -> object:
        self.calls.append((name, kwargs))
        return self

    def to(self, device: str) -> object:
        self.calls.append(("to", {"device": device}))
        return self


def test_the_reload_after_fsdp_loads_the_gated_base_with_the_token_then_the_adapter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base, adapter = Recorder(), Recorder()
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda name, **kw: base.load(name, **kw))
    monkeypatch.setattr(PeftModel, "from_pretrained", lambda model, path, **kw: adapter.load(path, model=model))
    runtime = modeling.Runtime(
        use_cuda=True, device="cuda:0", dtype="bf16", bf16=True, fp16=False, attn_implementation="sdpa"
    )
    config = TrainConfig("meta-llama/Llama-2-7b-hf", approach="lora")

    modeling.load_for_inference(
        config, tmp_path, runtime, "hf_token", device_map="sequential", max_memory={0: 36 * GIB, 1: 36 * GIB}
    )

    assert base.calls == [
        (
            "meta-llama/Llama-2-7b-hf",
            {
                "token": "hf_token",
                "dtype": "bf16",
                "attn_implementation": "sdpa",
                "device_map": "sequential",
                "max_memory": {0: 36 * GIB, 1: 36 * GIB},
            },
        )
    ]
    assert adapter.calls == [(str(tmp_path), {"model": base})]  # dispatched already: no .to(device)


def test_a_full_model_reload_without_a_device_map_goes_to_this_ranks_device(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from transformers import AutoModelForCausalLM

    model = Recorder()
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda name, **kw: model.load(name, **kw))
    runtime = modeling.Runtime(
        use_cuda=False, device="cpu", dtype="fp32", bf16=False, fp16=False, attn_implementation="sdpa"
    )

    modeling.load_for_inference(TrainConfig("m", approach="full"), tmp_path, runtime, None)

    assert model.calls == [
        (str(tmp_path), {"dtype": "fp32", "attn_implementation": "sdpa"}),
        ("to", {"device": "cpu"}),
    ]


@pytest.mark.parametrize("keep_model", [False, True])
def test_releasing_the_training_state_leaves_nothing_holding_the_optimizer_or_the_model(
    keep_model: bool, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    import gc
    import weakref

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTTrainer

    from training_code import data, train
    from training_code.config import SageMakerEnv

    # Given a trainer after one LoRA step (its optimizer, scheduler and callback handler all hold references)
    tokenizer = AutoTokenizer.from_pretrained(tiny_models["llama"])
    config = TrainConfig(str(tiny_models["llama"]), max_steps=1, checkpoint_dir=str(tmp_path))
    runtime = modeling.detect_runtime(0)
    args = train.build_sft_config(config, SageMakerEnv.from_environ({}), runtime, 1e-3, False, "length_grouped", [])
    fmt = data.prompt_format("compact", ["card_arrival", "pin_blocked"])
    examples = [data.Example("where is my card", "card_arrival"), data.Example("my pin is blocked", "pin_blocked")]
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_models["llama"]),
        args=args,
        train_dataset=data.to_prompt_completion(examples * 4, fmt, tokenizer.eos_token),
        processing_class=tokenizer,
        peft_config=modeling.lora_config(config),
    )
    trainer.train()
    model, optimizer = weakref.ref(trainer.model), weakref.ref(trainer.optimizer)

    # When rank 0 keeps the model to evaluate it in place (or, after FSDP, every rank frees everything)
    train._release_training_state(trainer, runtime, keep_model=keep_model)
    gc.collect()

    # Then the optimizer state is gone, and the model too unless it is kept
    assert optimizer() is None
    assert (model() is not None) is keep_model
