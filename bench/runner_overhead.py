"""Local runner overhead per trial vs running the same trial command bare (issue 4, bench a).

Target: at most 0.3 s or 2% per trial.

For each workload the runner (``kftune katib run --local``, one trial at a time) runs N trials;
then the exact commands it ran (argv, env, working dir, from its SQLite record) are run bare, one
after the other, with their output to files as the runner does. Both are repeated (runner, bare,
runner, bare) and the figures are means over the repetitions:

- ``bare``: seconds per trial, run directly;
- ``runner``: (runner wall time - its start-up) / N, start-up being the time until the first
  trial started (imports, validation, rendering; paid once per search, shown apart);
- ``overhead``: runner - bare per trial, absolute and relative (median over the repeats of the
  back-to-back pairs: the host's load changes between pairs more than within one);
- ``gap``: from one trial's end to the next one's start, as the runner recorded them (its own
  bookkeeping between trials: suggestion, rendering, SQLite, process start).

Workloads: ``script`` (a Python trial that prints 3 metric lines over ~0.5 s: the runner's own
cost stands out) and ``trainer`` (``kftune train`` on the tiny model, 1 epoch on a subset: a
real, if short, trial). Usage: ``python bench/runner_overhead.py [--n 8] [--repeats 2]
[--skip-trainer]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys, time
lr = float(sys.argv[1])
for epoch in (1, 2, 3):
    time.sleep(0.17)
    print(f"epoch={epoch} eval_f1={min(0.99, lr * 100 * epoch):.6f} eval_loss={1 / epoch:.6f}", flush=True)
"""


def experiment(name: str, command: list[str], args: list[str], n: int, extra_env: str = "") -> str:
    args_yaml = "\n".join(f"                  - {json.dumps(a)}" for a in args)
    return f"""apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {{name: {name}, namespace: bench}}
spec:
  objective: {{type: maximize, objectiveMetricName: eval_f1, additionalMetricNames: [eval_loss]}}
  algorithm:
    algorithmName: random
    algorithmSettings: [{{name: random_state, value: "1"}}]
  maxTrialCount: {n}
  parallelTrialCount: 1
  parameters:
    - {{name: lr, parameterType: double, feasibleSpace: {{min: "0.001", max: "0.003"}}}}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - {{name: lr, reference: lr}}
      - {{name: trialName, reference: "${{trialSpec.Name}}"}}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          metadata:
            labels: {{sidecar.istio.io/inject: "false"}}
          spec:
            restartPolicy: Never
            containers:
              - name: main
                image: ghcr.io/kftune/trainer:0.1.0
                workingDir: /cache/trials/{name}
                command: {json.dumps(command)}
                args:
{args_yaml}
                env:
                  - {{name: KFTUNE_HOME, value: /cache}}{extra_env}
                volumeMounts:
                  - {{name: cache, mountPath: /cache}}
            volumes:
              - name: cache
                persistentVolumeClaim: {{claimName: kftune-cache}}
"""


def run_runner(path: Path, work: Path, env: dict[str, str]) -> tuple[float, float, list[dict]]:
    if work.exists():
        shutil.rmtree(work)
    t0 = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kftune",
            "katib",
            "run",
            str(path),
            "--local",
            "--work-dir",
            str(work),
            "--progress",
            "none",
            "--threads-per-trial",
            "0",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"runner failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    db = sqlite3.connect(work / "experiment.db")
    rows = [
        {"name": n, "argv": json.loads(a), "cwd": c, "env": json.loads(e), "started": s, "finished": f}
        for n, a, c, e, s, f in db.execute(
            "SELECT name, argv, cwd, env, started, finished FROM trials ORDER BY seq"
        )
    ]
    db.close()
    bad = [r["name"] for r in rows if r["finished"] is None]
    if bad:
        raise SystemExit(f"unfinished trials: {bad}")
    startup = rows[0]["started"] - t0
    return wall, startup, rows


def run_bare(rows: list[dict], env: dict[str, str], logs: Path) -> float:
    logs.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for r in rows:
        full = dict(env)
        full.setdefault("PYTHONUNBUFFERED", "1")
        full.update(r["env"])
        with open(logs / f"{r['name']}.out", "wb") as out, open(logs / f"{r['name']}.err", "wb") as err:
            code = subprocess.call(r["argv"], cwd=r["cwd"], env=full, stdout=out, stderr=err)
        if code != 0:
            raise SystemExit(f"bare {r['name']} exited {code}; see {logs}")
    return time.time() - t0


