"""GetSuggestions latency with 1,000 past trials (issue #4, benchmark c; target p95 <= 50 ms).

Builds 1,000-trial histories on the seed-000 search space (learning rate logUniform 6e-6..5e-5,
weight decay, warmup, two dropouts, batch size {16, 32, 64}, num_epochs 1..9) by running each
algorithm's own loop against a toy objective with 8 workers (so rungs, brackets, labels and
running trials look like a real run's), then times ``suggest(problem, trials, n=1)`` - exactly
what kftune's Katib suggestion service calls for one GetSuggestions request - on that history,
side by side:

- asha (sampler tpe)    kftune's numpy TPE on the highest rung with enough results
- asha (sampler random) the promotion rule alone
- bohb                  hpbandster-style KDE + successive halving
- tpe (reference)       Optuna's TPESampler rebuilt from the same 1,000 trials (Katib's ``tpe``)

Run: ``PYTHONPATH=src .venv/bin/python bench/suggest_latency.py [--trials 1000] [--repeat 60]``.
Timings include rebuilding everything from the trial list (the service is stateless).
"""

from __future__ import annotations

import argparse
import heapq
import math
import statistics
import sys
import time

from kftune.hpo import LABEL_PARENT, Objective, Problem, SearchSpace, TrialRecord, get_algorithm
from kftune.hpo.space import clear_caches

SEED000 = [
    {
        "name": "learning_rate",
        "parameterType": "double",
        "feasibleSpace": {"min": "6e-6", "max": "5e-5", "distribution": "logUniform"},
    },
    {"name": "weight_decay", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "0.2"}},
    {"name": "warmup_ratio", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "0.12"}},
    {"name": "attention_dropout", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "0.2"}},
    {"name": "hidden_dropout", "parameterType": "double", "feasibleSpace": {"min": "0.0", "max": "0.2"}},
    {
        "name": "per_device_train_batch_size",
        "parameterType": "categorical",
        "feasibleSpace": {"list": ["16", "32", "64"]},
    },
    {"name": "num_epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "9"}},
]
WORKERS = 8


def toy_f1(a: dict[str, str]) -> float:
    lr, wd = float(a["learning_rate"]), float(a["weight_decay"])
    quality = 0.9 - 0.08 * (math.log(lr) - math.log(2.3e-5)) ** 2 - 0.5 * (wd - 0.14) ** 2
    return quality - 0.2 * 0.6 ** float(a["num_epochs"])


def make_problem(algorithm: str, settings: dict[str, str]) -> Problem:
    return Problem(
        SearchSpace.from_katib(SEED000),
        Objective("maximize", "eval_f1"),
        algorithm,
        {"random_state": "0", **settings},
        parallel_trial_count=WORKERS,
    )


def history(problem: Problem, size: int) -> list[TrialRecord]:
    """Run ``problem`` with WORKERS simulated workers until ``size`` trials exist; the last
    WORKERS stay Running, as in a live experiment."""
    algo = get_algorithm(problem.algorithm_name)
    trials: list[TrialRecord] = []
    by_name: dict[str, TrialRecord] = {}
    running: list[tuple[float, int, str]] = []
    now, free = 0.0, WORKERS
    while len(trials) < size:
        if free:
            for s in algo.suggest(problem, trials, min(free, size - len(trials))):
                name = f"exp-{len(trials):05d}"
                t = TrialRecord(name, dict(s.assignments), "Running", {}, dict(s.labels))
                parent = by_name.get(s.labels.get(LABEL_PARENT, ""))
                done = float(parent.assignments["num_epochs"]) if parent else 0.0
                heapq.heappush(running, (now + float(s.assignments["num_epochs"]) - done, len(trials), name))
                trials.append(t)
                by_name[name] = t
                free -= 1
        if len(trials) >= size or not running:
            break
        now, _, name = heapq.heappop(running)
        by_name[name].status = "Succeeded"
        by_name[name].metrics = {"eval_f1": toy_f1(by_name[name].assignments)}
        free += 1
    return trials


