"""Optimizer, learning-rate schedule, device and precision."""

from __future__ import annotations

import math

import torch

from kftune.errors import UserError

NO_DECAY = ("bias", "LayerNorm.weight", "layernorm.weight", "layer_norm.weight", "norm.weight")


def param_groups(model, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if name.endswith(NO_DECAY) or p.ndim < 2 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(name: str, model, lr: float, weight_decay: float, device: torch.device):
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8, **fast)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(groups, lr=lr, scale_parameter=False, relative_step=False, warmup_init=False)
    raise UserError(f"unknown optimizer {name!r}: choose adamw, adafactor or sgd")


def make_scheduler(name: str, optimizer, *, warmup_steps: int, total_steps: int, num_cycles: int):
    from transformers import get_scheduler

    hf_name = {"constant": "constant_with_warmup"}.get(name, name)
    extra = {"num_cycles": num_cycles} if name == "cosine_with_restarts" else None
    return get_scheduler(
        hf_name,
        optimizer,
        num_warmup_steps=warmup_steps,
        num_training_steps=total_steps,
        scheduler_specific_kwargs=extra,
    )


def steps_per_epoch(n_train: int, effective_batch: int) -> int:
    return max(1, math.ceil(n_train / effective_batch))


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA GPU is visible here: use --device auto or cpu")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype (float32 = no autocast)."""
    if precision == "fp32":
        return torch.float32
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if device.type != "cuda":
        if precision == "fp16":
            raise UserError("--precision fp16 needs a GPU (none here): use --precision fp32 (or bf16) on CPU")
        return torch.bfloat16  # bf16 autocast works on CPU (slower than fp32 on most CPUs)
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError("--precision bf16: this GPU has no bf16 support: use --precision fp16 or fp32")
    return torch.float16 if precision == "fp16" else torch.bfloat16
