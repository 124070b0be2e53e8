"""``kftune demo --out DIR``: the local end-to-end demo behind ``make demo``.

All on a laptop CPU (2 cores: about 7 minutes after install, stage by stage below):

``prepare``   build the tiny random-init BERT and the demo NER corpus (cached in KFTUNE_HOME)
``train``     fine-tune NER (original tag family) once on ``uncased`` and once on ``cased`` text
``evaluate``  score each model on all seven casing variants of dev and test (``kftune evaluate``'s code)
``report``    print the seed-000 tables (Development, Test) and write them to DIR/tables.md
``search``    a small TPE + ASHA search run locally from ``katib/ner-asha.yaml`` itself (``kftune katib
              run --local`` with explicit overrides: tiny model, demo corpus, the tiny model's
              learning-rate range, 13 trials, budgets of 1 and 3 epochs on a subset); prints
              the best trial (Katib's ``currentOptimalTrial``) and seed 000's "Successful
              Hyperparameters" table (DIR/search.md; trials in DIR/search/)
``pipeline``  the whole story through the ``ner-hpo`` pipeline itself (``kftune pipeline run ner-hpo
              --local``, :mod:`kftune.demo_pipeline`): a small TPE + ASHA search from
              ``katib/ner-asha.yaml`` -> the best configuration retrained with 3 seeds -> every model on
              the seven casing variants -> paired comparison with a baseline -> the MLflow registry in
              DIR/mlflow.db (``champion`` alias only when significantly better) -> the report; ends with
              the report's path and the ``mlflow ui`` command.

Each stage is a function ``stage_<name>(cfg, ctx)`` that reads and extends ``ctx``; ``--stages``
picks them (default: all of them, in this order).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kftune.errors import UserError


@dataclass
class DemoConfig:
    out: Path
    epochs: int = 4
    learning_rate: float = 1e-3
    batch_size: int = 32
    max_length: int = 64
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    seed: int = 42
    tag_family: str = "original"
    train_variants: tuple[str, ...] = ("uncased", "cased")
    stages: tuple[str, ...] = ("prepare", "train", "evaluate", "report", "search", "pipeline")
    # the search stage (sizes chosen so that it takes about 2 minutes on 2 cores)
    search_file: Path | None = None  # default: katib/ner-asha.yaml of this checkout
    search_trials: int = 13  # maxTrialCount: new configurations and promotions (about a third)
    search_max_epochs: int = 3  # ASHA rungs of 1 and 3 epochs (reduction factor 3)
    search_parallel: int = 2
    search_learning_rate: str = "1e-4:3e-3"  # a random-init model needs far more than the seed's 6e-6..5e-5
    search_max_train_samples: int | None = 600
    search_max_eval_samples: int | None = 200
    # the pipeline stage (about 3 minutes on 2 cores; 6-8 when the cores are shared)
    pipeline_seeds: int = 3
    pipeline_trials: int = 6
    pipeline_max_epochs: int = 3
    pipeline_max_train_samples: int | None = 1500
    pipeline_max_eval_samples: int | None = 200


@dataclass
class Context:
    timings: dict[str, float] = field(default_factory=dict)
    model_dirs: dict[str, Path] = field(default_factory=dict)  # trained-on variant -> trial output dir
    results: dict[str, dict] = field(
        default_factory=dict
    )  # trained-on variant -> {split: {variant: metrics}}
    tables: dict[str, str] = field(default_factory=dict)  # "Development"/"Test" -> markdown
    pipeline: dict = field(default_factory=dict)  # the pipeline stage's run dir, report, registry entry


def say(message: str) -> None:
    print(message, flush=True)


def stage_prepare(cfg: DemoConfig, ctx: Context) -> None:
    from kftune.data import load_corpus
    from kftune.train.models import resolve_model

    say(f"tiny model: {resolve_model('tiny')}")
    corpus = load_corpus("demo:ner", "ner", family=cfg.tag_family)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in corpus.splits.items())
    say(f"demo NER corpus ({cfg.tag_family} tags, {len(corpus.labels())} labels): {sizes} sentences")


class _Prefixed(io.TextIOBase):
    """Echo a trial's metric lines with a prefix (the demo's stdout is for people)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.lines.append(line)
                say(f"  {self.prefix}{line}")
        return len(text)


