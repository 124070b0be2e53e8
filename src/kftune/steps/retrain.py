"""The ``retrain`` and ``evaluate`` steps: the best configuration again with other seeds, then
every retrained model on every casing variant of dev and test.

A retrain runs the best trial's own ``kftune train`` arguments (recorded in ``tune/best.json``
from the local runner's or the cluster's Trial), so what is retrained is exactly what was tuned;
only ``--seed``, ``--output-dir``, ``--experiment``/``--trial`` and ``--keep best`` change, and
``--resume-from`` goes (an ASHA promotion's parent is a tuning artefact: the retrain trains the
promoted number of epochs from scratch on the same LR schedule).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from kftune.errors import UserError
from kftune.steps.argv import drop_flag, flag_value, set_flag, train_args
from kftune.steps.rundir import RunDir, read_json, slug
from kftune.steps.watch import run_watched


class StepFailed(UserError):
    exit_code = 1


def best_train_args(rd: RunDir) -> list[str]:
    best = read_json(rd.best_json)
    if not best or not best.get("argv"):
        raise StepFailed(f"{rd.best_json}: no best trial with its command (did the tune step succeed?)")
    try:
        return train_args([str(a) for a in best["argv"]])
    except ValueError as exc:
        raise StepFailed(f"{rd.best_json}: the best trial's command is {exc}") from exc


def retrain_argv(
    rd: RunDir,
    seed: int,
    *,
    model: str = "",
    other: str = "",
    set_args: dict[str, str] | None = None,
) -> list[str]:
    args = best_train_args(rd)
    out = rd.retrain(seed, other)
    experiment = (read_json(rd.best_json) or {}).get("experiment") or "kftune"
    args = drop_flag(args, "--resume-from")
    args = set_flag(args, "--seed", str(int(seed)))
    args = set_flag(args, "--output-dir", str(out))
    args = set_flag(args, "--experiment", f"{experiment}-retrain")
    args = set_flag(args, "--trial", f"{slug(other) + '-' if other else ''}seed-{int(seed)}")
    args = set_flag(args, "--keep", "best")
    if model:
        args = set_flag(args, "--model", model)
    for flag, value in (set_args or {}).items():
        args = set_flag(args, flag if flag.startswith("--") else f"--{flag}", value)
    return args


def retrain(
    run_dir: str | Path,
    seed: int,
    *,
    model: str = "",
    other: str = "",
    set_args: dict[str, str] | None = None,
) -> str:
    """Train the best configuration with ``seed`` into ``retrain/seed-<S>`` (or
    ``others/<other>/seed-<S>`` for another model); returns that directory."""
    rd = RunDir.at(run_dir)
    args = retrain_argv(rd, seed, model=model, other=other, set_args=set_args)
    out = Path(flag_value(args, "--output-dir") or rd.retrain(seed, other))
    done = read_json(out / "metrics.json") or {}
    if done.get("status") == "completed" and (out / "best").is_dir():
        print(f"retrain: {out} already completed (a retried step): kept", file=sys.stderr)
        return str(out)
    log = out.parent / f"{out.name}.log"
    print("retrain: kftune train " + " ".join(args), file=sys.stderr, flush=True)

    def echo(line: str) -> None:
        if "=" in line and ("epoch=" in line or line.startswith("final")):
            print(f"retrain seed {seed}: {line.rstrip()}", file=sys.stderr, flush=True)

    code, tail = run_watched(args, out, log, what=f"retrain seed {seed}", on_line=echo)
    if code != 0:
        status = (read_json(out / "metrics.json") or {}).get("status") or f"exit {code}"
        raise StepFailed(f"retrain seed {seed} failed ({status}); log {log}: {' | '.join(tail[-3:])}")
    return str(out)


def evaluate(run_dir: str | Path, seed: int, *, max_samples: int = 0, variants: str = "all") -> str:
    """``kftune evaluate`` of ``retrain/seed-<S>`` on every casing variant of dev and test ->
    ``eval/seed-<S>.json``; returns its path."""
    from kftune.evaluate.cli import main as evaluate_main

    rd = RunDir.at(run_dir)
    model_dir = rd.retrain(seed)
    metrics = read_json(model_dir / "metrics.json") or {}
    data = flag_value(best_train_args(rd), "--data") or (metrics.get("args") or {}).get("data")
    if not data:
        raise StepFailed(f"evaluate: no --data in the best trial's command nor in {model_dir}/metrics.json")
    out = rd.eval_json(seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = ["--model", str(model_dir), "--data", str(data), "--variants", variants, "--out", str(out)]
    if max_samples > 0:
        argv += ["--max-samples", str(int(max_samples))]
    code = evaluate_main(argv)
    if code != 0:
        raise StepFailed(f"evaluate seed {seed}: kftune evaluate exited {code}")
    return str(out)


def seed_scores(train_dir: Path) -> dict[str, float]:
    """``dev_<m>`` (best epoch) and ``test_<m>`` of one ``kftune train``/``kftune baseline`` dir."""
    data: dict[str, Any] = read_json(train_dir / "metrics.json") or {}
    out: dict[str, float] = {}
    best = data.get("best") or {}
    best_metrics = best.get("metrics") if isinstance(best.get("metrics"), dict) else best
    for key, value in (best_metrics or {}).items():
        if key.startswith("eval_") and isinstance(value, int | float):
            out["dev_" + key[5:]] = float(value)
    for key, value in (data.get("test") or {}).items():
        if key.startswith("test_") and isinstance(value, int | float):
            out[key] = float(value)
    return out


def dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)
