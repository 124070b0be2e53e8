"""``ner-hpo``: one tag family + training variant, from search to registered model (seed 000).

tune (Katib) -> retrain the best configuration with N seeds in parallel -> evaluate every model on
the seven casing variants of dev and test -> compare with baselines (paired by seed) -> register
(the champion alias moves only if significantly better) -> report. The Katib Experiment is
deleted at the end whatever happened (exit handler).
"""

from kfp import dsl
from kftune.components import (
    compare_models,
    delete_experiment,
    evaluate_variants,
    plan_seeds,
    register_model,
    retrain_seed,
    write_report,
)
from kftune.pipelines.common import JOB_ID, experiment_yaml, on_gpu, start_and_tune, step

EXPERIMENT = experiment_yaml("ner-asha.yaml")


@dsl.pipeline(name="ner-hpo-steps", description="ner-hpo's steps (nested in ner-hpo and ner-matrix)")
def ner_hpo_steps(
    mode: str = "cluster",
    run_dir: str = "",
    experiment: str = EXPERIMENT,
    tag_family: str = "original",
    train_variant: str = "uncased",
    model: str = "",
    data: str = "",
    max_trial_count: int = 0,
    parallel_trial_count: int = 0,
    max_failed_trial_count: int = -1,
    tune_overrides: list[str] = [],  # noqa: B006 (KFP reads the default)
    tune_timeout_s: float = 0.0,
    namespace: str = "kftune",
    num_seeds: int = 5,
    first_seed: int = 1,
    eval_max_samples: int = 0,
    baselines: list[str] = ["token-lr"],  # noqa: B006
    alpha: float = 0.05,
    register: bool = True,
    model_name: str = "kftune-ner",
    tracking_uri: str = "",
    gpus_per_step: int = 1,
) -> str:
    searched = start_and_tune(
        pipeline="ner-hpo",
        task="ner",
        run_dir=run_dir,
        mode=mode,
        experiment=experiment,
        namespace=namespace,
        model=model,
        data=data,
        tag_family=tag_family,
        train_variant=train_variant,
        max_trial_count=max_trial_count,
        parallel_trial_count=parallel_trial_count,
        max_failed_trial_count=max_failed_trial_count,
        tune_overrides=tune_overrides,
        tune_timeout_s=tune_timeout_s,
        tune_display="tune (Katib)",
    )
    seeds = step(plan_seeds(run_dir=searched.output, num_seeds=num_seeds, first_seed=first_seed))
    with dsl.ParallelFor(seeds.output, name="seeds") as item:
        trained = step(
            on_gpu(retrain_seed(run_dir=item.run_dir, seed=item.seed, model="", other=""), gpus_per_step),
            display="retrain seed",
        )
        scored = step(
            on_gpu(
                evaluate_variants(
                    run_dir=item.run_dir,
                    seed=item.seed,
                    model_dir=trained.output,
                    max_samples=eval_max_samples,
                ),
                gpus_per_step,
            ),
            display="evaluate 7 variants",
        )
    compared = step(
        compare_models(
            run_dir=searched.output,
            evaluations=dsl.Collected(scored.output),
            baselines=baselines,
            others=[],
            alpha=alpha,
        ),
        display="compare",
    )
    registered = step(
        register_model(
            run_dir=compared.output,
            model_name=model_name,
            tag_family=tag_family,
            train_variant=train_variant,
            tracking_uri=tracking_uri,
            enabled=register,
        ),
        display="register (MLflow)",
    )
    reported = step(write_report(run_dir=registered.output, after=registered.output), display="report")
    return reported.outputs["Output"]


@dsl.pipeline(
    name="ner-hpo",
    description="NER: Katib search (TPE + ASHA) -> N-seed retrain -> 7-variant evaluation matrix -> "
    "comparison -> MLflow registry -> report",
)
def ner_hpo(
    mode: str = "cluster",
    run_dir: str = "",
    experiment: str = EXPERIMENT,
    tag_family: str = "original",
    train_variant: str = "uncased",
    model: str = "",
    data: str = "",
    max_trial_count: int = 0,
    parallel_trial_count: int = 0,
    max_failed_trial_count: int = -1,
    tune_overrides: list[str] = [],  # noqa: B006 (KFP reads the default)
    tune_timeout_s: float = 0.0,
    namespace: str = "kftune",
    num_seeds: int = 5,
    first_seed: int = 1,
    eval_max_samples: int = 0,
    baselines: list[str] = ["token-lr"],  # noqa: B006
    alpha: float = 0.05,
    register: bool = True,
    model_name: str = "kftune-ner",
    tracking_uri: str = "",
    gpus_per_step: int = 1,
):
    cleanup = step(
        delete_experiment(
            mode=mode,
            experiment=experiment,
            job_id=JOB_ID,
            namespace=namespace,
            tag_families=[tag_family],
            train_variants=[train_variant],
        ),
        display="delete Katib experiment",
    )
    with dsl.ExitHandler(cleanup, name="ner-hpo"):
        ner_hpo_steps(
            mode=mode,
            run_dir=run_dir,
            experiment=experiment,
            tag_family=tag_family,
            train_variant=train_variant,
            model=model,
            data=data,
            max_trial_count=max_trial_count,
            parallel_trial_count=parallel_trial_count,
            max_failed_trial_count=max_failed_trial_count,
            tune_overrides=tune_overrides,
            tune_timeout_s=tune_timeout_s,
            namespace=namespace,
            num_seeds=num_seeds,
            first_seed=first_seed,
            eval_max_samples=eval_max_samples,
            baselines=baselines,
            alpha=alpha,
            register=register,
            model_name=model_name,
            tracking_uri=tracking_uri,
            gpus_per_step=gpus_per_step,
        )