def stage_train(cfg: DemoConfig, ctx: Context) -> None:
    from kftune.train.args import TrainArgs, validate
    from kftune.train.cli import run_trial

    for variant in cfg.train_variants:
        out_dir = cfg.out / "models" / f"ner-{cfg.tag_family}-{variant}"
        args = TrainArgs(
            task="ner",
            data="demo:ner",
            model="tiny",
            output_dir=str(out_dir),
            learning_rate=cfg.learning_rate,
            warmup_ratio=0.1,
            num_epochs=cfg.epochs,
            per_device_train_batch_size=cfg.batch_size,
            max_length=cfg.max_length,
            seed=cfg.seed,
            tag_family=cfg.tag_family,
            train_variant=variant,
            eval_variant=variant,
            max_train_samples=cfg.max_train_samples,
            max_eval_samples=cfg.max_eval_samples,
            keep="best",
            tracking="off",
            experiment="demo",
            trial=f"ner-{cfg.tag_family}-{variant}",
        )
        validate(args)
        say(f"training on {variant} ({cfg.epochs} epochs, lr {cfg.learning_rate:g}) -> {out_dir}")
        t0 = time.perf_counter()
        code = run_trial(args, _Prefixed(f"[{variant}] "))
        if code != 0:
            raise UserError(
                f"demo: training on {variant} failed (exit {code}): see {out_dir / 'metrics.json'}",
                exit_code=1,
            )
        say(f"  [{variant}] done in {time.perf_counter() - t0:.0f} s")
        ctx.model_dirs[variant] = out_dir


def stage_evaluate(cfg: DemoConfig, ctx: Context) -> None:
    from kftune.data import load_corpus
    from kftune.evaluate.crossvariant import evaluate_variants, format_matrix, variants_for, write_json
    from kftune.train.modelio import load_trained

    if not ctx.model_dirs:  # evaluate models of an earlier run
        for variant in cfg.train_variants:
            ctx.model_dirs[variant] = cfg.out / "models" / f"ner-{cfg.tag_family}-{variant}"
    corpus = load_corpus("demo:ner", "ner", family=cfg.tag_family)
    for variant, out_dir in ctx.model_dirs.items():
        model, tokenizer, meta = load_trained(out_dir, "ner")
        results = evaluate_variants(
            model,
            tokenizer,
            "ner",
            corpus,
            variants=variants_for("ner"),
            max_length=int(meta.get("max_length", cfg.max_length)),
            max_samples=cfg.max_eval_samples,
        )
        ctx.results[variant] = results
        write_json(cfg.out / "eval" / f"ner-{cfg.tag_family}-{variant}.json", results)
        say(f"trained on {variant}, entity F1 by evaluation variant:")
        say("\n".join("  " + line for line in format_matrix(results, "ner").splitlines()))


def stage_report(cfg: DemoConfig, ctx: Context) -> None:
    from kftune.evaluate.crossvariant import TableRow, seed_table, write_json

    sections = []
    for split, title in (("dev", "Development"), ("test", "Test")):
        rows = [
            TableRow(cfg.tag_family, variant, "-", {v: m["f1"] for v, m in res[split].items()})
            for variant, res in ctx.results.items()
            if split in res
        ]
        ctx.tables[title] = seed_table(rows)
        sections.append(f"{title}:\n{ctx.tables[title]}\n")
    text = "\n".join(sections)
    (cfg.out / "tables.md").write_text(text, encoding="utf-8")
    write_json(
        cfg.out / "results.json",
        {"config": _config_dict(cfg), "results": ctx.results, "timings": ctx.timings},
    )
    say("")
    say(text)
    say(f"tables written to {cfg.out / 'tables.md'}")


