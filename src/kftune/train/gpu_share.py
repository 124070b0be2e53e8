"""K trials per GPU with memory-aware queueing: the scheduling logic of the local runner.

Pure bookkeeping (no torch, no processes), so that it can be tested offline; the runner asks
``GpuPool.start_ready(queue)`` which queued trials may start now and on which GPU, starts them
with ``placement.env()``, and calls ``release`` when each ends.

Rules
- A GPU runs at most ``slots`` trials at once (K, ``--trials-per-gpu``).
- Each trial books ``need_mib`` = its peak CUDA-allocator memory x ``1 + margin`` (the measured
  peak of an earlier trial with the same shape when known, ``MemoryBook``, else ``estimate_mib``)
  plus ``context_mib`` for its CUDA context, which the allocator does not see. A trial starts only
  where the booked memory of the running trials plus its own stays within ``total - reserve``:
  the runner never starts a trial that would push a GPU past its memory.
- The booking is enforced, not only counted: the trial process gets
  ``KFTUNE_GPU_MEMORY_FRACTION = need / total``, which ``kftune train`` applies with
  ``torch.cuda.set_per_process_memory_fraction``. A trial whose estimate was too low then hits
  its own cap and halves its per-device batch (the trainer's OOM rule) instead of starving its
  neighbours.
- Queue order is first in, first out: when the head of the queue fits nowhere yet, the trials
  behind it wait too (no starvation of large trials). A trial that could not fit even on an empty
  GPU is refused with a ``UserError`` at once.
- Placement: among the GPUs where the trial fits, the one with the fewest running trials, then
  the most free memory.
"""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from kftune.errors import UserError

MIB = 2**20
CONTEXT_MIB = 600  # CUDA context + cuBLAS/cuDNN workspaces per process (less under MPS)
MPS_CONTEXT_MIB = 300
DEFAULT_MARGIN = 0.2
# bytes per parameter held for training: fp32 weights + fp32 grads + optimizer state
STATE_BYTES = {"adamw": 16, "sgd": 12, "adafactor": 10}


@dataclass(frozen=True)
class Gpu:
    index: int
    total_mib: int
    slots: int = 1
    reserve_mib: int = 512  # kept free: other processes, the MPS server, fragmentation

    @property
    def usable_mib(self) -> int:
        return self.total_mib - self.reserve_mib


@dataclass(frozen=True)
class TrialShape:
    """What a trial's memory depends on."""

    model: str
    task: str = "ner"
    batch: int = 32
    max_length: int = 128
    precision: str = "bf16"
    optimizer: str = "adamw"

    def key(self) -> str:
        return f"{self.model}|{self.task}|b{self.batch}|L{self.max_length}|{self.precision}|{self.optimizer}"


@dataclass
class ModelDims:
    params: int
    hidden: int
    layers: int
    heads: int

    @classmethod
    def from_config(cls, config: dict) -> ModelDims:
        d = int(config.get("hidden_size") or config.get("dim") or 768)
        layers = int(config.get("num_hidden_layers") or config.get("n_layers") or 12)
        heads = int(config.get("num_attention_heads") or config.get("n_heads") or 12)
        inter = int(config.get("intermediate_size") or config.get("hidden_dim") or 4 * d)
        vocab = int(config.get("vocab_size") or 30522)
        positions = int(config.get("max_position_embeddings") or 512)
        params = (vocab + positions + 2) * d + layers * (4 * d * d + 2 * d * inter + 9 * d + inter)
        return cls(params=params, hidden=d, layers=layers, heads=heads)

    @classmethod
    def from_model_dir(cls, path: str | Path) -> ModelDims:
        return cls.from_config(json.loads((Path(path) / "config.json").read_text()))


def estimate_mib(dims: ModelDims, shape: TrialShape) -> int:
    """Peak CUDA-allocator memory of a training trial, before any measurement.

    Parameters, gradients and optimizer state (``STATE_BYTES`` per parameter) plus the
    activations of the longest batch (the trainer runs it first): per layer
    ``b * s * h * (34 + 5 * heads * s / h)`` bytes for 16-bit activations (Korthikanti et al.,
    2022), doubled in fp32, x1.5 for autocast's fp32 copies and the allocator's rounding.
    A deliberate over-estimate: measured peaks (``MemoryBook``) replace it after the first trial.
    """
    static = dims.params * STATE_BYTES.get(shape.optimizer, 16)
    b, s, h = shape.batch, shape.max_length, dims.hidden
    per_layer = b * s * h * (34 + 5 * dims.heads * s / h)
    act = per_layer * dims.layers * (2.0 if shape.precision == "fp32" else 1.0) * 1.5
    return math.ceil((static + act) / MIB)


