"""ASHA vs random search on the demo NER task with the tiny model (issue 4, bench b).

Target: ASHA gets within 0.5 F1 point of random search's full-budget best using <= 25% of its
epochs.

Both searches run through the local runner from ``katib/ner-asha.yaml`` itself, with the demo's
overrides (tiny model, demo corpus, learning rate 1e-4..3e-3, a training subset):

- **random**: the same file with ``algorithm: random`` and the epoch parameter removed: every
  configuration trains the full budget R (``--num-epochs R``);
- **asha**: the file as it is (ASHA, reduction factor eta, budgets 1 .. R, ``maxTrialCount`` as the
  budget: a new configuration whenever no promotion is due), new configurations drawn by TPE as in
  the file (the seed's TPE + ASHA) and, with ``--samplers random,tpe``, also by the ``random``
  sampler (random search's own prior: ASHA's promotion rule alone).

Random search has N configurations (default 27), ASHA 2N trials (``--asha-trials``); a seed
(``random_state``) per pair of searches; several seeds. Why N = 27: run one trial at a time,
ASHA's first R-epoch result needs eta^2 configurations at rung 0, eta at rung 1 and one at the top:
9 + 3 x 2 + 6 = 21 epochs for R = 9, eta = 3, already past 25% of random's 81 epochs when N = 9;
with N = 27 (243 epochs) ASHA has screened about as many configurations as random search and
trained its best three to R by 25%, the regime the target is about (seed 000 searched 50). A trial's F1 is
Katib's observation (its max eval_f1 over its epochs); a search's best F1 is its optimal trial's;
"epochs" are the epochs trained (a promotion resumes its parent's checkpoint: it counts only its own).
Besides the final figures, the *anytime* best F1 (best over the trials finished so far, in
completion order, against the epochs they used) is read at 25% of random search's epochs: the
target asks that ASHA's be within 0.5 point of random's final best there.

A search's best F1 is one training run of the configuration it picked, and the best of many
noisy runs is biased upwards (near-identical configurations differ by about a point of F1 on this
task). With ``--retrain-seeds K`` the bench also trains each picked configuration - random's
best, ASHA's best at 25% and at its end - from scratch with K other seeds (1001, 1002, ...; the
trials use 42) and compares the means: the quality of the configuration each search found, which
is what kftune's pipelines retrain and publish. Usage::

    python bench/asha_vs_random.py [--seeds 1,2,3] [--configs 27] [--max-epochs 9] [--eta 3]
        [--train-samples 1500] [--eval-samples 0 (all)] [--parallel 2] [--samplers tpe]
        [--retrain-seeds 5] [--keep DIR (reuses finished searches and retrains found there)]
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
from kftune.katib.store import Store  # noqa: E402
from kftune.steps.argv import drop_flag, set_flag  # noqa: E402


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
        settings.pop("num_configurations", None)  # maxTrialCount is the budget, the Katib way
        settings.update(
            {
                "sampler": sampler,
                "random_state": str(seed),
                "reduction_factor": str(eta),
                "n_startup_trials": str(max(2, configs // 3)),
            }
        )
        spec["algorithm"]["algorithmSettings"] = [{"name": k, "value": v} for k, v in settings.items()]
        for p in spec["parameters"]:
            if p["name"] == "num_epochs":
                p["feasibleSpace"] = {"min": "1", "max": str(max_epochs)}
        spec["maxTrialCount"] = configs  # here: trials, not configurations
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
        "--set-arg", "--max-length=64", "--set-arg", "--keep=last",
        "--param", "learning_rate=1e-4:3e-3",
    ]  # fmt: skip
    if args.eval_samples:
        cmd += ["--set-arg", f"--max-eval-samples={args.eval_samples}"]
    if args.threads_per_trial is not None:
        cmd += ["--threads-per-trial", str(args.threads_per_trial)]
    if (work / "result.json").is_file():  # finished in an earlier run of the bench (--keep)
        print(f"    {label}: reusing {work}", flush=True)
        cmd = []
    elif (work / "experiment.db").is_file():  # interrupted earlier: continue it
        cmd.append("--resume")
    t0 = time.time()
    proc = subprocess.Popen(
        cmd or ["true"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
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
    trials = {t["name"]: t for t in tune_trials(work)}
    best = tune_best(work)
    assert best is not None, f"{label}: no best trial"
    f1 = max(float(m["max"]) for m in best["observation"]["metrics"] if m["name"] == "eval_f1")
    store = Store.open(work / "experiment.db")
    try:
        order = sorted(store.trials(), key=lambda r: r.finished or 0.0)
    finally:
        store.close()
    anytime, used, best_so_far, incumbent = [], 0, 0.0, ""
    for row in order:
        t = trials[row.name]
        used += t["epochs"]
        if t["metrics"].get("eval_f1", 0.0) > best_so_far:
            best_so_far, incumbent = t["metrics"]["eval_f1"], row.name
        anytime.append([used, best_so_far, incumbent])
    return {
        "work": str(work),
        "best_f1": f1,
        "best_trial": best["bestTrialName"],
        "epochs": used,
        "trials": len(trials),
        "failed": sum(1 for t in trials.values() if t["status"] != "Succeeded"),
        "wall_s": round(time.time() - t0, 1),
        "anytime": anytime,
    }


def best_within(anytime: list[list], epochs: float) -> float:
    """The best F1 of the trials finished once ``epochs`` epochs (or fewer) had been used."""
    values = [point[1] for point in anytime if point[0] <= epochs + 1e-9]
    return max(values) if values else 0.0


def _trial_f1(search: dict, trial: str) -> float:
    return next((p[1] for p in search["anytime"] if p[2] == trial), float("nan"))


def incumbent_within(anytime: list[list], epochs: float) -> str:
    """The trial behind :func:`best_within`."""
    points = [point for point in anytime if point[0] <= epochs + 1e-9]
    return str(points[-1][2]) if points else ""


def retrain(
    work: Path, trial: str, seeds: list[int], args: argparse.Namespace, env: dict[str, str]
) -> list[float]:
    """Train ``trial``'s configuration from scratch for the full budget with each of ``seeds``
    (its own argv, minus --resume-from, with --num-epochs R and --seed S), ``--parallel`` at a
    time; each run's F1 is its max eval_f1 over the epochs, as Katib's observation is."""
    store = Store.open(work / "experiment.db")
    try:
        row = store.trial(trial)
    finally:
        store.close()
    assert row is not None, f"no trial {trial} in {work}"
    out_root = work / "retrain" / trial
    jobs = []
    for seed in seeds:
        out = out_root / f"seed-{seed}"
        if (out / "metrics.json").is_file():  # done in an earlier run of the bench (--keep)
            done = json.loads((out / "metrics.json").read_text())
            if done.get("status") == "completed" and done.get("epochs_done") == args.max_epochs:
                jobs.append((None, None, out))
                continue
        shutil.rmtree(out, ignore_errors=True)
        argv = drop_flag(list(row.argv), "--resume-from")
        argv = set_flag(set_flag(set_flag(argv, "--num-epochs", str(args.max_epochs)), "--seed", str(seed)),
                        "--output-dir", str(out))  # fmt: skip
        if argv[:2] == ["kftune", "train"]:
            argv = [sys.executable, "-m", "kftune", *argv[1:]]
        run_env = {**env, **row.env}
        run_env.pop("KFTUNE_PARENT_TRIAL", None)
        if args.threads_per_trial:
            run_env["OMP_NUM_THREADS"] = str(args.threads_per_trial)
        jobs.append((argv, run_env, out))
    f1s: list[float] = []
    running: list[tuple[subprocess.Popen, Path]] = []
    pending = list(jobs)
    while pending or running:
        while pending and len(running) < args.parallel:
            argv, run_env, out = pending.pop(0)
            proc = (
                None
                if argv is None
                else subprocess.Popen(
                    argv,
                    cwd=row.cwd or None,
                    env=run_env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            running.append((proc, out))
        proc, out = running.pop(0)
        if proc is not None and proc.wait() != 0:
            raise SystemExit(f"retrain of {trial} into {out} failed (exit {proc.returncode})")
        history = json.loads((out / "metrics.json").read_text())["history"]
        f1s.append(max(float(e["eval_f1"]) for e in history if "eval_f1" in e))
    return f1s


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument(
        "--configs",
        type=int,
        default=27,
        help="configurations of random search (default 27: with 9, ASHA's first full-budget result "
        "cannot come before 21 epochs, already past 25%% of random's 81)",
    )
    p.add_argument(
        "--asha-trials", type=int, help="maxTrialCount of the ASHA searches (default: 2 x --configs)"
    )
    p.add_argument("--max-epochs", type=int, default=9, help="R: the full budget (default 9)")
    p.add_argument("--eta", type=int, default=3, help="ASHA's reduction factor (default 3)")
    p.add_argument(
        "--train-samples", type=int, default=1500, help="training sentences (default 1500 of 3000)"
    )
    p.add_argument("--eval-samples", type=int, default=0, help="dev sentences (default 0: all 500)")
    p.add_argument("--parallel", type=int, default=max(1, (os.cpu_count() or 2) // 2))
    p.add_argument("--threads-per-trial", type=int)
    p.add_argument(
        "--samplers",
        default="tpe",
        help="ASHA samplers to run: tpe (katib/ner-asha.yaml's own), random (random search's prior) or random,tpe",
    )
    p.add_argument(
        "--retrain-seeds",
        type=int,
        default=5,
        help="also retrain each search's chosen configuration (random: its best; ASHA: its best at 25%% and "
        "at its end) from scratch with this many other seeds and compare the mean F1: the quality of the "
        "configuration a search picks, without the luck of its single run (default 5, as the seeds' retrains; 0: off)",
    )
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
        f"eta={args.eta}, {args.train_samples} training / {args.eval_samples or 'all'} dev sentences, "
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
                n = args.configs if kind == "random" else (args.asha_trials or 2 * args.configs)
                exp = variant(raw, kind, seed, n, args.max_epochs, args.eta, sampler)
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
            if args.retrain_seeds:
                seeds_r = [1000 + i for i in range(1, args.retrain_seeds + 1)]  # the trials use --seed 42
                quarter = 0.25 * row["random"]["epochs"]
                picks = [("random", "end", row["random"]["best_trial"])]
                for lab in [k for k in row if k.startswith("asha-")]:
                    picks += [(lab, "25%", incumbent_within(row[lab]["anytime"], quarter)),
                              (lab, "end", row[lab]["best_trial"])]  # fmt: skip
                for lab, when, trial in picks:
                    f1s = retrain(Path(row[lab]["work"]), trial, seeds_r, args, env)
                    row[lab].setdefault("retrained", {})[when] = {"trial": trial, "seeds": seeds_r, "f1": f1s}
                    print(
                        f"  seed {seed} {lab}: {trial} ({when}) retrained with seeds {seeds_r}: F1 "
                        + ", ".join(f"{100 * f:.2f}" for f in f1s)
                        + f" (mean {100 * statistics.mean(f1s):.2f}; its search run: "
                        + f"{100 * _trial_f1(row[lab], trial):.2f})",
                        flush=True,
                    )
            rows.append(row)
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)

    print()
    labels = [f"asha-{s}" for s in samplers]
    summary: dict = {"config": vars(args) | {"keep": str(args.keep), "json": str(args.json)}, "seeds": rows}
    print(
        "best dev F1 (x100) against epochs used; '@25%': the best of the trials finished within 25% of random's epochs"
    )
    head = f"{'seed':>4}  {'random':>7} {'epochs':>6} {'@25%':>6}"
    for lab in labels:
        head += f"  {lab:>12} {'epochs':>6} {'ratio':>6} {'@25%':>6} {'d@25%':>6} {'d end':>6}"
    print(head)
    for row in rows:
        r = row["random"]
        quarter = 0.25 * r["epochs"]
        r["f1_at_25pct"] = best_within(r["anytime"], quarter)
        line = f"{row['seed']:>4}  {100 * r['best_f1']:>7.2f} {r['epochs']:>6} {100 * r['f1_at_25pct']:>6.2f}"
        for lab in labels:
            a = row[lab]
            a["epoch_ratio"] = a["epochs"] / r["epochs"]
            a["f1_at_25pct"] = best_within(a["anytime"], quarter)
            a["delta_at_25pct_points"] = 100 * (a["f1_at_25pct"] - r["best_f1"])
            a["delta_end_points"] = 100 * (a["best_f1"] - r["best_f1"])
            line += (
                f"  {100 * a['best_f1']:>12.2f} {a['epochs']:>6} {a['epoch_ratio']:>6.1%} "
                f"{100 * a['f1_at_25pct']:>6.2f} {a['delta_at_25pct_points']:>+6.2f} {a['delta_end_points']:>+6.2f}"
            )
        print(line)
    for lab in labels:
        ratio = statistics.mean(row[lab]["epoch_ratio"] for row in rows)
        d25 = statistics.mean(row[lab]["delta_at_25pct_points"] for row in rows)
        dend = statistics.mean(row[lab]["delta_end_points"] for row in rows)
        worst = min(row[lab]["delta_at_25pct_points"] for row in rows)
        met = d25 >= -0.5
        summary[lab] = {
            "mean_epoch_ratio": ratio,
            "mean_delta_at_25pct_points": d25,
            "worst_delta_at_25pct_points": worst,
            "mean_delta_end_points": dend,
        }
        if args.retrain_seeds and all("retrained" in row[lab] for row in rows):
            mean = lambda row, lab, when: statistics.mean(row[lab]["retrained"][when]["f1"])  # noqa: E731
            per_seed = [100 * (mean(row, lab, "25%") - mean(row, "random", "end")) for row in rows]
            r25 = statistics.mean(per_seed)
            rend = statistics.mean(100 * (mean(row, lab, "end") - mean(row, "random", "end")) for row in rows)
            summary[lab] |= {
                "mean_delta_retrained_at_25pct_points": r25,
                "mean_delta_retrained_end_points": rend,
            }
            print(
                f"{lab}: retrained with {args.retrain_seeds} other seeds, the configuration ASHA had picked at 25% "
                f"of random's epochs scores {r25:+.2f} points vs the one random search picked with all of them "
                f"(at ASHA's end {rend:+.2f}); per seed: " + ", ".join(f"{d:+.2f}" for d in per_seed)
            )
        print(
            f"{lab}: with 25% of random's epochs, best F1 {d25:+.2f} points vs random's full-budget best "
            f"(mean; worst seed {worst:+.2f}); at its own end {dend:+.2f} points using {ratio:.1%} of the epochs. "
            f"Target (within 0.5 point with <= 25% of the epochs): {'met' if met else 'NOT met'}"
        )
    print(f"total {time.time() - t_all:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