def search_overrides(cfg: DemoConfig):
    """The overrides that turn katib/ner-asha.yaml (GPU cluster, BERT-base, CoNLL) into a laptop run."""
    from kftune.katib.runner_overrides import Overrides

    set_args = [
        "--model=tiny",
        "--data=demo:ner",
        f"--schedule-epochs={cfg.search_max_epochs}",
        "--tracking=off",
    ]
    set_args.append(f"--max-length={cfg.max_length}")
    if cfg.search_max_train_samples:
        set_args.append(f"--max-train-samples={cfg.search_max_train_samples}")
    if cfg.search_max_eval_samples:
        set_args.append(f"--max-eval-samples={cfg.search_max_eval_samples}")
    return Overrides(
        set_args=set_args,
        params=[f"learning_rate={cfg.search_learning_rate}", f"num_epochs=1:{cfg.search_max_epochs}"],
        algorithm_settings=[f"n_startup_trials={max(2, cfg.search_trials // 3)}"],
        max_trial_count=cfg.search_trials,
        parallel=cfg.search_parallel,
    )


def _search_file(cfg: DemoConfig) -> Path:
    if cfg.search_file is not None:
        return cfg.search_file
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        candidate = root / "katib" / "ner-asha.yaml"
        if candidate.is_file():
            return candidate
    raise UserError("demo: katib/ner-asha.yaml not found; run the demo from the kftune checkout")


def stage_search(cfg: DemoConfig, ctx: Context) -> None:
    import shutil

    from kftune.katib.runner import optimal_yaml, run_local
    from kftune.katib.runner_export import hyperparam_row, write_tune_dir
    from kftune.katib.runner_plan import RunOptions
    from kftune.katib.runner_progress import Progress
    from kftune.report.tables import hyperparams_table, to_markdown

    file = _search_file(cfg)
    work = cfg.out / "search"
    if work.exists():
        shutil.rmtree(work)  # the demo's own output of an earlier run
    overrides = search_overrides(cfg)
    flags = [f"--set-arg {a}" for a in overrides.set_args]
    flags += [f"--param {p}" for p in overrides.params]
    flags += [f"--algorithm-setting {a}" for a in overrides.algorithm_settings]
    flags += [f"--max-trial-count {overrides.max_trial_count}", f"--parallel {overrides.parallel}"]
    flags += [f"--work-dir {work}"]
    say(f"kftune katib run {file} --local \\\n    " + " \\\n    ".join(flags))
    progress = Progress("", "auto", stream=sys.stdout)
    run = run_local(RunOptions(file, work, overrides=overrides, progress="auto"), progress)
    if run.result.interrupted:
        raise UserError("demo: the search was interrupted", exit_code=130)
    write_tune_dir(work, work / "tune")
    say("best trial (Katib's status.currentOptimalTrial):")
    say("\n".join("  " + line for line in optimal_yaml(run.result.optimal).splitlines()))
    row = hyperparam_row(work, "ASHA")
    if row is None:
        raise UserError(f"demo: the search found no trial with a result; see {work}/logs", exit_code=1)
    table = to_markdown(hyperparams_table([row]))
    ctx.tables["Successful Hyperparameters"] = table
    (cfg.out / "search.md").write_text(f"Successful Hyperparameters:\n{table}\n", encoding="utf-8")
    counts = ", ".join(f"{k} {v}" for k, v in run.result.counts.items() if v)
    say(f"{sum(run.result.counts.values())} trial runs ({counts}); trials: kftune katib trials {work}")
    say("")
    say(f"Successful Hyperparameters:\n{table}")


