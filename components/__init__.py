"""kftune's Kubeflow Pipelines components: thin wrappers around :mod:`kftune.steps`.

Every component is a lightweight Python component on the pipeline image
(``ghcr.io/kftune/pipeline``, which holds kftune and kfp: ``install_kfp_package=False``); its body
imports one ``kftune.steps`` function and calls it. Components share one **run directory**
(docs/contracts.md, "Run directories") by path: locally a directory under ``--out``; on a cluster
``/cache/runs/<pipeline job id>`` on the ``kftune-cache`` volume that every step mounts. They pass
each other only that path (and small values such as a seed), which also orders the steps. The
report step additionally emits Markdown and HTML artifacts so that the KFP UI shows the report.
"""

from .steps import (
    PIPELINE_IMAGE,
    check_finetune_tasks,
    compare_models,
    delete_experiment,
    evaluate_variants,
    finetune_seed,
    measure_perplexity,
    plan_configurations,
    plan_finetunes,
    plan_other_models,
    plan_seeds,
    prepare_data,
    register_model,
    retrain_seed,
    start_run,
    tune,
    write_glue_report,
    write_matrix_report,
    write_report,
)

__all__ = [
    "PIPELINE_IMAGE",
    "compare_models",
    "delete_experiment",
    "evaluate_variants",
    "check_finetune_tasks",
    "finetune_seed",
    "measure_perplexity",
    "plan_configurations",
    "plan_finetunes",
    "plan_other_models",
    "plan_seeds",
    "prepare_data",
    "register_model",
    "retrain_seed",
    "start_run",
    "tune",
    "write_glue_report",
    "write_matrix_report",
    "write_report",
]
