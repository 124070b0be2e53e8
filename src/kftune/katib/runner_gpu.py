"""GPU placement for ``kftune katib run --local``: K trials per GPU, never past its memory.

The scheduling rules are :mod:`kftune.train.gpu_share`'s (pure bookkeeping, tested on their own);
this module connects them to the runner:

- ``--gpus auto`` (default) uses the GPUs ``nvidia-smi`` lists, none on a machine without one
  (trials then run exactly as before: no placement, no extra environment). ``--gpus none``
  turns placement off; ``--gpus 0,1`` picks GPUs; ``--gpus 0:81559`` also states a GPU's memory in
  MiB (where ``nvidia-smi`` cannot tell, or to give the runner less than all of it).
- ``--trials-per-gpu K`` (default 1) lets K trial processes share one GPU. Parallelism is then
  ``min(parallelTrialCount, GPUs x K)`` and whatever the GPUs' memory allows.
- Each trial books its expected peak memory: the measured peak of an earlier trial of the same
  shape (model, task, batch, max length, precision, optimizer; kept in ``WORK_DIR/gpu-memory.json``
  from each finished trial's ``metrics.json``), else an estimate from the model's ``config.json``;
  ``--gpu-memory-per-trial MIB`` states it for trial commands that are not ``kftune train``. A
  trial that does not fit now waits (first in, first out); one that fits on no GPU even alone is
  refused before the search starts (the probe trial) or fails with the reason.
- Each trial process gets ``CUDA_VISIBLE_DEVICES``, ``KFTUNE_GPU_MEMORY_FRACTION`` (its booking,
  enforced by ``kftune train``) and, with ``--mps``, ``CUDA_MPS_PIPE_DIRECTORY`` of an MPS control
  daemon the runner starts in ``WORK_DIR/mps`` and stops at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kftune.errors import UserError
from kftune.train.gpu_share import (
    CONTEXT_MIB,
    MPS_CONTEXT_MIB,
    Gpu,
    GpuPool,
    MemoryBook,
    ModelDims,
    Placement,
    Trial,
    TrialShape,
    detect_gpus,
    trial_for,
)

MEMORY_BOOK = "gpu-memory.json"


@dataclass
class GpuSettings:
    gpus: str = "auto"  # auto | none | "0,1" | "0:81559,1:81559"
    trials_per_gpu: int = 1
    mps: bool = False
    memory_per_trial_mib: int | None = None  # booking for trial commands that are not kftune train
    reserve_mib: int = 512

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def parse_gpu_list(text: str) -> list[tuple[int, int | None]]:
    """``"0,1"`` -> [(0, None), (1, None)]; ``"0:81559"`` -> [(0, 81559)]."""
    out: list[tuple[int, int | None]] = []
    for part in text.split(","):
        part = part.strip()
        index, _, mib = part.partition(":")
        if not index.isdigit() or (mib and not mib.isdigit()) or (mib and int(mib) <= 0):
            raise UserError(
                f"--gpus {text!r}: {part!r} is not INDEX or INDEX:MIB; use e.g. --gpus 0,1 or --gpus 0:81559 "
                "(or auto, or none)"
            )
        out.append((int(index), int(mib) if mib else None))
    if len({i for i, _ in out}) != len(out):
        raise UserError(f"--gpus {text!r}: a GPU index is listed twice")
    return out


def trainer_shape(argv: list[str], cwd: str | None) -> tuple[TrialShape, ModelDims, str] | None:
    """What a ``python -m kftune train ...`` trial's memory depends on, read with the trainer's
    own argument parser (so ``--config`` files count); None for other commands or unparsable argv."""
    if argv[1:4] != ["-m", "kftune", "train"]:
        return None
    from kftune.train.args import TrainArgs, parse_args

    here = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        try:
            args: TrainArgs = parse_args(argv[4:])
        finally:
            os.chdir(here)
    except (UserError, SystemExit, OSError, ValueError):
        return None
    batch = args.per_device_train_batch_size
    if args.auto_batch_size and "per_device_train_batch_size" not in args.explicit:
        batch = args.auto_batch_cap  # the largest it may pick; its memory cap bounds the search
    precision = "bf16" if args.precision == "auto" else args.precision
    shape = TrialShape(
        model=args.model,
        task=args.task,
        batch=batch,
        max_length=args.max_length,
        precision=precision,
        optimizer=args.optimizer,
    )
    dims, source = _model_dims(args.model, cwd)
    return shape, dims, source


def _model_dims(model: str, cwd: str | None) -> tuple[ModelDims, str]:
    from kftune.train.models import resolve_model

    with contextlib.suppress(UserError, OSError, ValueError):
        path = Path(resolve_model(model))
        if not path.is_absolute() and cwd:
            path = Path(cwd) / path
        if (path / "config.json").is_file():
            return ModelDims.from_model_dir(path), f"{path}/config.json"
    return ModelDims.from_config({}), "BERT-base dimensions (the model's config.json was not found)"


class MpsDaemon:
    """An NVIDIA MPS control daemon private to this run (its pipe and log dirs in the work dir)."""

    def __init__(self, root: Path) -> None:
        self.pipe = root / "pipe"
        self.log = root / "log"
        self.started = False

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CUDA_MPS_PIPE_DIRECTORY": str(self.pipe),
            "CUDA_MPS_LOG_DIRECTORY": str(self.log),
        }

    def start(self) -> str | None:
        """Start it; returns why not (None when it runs)."""
        binary = shutil.which("nvidia-cuda-mps-control")
        if binary is None:
            return "nvidia-cuda-mps-control not found"
        self.pipe.mkdir(parents=True, exist_ok=True)
        self.log.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([binary, "-d"], env=self.env(), capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            return (
                f"nvidia-cuda-mps-control -d exited {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"
            )
        self.started = True
        return None

    def stop(self) -> None:
        if not self.started:
            return
        binary = shutil.which("nvidia-cuda-mps-control")
        if binary:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    [binary], input="quit\n", env=self.env(), capture_output=True, text=True, timeout=30
                )
        self.started = False


@dataclass
class GpuScheduler:
    """The runner's view: which trial may start now, on which GPU, with what environment."""

    pool: GpuPool
    book: MemoryBook
    settings: GpuSettings
    mps: MpsDaemon | None = None
    parsed: dict[str, tuple[TrialShape, ModelDims] | None] = field(default_factory=dict)  # kftune train shape
    waiting: set[str] = field(default_factory=set)

    @property
    def capacity(self) -> int:
        return self.pool.capacity

    def describe(self) -> str:
        gpus = ", ".join(f"GPU {g.index} ({g.total_mib} MiB)" for g in self.pool.gpus)
        mps = "; MPS on" if self.pool.mps_pipe else ""
        return (
            f"{gpus}; {self.settings.trials_per_gpu} trial(s) per GPU at most, each booking its peak "
            f"memory + {int(self.pool.margin * 100)}% + {self.pool.context_mib} MiB context{mps}"
        )

    def trial(self, name: str, argv: list[str], cwd: str | None) -> Trial:
        if self.settings.memory_per_trial_mib is not None:
            return Trial(name, self.settings.memory_per_trial_mib, "--gpu-memory-per-trial")
        if name not in self.parsed:  # parsed once: a waiting trial is asked about at every tick
            found = trainer_shape(argv, cwd)
            self.parsed[name] = found[:2] if found is not None else None
        parsed = self.parsed[name]
        if parsed is None:
            # an unknown command: an equal share of the smallest GPU
            gpu = min(self.pool.gpus, key=lambda g: g.usable_mib)
            share = gpu.usable_mib // max(gpu.slots, 1) - self.pool.context_mib
            share = int(share / (1 + self.pool.margin))
            return Trial(name, max(share, 1), f"an equal share (1/{gpu.slots} of GPU {gpu.index})")
        shape, dims = parsed
        return trial_for(name, shape, dims, self.book)  # the measured peak once the book has one

    def check(self, name: str, argv: list[str], cwd: str | None) -> Trial:
        """Raise a UserError when the trial fits on no GPU even alone."""
        trial = self.trial(name, argv, cwd)
        self.pool.check(trial)
        return trial

    def place(self, name: str, argv: list[str], cwd: str | None) -> Placement | None:
        """The trial's placement now, or None when it must wait; UserError when it never fits."""
        placement = self.pool.place(self.trial(name, argv, cwd))
        if placement is None:
            self.waiting.add(name)
        else:
            self.waiting.discard(name)
        return placement

    def release(self, name: str, output_dir: str | None) -> int | None:
        """A trial ended: free its booking; remember its measured peak (MiB) for its shape."""
        self.pool.release(name)
        self.waiting.discard(name)
        parsed = self.parsed.get(name)
        if parsed is None or not output_dir:
            return None
        return self.book.record_metrics(parsed[0], Path(output_dir) / "metrics.json")

    def close(self) -> None:
        if self.mps is not None:
            self.mps.stop()


