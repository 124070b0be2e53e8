"""``mlm`` (seed 003): continue pretraining a masked-LM with Katib searching for the lowest dev
perplexity -> pretrain the best configuration -> fine-tune that model on a classification task N
times -> a GLUE-style table with the mean and the max over the N runs (and the perplexity).
"""

from kfp import dsl
from kftune.components import (
    delete_experiment,
    finetune_seed,
    plan_seeds,
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
    finetune_task: str,
    finetune_name: str,
    finetune_data: str,
    finetune_args: list[str],
    gpus_per_step: int,
) -> str:
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
    )
    pretrained = step(
        on_gpu(retrain_seed(run_dir=searched.output, seed=pretrain_seed, model="", other=""), gpus_per_step),
        display="continue pretraining (best configuration)",
    )
    seeds = step(
        plan_seeds(run_dir=searched.output, num_seeds=num_finetunes, first_seed=first_seed).after(pretrained)
    )
    with dsl.ParallelFor(seeds.output, name="finetunes") as item:
        tuned = step(
            on_gpu(
                finetune_seed(
                    run_dir=item.run_dir,
                    seed=item.seed,
                    task=finetune_task,
                    data=finetune_data,
                    name=finetune_name,
                    base_seed=pretrain_seed,
                    extra_args=finetune_args,
                ),
                gpus_per_step,
            ),
            display="fine-tune",
        )
    reported = step(
        write_glue_report(run_dir=searched.output, after=dsl.Collected(tuned.output)),
        display="GLUE-style table",
    )
    return reported.outputs["Output"]


@dsl.pipeline(
    name="mlm",
    description="Masked-LM (seed 003): continued pretraining tuned on perplexity -> N fine-tunings -> "
    "GLUE-style table (mean and max over N runs)",
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
    finetune_task: str = "seqcls",
    finetune_name: str = "textcls",
    finetune_data: str = "/cache/data/frenk-hr",
    finetune_args: list[str] = ["--num-epochs", "3", "--learning-rate", "3e-5"],  # noqa: B006
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
            finetune_task=finetune_task,
            finetune_name=finetune_name,
            finetune_data=finetune_data,
            finetune_args=finetune_args,
            gpus_per_step=gpus_per_step,
        )
