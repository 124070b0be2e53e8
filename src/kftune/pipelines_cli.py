"""``kftune pipeline``: compile, run locally, or submit kftune's Kubeflow Pipelines.

``compile [NAME|all] [--out DIR]``
    KFP IR YAML per pipeline into ``pipelines/compiled/`` (a build output).
``run NAME --local [--out DIR] [--param k=v ...] [--full]``
    every step with ``kfp.local`` (SubprocessRunner, this Python): the same components as on a
    cluster, with ``mode=local`` (the tune step runs the local Katib runner) and small settings
    (tiny model, demo corpora, few trials/seeds/epochs) unless ``--full``; ``--param`` overrides any
    pipeline parameter. The run directory is ``OUT/<name>``; its report is printed at the end.
``submit NAME --host URL [--experiment E] [--recurring CRON] [--token T] [--param k=v ...]``
    upload the pipeline version tagged by git SHA (``kfp.Client``), start a run (or a recurring
    run on a cron schedule), wait for it and exit non-zero unless it succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from kftune.errors import UserError

COMPILED_DIR = Path("pipelines/compiled")

# Small settings for `run --local`: each pipeline in a few minutes on a laptop CPU.
LOCAL_SETTINGS: dict[str, dict[str, Any]] = {
    "ner-hpo": {
        "model": "tiny",
        "data": "demo:ner",
        "max_trial_count": 3,
        "parallel_trial_count": 2,
        "num_seeds": 3,
        "tune_overrides": [
            "--algorithm-setting", "num_configurations=3",
            "--param", "num_epochs=1:2",
            "--param", "learning_rate=5e-4:3e-3",
            "--param", "batch_size=16,32",
            "--set-arg", "--schedule-epochs=2",
            "--set-arg", "--max-length=64",
            "--set-env", "KFTUNE_TRACKING=off",
            "--threads-per-trial", "1",
        ],
        "eval_max_samples": 0,
        "register": False,
    },
    "ner-matrix": {
        "model": "tiny",
        "data": "demo:ner",
        "max_trial_count": 2,
        "parallel_trial_count": 1,
        "num_seeds": 2,
        "tune_overrides": [
            "--algorithm-setting", "num_configurations=2",
            "--param", "num_epochs=1:1",
            "--param", "learning_rate=1e-3:3e-3",
            "--set-arg", "--schedule-epochs=1",
            "--set-arg", "--max-length=64",
            "--set-env", "KFTUNE_TRACKING=off",
            "--threads-per-trial", "1",
        ],
        "eval_max_samples": 100,
        "register": False,
        "train_config": {"max_train_samples": 300, "max_eval_samples": 150},
    },
    "textcls": {
        "model": "tiny",
        "data": "demo:textcls",
        "max_trial_count": 3,
        "parallel_trial_count": 2,
        "num_seeds": 3,
        "tune_overrides": [
            "--param", "num_epochs=1:2",
            "--param", "learning_rate=5e-4:3e-3",
            "--param", "batch_size=16,32",
            "--set-env", "KFTUNE_TRACKING=off",
            "--set-arg", "--max-length=64",
            "--threads-per-trial", "1",
        ],
        "register": False,
    },
    "mlm": {
        "model": "tiny",
        "data": "demo:mlm",
        "max_trial_count": 2,
        "parallel_trial_count": 2,
        "num_finetunes": 3,
        "finetune_tasks": [
            {"name": "textcls", "task": "seqcls", "data": "demo:textcls"},
            {"name": "ner", "task": "ner", "data": "demo:ner", "runs": 2},
        ],
        "train_config": {"max_train_samples": 300, "max_eval_samples": 200},
        "finetune_args": ["--num-epochs", "1", "--learning-rate", "1e-3", "--max-length", "64", "--tracking", "off"],
        "tune_overrides": [
            "--set-arg", "--precision=fp32",
            "--set-env", "KFTUNE_TRACKING=off",
            "--set-arg", "--max-length=64",
            "--set-arg", "--per-device-train-batch-size=16",
            "--threads-per-trial", "1",
        ],
    },
}  # fmt: skip


def _names() -> list[str]:
    from kftune.pipelines import PIPELINES

    return list(PIPELINES)


def check_name(name: str, allow_all: bool = False) -> list[str]:
    names = _names()
    if allow_all and name == "all":
        return names
    if name not in names:
        raise UserError(f"unknown pipeline {name!r}; known pipelines: {', '.join(names)}")
    return [name]


def _pipeline(name: str):
    from kftune.pipelines import load

    return load(name)


def _quiet_kfp() -> None:
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # kfp.local on every step: display names and Kubernetes settings "have no effect" locally, and
    # the pipeline image is "non-Python" to it (the steps do run in this Python, with kftune)
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")


# ----------------------------------------------------------------------------- parameters


def pipeline_inputs(func) -> dict[str, tuple[str, Any]]:
    """{name: (KFP type, default)} of a pipeline's parameters."""
    spec = func.component_spec
    return {n: (str(s.type), s.default) for n, s in (spec.inputs or {}).items()}


