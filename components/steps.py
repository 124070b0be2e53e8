"""The components. Imports happen inside each function body: KFP ships the body's source to the
step's container, where only the pipeline image's packages exist.

Caching: ``prepare_data`` may be cached (it only fills caches); every other step writes into the
run directory or has side effects outside KFP (a Katib Experiment, an MLflow model version), so
the pipelines turn caching off for them. Their run directory is new for every run anyway.
"""

from kfp import dsl
from kfp.dsl import HTML, Markdown, Output

PIPELINE_IMAGE = "ghcr.io/kftune/pipeline:0.1.0"


def component(func):
    return dsl.component(base_image=PIPELINE_IMAGE, install_kfp_package=False)(func)


@component
def start_run(
    run_dir: str,
    job_id: str,
    pipeline: str,
    task: str,
    model: str,
    data: str,
    tag_family: str,
    train_variant: str,
    experiment: str,
) -> str:
    """Create the run directory (``run_dir``, or /cache/runs/<job id>) and its run.json."""
    from kftune.steps.publish import start

    return start(run_dir, job_id, pipeline=pipeline, task=task, model=model, data=data,
                 tag_family=tag_family, train_variant=train_variant, experiment=experiment)  # fmt: skip


@component
def prepare_data(task: str, data: str, model: str, tag_family: str) -> str:
    """Build the corpus, its casing variants and the model once, before trials race for them."""
    import json

    from kftune.steps.publish import prepare

    return json.dumps(prepare(task, data, model, tag_family))


@component
def tune(
    run_dir: str,
    mode: str,
    experiment: str,
    job_id: str,
    namespace: str,
    model: str,
    data: str,
    tag_family: str,
    train_variant: str,
    max_trial_count: int,
    parallel_trial_count: int,
    max_failed_trial_count: int,
    overrides: list,
    timeout_s: float,
    db_manager: str = "katib-db-manager.kubeflow:6789",
) -> str:
    """Run the Katib Experiment (mode local: the local runner; cluster: a Katib Experiment CR, with
    the trials' learning curves read from Katib's DB manager at ``db_manager``, "" to skip); write
    tune/trials.json and tune/best.json; fail with the experiment's reason if it failed."""
    from kftune.steps.tune import TuneSettings
    from kftune.steps.tune import tune as run_tune

    settings = TuneSettings(
        mode=mode, experiment=experiment, namespace=namespace, model=model, data=data,
        tag_family=tag_family, train_variant=train_variant,
        max_trial_count=max_trial_count, parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count, overrides=[str(o) for o in overrides],
        timeout_s=timeout_s, db_manager=db_manager,
    )  # fmt: skip
    run_tune(run_dir, settings, job_id=job_id)
    return run_dir


@component
def delete_experiment(
    mode: str, experiment: str, job_id: str, namespace: str, tag_families: list, train_variants: list
) -> str:
    """Exit handler: delete this run's Katib Experiment(s), one per (tag family, training
    variant) (cluster mode; nothing to do locally). It may only see pipeline parameters, so it
    derives the names the tune steps used."""
    import yaml

    from kftune.steps.tune import cluster_name, config_tag, delete_experiment, experiment_text

    if mode != "cluster":
        return "local mode: nothing to delete"
    raw = yaml.safe_load(experiment_text(experiment)) or {}
    meta = raw.get("metadata") or {}
    messages = []
    for family in tag_families or [""]:
        for variant in train_variants or [""]:
            tag = config_tag(str(family), str(variant))
            name = cluster_name(str(meta.get("name") or "experiment"), job_id, tag)
            messages.append(
                delete_experiment(mode, name, namespace or str(meta.get("namespace") or "kftune"))
            )
    print("\n".join(messages))
    return "; ".join(messages)


@component
def plan_seeds(run_dir: str, num_seeds: int, first_seed: int) -> list:
    """One item per retrain: {"run_dir", "seed"} (loop items carry every value the loop body
    needs: kfp.local replaces upstream values used inside a ParallelFor by the loop item)."""
    return [{"run_dir": run_dir, "seed": first_seed + i} for i in range(num_seeds)]


@component
def plan_other_models(run_dir: str, num_seeds: int, first_seed: int, models: list) -> list:
    """One item per (other model, seed): {"run_dir", "seed", "model"} (textcls: compared models)."""
    return [
        {"run_dir": run_dir, "seed": first_seed + i, "model": m} for m in models for i in range(num_seeds)
    ]