def measure(label: str, path: Path, tmp: Path, n: int, repeats: int, env: dict[str, str]) -> dict:
    """Runner then bare, ``repeats`` times; each repeat's pair ran back to back (similar load), so the
    per-repeat differences are the figures, summarised by their median."""
    runner_per, bare_per, startups, gaps = [], [], [], []
    for rep in range(repeats):
        wall, startup, rows = run_runner(path, tmp / f"{label}-runner-{rep}", env)
        per_runner = (wall - startup) / n
        bare = run_bare(rows, env, tmp / f"{label}-bare-{rep}")
        runner_per.append(per_runner)
        bare_per.append(bare / n)
        startups.append(startup)
        gaps += [b["started"] - a["finished"] for a, b in zip(rows, rows[1:], strict=False)]
        print(
            f"  {label} repeat {rep + 1}: runner {per_runner:.3f} s/trial (+{startup:.2f} s start-up), "
            f"bare {bare / n:.3f} s/trial, difference {per_runner - bare / n:+.3f} s",
            flush=True,
        )
    diffs = [r - b for r, b in zip(runner_per, bare_per, strict=True)]
    pcts = [100 * (r - b) / b for r, b in zip(runner_per, bare_per, strict=True)]
    d, pct = statistics.median(diffs), statistics.median(pcts)
    return {
        "workload": label,
        "trials": n,
        "repeats": repeats,
        "bare_s_per_trial": round(statistics.median(bare_per), 4),
        "runner_s_per_trial": round(statistics.median(runner_per), 4),
        "overhead_s_per_trial": round(d, 4),
        "overhead_pct": round(pct, 2),
        "gap_between_trials_s": round(statistics.mean(gaps), 4) if gaps else None,
        "runner_startup_s": round(statistics.median(startups), 3),
        "target_met": d <= 0.3 or pct <= 2.0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=8, help="trials per search (default 8)")
    p.add_argument("--trainer-n", type=int, default=3, help="trials per search for the trainer workload")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-trainer", action="store_true")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    tmp = Path(tempfile.mkdtemp(prefix="kftune-bench-runner-"))
    env.setdefault("KFTUNE_HOME", str(tmp / "home"))
    results = []
    try:
        script = tmp / "trial.py"
        script.write_text(SCRIPT)
        path = tmp / "script.yaml"
        path.write_text(
            experiment(
                "bench-script",
                ["python", str(script)],
                ["${trialParameters.lr}", "/cache/trials/bench-script/${trialParameters.trialName}"],
                a.n,
            )
        )
        print(f"workload script: {a.n} trials x {a.repeats} repeats", flush=True)
        results.append(measure("script", path, tmp, a.n, a.repeats, env))
        if not a.skip_trainer:
            args = [
                "train",
                "--task",
                "ner",
                "--data",
                "demo:ner",
                "--model",
                "tiny",
                "--num-epochs",
                "1",
                "--learning-rate",
                "${trialParameters.lr}",
                "--max-train-samples",
                "300",
                "--max-eval-samples",
                "100",
                "--tracking",
                "off",
                "--seed",
                "1",
                "--output-dir",
                "/cache/trials/bench-trainer/${trialParameters.trialName}",
            ]
            path = tmp / "trainer.yaml"
            path.write_text(experiment("bench-trainer", ["kftune"], args, a.trainer_n))
            # build the tiny model and the corpus once, outside the timings
            subprocess.run(
                [sys.executable, "-m", "kftune", "model", "resolve", "tiny"], env=env, capture_output=True
            )
            print(f"workload trainer: {a.trainer_n} trials x {a.repeats} repeats", flush=True)
            results.append(measure("trainer", path, tmp, a.trainer_n, a.repeats, env))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(
        f"{'workload':<9} {'trials':>6} {'bare s/trial':>13} {'runner s/trial':>15} {'overhead s':>11} "
        f"{'overhead %':>11} {'gap s':>7} {'start-up s':>11}  target (<=0.3 s or <=2%)"
    )
    for r in results:
        print(
            f"{r['workload']:<9} {r['trials']:>6} {r['bare_s_per_trial']:>13.3f} {r['runner_s_per_trial']:>15.3f} "
            f"{r['overhead_s_per_trial']:>11.3f} {r['overhead_pct']:>10.1f}% {r['gap_between_trials_s'] or 0:>7.3f} "
            f"{r['runner_startup_s']:>11.2f}  "
            f"{'met' if r['target_met'] else 'NOT met'}"
        )
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["target_met"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