def _convert(name: str, text: str, kind: str) -> Any:
    try:
        if kind in ("Integer", "int"):
            return int(text)
        if kind in ("Float", "float"):
            return float(text)
        if kind in ("Boolean", "bool"):
            low = text.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return low in ("true", "1", "yes")
        if kind.split("[")[0] in ("List", "list"):
            if text.strip().startswith("["):
                value = json.loads(text)
                if not isinstance(value, list):
                    raise ValueError(text)
                return value
            return [p.strip() for p in text.split(",") if p.strip()]
        if kind.split("[")[0] in ("Dict", "dict"):
            return json.loads(text)
    except (ValueError, json.JSONDecodeError) as exc:
        raise UserError(f"--param {name}={text}: not a valid {kind.split('[')[0].lower()} ({exc})") from exc
    return text


def parse_params(pairs: list[str], inputs: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise UserError(f"--param {pair!r}: expected NAME=VALUE, e.g. --param num_seeds=3")
        if name not in inputs:
            raise UserError(f"--param {name}: not a parameter of this pipeline; it has: {', '.join(inputs)}")
        out[name] = _convert(name, value, inputs[name][0])
    return out


def check_values(values: dict[str, Any], inputs: dict[str, tuple[str, Any]]) -> None:
    """Parameters checked before a run starts (locally or on the cluster), so that a typo fails
    in seconds, not after the search: mlm's fine-tuning tasks."""
    if "finetune_tasks" in inputs:
        from kftune.steps.finetune import parse_tasks

        def value(name: str) -> Any:
            return values[name] if name in values else inputs[name][1]

        parse_tasks(value("finetune_tasks"), num_runs=value("num_finetunes"),
                    average_excluding=value("average_excluding") or [])  # fmt: skip


# ----------------------------------------------------------------------------- compile


def compile_pipeline(name: str, out_dir: Path) -> Path:
    from kfp import compiler

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.yaml"
    compiler.Compiler().compile(_pipeline(name), str(path))
    return path


def cmd_compile(args: argparse.Namespace) -> int:
    _quiet_kfp()
    for name in check_name(args.name, allow_all=True):
        path = compile_pipeline(name, Path(args.out))
        print(f"compiled {name} -> {path}")
    return 0


# ----------------------------------------------------------------------------- run --local


class _Digest(io.TextIOBase):
    """kfp.local's output (every step's log, executor inputs included) to a log file; only the
    lines that tell the story (steps starting and ending, trials, metric lines) echoed."""

    KEEP = re.compile(
        r"Executing task|finished with status|^\s*\[\s*\d+(\.\d)?s\]|experiment \S+: |"
        r"retrain seed \d+: |compare: |register: |report: |tune: maxFailed"
    )

    def __init__(self, log_path: Path, echo) -> None:
        self.log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.echo = echo
        self.partial = ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self.partial += text
        *lines, self.partial = self.partial.split("\n")
        for line in lines:
            plain = _ANSI.sub("", line)
            if self.KEEP.search(plain) and "Streamed logs" not in plain:
                self.echo.write("  " + plain.strip() + "\n")
                self.echo.flush()
        return len(text)

    def flush(self) -> None:
        if not self.log.closed:
            self.log.flush()

    def close(self) -> None:
        if not self.log.closed:
            self.log.flush()
            self.log.close()
        super().close()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def run_local(
    name: str,
    out: Path,
    params: dict[str, Any],
    *,
    full: bool = False,
    run_name: str = "",
    quiet: bool = False,
) -> Path:
    """Run pipeline ``name`` with kfp.local into ``OUT/<run_name or name>``; returns that run
    directory. ``quiet``: kfp.local's full output goes to ``OUT/.kfp/<run>.log``, a digest to
    stdout. Raises UserError (exit 1) with the failed step's reason when the pipeline fails."""
    _quiet_kfp()
    from kfp import local

    func = _pipeline(name)
    inputs = pipeline_inputs(func)
    run_dir = (out / (run_name or name)).resolve()
    values: dict[str, Any] = {} if full else dict(LOCAL_SETTINGS.get(name, {}))
    values.update(mode="local", run_dir=str(run_dir))
    values.update(params)
    train_config = values.pop("train_config", None)
    values = {k: v for k, v in values.items() if k in inputs}
    check_values(values, inputs)
    if (run_dir / "run.json").exists():
        raise UserError(f"{run_dir} holds an earlier run: pass another --out, or delete it")
    run_dir.mkdir(parents=True, exist_ok=True)
    root = out.resolve() / ".kfp" / (run_name or name)
    if train_config and "tune_overrides" in inputs:
        # trainer options the Katib validator does not list (e.g. --max-train-samples) go in a
        # --config file; the retrain steps inherit it with the best trial's arguments
        config = root / "train-config.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(train_config) + "\n", encoding="utf-8")
        values["tune_overrides"] = [*values.get("tune_overrides", []), "--set-arg", f"--config={config}"]
    # kfp.local runs two loop iterations at a time: give each its share of the cores (torch's
    # default of all cores per process thrashes), and keep trials' MLflow runs in their local
    # spool (no mlruns.db in the working directory) unless the caller chose otherwise.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // 2)))
    if not full:
        os.environ.setdefault("KFTUNE_TRACKING", "off")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    print(f"kftune pipeline run {name} --local: run directory {run_dir}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    digest = None
    if quiet:
        root.mkdir(parents=True, exist_ok=True)
        digest = _Digest(root.with_suffix(".log"), sys.stdout)
        print(f"  (every step's full log: {root.with_suffix('.log')})", flush=True)
    import builtins

    original_print = builtins.print
    try:
        with contextlib.redirect_stdout(digest) if digest else contextlib.nullcontext():
            func(**values)
    except RuntimeError as exc:
        raise UserError(_failure(name, run_dir, str(exc)), exit_code=1) from exc
    finally:
        # kfp.local indents print() per task by swapping builtins.print; two loop iterations in
        # threads can leave the indenting version in place (kfp 2.17)
        builtins.print = original_print
        if digest is not None:
            digest.close()
    print(
        f"pipeline {name} succeeded in {time.perf_counter() - t0:.0f} s; run directory {run_dir}", flush=True
    )
    report = _find_report(run_dir)
    if report:
        print(f"report: {report}", flush=True)
    return run_dir


def _find_report(run_dir: Path) -> Path | None:
    for candidate in (run_dir / "report" / "report.html", run_dir / "report" / "report.md"):
        if candidate.is_file():
            return candidate
    return None


def _failure(name: str, run_dir: Path, kfp_message: str) -> str:
    """One line: which step failed and why (run.json of the run, or of a configuration)."""
    from kftune.steps.rundir import read_json

    for path in [run_dir / "run.json", *sorted(run_dir.glob("*/run.json"))]:
        info = read_json(path, {}) or {}
        if info.get("status") == "failed" and info.get("error"):
            where = f" ({path.parent.name})" if path.parent != run_dir else ""
            return f"pipeline {name} failed at step {info.get('failed_step', '?')}{where}: {info['error']}"
    plain = _ANSI.sub("", kfp_message)
    return f"pipeline {name} failed: {plain} (step logs above; run directory {run_dir})"


def cmd_run(args: argparse.Namespace) -> int:
    check_name(args.name)
    if not args.local:
        raise UserError(
            "kftune pipeline run needs --local (runs every step on this machine); "
            "to run on Kubeflow Pipelines use `kftune pipeline submit NAME --host URL`"
        )
    func = _pipeline(args.name)
    params = parse_params(args.param, pipeline_inputs(func))
    run_local(args.name, Path(args.out), params, full=args.full, quiet=args.quiet)
    return 0


# ----------------------------------------------------------------------------- submit


def git_sha(short: int = 12) -> str:
    from kftune.registry.tracking import git_sha as full_sha

    sha = full_sha()
    return sha[:short] if sha != "unknown" else "unknown"


def check_host(host: str, token: str | None = None, timeout: float = 5.0) -> None:
    """Fail fast with one line when nothing answers at ``host`` (kfp.Client would retry 25 s)."""
    import urllib.error
    import urllib.request

    if not host.startswith(("http://", "https://")):
        raise UserError(f"--host {host!r}: expected an http(s) URL, e.g. http://ml-pipeline-ui.kubeflow:80")
    url = host.rstrip("/") + "/apis/v2beta1/healthz"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            pass
    except urllib.error.HTTPError:
        return  # something answers (auth proxies say 401/403): let kfp.Client deal with it
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"cannot reach Kubeflow Pipelines at {host} ({reason}); check --host (or KFP_HOST) "
            "and that the API server is reachable from here"
        ) from exc


def _api_error(what: str, exc: Exception) -> UserError:
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None) or ""
    with contextlib.suppress(ValueError, AttributeError):
        body = json.loads(body).get("message") or body
    text = " ".join(str(body or exc).split())[:300]
    hint = " (check --token)" if status in (401, 403) else ""
    return UserError(f"{what}: KFP answered {status or ''} {text}{hint}".replace("  ", " "), exit_code=1)


