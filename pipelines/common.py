"""What every kftune pipeline shares: the embedded Katib files and the cluster settings of a step."""

from __future__ import annotations

from pathlib import Path

from kfp import dsl

KATIB_DIR = Path(__file__).resolve().parent.parent / "katib"
JOB_ID = dsl.PIPELINE_JOB_ID_PLACEHOLDER
CACHE_PVC = "kftune-cache"
CACHE_MOUNT = "/cache"
SETTINGS_CONFIGMAP = "kftune-settings"
SETTINGS_ENV = ("MLFLOW_TRACKING_URI", "KFTUNE_HOME", "HF_HOME", "KFTUNE_STALL_TIMEOUT_S")


def experiment_yaml(name: str) -> str:
    """``katib/<name>`` as one line of JSON (typed as kubectl types the YAML), embedded in the
    pipeline as a parameter default, so a compiled pipeline version carries the exact search it
    runs (the image has no katib/). One line: KFP's compiler copies defaults into a YAML comment
    header, where a multi-line string would break the file."""
    import json

    from kftune.katib.experiment import load_experiment

    path = KATIB_DIR / name
    if not path.is_file():
        return ""
    return json.dumps(load_experiment(path).raw, separators=(",", ":"))


def step(task: dsl.PipelineTask, *, cache: bool = False, display: str = "") -> dsl.PipelineTask:
    """Every step: the cache volume at /cache (the run directory and trial outputs live there),
    the install's settings (MLflow URI, KFTUNE_HOME) from the chart's ConfigMap, caching off
    unless the step has no side effects. kfp.local ignores the Kubernetes parts."""
    try:
        from kfp import kubernetes
    except ImportError as exc:  # a venv set up before kfp-kubernetes became a dependency
        from kftune.errors import UserError

        raise UserError(
            "kfp-kubernetes is missing: run `make setup` (or pip install kfp-kubernetes==2.17.0)"
        ) from exc

    kubernetes.mount_pvc(task, pvc_name=CACHE_PVC, mount_path=CACHE_MOUNT)
    kubernetes.use_config_map_as_env(task, SETTINGS_CONFIGMAP, {k: k for k in SETTINGS_ENV}, optional=True)
    task.set_caching_options(cache)
    if display:
        task.set_display_name(display)
    return task


def on_gpu(task: dsl.PipelineTask, gpus) -> dsl.PipelineTask:
    """A training/evaluation step on ``gpus`` NVIDIA GPUs (a pipeline parameter; 0 on CPU nodes).
    kfp.local ignores it."""
    return task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(gpus)


def start_and_tune(
    *,
    pipeline: str,
    task: str,
    run_dir,
    mode,
    experiment,
    namespace,
    model,
    data,
    tag_family,
    train_variant,
    max_trial_count,
    parallel_trial_count,
    max_failed_trial_count,
    tune_overrides,
    tune_timeout_s,
    tune_display: str,
) -> dsl.PipelineTask:
    """The steps every pipeline opens with: start the run directory, prepare the data (cached: no
    side effects), run the Katib search. Returns the tune task (its output is the run directory)."""
    from kftune.components import prepare_data, start_run, tune

    run = step(
        start_run(run_dir=run_dir, job_id=JOB_ID, pipeline=pipeline, task=task, model=model, data=data,
                  tag_family=tag_family, train_variant=train_variant, experiment=experiment),
        display="start run",
    )  # fmt: skip
    prepared = step(
        prepare_data(task=task, data=data, model=model, tag_family=tag_family),
        cache=True,
        display="prepare data",
    )
    return step(
        tune(
            run_dir=run.output,
            mode=mode,
            experiment=experiment,
            job_id=JOB_ID,
            namespace=namespace,
            model=model,
            data=data,
            tag_family=tag_family,
            train_variant=train_variant,
            max_trial_count=max_trial_count,
            parallel_trial_count=parallel_trial_count,
            max_failed_trial_count=max_failed_trial_count,
            overrides=tune_overrides,
            timeout_s=tune_timeout_s,
        ).after(prepared),
        display=tune_display,
    )
