"""``mlm`` (seed 003): continue pretraining a masked-LM with Katib searching for the lowest dev
perplexity -> pretrain the best configuration -> fine-tune that model on each downstream task N
times (and the original model the same way) -> a GLUE-style table: one row per model, one column
per task, the mean and the max over the N runs, and each model's perplexity.

``finetune_tasks`` is a list of ``{"name", "task", "data"[, "runs", "args", "metrics"]}`` objects
(kftune.steps.finetune); it is checked before the search starts.
"""

from kfp import dsl
from kftune.components import (
    check_finetune_tasks,
    delete_experiment,
    finetune_seed,
    measure_perplexity,
    plan_finetunes,
    retrain_seed,
    write_glue_report,
)
from kftune.pipelines.common import JOB_ID, experiment_yaml, on_gpu, start_and_tune, step

EXPERIMENT = experiment_yaml("mlm-perplexity.yaml")


@dsl.pipeline(name="mlm-steps", description="mlm's steps")
def mlm_steps(
    mode: str,
    run_dir: str,
    experiment: str,
    model: str,
    data: str,
    max_trial_count: int,
    parallel_trial_count: int,
    max_failed_trial_count: int,
    tune_overrides: list[str],
    tune_timeout_s: float,
    namespace: str,
    pretrain_seed: int,
    num_finetunes: int,
    first_seed: int,
    finetune_tasks: list[dict],
    finetune_args: list[str],
    compare_original: bool,
    average_excluding: list[str],
    gpus_per_step: int,
) -> str:
    checked = step(
        check_finetune_tasks(
            tasks=finetune_tasks, num_runs=num_finetunes, average_excluding=average_excluding
        ),
        display="check fine-tuning tasks",
    )
    searched = start_and_tune(
        pipeline="mlm",
        task="mlm",
        run_dir=run_dir,
        mode=mode,
        experiment=experiment,
        namespace=namespace,
        model=model,
        data=data,
        tag_family="",
        train_variant="",
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        tune_overrides=tune_overrides,
        tune_timeout_s=tune_timeout_s,
        tune_display="search: dev perplexity (Katib)",
    ).after(checked)
    pretrained = step(
        on_gpu(retrain_seed(run_dir=searched.output, seed=pretrain_seed, model="", other=""), gpus_per_step),
        display="continue pretraining (best configuration)",
    )
    perplexity = step(
        on_gpu(measure_perplexity(run_dir=searched.output, base_seed=pretrain_seed, original=compare_original)
               .after(pretrained), gpus_per_step),
        display="perplexity: pretrained vs original",
    )  # fmt: skip
    runs = step(
        plan_finetunes(
            run_dir=searched.output,
            tasks=finetune_tasks,
            num_runs=num_finetunes,
            first_seed=first_seed,
            common_args=finetune_args,
            compare_original=compare_original,
            average_excluding=average_excluding,
        ).after(pretrained),
        display="plan fine-tunings",
    )
    with dsl.ParallelFor(runs.output, name="finetunes") as item:
        tuned = step(
            on_gpu(
                finetune_seed(
                    run_dir=item.run_dir, column=item.column, seed=item.seed, original=item.original,
                    base_seed=pretrain_seed,
                ),
                gpus_per_step,
            ),
            display="fine-tune",
        )  # fmt: skip
    reported = step(
        write_glue_report(run_dir=searched.output, after=dsl.Collected(tuned.output)).after(perplexity),
        display="GLUE-style table",
    )
    return reported.outputs["Output"]


@dsl.pipeline(
    name="mlm",
    description="Masked-LM (seed 003): continued pretraining tuned on perplexity -> N fine-tunings per task "
    "of it and of the original model -> GLUE-style table (mean and max over N runs, perplexity)",
)
def mlm(
    mode: str = "cluster",
    run_dir: str = "",
    experiment: str = EXPERIMENT,
    model: str = "",
    data: str = "",
    max_trial_count: int = 0,
    parallel_trial_count: int = 0,
    max_failed_trial_count: int = -1,
    tune_overrides: list[str] = [],  # noqa: B006 (KFP reads the default)
    tune_timeout_s: float = 0.0,
    namespace: str = "kftune",
    pretrain_seed: int = 42,
    num_finetunes: int = 5,
    first_seed: int = 1,
    finetune_tasks: list[dict] = [{"name": "frenk-hr", "task": "seqcls", "data": "/cache/data/frenk-hr"}],  # noqa: B006
    finetune_args: list[str] = ["--num-epochs", "3", "--learning-rate", "3e-5"],  # noqa: B006
    compare_original: bool = True,
    average_excluding: list[str] = [],  # noqa: B006
    gpus_per_step: int = 1,
):
    cleanup = step(
        delete_experiment(mode=mode, experiment=experiment, job_id=JOB_ID, namespace=namespace,
                          tag_families=[], train_variants=[]),
        display="delete Katib experiment",
    )  # fmt: skip
    with dsl.ExitHandler(cleanup, name="mlm"):
        mlm_steps(
            mode=mode,
            run_dir=run_dir,
            experiment=experiment,
            model=model,
            data=data,
            max_trial_count=max_trial_count,
            parallel_trial_count=parallel_trial_count,
            max_failed_trial_count=max_failed_trial_count,
            tune_overrides=tune_overrides,
            tune_timeout_s=tune_timeout_s,
            namespace=namespace,
            pretrain_seed=pretrain_seed,
            num_finetunes=num_finetunes,
            first_seed=first_seed,
            finetune_tasks=finetune_tasks,
            finetune_args=finetune_args,
            compare_original=compare_original,
            average_excluding=average_excluding,
            gpus_per_step=gpus_per_step,
        )