def upload(client, package: Path, name: str, version: str, description: str) -> tuple[str, str]:
    """(pipeline id, version id): create the pipeline on first use, then upload this version;
    a version of that name (the same commit submitted again) is reused."""
    import kfp_server_api

    try:
        pipeline_id = client.get_pipeline_id(name)
        if pipeline_id is None:
            pipeline_id = client.upload_pipeline(
                str(package), pipeline_name=name, description=description
            ).pipeline_id
            print(f"created pipeline {name} ({pipeline_id})", file=sys.stderr)
        try:
            v = client.upload_pipeline_version(
                str(package), pipeline_version_name=version, pipeline_id=pipeline_id, description=description
            )
            print(f"uploaded version {version} ({v.pipeline_version_id})", file=sys.stderr)
            return pipeline_id, v.pipeline_version_id
        except kfp_server_api.ApiException as exc:
            if exc.status != 409:
                raise
        versions = client.list_pipeline_versions(pipeline_id, page_size=100).pipeline_versions or []
        for v in versions:
            if v.display_name == version:
                print(f"version {version} exists ({v.pipeline_version_id}): reused", file=sys.stderr)
                return pipeline_id, v.pipeline_version_id
        raise UserError(
            f"KFP refused version {version} of {name} as a duplicate but does not list it", exit_code=1
        )
    except kfp_server_api.ApiException as exc:
        raise _api_error(f"uploading pipeline {name}", exc) from exc