@component
def retrain_seed(run_dir: str, seed: int, model: str, other: str) -> str:
    """Train the best configuration again with ``seed`` (``model``/``other``: another model)."""
    from kftune.steps.retrain import retrain

    return retrain(run_dir, int(seed), model=model, other=other)


@component
def evaluate_variants(run_dir: str, seed: int, model_dir: str, max_samples: int) -> str:
    """Score retrain/seed-<S> on every casing variant of dev and test -> eval/seed-<S>.json."""
    from kftune.steps.retrain import evaluate

    print(f"evaluating {model_dir}")
    return evaluate(run_dir, int(seed), max_samples=max_samples)


@component
def compare_models(run_dir: str, evaluations: list, baselines: list, others: list, alpha: float) -> str:
    """Per-seed scores of this run vs baselines and other models (paired tests) -> comparison.json."""
    from kftune.steps.compare import compare

    print(f"{len(evaluations)} evaluations")
    compare(run_dir, baselines=[str(b) for b in baselines], others=[str(o) for o in others], alpha=alpha)
    return run_dir


@component
def register_model(
    run_dir: str, model_name: str, tag_family: str, train_variant: str, tracking_uri: str, enabled: bool
) -> str:
    """Register the run in the MLflow Model Registry as ``<model_name>[-<family>-<variant>]``
    (one registered model per configuration; champion alias only if significantly better)."""
    import os

    from kftune.steps.publish import register

    if not enabled or not model_name:
        print("registration skipped (register=false)")
        return run_dir
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    name = "-".join(p for p in (model_name, tag_family, train_variant) if p)
    register(run_dir, name)
    return run_dir


@component
def write_report(run_dir: str, after: str, markdown: Output[Markdown], html: Output[HTML]) -> str:
    """The run's report (tables + plots) into report/, and as Markdown/HTML artifacts for the UI."""
    from kftune.steps.publish import report

    print(f"report after {after}")
    return report(run_dir, markdown.path, html.path)


@component
def check_finetune_tasks(tasks: list, num_runs: int, average_excluding: list) -> int:
    """Check ``finetune_tasks`` before the search starts (mlm): a typo fails in seconds, not after
    hours of pretraining. Returns the number of fine-tunings per model."""
    from kftune.steps.finetune import parse_tasks

    return sum(t.runs for t in parse_tasks(tasks, num_runs=num_runs, average_excluding=average_excluding))


@component
def plan_finetunes(
    run_dir: str,
    tasks: list,
    num_runs: int,
    first_seed: int,
    common_args: list,
    compare_original: bool,
    average_excluding: list,
) -> list:
    """One item per (model, task, seed): {"run_dir", "column", "seed", "original"}; writes
    finetune/plan.json (mlm)."""
    from kftune.steps.finetune import plan

    return plan(run_dir, tasks, num_runs=num_runs, first_seed=first_seed, common_args=[str(a) for a in common_args],
                compare_original=compare_original, average_excluding=average_excluding)  # fmt: skip


@component
def finetune_seed(run_dir: str, column: str, seed: int, original: bool, base_seed: int) -> str:
    """Fine-tune the continued-pretraining model (or the ``original`` one) on task ``column`` (mlm)."""
    from kftune.steps.finetune import finetune

    return finetune(run_dir, column, int(seed), base_seed=int(base_seed), original=bool(original))


@component
def measure_perplexity(run_dir: str, base_seed: int, original: bool) -> str:
    """Dev/test perplexity of the continued-pretraining model and the original one -> perplexity.json."""
    from kftune.steps.finetune import measure_perplexity as measure

    return measure(run_dir, int(base_seed), original=bool(original))


@component
def write_glue_report(run_dir: str, after: list, markdown: Output[Markdown], html: Output[HTML]) -> str:
    """The GLUE-style table (mean and max over N fine-tuning runs) as report/ and UI artifacts."""
    from kftune.steps.publish import glue_report

    print(f"{len(after)} fine-tuning runs")
    return glue_report(run_dir, markdown.path, html.path)


@component
def plan_configurations(run_dir: str, tag_families: list, train_variants: list) -> list:
    """One item per (tag family, training variant): its run directory under ``run_dir``."""
    return [
        {"run_dir": f"{run_dir}/{family}-{variant}", "tag_family": family, "train_variant": variant}
        for family in tag_families
        for variant in train_variants
    ]


@component
def write_matrix_report(run_dir: str, after: list, markdown: Output[Markdown], html: Output[HTML]) -> str:
    """The seed-000 development/test tables and successful hyperparameters of every configuration."""
    from kftune.steps.publish import matrix_report

    print(f"{len(after)} configurations")
    return matrix_report(run_dir, markdown.path, html.path)
