"""``kftune katib trials DIR``: the trials of a local run, like ``kubectl get trials``.

Columns: NAME, TYPE (the trial's latest condition: Created, Running, Succeeded, Failed,
EarlyStopped, Killed, MetricsUnavailable), STATUS (``True``, as kubectl prints it), the objective
(its value under the metric strategy), the parameters, AGE. ``-o json`` prints every trial with
its labels, argv, pid, times, observation and logs; ``-o wide`` adds the labels and exit codes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from kftune.errors import UserError
from kftune.katib.runner_progress import format_number, format_params, format_seconds
from kftune.katib.runner_status import objective_text
from kftune.katib.store import DB_NAME, Store, TrialRow, db_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kftune katib trials",
        description="List the trials of a local run (kftune katib run --local) like `kubectl get trials`.",
    )
    p.add_argument("work_dir", type=Path, metavar="DIR", help="the run's --work-dir (holds experiment.db)")
    p.add_argument("-o", "--output", choices=("table", "wide", "json"), default="table")
    return p


def trial_json(row: TrialRow, objective: str, strategy: str) -> dict[str, Any]:
    value = objective_text(row, objective, strategy)
    return {
        "name": row.name,
        "labels": row.labels,
        "parameterAssignments": [{"name": k, "value": v} for k, v in row.assignments.items()],
        "condition": row.status,
        "reason": row.reason,
        "message": row.message,
        "objective": {"name": objective, "value": None if value == "unavailable" else value},
        "observation": {"metrics": row.observation} if row.observation is not None else None,
        "argv": row.argv,
        "workingDir": row.cwd,
        "outputDir": row.output_dir,
        "pid": row.pid,
        "attempt": row.attempt,
        "exitCode": row.exit_code,
        "creationTimestamp": _iso(row.created),
        "startTime": _iso(row.started),
        "completionTime": _iso(row.finished),
        "logs": {"stdout": row.log_out, "stderr": row.log_err},
    }


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def table(rows: list[TrialRow], objective: str, strategy: str, wide: bool = False) -> str:
    now = time.time()
    head = ["NAME", "TYPE", "STATUS", objective.upper(), "AGE", "PARAMS"]
    if wide:
        head[4:4] = ["EXIT", "LABELS"]
    lines = [head]
    for r in rows:
        value = objective_text(r, objective, strategy)
        cells = [
            r.name,
            r.status,
            "True",
            "" if value == "unavailable" else format_number(value),
            format_seconds(now - r.created),
            format_params(r.assignments),
        ]
        if wide:
            labels = ",".join(
                f"{k}={v}" for k, v in r.labels.items() if not k.startswith("katib.kubeflow.org/")
            )
            cells[4:4] = ["" if r.exit_code is None else str(r.exit_code), labels or "-"]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head) - 1)]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "   " + line[-1]
        for line in lines
    )


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    path = db_path(args.work_dir)
    if not path.is_file():
        raise UserError(
            f"{args.work_dir}: no {DB_NAME} here; pass the --work-dir of a `kftune katib run --local`"
        )
    store = Store.open(path)
    try:
        rows = store.trials()
        spec = store.get_meta("spec") or {}
        obj = (spec.get("spec") or {}).get("objective") or {}
        metric = str(obj.get("objectiveMetricName") or "objective")
        strategies = {
            s.get("name"): s.get("value") for s in obj.get("metricStrategies") or [] if isinstance(s, dict)
        }
        default = {"minimize": "min", "maximize": "max"}.get(str(obj.get("type")), "latest")
        strategy = strategies.get(metric) or default
        if args.output == "json":
            data = {
                "experiment": store.get_meta("experiment"),
                "condition": store.get_meta("condition"),
                "items": [trial_json(r, metric, strategy) for r in rows],
            }
            json.dump(data, sys.stdout, indent=2)
            sys.stdout.write("\n")
        elif not rows:
            print(f"No trials in {args.work_dir}.")
        else:
            print(table(rows, metric, strategy, wide=args.output == "wide"))
    finally:
        store.close()
    return 0