def cmd_submit(args: argparse.Namespace) -> int:
    import tempfile

    check_name(args.name)
    host = args.host or os.environ.get("KFP_HOST") or ""
    if not host:
        raise UserError("kftune pipeline submit needs --host URL (or KFP_HOST)")
    token = args.token or os.environ.get("KFP_TOKEN") or None
    func = _pipeline(args.name)
    params = parse_params(args.param, pipeline_inputs(func))
    params.setdefault("mode", "cluster")
    check_values(params, pipeline_inputs(func))
    check_host(host, token)
    _quiet_kfp()
    import kfp
    import kfp_server_api

    sha = git_sha()
    version = f"{args.name}-{sha}"
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(args.name, Path(tmp))
        try:
            client = kfp.Client(host=host, existing_token=token, namespace=args.namespace or "kubeflow")
        except (kfp_server_api.ApiException, TimeoutError, OSError) as exc:
            raise _api_error(f"connecting to {host}", exc) from exc
        description = f"kftune {args.name} at git {sha}"
        pipeline_id, version_id = upload(client, package, args.name, version, description)
    try:
        experiment = client.create_experiment(args.experiment, namespace=args.namespace or None)
        if args.recurring:
            rec = client.create_recurring_run(
                experiment_id=experiment.experiment_id,
                job_name=f"{args.name} {sha} ({args.recurring})",
                cron_expression=args.recurring,
                params=params,
                pipeline_id=pipeline_id,
                version_id=version_id,
                service_account=args.service_account or None,
            )
            print(
                f"recurring run {rec.recurring_run_id}: {args.name} version {version} on '{args.recurring}'"
            )
            return 0
        run = client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=f"{args.name} {sha} {time.strftime('%Y-%m-%d %H:%M:%S')}",
            params=params,
            pipeline_id=pipeline_id,
            version_id=version_id,
            service_account=args.service_account or None,
        )
        print(f"run {run.run_id}: {args.name} version {version}", flush=True)
        if args.no_wait:
            return 0
        done = client.wait_for_run_completion(run.run_id, timeout=args.timeout, sleep_duration=args.poll)
    except kfp_server_api.ApiException as exc:
        raise _api_error(f"submitting {args.name}", exc) from exc
    except TimeoutError as exc:
        raise UserError(
            f"run {run.run_id} not finished after {args.timeout} s (it keeps running)", exit_code=3
        ) from exc
    state = str(done.state or "").upper()
    if state == "SUCCEEDED":
        print(f"run {run.run_id} SUCCEEDED")
        return 0
    error = getattr(done, "error", None)
    message = getattr(error, "message", None) or (error.get("message") if isinstance(error, dict) else None)
    raise UserError(f"run {run.run_id} {state or 'ended'}" + (f": {message}" if message else ""), exit_code=1)


