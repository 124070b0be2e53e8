"""``best/`` and ``last/``: the only model copies a trial keeps, each replaced atomically.

A checkpoint is written into ``OUTPUT_DIR/.tmp-<name>-<id>/``, every file and the directory are
fsync'ed, and then the new directory takes the old one's place in one step (Linux
``renameat2(RENAME_EXCHANGE)``; elsewhere two renames, with the old copy parked as
``.old-<name>`` until the new one is in place, and picked up again by ``resolve`` if a crash hit
between them). Until the swap the old checkpoint is untouched.

``best/`` is made of hard links to the files of the ``last/`` just written when the newest epoch
is also the best one, so the two share their bytes; on disk there are never more than two model
copies (plus the one being written).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import math
import os
import pickle
import random
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from kftune.train.failures import EXIT_DISK, TrialStopped

STATE_FILE = "trainer_state.json"
RNG_FILE = "rng_state.pth"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
SCALER_FILE = "scaler.pt"
EVAL_FILE = "eval_results.json"

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _fsync_tree(root: Path) -> None:
    """fsync every file (and make it readable as the umask allows: some writers create 0600
    files, and other pods on a shared volume may run as another user)."""
    umask = os.umask(0)
    os.umask(umask)
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~umask)
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux >= 3.15); False when not supported here."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return rc == 0


def _parked(target: Path) -> Path:
    return target.parent / f".old-{target.name}"


def resolve(target: Path) -> Path | None:
    """The checkpoint at ``target``, recovering one parked by an interrupted two-rename swap."""
    if target.is_dir():
        return target
    parked = _parked(target)
    if parked.is_dir():
        with contextlib.suppress(OSError):
            os.rename(parked, target)
            return target
        return parked
    return None


def write_atomic(target: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp_dir)`` then put ``tmp_dir`` in ``target``'s place; the old ``target`` stays
    intact until the new one is complete (and is removed after)."""
    target = Path(target)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        write(tmp)
        _fsync_tree(tmp)
        if target.exists() and _exchange(tmp, target):
            pass  # tmp now holds the old checkpoint
        else:
            parked = _parked(target)
            if target.exists():
                shutil.rmtree(parked, ignore_errors=True)
                os.rename(target, parked)
            os.rename(tmp, target)
            if parked.exists():
                os.rename(parked, tmp)
        _fsync_dir(target.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def link_or_copy_tree(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> None:
    """Fill ``dst`` with hard links to ``src``'s files (copies where links are not possible)."""
    for item in src.iterdir():
        if item.name in skip:
            continue
        if item.is_dir():
            (dst / item.name).mkdir()
            link_or_copy_tree(item, dst / item.name)
            continue
        try:
            os.link(item, dst / item.name)
        except OSError:
            shutil.copy2(item, dst / item.name)


def clean_stale(output_dir: Path) -> None:
    """Remove temp dirs a killed process left behind (never a complete checkpoint)."""
    for tmp in output_dir.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)


# ----- sizes and free space


def model_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )


def optimizer_factor(optimizer_name: str) -> int:
    return {"adamw": 2, "adafactor": 1, "sgd": 1}.get(optimizer_name, 2)


def check_free_space(output_dir: Path, need: int, free_override: int | None, what: str) -> None:
    free = free_override if free_override is not None else shutil.disk_usage(output_dir).free
    if free < need:
        raise TrialStopped(
            "disk_full",
            f"not enough free disk for the {what} checkpoint in {output_dir}: need about {need / 1e6:.1f} MB, "
            f"{free / 1e6:.1f} MB free; the previous checkpoint is left intact. Free space or use a larger volume, "
            "or pass --keep last/--keep none on other trials sharing it",
            EXIT_DISK,
            need_bytes=int(need),
            free_bytes=int(free),
        )


# ----- RNG state


def capture_rng() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        with contextlib.suppress(RuntimeError):  # a different GPU count: leave CUDA seeded
            torch.cuda.set_rng_state_all(state["cuda"])


def save_torch(obj, path: Path) -> None:
    torch.save(obj, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)


def load_torch(path: Path):
    # our own files (optimizer/scheduler/RNG states hold numpy arrays and tuples)
    return torch.load(path, map_location="cpu", weights_only=False)


def write_json(path: Path, data) -> None:
    """Atomic JSON write; NaN/inf become null (strict JSON readers reject them)."""
    tmp = path.with_name(f".{path.name}.tmp")
    text = json.dumps(_finite(data), indent=2, default=_json_default, allow_nan=False)
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (set, tuple)):
        return sorted(obj) if isinstance(obj, set) else list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))
