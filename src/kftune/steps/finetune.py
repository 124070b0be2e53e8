"""``mlm``'s downstream steps (seed 003): fine-tune the continued-pretraining model on several
tasks, N runs each, optionally the original model too, and measure both models' perplexity.

The tasks are a list of JSON objects (the pipeline parameter ``finetune_tasks``)::

    [{"name": "frenk-hr", "task": "seqcls", "data": "/cache/data/frenk-hr", "runs": 10},
     {"name": "conll", "task": "ner", "data": "/cache/data/conll", "args": ["--num-epochs", "5"],
      "metrics": ["f1", "precision"]}]

``name`` is the table's column, ``task`` ``seqcls`` or ``ner``, ``data`` a data URI, ``runs`` the
number of fine-tunings (default: the pipeline's ``num_finetunes``: seed 003 takes a max over 10
runs for its noisiest tasks and 3 for others), ``args`` extra ``kftune train`` arguments after the
common ones, ``metrics`` the test metrics in the column (default ``macro_f1``/``accuracy`` for
seqcls, ``f1`` for ner).

Run-directory layout: ``finetune/plan.json`` (the checked tasks), ``finetune/<name>/seed-<S>/``
(the continued-pretraining model), ``original/finetune/<name>/seed-<S>/`` (the original model)
and ``perplexity.json`` (both models on the pretraining corpus's dev and test, one code path).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kftune.errors import UserError
from kftune.steps.argv import flag_value
from kftune.steps.retrain import StepFailed, best_train_args
from kftune.steps.rundir import RunDir, read_json, slug, write_json
from kftune.steps.watch import run_watched

TASKS = ("seqcls", "ner")
KEYS = ("name", "task", "data", "runs", "args", "metrics")
DEFAULT_METRICS = {"seqcls": ("macro_f1", "accuracy"), "ner": ("f1",)}
KNOWN_METRICS = {
    "seqcls": ("macro_f1", "accuracy", "loss"),
    "ner": ("f1", "precision", "recall", "accuracy", "loss"),
}
PARAM = "finetune_tasks"
ORIGINAL = "original"


@dataclass(frozen=True)
class FinetuneTask:
    name: str  # the column, a directory name (slug)
    task: str
    data: str
    runs: int
    args: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()


def _integral(value: Any) -> Any:
    """2.0 -> 2: numbers in a list of objects reach a KFP step through a protobuf Struct, as floats."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def parse_tasks(
    tasks: Any, *, num_runs: int, average_excluding: Any = (), where: str = PARAM
) -> list[FinetuneTask]:
    """Check the ``finetune_tasks`` parameter; every error names the entry, the field and the fix."""
    if isinstance(num_runs, bool) or not isinstance(num_runs, int) or num_runs < 1:
        raise UserError(f"num_finetunes must be a positive integer (runs per task), got {num_runs!r}")
    if not isinstance(tasks, list | tuple) or not tasks:
        raise UserError(
            f"{where}: expected a non-empty list of tasks, e.g. "
            '[{"name": "frenk-hr", "task": "seqcls", "data": "/cache/data/frenk-hr"}], got '
            + repr(tasks)[:80]
        )
    out: list[FinetuneTask] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(tasks):
        at = f"{where}[{i}]"
        if not isinstance(entry, dict):
            raise UserError(f"{at}: expected an object with name, task and data, got {entry!r:.80}")
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise UserError(f"{at}: unknown field(s) {', '.join(unknown)}; a task has {', '.join(KEYS)}")
        for key in ("name", "task", "data"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise UserError(f"{at}.{key}: required, a non-empty string")
        name = entry["name"].strip()
        if slug(name) != name:
            raise UserError(
                f"{at}.name: {name!r} is also a directory name: use lower-case letters, digits and '-' "
                f"(e.g. {slug(name)!r})"
            )
        if name == ORIGINAL or name == "plan":
            raise UserError(f"{at}.name: {name!r} is reserved: pick another name")
        if name in seen:
            raise UserError(
                f"{at}.name: {name!r} is already the name of {where}[{seen[name]}]: names must be unique"
            )
        seen[name] = i
        task = entry["task"].strip()
        if task not in TASKS:
            hint = " (mlm is the pretraining itself)" if task == "mlm" else ""
            raise UserError(
                f"{at}.task: {task!r} is not a fine-tuning task: choose {' or '.join(TASKS)}{hint}"
            )
        runs = _integral(entry.get("runs", num_runs))
        if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
            raise UserError(
                f"{at}.runs: expected a positive integer (fine-tunings of this task), got {runs!r}"
            )
        args = entry.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str | int | float) for a in args):
            raise UserError(
                f'{at}.args: expected a list of kftune train arguments, e.g. ["--num-epochs", "5"]'
            )
        args = [str(_integral(a)) for a in args]
        for reserved in ("--task", "--data", "--model", "--output-dir", "--seed"):
            if flag_value(args, reserved) is not None:
                raise UserError(f"{at}.args: {reserved} is set by the pipeline: use the task's own fields")
        metrics = entry.get("metrics", list(DEFAULT_METRICS[task]))
        if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
            raise UserError(f'{at}.metrics: expected a non-empty list of metric names, e.g. ["f1"]')
        bad = [m for m in metrics if m not in KNOWN_METRICS[task]]
        if bad:
            raise UserError(
                f"{at}.metrics: {', '.join(map(repr, bad))} not reported for {task}: choose from "
                + ", ".join(KNOWN_METRICS[task])
            )
        out.append(FinetuneTask(name, task, entry["data"].strip(), runs, tuple(args), tuple(metrics)))
    if isinstance(average_excluding, str) or not isinstance(average_excluding, list | tuple):
        raise UserError(f"average_excluding: expected a list of task names, got {average_excluding!r}")
    for name in average_excluding:
        if name not in seen:
            raise UserError(
                f"average_excluding: {name!r} is not a task in {where}; the tasks are {', '.join(seen)}"
            )
    if average_excluding and len(set(average_excluding)) == len(out):
        raise UserError("average_excluding: leaves no task in the second average: remove one name")
    return out