def stage_pipeline(cfg: DemoConfig, ctx: Context) -> None:
    from kftune.demo_pipeline import stage_pipeline as run_stage

    ctx.pipeline = run_stage(cfg, ctx, say=say)


STAGES: dict[str, Callable[[DemoConfig, Context], None]] = {
    "prepare": stage_prepare,
    "train": stage_train,
    "evaluate": stage_evaluate,
    "report": stage_report,
    "search": stage_search,
    "pipeline": stage_pipeline,
}


def _config_dict(cfg: DemoConfig) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()}


def run(cfg: DemoConfig) -> Context:
    cfg.out.mkdir(parents=True, exist_ok=True)
    ctx = Context()
    t_all = time.perf_counter()
    for name in cfg.stages:
        say(f"== demo stage: {name}")
        t0 = time.perf_counter()
        STAGES[name](cfg, ctx)
        ctx.timings[name] = round(time.perf_counter() - t0, 1)
    ctx.timings["total"] = round(time.perf_counter() - t_all, 1)
    say(f"demo finished in {ctx.timings['total']:.0f} s")
    if ctx.pipeline:
        from kftune.demo_pipeline import closing_lines

        for line in closing_lines(ctx.pipeline):
            say(line)
    return ctx


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message} (see kftune demo --help)")


def main(argv: list[str]) -> int:
    p = _Parser(prog="kftune demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="demo-out", help="output directory (default demo-out)")
    p.add_argument("--epochs", type=_positive, default=4, help="training epochs per model (default 4)")
    p.add_argument(
        "--learning-rate",
        type=float,
        default=1e-3,
        help="learning rate (default 1e-3: the tiny model is random-init)",
    )
    p.add_argument("--batch-size", type=_positive, default=32)
    p.add_argument(
        "--max-train-samples", type=_positive, help="train on the first N sentences only (quick runs)"
    )
    p.add_argument(
        "--max-eval-samples", type=_positive, help="evaluate on the first N dev/test sentences only"
    )
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--seeds", type=_positive, default=3, help="pipeline stage: seeds retrained (default 3)")
    p.add_argument("--trials", type=_positive, default=6, help="pipeline stage: search trials (default 6)")
    p.add_argument(
        "--search-trials",
        type=_positive,
        default=DemoConfig.search_trials,
        help=f"trials of the search stage (maxTrialCount, default {DemoConfig.search_trials}): "
        "new configurations and their promotions",
    )
    p.add_argument(
        "--stages",
        default=",".join(DemoConfig.stages),
        help=f"comma-separated stages, from {', '.join(STAGES)} (default {','.join(DemoConfig.stages)})",
    )
    a = p.parse_args(argv)
    stages = tuple(s.strip() for s in a.stages.split(",") if s.strip())
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UserError(f"--stages: unknown stage(s) {', '.join(unknown)}: choose from {', '.join(STAGES)}")
    if "report" in stages and "evaluate" not in stages:
        raise UserError("--stages: report needs evaluate in the same run")
    cfg = DemoConfig(
        out=Path(a.out),
        epochs=a.epochs,
        learning_rate=a.learning_rate,
        batch_size=a.batch_size,
        max_train_samples=a.max_train_samples,
        max_eval_samples=a.max_eval_samples,
        seed=a.seed,
        stages=stages,
        search_trials=a.search_trials,
        pipeline_seeds=a.seeds,
        pipeline_trials=a.trials,
    )
    # a shrunk demo shrinks the search too
    for name in ("max_train_samples", "max_eval_samples"):
        given, default = getattr(a, name), getattr(cfg, f"search_{name}")
        if given is not None and (default is None or given < default):
            setattr(cfg, f"search_{name}", given)
    if a.max_train_samples:
        cfg.pipeline_max_train_samples = a.max_train_samples
    if a.max_eval_samples:
        cfg.pipeline_max_eval_samples = a.max_eval_samples
    run(cfg)
    sys.stdout.flush()
    return 0