def random_history(size: int) -> list[TrialRecord]:
    """1,000 random seed-000 configurations at full budget (for the plain-TPE reference)."""
    import numpy as np

    from kftune.hpo.simple import sample_assignment

    space = SearchSpace.from_katib(SEED000)
    rng = np.random.default_rng(0)
    out = []
    for i in range(size):
        a = sample_assignment(space, rng)
        status = "Running" if i >= size - WORKERS else "Succeeded"
        metrics = {} if status == "Running" else {"eval_f1": toy_f1(a)}
        out.append(TrialRecord(f"exp-{i:05d}", a, status, metrics))
    return out


def percentiles(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[min(len(samples) - 1, math.ceil(0.95 * len(samples)) - 1)]


def time_suggest(
    problem: Problem, trials: list[TrialRecord], repeat: int
) -> tuple[float, float, float, float, int]:
    """(warm p50, warm p95, cold p50, cold p95, suggestions returned). Warm: the service has
    seen these trial strings before (its per-parameter parse cache is filled), as on every
    request after the first; cold: that cache is emptied before each call."""
    algo = get_algorithm(problem.algorithm_name)
    algo.suggest(problem, trials, 1)  # warm-up: imports
    warm, cold = [], []
    got = 0
    for _ in range(repeat):
        clear_caches(problem.space)
        t0 = time.perf_counter()
        algo.suggest(problem, trials, 1)
        cold.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        got = len(algo.suggest(problem, trials, 1))
        warm.append((time.perf_counter() - t0) * 1e3)
    return (*percentiles(warm), *percentiles(cold), got)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--target-ms", type=float, default=50.0)
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    asha_hist = history(
        make_problem("asha", {"resource_name": "num_epochs", "sampler": "random"}), args.trials
    )
    bohb_hist = history(
        make_problem("bohb", {"resource_name": "num_epochs", "num_iterations": "1000"}), args.trials
    )
    flat_hist = random_history(args.trials)
    print(f"built histories in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    rungs = {}
    for t in asha_hist:
        rungs[t.labels["kftune.io/rung"]] = rungs.get(t.labels["kftune.io/rung"], 0) + 1
    cases = [
        (
            "asha (sampler tpe)",
            make_problem("asha", {"resource_name": "num_epochs", "sampler": "tpe"}),
            asha_hist,
        ),
        (
            "asha (sampler random)",
            make_problem("asha", {"resource_name": "num_epochs", "sampler": "random"}),
            asha_hist,
        ),
        ("bohb", make_problem("bohb", {"resource_name": "num_epochs", "num_iterations": "1000"}), bohb_hist),
        ("tpe (Optuna, reference)", make_problem("tpe", {}), flat_hist),
    ]
    print(
        f"suggest(n=1) latency with {args.trials} past trials ({WORKERS} running), {args.repeat} calls each"
    )
    print(
        f"asha history per rung (budget 1/3/9): {rungs.get('0', 0)}/{rungs.get('1', 0)}/{rungs.get('2', 0)}"
    )
    print()
    print(f"{'':<26}{'---- warm ----':>18}{'---- cold ----':>18}")
    print(
        f"{'algorithm':<26}{'p50 ms':>9}{'p95 ms':>9}{'p50 ms':>9}{'p95 ms':>9}{'cold p50 vs tpe':>17}"
        f"  target p95 <= {args.target_ms:g} ms"
    )
    results = [(label, *time_suggest(prob, trials, args.repeat)) for label, prob, trials in cases]
    ref = results[-1][3]
    ok = True
    for label, p50, p95, c50, c95, got in results:
        verdict = "" if label.startswith("tpe") else ("ok" if max(p95, c95) <= args.target_ms else "MISSED")
        ok = ok and verdict != "MISSED"
        note = "" if got == 1 else f"  (returned {got})"
        print(f"{label:<26}{p50:>9.1f}{p95:>9.1f}{c50:>9.1f}{c95:>9.1f}{c50 / ref:>16.2f}x  {verdict}{note}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