class MemoryBook:
    """Measured peak memory per trial shape, from finished trials' ``metrics.json``
    (``gpu.peak_reserved_bytes``); kept in a JSON file so later runs start informed."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.peaks: dict[str, int] = {}
        if path is not None and path.is_file():
            self.peaks = {k: int(v) for k, v in json.loads(path.read_text()).items()}

    def get(self, shape: TrialShape) -> int | None:
        return self.peaks.get(shape.key())

    def record(self, shape: TrialShape, peak_bytes: int) -> None:
        mib = math.ceil(peak_bytes / MIB)
        key = shape.key()
        self.peaks[key] = max(mib, self.peaks.get(key, 0))
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.peaks, indent=1, sort_keys=True))

    def record_metrics(self, shape: TrialShape, metrics_json: Path) -> int | None:
        """Record a finished trial's peak; returns it in MiB (None when the trial ran on no GPU)."""
        try:
            gpu = json.loads(metrics_json.read_text()).get("gpu") or {}
        except (OSError, ValueError):
            return None
        peak = gpu.get("peak_reserved_bytes")
        if not peak:
            return None
        self.record(shape, int(peak))
        return self.get(shape)


@dataclass
class Trial:
    name: str
    allocator_mib: int  # expected peak of the CUDA caching allocator
    source: str = "estimate"  # "estimate" or "measured"


@dataclass
class Placement:
    trial: Trial
    gpu: Gpu
    need_mib: int  # booked: allocator cap (with margin) + context
    cap_mib: int  # the allocator cap given to the process
    mps_pipe: str | None = None

    @property
    def fraction(self) -> float:
        return round(min(1.0, self.cap_mib / self.gpu.total_mib), 4)

    def env(self) -> dict[str, str]:
        env = {"CUDA_VISIBLE_DEVICES": str(self.gpu.index), "KFTUNE_GPU_MEMORY_FRACTION": f"{self.fraction}"}
        if self.mps_pipe:
            env["CUDA_MPS_PIPE_DIRECTORY"] = self.mps_pipe
        return env


@dataclass
class GpuPool:
    gpus: list[Gpu]
    margin: float = DEFAULT_MARGIN
    context_mib: int = CONTEXT_MIB
    mps_pipe: str | None = None
    running: dict[str, Placement] = field(default_factory=dict)

    def booked_mib(self, gpu: Gpu) -> int:
        return sum(p.need_mib for p in self.running.values() if p.gpu.index == gpu.index)

    def count(self, gpu: Gpu) -> int:
        return sum(1 for p in self.running.values() if p.gpu.index == gpu.index)

    def _need(self, trial: Trial) -> tuple[int, int]:
        cap = math.ceil(trial.allocator_mib * (1 + self.margin))
        return cap + self.context_mib, cap

    def check(self, trial: Trial) -> None:
        """Refuse a trial that fits on no GPU even alone."""
        need, _ = self._need(trial)
        best = max((g.usable_mib for g in self.gpus), default=0)
        if need > best:
            raise UserError(
                f"trial {trial.name} needs ~{need} MiB of GPU memory ({trial.source} peak {trial.allocator_mib} MiB "
                f"+ {int(self.margin * 100)}% margin + {self.context_mib} MiB CUDA context) but the largest GPU has "
                f"{best} MiB usable: lower --per-device-train-batch-size or --max-length"
            )

    def place(self, trial: Trial) -> Placement | None:
        """Start ``trial`` now if it fits somewhere; None = it must wait."""
        self.check(trial)
        need, cap = self._need(trial)
        fits = [g for g in self.gpus if self.count(g) < g.slots and self.booked_mib(g) + need <= g.usable_mib]
        if not fits:
            return None
        gpu = min(fits, key=lambda g: (self.count(g), self.booked_mib(g) - g.usable_mib, g.index))
        placement = Placement(trial, gpu, need, cap, self.mps_pipe)
        self.running[trial.name] = placement
        return placement

    def start_ready(self, queue: list[Trial]) -> list[Placement]:
        """Place queued trials in order until the head does not fit (FIFO); removes them from ``queue``."""
        started = []
        while queue:
            placement = self.place(queue[0])
            if placement is None:
                break
            started.append(placement)
            queue.pop(0)
        return started

    def release(self, name: str) -> None:
        self.running.pop(name, None)

    @property
    def capacity(self) -> int:
        return sum(g.slots for g in self.gpus)


def parse_nvidia_smi(text: str) -> list[tuple[int, int]]:
    """``nvidia-smi --query-gpu=index,memory.total --format=csv,noheader,nounits`` -> [(index, MiB)]."""
    out = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            out.append((int(parts[0]), int(parts[1])))
    return out


def detect_gpus(slots: int, reserve_mib: int = 512, visible: Iterable[int] | None = None) -> list[Gpu]:
    """The GPUs ``nvidia-smi`` lists (none when it is missing or fails)."""
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if proc.returncode != 0:
        return []
    allowed = set(visible) if visible is not None else None
    return [
        Gpu(i, mib, slots, reserve_mib)
        for i, mib in parse_nvidia_smi(proc.stdout)
        if allowed is None or i in allowed
    ]


def trial_for(name: str, shape: TrialShape, dims: ModelDims, book: MemoryBook | None = None) -> Trial:
    measured = book.get(shape) if book is not None else None
    if measured is not None:
        return Trial(name, measured, "measured")
    return Trial(name, estimate_mib(dims, shape), "estimate")