def plan(
    run_dir: str | Path,
    tasks: Any,
    *,
    num_runs: int,
    first_seed: int,
    common_args: list[str] | None = None,
    compare_original: bool = True,
    average_excluding: Any = (),
) -> list[dict[str, Any]]:
    """Write ``finetune/plan.json`` and return one loop item per fine-tuning: ``{"run_dir",
    "column", "seed", "original"}`` (the step reads the rest from the plan: loop items stay flat;
    ``column``, not ``name``: ``item.name`` is the KFP loop argument's own name)."""
    checked = parse_tasks(tasks, num_runs=num_runs, average_excluding=average_excluding)
    rd = RunDir.at(run_dir)
    write_json(
        rd.path / "finetune" / "plan.json",
        {
            "tasks": [asdict(t) for t in checked],
            "common_args": [str(a) for a in common_args or []],
            "first_seed": int(first_seed),
            "compare_original": bool(compare_original),
            "average_excluding": list(average_excluding),
        },
    )
    return [
        {"run_dir": str(rd.path), "column": t.name, "seed": int(first_seed) + i, "original": original}
        for original in ((False, True) if compare_original else (False,))
        for t in checked
        for i in range(t.runs)
    ]


def read_plan(rd: RunDir) -> dict[str, Any] | None:
    return read_json(rd.path / "finetune" / "plan.json")


def original_model(rd: RunDir) -> str:
    """The model the search started from: the best trial's ``--model`` (else run.json's)."""
    try:
        model = flag_value(best_train_args(rd), "--model")
    except StepFailed:
        model = None
    model = model or rd.info().get("model")
    if not model:
        raise StepFailed(f"{rd.path}: no --model in tune/best.json's command nor in run.json")
    return model


def finetune_dir(rd: RunDir, name: str, seed: int, *, original: bool = False) -> Path:
    root = rd.path / ORIGINAL if original else rd.path
    return root / "finetune" / slug(name) / f"seed-{int(seed)}"


