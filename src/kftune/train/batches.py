"""Length-grouped batches, dynamic padding and seeded MLM masking.

Training order (``epoch_batches``): a seeded permutation of the examples is cut into chunks of
``BUCKET_FACTOR`` batches, each chunk is sorted by length and cut into batches (so a batch holds
examples of similar length and pads little), and the batch order is shuffled; the batch with the
longest example goes first so that an out-of-memory error shows up on the first step. The order
depends only on ``(seed, epoch, effective batch size, lengths)``: a resumed run and a run whose
per-device batch was halved after an OOM see the same batches.
"""

from __future__ import annotations

import numpy as np
import torch

from kftune.train.encode import IGNORE

BUCKET_FACTOR = 50


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    n = len(lengths)
    if n == 0:
        return []
    rng = np.random.default_rng([seed, epoch, 0x6B66])
    perm = rng.permutation(n)
    chunk = batch_size * BUCKET_FACTOR
    batches: list[np.ndarray] = []
    for start in range(0, n, chunk):
        idx = perm[start : start + chunk]
        idx = idx[np.argsort(-lengths[idx], kind="stable")]
        batches += [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    order = rng.permutation(len(batches))
    longest = int(np.argmax([lengths[b].max() for b in batches]))
    order = np.concatenate([[longest], order[order != longest]])
    return [batches[i] for i in order]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Longest first, sorted by length (least padding); callers put results back in order."""
    idx = np.argsort(-lengths, kind="stable")
    return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]


def split_micro(batch: np.ndarray, per_device: int) -> list[np.ndarray]:
    return [batch[i : i + per_device] for i in range(0, len(batch), per_device)]


def pad(rows: list[list[int]], value: int, width_multiple: int = 1) -> np.ndarray:
    width = max(len(r) for r in rows)
    width = -(-width // width_multiple) * width_multiple
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def collate(
    input_ids: list[list[int]],
    labels: list | None,
    pad_id: int,
    device: torch.device,
    token_labels: bool = True,
    width_multiple: int = 1,
) -> dict[str, torch.Tensor]:
    """Pad to the longest row of this batch (rounded up to ``width_multiple``); labels padded with
    -100 (token tasks) or a vector."""
    ids = pad(input_ids, pad_id, width_multiple)
    mask = np.zeros_like(ids)
    for i, r in enumerate(input_ids):
        mask[i, : len(r)] = 1
    nb = device.type == "cuda"
    batch = {
        "input_ids": torch.from_numpy(ids).to(device, non_blocking=nb),
        "attention_mask": torch.from_numpy(mask).to(device, non_blocking=nb),
    }
    if labels is not None:
        lab = pad(labels, IGNORE, width_multiple) if token_labels else np.asarray(labels, dtype=np.int64)
        batch["labels"] = torch.from_numpy(lab).to(device, non_blocking=nb)
    return batch


def mask_tokens(
    input_ids: list[list[int]],
    special_mask: list[list[int]],
    rng: np.random.Generator,
    *,
    probability: float,
    mask_id: int,
    vocab_size: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """BERT masking: pick ``probability`` of the non-special tokens; of those 80% -> [MASK],
    10% -> a random token, 10% unchanged. Labels are the original ids there, -100 elsewhere.
    One draw per token in row order, so the result does not depend on how rows are batched."""
    out_ids, out_labels = [], []
    for ids, special in zip(input_ids, special_mask, strict=True):
        ids_a = np.asarray(ids, dtype=np.int64)
        draws = rng.random((3, len(ids)))
        chosen = (draws[0] < probability) & (np.asarray(special) == 0)
        labels = np.where(chosen, ids_a, IGNORE)
        new = ids_a.copy()
        to_mask = chosen & (draws[1] < 0.8)
        to_random = chosen & ~to_mask & (draws[1] < 0.9)
        new[to_mask] = mask_id
        new[to_random] = (draws[2][to_random] * vocab_size).astype(np.int64)
        out_ids.append(new.tolist())
        out_labels.append(labels.tolist())
    return out_ids, out_labels