# ----------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UserError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kftune pipeline", description="Kubeflow Pipelines: compile, run locally, submit.")
    sub = p.add_subparsers(dest="command", metavar="{compile,run,submit,list}", parser_class=_Parser)
    c = sub.add_parser("compile", help="write KFP IR YAML to pipelines/compiled/")
    c.add_argument("name", nargs="?", default="all", help="a pipeline name, or all (default)")
    c.add_argument("--out", default=str(COMPILED_DIR), help=f"output directory (default {COMPILED_DIR})")
    r = sub.add_parser("run", help="run a pipeline with kfp.local (--local)")
    r.add_argument("name")
    r.add_argument("--local", action="store_true", help="run every step on this machine (kfp.local)")
    r.add_argument("--out", default="runs", help="the run directory is OUT/NAME (default runs)")
    r.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a pipeline parameter")
    r.add_argument(
        "--full", action="store_true", help="the pipeline's own defaults, not the small local settings"
    )
    r.add_argument(
        "--quiet", action="store_true", help="every step's log to OUT/.kfp/NAME.log, a digest here"
    )
    s = sub.add_parser("submit", help="upload the version tagged by git SHA to KFP, run it, wait")
    s.add_argument("name")
    s.add_argument("--host", help="KFP API URL (default $KFP_HOST)")
    s.add_argument("--token", help="bearer token (default $KFP_TOKEN)")
    s.add_argument("--experiment", default="kftune", help="KFP experiment (default kftune)")
    s.add_argument(
        "--recurring", metavar="CRON", help="create a recurring run with this cron schedule instead"
    )
    s.add_argument("--namespace", help="KFP namespace (multi-user installs)")
    s.add_argument("--service-account", default="kftune-pipeline", help="runs as (default kftune-pipeline)")
    s.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="a pipeline parameter")
    s.add_argument(
        "--timeout", type=float, default=24 * 3600.0, help="seconds to wait for the run (default 1 day)"
    )
    s.add_argument("--poll", type=float, default=10.0, help="seconds between status checks (default 10)")
    s.add_argument("--no-wait", action="store_true", help="start the run and exit")
    sub.add_parser("list", help="the pipelines and what they do")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "compile":
        return cmd_compile(args)
    if args.command == "run":
        return cmd_run(args)
    if args.command == "submit":
        return cmd_submit(args)
    if args.command == "list":
        from kftune.pipelines import PIPELINES

        for name, (_, _, text) in PIPELINES.items():
            print(f"{name:<11} {text}")
        return 0
    build_parser().print_help()
    return 2
