"""strategy=lean's optimizer (training_code/lean.py): it tracks fp32 AdamW, compensation matters, it resumes exactly.

A tiny Llama (2 layers, hidden 64, ~70k parameters) trains on 4 fixed batches of random tokens for 60 steps at
lr 3e-5, the regime of full fine-tuning where Adam updates (~lr per step) are far below bf16's resolution (2^-8 of a
weight). Measured on the 2-core CPU machine (2026-12-06): loss decrease over 60 steps fp32 AdamW 0.0853, lean
0.0851, plain bf16 AdamW 0.0250, lean without compensation 0.0251.
"""

from __future__ import annotations

import pytest
import torch

from training_code.lean import MIN_8BIT_SIZE, LeanAdamW, state_bytes_per_parameter

STEPS = 60
LEARNING_RATE = 3e-5
# Lean's loss may differ from fp32 AdamW's at any step by at most 5% of what fp32 AdamW gained over the run. The
# only approximation left is the 8-bit quantization of Adam's moments (bitsandbytes' blockwise dynamic map; its
# error is ~1% of a block's largest value); bf16 rounding of the weights is compensated. Measured: 0.3%.
TRACKING_TOLERANCE = 0.05
# Plain bf16 AdamW must gain at most half of fp32's loss decrease (measured: 29%): the updates it rounds away.
UNCOMPENSATED_MAX_SHARE = 0.5


def tiny_llama(dtype: torch.dtype) -> torch.nn.Module:
    """The same randomly initialised tiny Llama every time, in `dtype`."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).to(dtype)


BATCHES = [torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(index)) for index in range(4)]


def train(model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int, start: int = 0) -> list[float]:
    """`steps` optimizer steps over the fixed batches (from batch `start`); the loss of each step."""
    losses = []
    for step in range(start, start + steps):
        batch = BATCHES[step % len(BATCHES)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def fp32_losses() -> list[float]:
    """The reference: fp32 weights, torch's AdamW."""
    model = tiny_llama(torch.float32)
    return train(model, torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0), STEPS)


def test_lean_bf16_training_tracks_fp32_adamw_within_the_stated_tolerance(fp32_losses: list[float]) -> None:
    # Given bf16 weights with lean's 8-bit, compensated, fused AdamW
    model = tiny_llama(torch.bfloat16)
    optimizer = LeanAdamW(model.parameters(), lr=LEARNING_RATE)

    # When it trains the same steps as fp32 AdamW
    losses = train(model, optimizer, STEPS)

    # Then its loss stays within the tolerance of fp32's at every step
    gained = fp32_losses[0] - fp32_losses[-1]
    assert gained > 0.05  # the reference learns something measurable
    worst = max(abs(lean - reference) for lean, reference in zip(losses, fp32_losses, strict=True))
    assert worst <= TRACKING_TOLERANCE * gained, (worst, gained)


@pytest.mark.parametrize("uncompensated", ["torch_bf16_adamw", "lean_without_kahan"])
def test_bf16_updates_without_compensation_lose_most_of_the_training(
    uncompensated: str, fp32_losses: list[float]
) -> None:
    # Given bf16 weights updated without compensation (torch's AdamW, or lean with the Kahan buffer off)
    model = tiny_llama(torch.bfloat16)
    if uncompensated == "torch_bf16_adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    else:
        optimizer = LeanAdamW(model.parameters(), lr=LEARNING_RATE, compensated=False)

    # When it trains the same steps
    losses = train(model, optimizer, STEPS)

    # Then it gains less than half of what fp32 gains: small updates round away
    assert losses[0] - losses[-1] <= UNCOMPENSATED_MAX_SHARE * (fp32_losses[0] - fp32_losses[-1])


def test_the_fused_step_in_backward_gives_the_same_weights_and_frees_every_gradient() -> None:
    # Given two copies of a model: one stepped inside backward (hooks), one by a classic optimizer.step()
    fused_model, classic_model = tiny_llama(torch.bfloat16), tiny_llama(torch.bfloat16)
    fused = LeanAdamW(fused_model.parameters(), lr=1e-3)
    classic = LeanAdamW(classic_model.parameters(), lr=1e-3, fused=False)

    # When both train 3 steps, and the fused one is inspected right after a backward pass
    train(fused_model, fused, 3)
    train(classic_model, classic, 3)
    batch = BATCHES[0]
    fused_model(input_ids=batch, labels=batch).loss.backward()

    # Then backward left no gradient behind (each was consumed as it completed) and the weights agree
    assert all(param.grad is None for param in fused_model.parameters())
    train(classic_model, classic, 1)
    for fused_param, classic_param in zip(fused_model.parameters(), classic_model.parameters(), strict=True):
        assert torch.equal(fused_param, classic_param)


def test_lean_state_saves_and_loads_so_a_resumed_run_continues_exactly(tmp_path) -> None:
    # Given a run of 6 steps, and a second run that saves after 3 steps and resumes into a fresh optimizer
    straight_model = tiny_llama(torch.bfloat16)
    straight = LeanAdamW(straight_model.parameters(), lr=1e-3)
    expected = train(straight_model, straight, 6)

    model = tiny_llama(torch.bfloat16)
    first = LeanAdamW(model.parameters(), lr=1e-3)
    losses = train(model, first, 3)
    torch.save({"model": model.state_dict(), "optimizer": first.state_dict()}, tmp_path / "checkpoint.pt")
    del model, first

    # When the checkpoint is loaded (weights_only, as the Trainer loads optimizer.pt) and training continues
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    resumed_model = tiny_llama(torch.bfloat16)
    resumed_model.load_state_dict(saved["model"])
    resumed = LeanAdamW(resumed_model.parameters(), lr=1e-3)
    resumed.load_state_dict(saved["optimizer"])
    losses += train(resumed_model, resumed, 3, start=3)

    # Then the losses are those of the uninterrupted run, and the 8-bit scales kept their fp32 precision
    assert losses == expected
    big = next(param for param in resumed_model.parameters() if param.numel() >= MIN_8BIT_SIZE)
    assert resumed.state[big]["exp_avg"].dtype == torch.uint8
    assert resumed.state[big]["exp_avg_absmax"].dtype == torch.float32
    assert resumed.state[big]["compensation"].dtype == torch.bfloat16


def test_lean_keeps_about_four_bytes_of_optimizer_state_per_parameter() -> None:
    # 8-bit moments (2 bytes + a fp32 scale per 256 values each) and a bf16 compensation (2 bytes): ~4.03 bytes,
    # against AdamW's 8 bytes of moments plus a 4-byte fp32 master copy in mixed precision.
    assert state_bytes_per_parameter(4096 * 4096) == pytest.approx(4.03125)
    assert state_bytes_per_parameter(64) == 10.0  # small tensors keep fp32 moments
