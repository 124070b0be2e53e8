"""The fast path of the training loop (``--fast-path``, default on for CUDA).

What the plain path does per micro-batch — gather Python lists, pad them with NumPy, copy three
pageable arrays to the device, let the model turn a 2-D padding mask into a 4-D one (which in
eager mode asks the GPU ``mask.all()`` and so waits for it) — the fast path replaces by:

- ``DeviceData``: the whole training split, tokenised once, as padded tensors on the device
  (``[N, W]`` ids and labels, ``[N]`` lengths; CoNLL-2003 is 14k x 128 int64s, ~30 MB). An epoch's
  order is uploaded once; a micro-batch is a slice of it, gathered on the device. No host
  collation and no host-to-device copy per step.
- bucketed widths: a micro-batch is padded to its longest row rounded up to ``--pad-multiple``
  (16 by default on CUDA), so only ``max_length / 16`` shapes recur (tensor-core friendly sizes;
  few shapes for ``torch.compile`` and the CUDA caching allocator).
- a ready 4-D boolean attention mask ``[B, 1, 1, W]`` when the model accepts one (checked once
  against the 2-D mask on real rows, ``accepts_4d_mask``), which skips the model's per-step
  ``mask.all()`` host sync.
- ``make_loss_fn``: forward + summed cross-entropy as one function, optionally through
  ``torch.compile`` (``--compile``), with dynamic shapes so that one compilation serves every
  bucket and batch size.

With ``--pad-multiple 1`` and the same seed, the fast path feeds the model exactly the tensors the
plain path feeds it (same shapes, so the same dropout draws): metrics agree to float rounding
(``tests/train/test_fastpath.py``). Wider buckets change only padded positions, which the mask
hides; with dropout they change which random numbers land on real tokens, so metrics then agree
statistically, not bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from kftune.train.encode import IGNORE, Encoded

# Above this the training split stays on the host (collated per batch, still bucketed): a huge
# split must not take the GPU memory the model needs.
DEVICE_DATA_MAX_BYTES = 1 << 30
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def round_up(n: int, multiple: int) -> int:
    return -(-int(n) // multiple) * multiple


def bucket_width(longest: int, multiple: int, cap: int) -> int:
    """Pad width of a batch whose longest row is ``longest``: a multiple of ``multiple``, at most ``cap``
    (``cap`` itself need not be a multiple: truncated rows are never longer than it)."""
    return max(1, min(round_up(longest, multiple), cap))


def device_bytes(enc: Encoded) -> int:
    """Device memory ``DeviceData`` would take: ids and labels as int64, ``[N, longest]``."""
    n = len(enc)
    return 2 * 8 * n * (int(enc.lengths.max()) if n else 1)


class DeviceData:
    """A tokenised training split as padded tensors on ``device`` (ner and seqcls)."""

    def __init__(self, enc: Encoded, task: str, pad_id: int, device: torch.device, pad_multiple: int) -> None:
        self.device = device
        self.pad_multiple = pad_multiple
        self.token_labels = task != "seqcls"
        self.lengths_np = enc.lengths
        n = len(enc)
        self.width = int(self.lengths_np.max()) if n else 1
        ids = np.full((n, self.width), pad_id, dtype=np.int64)
        labels = np.full((n, self.width), IGNORE, dtype=np.int64) if self.token_labels else None
        for i, row in enumerate(enc.input_ids):
            ids[i, : len(row)] = row
            if labels is not None:
                labels[i, : len(row)] = enc.labels[i]
        if labels is None:
            labels = np.asarray(enc.labels, dtype=np.int64)
        self.ids = torch.from_numpy(ids).to(device)
        self.labels = torch.from_numpy(labels).to(device)
        self.lengths = torch.from_numpy(self.lengths_np).to(device)
        self.positions = torch.arange(self.width, device=device)
        self.order_np = np.zeros(0, dtype=np.int64)
        self.order = torch.zeros(0, dtype=torch.long, device=device)
        self.mask_4d = False

    def start_epoch(self, batches: list[np.ndarray]) -> list[tuple[int, int]]:
        """Upload the epoch's order once; returns each batch's ``(start, end)`` in it."""
        self.order_np = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
        self.order = torch.from_numpy(self.order_np).to(self.device)
        bounds = np.cumsum([0] + [len(b) for b in batches])
        return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def slice(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask, labels)`` of rows ``order[start:end]``, gathered on the device."""
        longest = int(self.lengths_np[self.order_np[start:end]].max())
        width = bucket_width(longest, self.pad_multiple, self.width)
        rows = self.order[start:end]
        ids = self.ids[rows, :width]
        keep = self.positions[:width] < self.lengths[rows][:, None]
        mask = keep[:, None, None, :] if self.mask_4d else keep.long()
        labels = self.labels[rows, :width] if self.token_labels else self.labels[rows]
        return ids, mask, labels


def padding_mask_4d(mask_2d: torch.Tensor) -> torch.Tensor:
    return mask_2d.bool()[:, None, None, :]


@torch.no_grad()
def accepts_4d_mask(model, input_ids: torch.Tensor, mask_2d: torch.Tensor) -> bool:
    """Does ``model`` give the same logits for a ready ``[B,1,1,W]`` boolean mask as for the 2-D
    mask? (True for SDPA-attention BERT-family models in transformers 5; checked, not assumed.)"""
    was_training = model.training
    model.eval()
    try:
        ref = model(input_ids=input_ids, attention_mask=mask_2d).logits.float()
        out = model(input_ids=input_ids, attention_mask=padding_mask_4d(mask_2d)).logits.float()
    except Exception:
        return False
    finally:
        model.train(was_training)
    if ref.shape != out.shape:
        return False
    keep = mask_2d.bool()
    if ref.dim() == 3:  # token tasks: compare real positions only
        ref, out = ref[keep], out[keep]
    scale = ref.abs().max().clamp_min(1e-6)
    return bool(((ref - out).abs().max() / scale) < 1e-3)


def make_loss_fn(model, dtype: torch.dtype, device: torch.device, label_smoothing: float) -> Callable:
    """``fn(input_ids, attention_mask, labels) -> summed cross-entropy`` (fp32 logits)."""

    def autocast():
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    def loss_sum(input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with autocast():
            logits = model(input_ids=input_ids, attention_mask=attention_mask).logits
        return F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
            label_smoothing=label_smoothing,
        )

    return loss_sum


def compile_loss(fn: Callable, mode: str) -> Callable:
    """``torch.compile`` with dynamic shapes: one graph for every bucket width and batch size."""
    return torch.compile(fn, mode=None if mode == "default" else mode, dynamic=True)


# What ``--compile auto`` means. Off everywhere until bench/gpu_throughput.py has shown on a GPU
# that compilation (~1 min cold for BERT-base; trials on CoNLL-size data train for about as long)
# pays for itself; see docs/gpu.md. Set per trial with --compile default.
AUTO_COMPILE = {"cuda": "off", "cpu": "off"}


def resolve_compile(choice: str, device: torch.device) -> str:
    """``--compile auto|off|MODE`` -> ``off`` or a torch.compile mode."""
    if choice == "auto":
        return AUTO_COMPILE.get(device.type, "off")
    return choice


def resolve_fast_path(choice: str, device: torch.device) -> bool:
    return choice == "on" or (choice == "auto" and device.type == "cuda")
