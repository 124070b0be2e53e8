"""``kftune katib run FILE --local [options]``: run an Experiment on this machine (see
:mod:`kftune.katib.runner`).

Prints progress on stderr and, at the end, the optimal trial in the shape of Katib's
``status.currentOptimalTrial`` on stdout (YAML); writes it with the experiment's condition to
``WORK_DIR/result.json``. Exit status: 0 when the experiment Succeeded, 1 when it Failed
(``maxFailedTrialCount``), 2 for a usage or validation error (nothing run), 130 when interrupted
(continue with ``--resume``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kftune.errors import UserError
from kftune.katib.runner_overrides import Overrides, split_pair

# options whose value usually starts with "--" (argparse would take it for an option)
_FLAG_VALUED = ("--set-arg", "--drop-arg")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kftune katib run",
        description="Run a Katib Experiment file locally: the same suggestion algorithms as on the "
        "cluster, trials as subprocesses, Katib's metrics-collector semantics, every event recorded "
        "in WORK_DIR/experiment.db.",
        epilog="example: kftune katib run katib/ner-asha.yaml --local --set-arg --model=tiny "
        "--set-arg --data=demo:ner --param learning_rate=1e-4:3e-3 --param num_epochs=1:3 "
        "--set-arg --schedule-epochs=3 --max-trial-count 13 --parallel 2 "
        "(see docs/local-runner.md; `kftune katib trials DIR` lists the trials)",
    )
    p.add_argument("file", type=Path, metavar="FILE", help="a Katib Experiment YAML file")
    p.add_argument(
        "--local",
        action="store_true",
        help="run on this machine (required: cluster runs use `kftune katib submit`)",
    )
    p.add_argument(
        "--work-dir", type=Path, help="trial outputs, logs, experiment.db (default runs/katib-NAME)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run recorded in --work-dir")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, apply the overrides, check and print one probe trial (argv, env, working dir); run nothing",
    )
    g = p.add_argument_group("overrides (each is printed; applied before validation and rendering)")
    g.add_argument(
        "--set-arg",
        action="append",
        default=[],
        metavar="--FLAG[=VALUE]",
        help="replace (or add) an argument of the trial command, e.g. --set-arg --model=tiny",
    )
    g.add_argument("--drop-arg", action="append", default=[], metavar="--FLAG", help="remove an argument")
    g.add_argument(
        "--set-env", action="append", default=[], metavar="NAME=VALUE", help="set a container env var"
    )
    g.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=MIN:MAX[:STEP]|NAME=A,B",
        help="new feasible space of a parameter, e.g. --param learning_rate=1e-4:3e-3",
    )
    g.add_argument("--algorithm-setting", action="append", default=[], metavar="NAME=VALUE")
    g.add_argument("--early-stopping-setting", action="append", default=[], metavar="NAME=VALUE")
    g.add_argument("--max-trial-count", type=int, metavar="N")
    g.add_argument("--parallel", type=int, metavar="N", help="parallelTrialCount")
    g.add_argument("--max-failed-trial-count", type=int, metavar="N")
    g.add_argument("--goal", type=float, metavar="X", help="objective goal")
    g.add_argument(
        "--volume",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="map a volume of the trial pod to a local directory",
    )
    o = p.add_argument_group("running")
    o.add_argument(
        "--threads-per-trial",
        type=int,
        metavar="N",
        help="OMP_NUM_THREADS for each trial (default CPUs / parallel trials; 0 leaves it unset)",
    )
    o.add_argument(
        "--gpus",
        default="auto",
        metavar="auto|none|LIST",
        help="GPUs the trials are placed on: auto (those nvidia-smi lists; none on a CPU machine), none, "
        "or INDEX[:MIB],... e.g. 0,1 or 0:81559 (default auto)",
    )
    o.add_argument(
        "--trials-per-gpu",
        type=int,
        default=1,
        metavar="K",
        help="trials sharing one GPU at once, as far as its memory allows (default 1; see docs/gpu.md)",
    )
    o.add_argument(
        "--mps",
        action="store_true",
        help="start an NVIDIA MPS control daemon for this run so that trials sharing a GPU run concurrently",
    )
    o.add_argument(
        "--gpu-memory-per-trial",
        type=int,
        metavar="MIB",
        help="GPU memory to book per trial (default: measured peak of the same trial shape, else an "
        "estimate from the model's config.json for kftune train, else an equal share)",
    )
    o.add_argument(
        "--progress",
        choices=("auto", "table", "plain", "none"),
        default="auto",
        help="live table on a terminal, plain lines otherwise (default auto)",
    )
    o.add_argument(
        "--grace-period",
        type=float,
        default=30.0,
        metavar="S",
        help="seconds a stopped trial gets between SIGTERM and SIGKILL (default 30)",
    )
    return p


def _join_flag_values(argv: list[str]) -> list[str]:
    """``--set-arg --model=tiny`` -> ``--set-arg=--model=tiny`` (argparse would see an option)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _FLAG_VALUED and i + 1 < len(argv):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(_join_flag_values(argv))


