"""ASHA vs random search on the demo NER task with the tiny model (issue 4, bench b).

Target: ASHA gets within 0.5 F1 point of random search's full-budget best using <= 25% of its
epochs.

Both searches run through the local runner from ``katib/ner-asha.yaml`` itself, with the demo's
overrides (tiny model, demo corpus, learning rate 1e-4..3e-3, a training subset):

- **random**: the same file with ``algorithm: random`` and the epoch parameter removed: every
  configuration trains the full budget R (``--num-epochs R``);
- **asha**: the file as it is (ASHA, reduction factor eta, budgets 1 .. R), new configurations drawn
  by the ``random`` sampler (the same prior as random search) and, with ``--samplers
  random,tpe``, also by TPE (the seed's TPE + ASHA).

Each search has N configurations and a seed (``random_state``); several seeds. "Best dev F1" is
the experiment's optimal trial (Katib's rule: each trial's max eval_f1 over its epochs);
"epochs" is the total number of epochs trained (a promotion resumes its parent's checkpoint, so
it counts only its own epochs). Usage::

    python bench/asha_vs_random.py [--seeds 1,2,3] [--configs 9] [--max-epochs 9] [--eta 3]
        [--train-samples 600] [--eval-samples 200] [--parallel 2] [--samplers random]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_FINISHED = re.compile(r"\]\s+(\S+)\s+(Succeeded|Failed|MetricsUnavailable|EarlyStopped)\s+(\S+)")
sys.path.insert(0, str(ROOT / "src"))

from kftune.katib.experiment import load_experiment  # noqa: E402
from kftune.katib.runner_export import tune_best, tune_trials  # noqa: E402


def variant(raw: dict, kind: str, seed: int, configs: int, max_epochs: int, eta: int, sampler: str) -> dict:
    raw = copy.deepcopy(raw)
    spec = raw["spec"]
    raw["metadata"]["name"] = f"bench-{kind}-{sampler}-{seed}" if kind == "asha" else f"bench-random-{seed}"
    spec["parallelTrialCount"] = 1  # set by --parallel below
    if kind == "random":
        spec["algorithm"] = {
            "algorithmName": "random",
            "algorithmSettings": [{"name": "random_state", "value": str(seed)}],
        }
        spec["parameters"] = [p for p in spec["parameters"] if p["name"] != "num_epochs"]
        tt = spec["trialTemplate"]
        tt["trialParameters"] = [p for p in tt["trialParameters"] if p["reference"] != "num_epochs"]
        container = tt["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
        container["args"] = [
            str(max_epochs) if a == "${trialParameters.numEpochs}" else a for a in container["args"]
        ]
        spec["maxTrialCount"] = configs
    else:
        settings = {s["name"]: s["value"] for s in spec["algorithm"]["algorithmSettings"]}
        settings.update(
            {
                "sampler": sampler,
                "random_state": str(seed),
                "num_configurations": str(configs),
                "reduction_factor": str(eta),
                "n_startup_trials": str(max(2, configs // 3)),
            }
        )
        spec["algorithm"]["algorithmSettings"] = [{"name": k, "value": v} for k, v in settings.items()]
        for p in spec["parameters"]:
            if p["name"] == "num_epochs":
                p["feasibleSpace"] = {"min": "1", "max": str(max_epochs)}
        spec["maxTrialCount"] = configs * 4
    spec["maxFailedTrialCount"] = configs
    name = raw["metadata"]["name"]
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    container["workingDir"] = f"/cache/trials/{name}"
    container["args"] = [
        a.replace("/cache/trials/ner-asha/", f"/cache/trials/{name}/") if isinstance(a, str) else a
        for a in container["args"]
    ]
    container["args"] = [name if a == "ner-asha" else a for a in container["args"]]
    return raw


def run_search(path: Path, work: Path, args: argparse.Namespace, env: dict[str, str], label: str) -> dict:
    cmd = [
        sys.executable, "-m", "kftune", "katib", "run", str(path), "--local", "--work-dir", str(work),
        "--progress", "plain", "--parallel", str(args.parallel),
        "--set-arg", "--model=tiny", "--set-arg", "--data=demo:ner", "--set-arg", "--tracking=off",
        "--set-arg", f"--schedule-epochs={args.max_epochs}",
        "--set-arg", f"--max-train-samples={args.train_samples}",
        "--set-arg", f"--max-eval-samples={args.eval_samples}",
        "--set-arg", "--max-length=64", "--set-arg", "--keep=last",
        "--param", "learning_rate=1e-4:3e-3",
    ]  # fmt: skip
    if args.threads_per_trial is not None:
        cmd += ["--threads-per-trial", str(args.threads_per_trial)]
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tail: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        tail = (tail + [line.rstrip()])[-40:]
        m = _FINISHED.search(line)
        if m:
            print(
                f"    {label}: {m.group(1)} {m.group(2)} {m.group(3)} [{time.time() - t0:.0f}s]", flush=True
            )
    code = proc.wait()
    if code != 0:
        raise SystemExit(f"{label}: the runner exited {code}:\n" + "\n".join(tail))
    trials = tune_trials(work)
    best = tune_best(work)
    assert best is not None, f"{label}: no best trial"
    f1 = max(float(m["max"]) for m in best["observation"]["metrics"] if m["name"] == "eval_f1")
    return {
        "best_f1": f1,
        "best_trial": best["bestTrialName"],
        "epochs": sum(t["epochs"] for t in trials),
        "trials": len(trials),
        "failed": sum(1 for t in trials if t["status"] != "Succeeded"),
        "wall_s": round(time.time() - t0, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--configs", type=int, default=9, help="configurations per search (default 9)")
    p.add_argument("--max-epochs", type=int, default=9, help="R: the full budget (default 9)")
    p.add_argument("--eta", type=int, default=3, help="ASHA's reduction factor (default 3)")
    p.add_argument("--train-samples", type=int, default=600)
    p.add_argument("--eval-samples", type=int, default=200)
    p.add_argument("--parallel", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--threads-per-trial", type=int)
    p.add_argument("--samplers", default="random", help="ASHA samplers to run: random, tpe or random,tpe")
    p.add_argument("--keep", type=Path, help="keep the work dirs here (default: a temp dir, removed)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
    raw = load_experiment(ROOT / "katib" / "ner-asha.yaml").raw
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="kftune-bench-asha-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env.setdefault("KFTUNE_HOME", str(tmp / "home"))
    subprocess.run([sys.executable, "-m", "kftune", "model", "resolve", "tiny"], env=env, capture_output=True)
    print(
        f"ASHA vs random: {len(seeds)} seed(s), {args.configs} configurations, R={args.max_epochs} epochs, "
        f"eta={args.eta}, {args.train_samples} training / {args.eval_samples} dev sentences, "
        f"{args.parallel} parallel trials",
        flush=True,
    )
    rows = []
    t_all = time.time()
    try:
        for seed in seeds:
            row: dict = {"seed": seed}
            for kind, sampler in [("random", "random"), *[("asha", s) for s in samplers]]:
                label = "random" if kind == "random" else f"asha-{sampler}"
                exp = variant(raw, kind, seed, args.configs, args.max_epochs, args.eta, sampler)
                path = tmp / f"{exp['metadata']['name']}.yaml"
                path.write_text(json.dumps(exp, indent=1))  # JSON is YAML, and every string stays quoted
                print(f"  seed {seed} {label}: running", flush=True)
                row[label] = run_search(
                    path, tmp / exp["metadata"]["name"], args, env, f"seed {seed} {label}"
                )
                r = row[label]
                print(
                    f"  seed {seed} {label}: best F1 {r['best_f1']:.4f} ({r['best_trial']}), {r['epochs']} epochs, "
                    f"{r['trials']} trials, {r['wall_s']:.0f} s",
                    flush=True,
                )
            rows.append(row)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    labels = [f"asha-{s}" for s in samplers]
    head = f"{'seed':>4}  {'random F1':>9} {'epochs':>6}"
    for lab in labels:
        head += f"  {lab + ' F1':>14} {'epochs':>6} {'ratio':>6} {'dF1 pts':>8}"
    print(head)
    summary: dict = {"config": vars(args) | {"keep": str(args.keep), "json": str(args.json)}, "seeds": rows}
    for row in rows:
        line = f"{row['seed']:>4}  {row['random']['best_f1']:>9.4f} {row['random']['epochs']:>6}"
        for lab in labels:
            a, r = row[lab], row["random"]
            a["epoch_ratio"] = a["epochs"] / r["epochs"]
            a["delta_f1_points"] = 100 * (a["best_f1"] - r["best_f1"])
            line += f"  {a['best_f1']:>14.4f} {a['epochs']:>6} {a['epoch_ratio']:>6.1%} {a['delta_f1_points']:>+8.2f}"
        print(line)
    for lab in labels:
        ratio = statistics.mean(row[lab]["epoch_ratio"] for row in rows)
        delta = statistics.mean(row[lab]["delta_f1_points"] for row in rows)
        worst = min(row[lab]["delta_f1_points"] for row in rows)
        met = ratio <= 0.25 and delta >= -0.5
        summary[lab] = {
            "mean_epoch_ratio": ratio,
            "mean_delta_f1_points": delta,
            "worst_delta_f1_points": worst,
        }
        print(
            f"{lab}: mean epochs {ratio:.1%} of random's, mean best-F1 difference {delta:+.2f} points "
            f"(worst seed {worst:+.2f}); target (<= 25% of the epochs, within 0.5 F1 point): "
            f"{'met' if met else 'NOT met'}"
        )
    print(f"total {time.time() - t_all:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
