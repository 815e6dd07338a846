"""strategy=lean: full fine-tuning of a model on ONE GPU with the least memory per parameter.

Per parameter: 2 bytes of bf16 weight, 2 bytes of bf16 Kahan compensation, 2 bytes of 8-bit Adam moments (first
and second, bitsandbytes' blockwise dynamic quantization: the state format of `bnb.optim.AdamW8bit`), no fp32
master copy and no gradient buffer for the whole model — about 6 bytes instead of mixed precision's 16 (fp32 master
4 + Adam 8 + bf16 weight 2 + gradient 2), so a 7B model trains in ~42 GB (one 48 GB L40S) plus activations.

* **Fused step.** Each parameter is updated inside backward, by a `register_post_accumulate_grad_hook` the moment
  its gradient is complete, and its gradient is freed at once: only the gradients of the layer being processed live
  at a time. The Trainer's own `optimizer.step()` is then a no-op, and global gradient clipping is impossible (no
  moment sees every gradient): `max_grad_norm` must be 0 and gradient accumulation is refused (config.validate).
* **Compensated bf16 updates.** An Adam update of lr 2e-5 is ~0.01% of a weight, far below bf16's 0.4% resolution:
  added to a bf16 weight directly it rounds away, and the model barely trains. Kahan summation keeps the rounding
  error of every update in a bf16 buffer and adds it back at the next one, so the weight follows the fp32
  trajectory (tests/training/test_lean.py measures both).
* **Checkpoints.** The optimizer's state dict holds the 8-bit moments, their block scales, the compensation and the
  step count; `load_state_dict` restores them without the dtype casts torch's default applies (it would turn the
  fp32 block scales into bf16), so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

# bitsandbytes' 8-bit optimizers quantize in blocks of 256 values (one fp32 scale per block): a block's largest
# value sets its scale, so blocks must be small for Adam's second moment, whose values span decades.
STATE_BLOCK_SIZE = 256
# Tensors under this size keep fp32 moments (bitsandbytes' `min_8bit_size` default, 4096): norms and biases are
# a negligible share of memory and the most sensitive to quantization error.
MIN_8BIT_SIZE = 4096


def _quantize(values: torch.Tensor, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise 8-bit codes and per-block fp32 scales of a flat fp32 tensor (bitsandbytes' dynamic map)."""
    import bitsandbytes.functional as bnb_functional

    codes, state = bnb_functional.quantize_blockwise(values, code=code, blocksize=STATE_BLOCK_SIZE)
    return codes, state.absmax


