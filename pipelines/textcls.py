"""``textcls`` (seed 002): sweep -> retrain the best configuration with N seeds -> mean +- std of
macro-F1 and accuracy -> significance against a baseline (TF-IDF + logistic regression) and
another model retrained with the same hyperparameters and seeds -> publish the best with a model
card (MLflow registry) -> report.
"""

from kfp import dsl
from kftune.components import (
    compare_models,
    delete_experiment,
    plan_other_models,
    plan_seeds,
    register_model,
    retrain_seed,
    write_report,
)
from kftune.pipelines.common import JOB_ID, experiment_yaml, on_gpu, start_and_tune, step

EXPERIMENT = experiment_yaml("textcls-bayes.yaml")


@dsl.pipeline(name="textcls-steps", description="textcls's steps")
def textcls_steps(
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
    num_seeds: int,
    first_seed: int,
    baselines: list[str],
    other_models: list[str],
    alpha: float,
    register: bool,
    model_name: str,
    tracking_uri: str,
    gpus_per_step: int,
) -> str:
    searched = start_and_tune(
        pipeline="textcls",
        task="seqcls",
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
        tune_display="sweep (Katib)",
    )
    seeds = step(plan_seeds(run_dir=searched.output, num_seeds=num_seeds, first_seed=first_seed))
    with dsl.ParallelFor(seeds.output, name="seeds") as item:
        trained = step(
            on_gpu(retrain_seed(run_dir=item.run_dir, seed=item.seed, model="", other=""), gpus_per_step),
            display="retrain",
        )
    others = step(
        plan_other_models(
            run_dir=searched.output, num_seeds=num_seeds, first_seed=first_seed, models=other_models
        )
    )
    with dsl.ParallelFor(others.output, name="other-models") as other:
        trained_other = step(
            on_gpu(
                retrain_seed(run_dir=other.run_dir, seed=other.seed, model=other.model, other=other.model),
                gpus_per_step,
            ),
            display="retrain other model",
        )
    compared = step(
        compare_models(
            run_dir=searched.output,
            evaluations=dsl.Collected(trained.output),
            baselines=baselines,
            others=other_models,
            alpha=alpha,
        ).after(trained_other),
        display="significance",
    )
    registered = step(
        register_model(run_dir=compared.output, model_name=model_name, tag_family="", train_variant="",
                       tracking_uri=tracking_uri, enabled=register),
        display="publish (MLflow + model card)",
    )  # fmt: skip
    reported = step(write_report(run_dir=registered.output, after=registered.output), display="report")
    return reported.outputs["Output"]


@dsl.pipeline(
    name="textcls",
    description="Text classification (seed 002): sweep -> N-seed retrain -> mean +- std macro-F1/accuracy -> "
    "significance vs a baseline and another model -> publish the best with a model card",
)
def textcls(
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
    num_seeds: int = 5,
    first_seed: int = 1,
    baselines: list[str] = ["tfidf-lr"],  # noqa: B006
    other_models: list[str] = [],  # noqa: B006
    alpha: float = 0.05,
    register: bool = True,
    model_name: str = "kftune-textcls",
    tracking_uri: str = "",
    gpus_per_step: int = 1,
):
    cleanup = step(
        delete_experiment(mode=mode, experiment=experiment, job_id=JOB_ID, namespace=namespace,
                          tag_families=[], train_variants=[]),
        display="delete Katib experiment",
    )  # fmt: skip
    with dsl.ExitHandler(cleanup, name="textcls"):
        textcls_steps(
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
            num_seeds=num_seeds,
            first_seed=first_seed,
            baselines=baselines,
            other_models=other_models,
            alpha=alpha,
            register=register,
            model_name=model_name,
            tracking_uri=tracking_uri,
            gpus_per_step=gpus_per_step,
        )