def finetune(run_dir: str | Path, name: str, seed: int, *, base_seed: int, original: bool = False) -> str:
    """Fine-tune on the planned task ``name`` with ``seed``: the continued-pretraining model
    (``retrain/seed-<base_seed>/best``) or, ``original``, the model the search started from."""
    rd = RunDir.at(run_dir)
    p = read_plan(rd)
    if not p:
        raise StepFailed(f"finetune: {rd.path}/finetune/plan.json is missing (did the plan step run?)")
    spec = next((t for t in p["tasks"] if t["name"] == name), None)
    if spec is None:
        raise StepFailed(f"finetune: task {name!r} is not in {rd.path}/finetune/plan.json")
    if original:
        model = original_model(rd)
    else:
        base = rd.retrain(base_seed) / "best"
        if not (base / "config.json").is_file():
            raise StepFailed(f"finetune: no pretrained model at {base} (did the retrain step succeed?)")
        model = str(base)
    out = finetune_dir(rd, name, seed, original=original)
    if (read_json(out / "metrics.json") or {}).get("status") == "completed":
        print(f"finetune: {out} already completed (a retried step): kept", file=sys.stderr)
        return str(out)
    experiment = f"finetune-{slug(name)}" + ("-original" if original else "")
    args = ["--task", spec["task"], "--data", spec["data"], "--model", model, "--output-dir", str(out)]
    args += [
        "--seed",
        str(int(seed)),
        "--keep",
        "best",
        "--experiment",
        experiment,
        "--trial",
        f"seed-{int(seed)}",
    ]
    args += [*p.get("common_args", []), *spec.get("args", [])]
    log = out.parent / f"{out.name}.log"
    which = " (original model)" if original else ""
    print("finetune: kftune train " + " ".join(args), file=sys.stderr, flush=True)
    code, tail = run_watched(args, out, log, what=f"finetune {name}{which} seed {seed}")
    if code != 0:
        raise StepFailed(
            f"finetune {name}{which} seed {seed} failed (exit {code}); log {log}: {' | '.join(tail[-3:])}"
        )
    return str(out)


# ----------------------------------------------------------------------------- perplexity


def _load_masked_lm(path: str, device):
    """(model, tokenizer, missing head weights) of a model directory as a masked LM."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    return model.to(device).eval(), AutoTokenizer.from_pretrained(path), missing


def measure_perplexity(run_dir: str | Path, base_seed: int, *, original: bool = True) -> str:
    """Both models' masked-LM loss and perplexity on the pretraining corpus's dev and test, with
    the same examples, masks and max length (the retrain's) -> ``perplexity.json``; returns its path.

    The original model is measured only when it has a trained masked-LM head: a sentence encoder
    (e.g. all-MiniLM) or the random-init demo model has none, and its perplexity would measure a
    random head. ``perplexity.json`` then says so, and the report shows ``-``."""
    from kftune.data import load_corpus
    from kftune.train.cli import quiet_libraries
    from kftune.train.models import resolve_model
    from kftune.train.optim import pick_device
    from kftune.train.predict import evaluate_examples

    quiet_libraries()
    rd = RunDir.at(run_dir)
    pretrained = rd.retrain(base_seed)
    trained = read_json(pretrained / "metrics.json") or {}
    targs = trained.get("args") or {}
    data = flag_value(best_train_args(rd), "--data") or targs.get("data")
    if not data or not (pretrained / "best" / "config.json").is_file():
        raise StepFailed(
            f"perplexity: no pretrained model with its data at {pretrained} (did the retrain step succeed?)"
        )
    max_length = int(targs.get("max_length") or 128)
    max_samples = int(targs.get("max_eval_samples") or 0) or None
    probability = float(targs.get("mlm_probability") or 0.15)
    data_seed = int(targs.get("data_seed") or 0)
    corpus = load_corpus(data, "mlm")
    device = pick_device("auto")
    models = {"pretrained": str(pretrained / "best")}
    if original:
        models[ORIGINAL] = original_model(rd)
    result: dict[str, Any] = {
        "data": data, "max_length": max_length, "max_samples": max_samples or 0,
        "mlm_probability": probability, "data_seed": data_seed, "models": {},
    }  # fmt: skip
    for label, name in models.items():
        path = resolve_model(name)
        model, tokenizer, missing = _load_masked_lm(path, device)
        entry: dict[str, Any] = {"model": name}
        if missing:
            entry["unavailable"] = (
                f"{name} has no trained masked-LM head ({', '.join(missing[:3])} would be random): "
                "its perplexity is not measured"
            )
            print(f"perplexity: {label}: {entry['unavailable']}", file=sys.stderr)
        else:
            for split in ("dev", "test"):
                if split not in corpus.splits:
                    continue
                examples = corpus.splits[split][:max_samples] if max_samples else corpus.splits[split]
                metrics = evaluate_examples("mlm", model, tokenizer, examples, max_length=max_length,
                                            device=device, mlm_seed=data_seed, mlm_probability=probability)  # fmt: skip
                entry[split] = {**metrics, "n": len(examples)}
                print(
                    f"perplexity: {label} {split}: {metrics['perplexity']:.3f} (n={len(examples)})",
                    file=sys.stderr,
                )
        result["models"][label] = entry
        del model
    path = rd.path / "perplexity.json"
    write_json(path, result)
    return str(path)