def _dequantize(codes: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """The fp32 values of blockwise 8-bit codes."""
    import bitsandbytes.functional as bnb_functional

    state = bnb_functional.QuantState(absmax=absmax, code=code, blocksize=STATE_BLOCK_SIZE, dtype=torch.float32)
    return bnb_functional.dequantize_blockwise(codes, state)


class LeanAdamW(torch.optim.Optimizer):
    """AdamW with 8-bit moments and Kahan-compensated bf16 weights, stepping each parameter inside backward.

    `fused=True` (training) registers the per-parameter hooks; `step()` is then a no-op kept for the Trainer's
    loop. `fused=False` keeps the classic `backward(); step()` protocol (same update rule), for tests and tools.
    `compensated=False` drops the Kahan buffer (for the measurement that shows it matters).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *,
        fused: bool = True,
        compensated: bool = True,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr={lr} must be > 0")
        super().__init__(list(params), {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})
        self.fused = fused
        self.compensated = compensated
        self._codes: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self._group_of: dict[torch.nn.Parameter, dict[str, Any]] = {}
        self._hooks = []
        for group in self.param_groups:
            for param in group["params"]:
                self._group_of[param] = group
                if fused and param.requires_grad:
                    self._hooks.append(param.register_post_accumulate_grad_hook(self._step_and_free))

    def _maps(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The signed (first moment) and unsigned (second moment) dynamic quantization maps on `device`."""
        if device not in self._codes:
            import bitsandbytes.functional as bnb_functional

            self._codes[device] = (
                bnb_functional.create_dynamic_map(signed=True).to(device),
                bnb_functional.create_dynamic_map(signed=False).to(device),
            )
        return self._codes[device]

    def _step_and_free(self, param: torch.nn.Parameter) -> None:
        """The backward hook: update `param` from its now complete gradient, then free the gradient."""
        if param.grad is None:
            return
        self._update(param, self._group_of[param])
        param.grad = None

    @torch.no_grad()
    def _update(self, param: torch.nn.Parameter, group: dict[str, Any]) -> None:
        """One AdamW step of one parameter, computed in fp32, written back to its own dtype with compensation."""
        beta1, beta2 = group["betas"]
        assert param.grad is not None  # _step_and_free calls this only once the gradient is complete
        grad = param.grad.detach().float().reshape(-1)
        state = self.state[param]
        quantized = param.numel() >= MIN_8BIT_SIZE
        if not state:
            state["step"] = 0
            if quantized:
                signed, unsigned = self._maps(param.device)
                zeros = torch.zeros_like(grad)
                state["exp_avg"], state["exp_avg_absmax"] = _quantize(zeros, signed)
                state["exp_avg_sq"], state["exp_avg_sq_absmax"] = _quantize(zeros, unsigned)
            else:
                state["exp_avg"] = torch.zeros_like(grad)
                state["exp_avg_sq"] = torch.zeros_like(grad)
            if self.compensated and param.dtype != torch.float32:
                state["compensation"] = torch.zeros_like(param)
        state["step"] += 1
        step = state["step"]
        if quantized:
            signed, unsigned = self._maps(param.device)
            exp_avg = _dequantize(state["exp_avg"], state["exp_avg_absmax"], signed)
            exp_avg_sq = _dequantize(state["exp_avg_sq"], state["exp_avg_sq_absmax"], unsigned)
        else:
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if quantized:
            state["exp_avg"], state["exp_avg_absmax"] = _quantize(exp_avg, signed)
            state["exp_avg_sq"], state["exp_avg_sq_absmax"] = _quantize(exp_avg_sq, unsigned)
        bias1, bias2 = 1 - beta1**step, 1 - beta2**step
        denominator = (exp_avg_sq / bias2).sqrt_().add_(group["eps"])
        weight = param.detach().float().reshape(-1)
        update = (exp_avg / bias1).div_(denominator).mul_(-group["lr"])
        if group["weight_decay"]:
            update.add_(weight, alpha=-group["lr"] * group["weight_decay"])
        compensation = state.get("compensation")
        if compensation is None:
            param.copy_((weight + update).view_as(param))
            return
        # Kahan: add the update plus the error carried from earlier rounding; keep what this rounding lost.
        wanted = update.add_(compensation.float().reshape(-1))
        param.copy_((weight + wanted).view_as(param))
        compensation.copy_((wanted - (param.detach().float().reshape(-1) - weight)).view_as(param))

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """Fused: a no-op (every parameter stepped during backward). Unfused: step every parameter with a gradient."""
        loss = closure() if closure is not None else None
        if not self.fused:
            for group in self.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        self._update(param, group)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore moments, scales, compensation and step counts as saved (torch's default would cast the fp32
        block scales to the parameters' bf16), and the groups' hyperparameters (the scheduler's learning rate)."""
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("the saved optimizer state has a different number of parameter groups")
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError("the saved optimizer state was made for different parameters")
            group.update({key: value for key, value in saved.items() if key != "params"})
            for param, index in zip(group["params"], saved["params"], strict=True):
                if index in state_dict["state"]:
                    self.state[param] = {
                        key: value.to(param.device) if torch.is_tensor(value) else value
                        for key, value in state_dict["state"][index].items()
                    }

    def remove_hooks(self) -> None:
        """Detach the backward hooks (after training, so evaluation's backward-free passes keep no reference)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()


def state_bytes_per_parameter(numel: int, compensated: bool = True) -> float:
    """Bytes of optimizer state per parameter for a tensor of `numel` values (bf16 weights: 2 more for the weight)."""
    # two 1-byte moments plus one fp32 scale per block each; fp32 moments (2 x 4 bytes) under MIN_8BIT_SIZE
    moments = 8.0 if numel < MIN_8BIT_SIZE else 2.0 + 2 * 4 * math.ceil(numel / STATE_BLOCK_SIZE) / numel
    return moments + (2.0 if compensated else 0.0)


def make_optimizer(model: torch.nn.Module, learning_rate: float, args: Any) -> LeanAdamW:
    """The lean optimizer for every trainable parameter of `model`, with the Trainer's Adam settings.

    The model goes to the training device first: the hooks and the state belong to the parameters the Trainer will
    train, so they must be the ones on the GPU (a later `.to()` keeps them today, but nothing needs to rely on it).
    """
    model.to(args.device)
    return LeanAdamW(
        (param for param in model.parameters() if param.requires_grad),
        lr=learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.weight_decay,
    )