def dry_run(options, progress) -> int:
    import shlex

    from kftune.katib.runner_plan import prepare

    plan, _ = prepare(options, progress.say)
    for note in plan.path_map.notes:
        progress.say(f"path {note}")
    for note in plan.notes:
        progress.say(f"note: {note}")
    probe = plan.probe
    print(f"# {plan.exp.name}: algorithm {plan.algorithm.name}; a probe trial with mid-range values:")
    print(f"cd {shlex.quote(probe.cwd or '.')}")
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in probe.env.items())
    print(f"env {env} \\" if env else "", end="\n" if env else "")
    print("  " + " ".join(shlex.quote(a) for a in probe.argv))
    return 0


def main(argv: list[str]) -> int:
    from kftune.katib.runner import optimal_yaml, run_local
    from kftune.katib.runner_gpu import GpuSettings
    from kftune.katib.runner_plan import RunOptions
    from kftune.katib.runner_progress import Progress

    args = parse(argv)
    if not args.local:
        raise UserError(
            "kftune katib run needs --local (it runs the experiment on this machine); "
            "to run it on a cluster use `kubectl apply -f FILE` or `kftune katib submit FILE`"
        )
    overrides = Overrides(
        set_args=args.set_arg,
        drop_args=args.drop_arg,
        set_env=args.set_env,
        params=args.param,
        algorithm_settings=args.algorithm_setting,
        early_stopping_settings=args.early_stopping_setting,
        max_trial_count=args.max_trial_count,
        parallel=args.parallel,
        max_failed_trial_count=args.max_failed_trial_count,
        goal=args.goal,
    )
    volumes = dict(split_pair(v, "--volume", "cache=/tmp/cache") for v in args.volume)
    options = RunOptions(
        file=args.file,
        work_dir=args.work_dir,
        resume=args.resume,
        overrides=overrides,
        volumes=volumes,
        progress=args.progress,
        grace_s=args.grace_period,
        threads_per_trial=args.threads_per_trial,
        dry_run=args.dry_run,
        gpu=GpuSettings(
            gpus=args.gpus,
            trials_per_gpu=args.trials_per_gpu,
            mps=args.mps,
            memory_per_trial_mib=args.gpu_memory_per_trial,
        ),
    )
    progress = Progress("", args.progress)
    if args.dry_run:
        return dry_run(options, progress)
    run = run_local(options, progress)
    if run.result.interrupted:
        print(
            f"kftune katib run: interrupted; continue with --resume (work dir {run.plan.layout.work_dir})",
            file=sys.stderr,
        )
        return run.result.exit_code
    sys.stdout.write(optimal_yaml(run.result.optimal))
    sys.stdout.flush()
    return run.result.exit_code
