"""``ner-matrix``: the seed-000 study. For each tag family in {original, simple} and training
variant in {cased, uncased, uncased-cased-mix}: the whole ``ner-hpo`` flow (search, N-seed
retrain, evaluation on the seven casing variants, comparison, registration); then one report with
the development and test tables and the successful hyperparameters, one row per configuration.
"""

from kfp import dsl
from kftune.components import delete_experiment, plan_configurations, start_run, write_matrix_report
from kftune.pipelines.common import JOB_ID, step
from kftune.pipelines.ner_hpo import EXPERIMENT, ner_hpo_steps


@dsl.pipeline(
    name="ner-matrix",
    description="{original, simple} x {cased, uncased, uncased-cased-mix}: ner-hpo for each, then the "
    "seed-000 development/test tables and successful hyperparameters",
)
def ner_matrix(
    mode: str = "cluster",
    run_dir: str = "",
    experiment: str = EXPERIMENT,
    tag_families: list[str] = ["original", "simple"],  # noqa: B006 (KFP reads the default)
    train_variants: list[str] = ["cased", "uncased", "uncased-cased-mix"],  # noqa: B006
    model: str = "",
    data: str = "",
    max_trial_count: int = 0,
    parallel_trial_count: int = 0,
    max_failed_trial_count: int = -1,
    tune_overrides: list[str] = [],  # noqa: B006
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
            tag_families=tag_families,
            train_variants=train_variants,
        ),
        display="delete Katib experiments",
    )
    with dsl.ExitHandler(cleanup, name="ner-matrix"):
        run = step(
            start_run(
                run_dir=run_dir,
                job_id=JOB_ID,
                pipeline="ner-matrix",
                task="ner",
                model=model,
                data=data,
                tag_family="",
                train_variant="",
                experiment=experiment,
            ),
            display="start run",
        )
        configs = step(
            plan_configurations(run_dir=run.output, tag_families=tag_families, train_variants=train_variants)
        )
        with dsl.ParallelFor(configs.output, name="configurations", parallelism=2) as cfg:
            done = ner_hpo_steps(
                mode=mode,
                run_dir=cfg.run_dir,
                experiment=experiment,
                tag_family=cfg.tag_family,
                train_variant=cfg.train_variant,
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
        step(
            write_matrix_report(run_dir=run.output, after=dsl.Collected(done.output)),
            display="seed-000 tables",
        )
