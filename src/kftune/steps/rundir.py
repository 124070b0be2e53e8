"""The run directory a pipeline run leaves (docs/contracts.md, "Run directories").

Every pipeline step reads and writes one ``RUN_DIR`` given to it as a path: locally a directory
under ``--out``, on a cluster ``/cache/runs/<pipeline job id>/...`` on the ``kftune-cache`` volume
that every step mounts. Steps exchange nothing else but small values (a seed, a path), so a run
directory is the whole record of a run: ``kftune report`` and ``kftune registry register`` read it.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUN_JSON = "run.json"
MATRIX_JSON = "matrix.json"  # a directory of run directories (ner-matrix) is not itself a run dir
PARENT_PIPELINES = ("ner-matrix",)
RUNS_ROOT_CLUSTER = "/cache/runs"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: Path, data: Any) -> Path:
    """Atomic JSON write (temp file + rename); NaN/inf become null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_json(path: Path, default: Any = None) -> Any:
    path = Path(path)
    if not path.is_file():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def slug(text: str, limit: int = 40) -> str:
    """A DNS label (lower-case letters, digits, '-') of at most ``limit`` characters."""
    s = re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-")
    s = re.sub(r"-{2,}", "-", s)[:limit].strip("-")
    return s or "run"


def resolve_run_dir(run_dir: str, job_id: str, runs_root: str = RUNS_ROOT_CLUSTER) -> str:
    """``run_dir`` when given (local runs pass one), else ``runs_root/<job id>`` (cluster runs)."""
    if run_dir:
        return str(Path(run_dir))
    return str(Path(runs_root) / slug(job_id or "run", 63))


@dataclass(frozen=True)
class RunDir:
    path: Path
    meta: str = RUN_JSON  # MATRIX_JSON for a directory of configurations

    @classmethod
    def at(cls, path: str | os.PathLike[str]) -> RunDir:
        p = Path(path)
        return cls(
            p, MATRIX_JSON if (p / MATRIX_JSON).is_file() and not (p / RUN_JSON).is_file() else RUN_JSON
        )

    # -- layout
    @property
    def run_json(self) -> Path:
        return self.path / self.meta

    @property
    def tune(self) -> Path:
        return self.path / "tune"

    @property
    def trials_json(self) -> Path:
        return self.tune / "trials.json"

    @property
    def best_json(self) -> Path:
        return self.tune / "best.json"

    def retrain(self, seed: int, other: str = "") -> Path:
        base = self.path / "others" / slug(other) if other else self.path / "retrain"
        return base / f"seed-{int(seed)}"

    def eval_json(self, seed: int) -> Path:
        return self.path / "eval" / f"seed-{int(seed)}.json"

    @property
    def comparison_json(self) -> Path:
        return self.path / "comparison.json"

    @property
    def registry_json(self) -> Path:
        return self.path / "registry.json"

    @property
    def report(self) -> Path:
        return self.path / "report"

    # -- run.json
    def info(self) -> dict[str, Any]:
        return read_json(self.run_json, {}) or {}

    def update_info(self, **changes: Any) -> dict[str, Any]:
        data = self.info()
        data.update(changes)
        write_json(self.run_json, data)
        return data

    def fail(self, step: str, reason: str) -> None:
        """Record why the run failed (the CLI prints it; ``kftune report`` shows it)."""
        self.update_info(status="failed", failed_step=step, error=reason, finished=now_iso())

    def seeds(self) -> list[int]:
        """Seeds with a retrained model, in order."""
        out = []
        base = self.path / "retrain"
        if base.is_dir():
            for p in base.iterdir():
                m = re.fullmatch(r"seed-(-?\d+)", p.name)
                if m and p.is_dir():
                    out.append(int(m.group(1)))
        return sorted(out)