def build_scheduler(settings: GpuSettings, work_dir: Path, say: Callable[[str], None]) -> GpuScheduler | None:
    """The run's GPU scheduler, or None when trials run without placement (no GPU, ``--gpus none``)."""
    if settings.trials_per_gpu < 1:
        raise UserError(f"--trials-per-gpu must be at least 1, got {settings.trials_per_gpu}")
    if settings.memory_per_trial_mib is not None and settings.memory_per_trial_mib < 1:
        raise UserError(
            f"--gpu-memory-per-trial must be a positive number of MiB, got {settings.memory_per_trial_mib}"
        )
    text = settings.gpus.strip().lower()
    if text == "none":
        return None
    k, reserve = settings.trials_per_gpu, settings.reserve_mib
    if text == "auto":
        gpus = detect_gpus(k, reserve)
        if not gpus:
            if k > 1 or settings.mps:
                say(
                    "no GPU found (nvidia-smi lists none): --trials-per-gpu and --mps do not apply; trials run on CPU"
                )
            return None
    else:
        wanted = parse_gpu_list(text)
        detected = {g.index: g for g in detect_gpus(k, reserve)} if any(m is None for _, m in wanted) else {}
        gpus = []
        for index, mib in wanted:
            if mib is None:
                if index not in detected:
                    listed = ", ".join(map(str, sorted(detected))) or "none"
                    raise UserError(
                        f"--gpus: GPU {index} is not listed by nvidia-smi (it lists: {listed}); "
                        f"give its memory yourself as --gpus {index}:MIB"
                    )
                mib = detected[index].total_mib
            if mib <= reserve:
                raise UserError(
                    f"--gpus: GPU {index} has {mib} MiB, not more than the {reserve} MiB kept free"
                )
            gpus.append(Gpu(index, mib, k, reserve))
    mps = None
    context = CONTEXT_MIB
    if settings.mps:
        mps = MpsDaemon(work_dir / "mps")
        why = mps.start()
        if why is None:
            context = MPS_CONTEXT_MIB
            say(f"MPS control daemon started (pipe {mps.pipe})")
        else:
            say(f"--mps: no MPS ({why}); trials share each GPU by time-slicing")
            mps = None
    pool = GpuPool(gpus, context_mib=context, mps_pipe=str(mps.pipe) if mps else None)
    book = MemoryBook(work_dir / MEMORY_BOOK)
    return GpuScheduler(pool, book, settings, mps)


__all__ = ["GpuScheduler", "GpuSettings", "MpsDaemon", "build_scheduler", "parse_gpu_list", "trainer_shape"]
