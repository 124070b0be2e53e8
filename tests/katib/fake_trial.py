"""A fast stand-in for ``kftune train`` that exercises the local runner's mechanics.

It follows the trainer's contract where the runner relies on it: one metric line per epoch
(``epoch=N eval_f1=... eval_loss=...``) printed after ``OUTPUT_DIR/last/`` is written,
``--resume-from DIR`` continues from ``DIR/last/`` (relative to the working dir), ``status=nan_loss``
and exit 3 on a NaN, exit 143 on SIGTERM. The score is a fixed function of the learning rate and
the epoch (best at lr 1e-3), so searches have a known optimum. Extra switches make it fail, sleep,
write a File-collector metrics file, or record its argv and environment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path


def score(lr: float, epoch: int) -> float:
    closeness = max(0.0, 1.0 - abs(math.log10(lr) + 3.0) / 2.0)
    return round(closeness * (1.0 - 0.6**epoch), 6)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--output-dir", default=".")
    p.add_argument("--resume-from", default="")
    p.add_argument("--sleep", type=float, default=0.0, help="seconds per epoch")
    p.add_argument("--sleep-if-bad", type=float, default=0.0, help="seconds per epoch when the lr is far off")
    p.add_argument("--fail-at", type=int, default=0)
    p.add_argument("--nan-at", type=int, default=0)
    p.add_argument("--no-metrics", action="store_true")
    p.add_argument("--metrics-file", default="", help="also write metric lines here (File collector)")
    p.add_argument("--json", action="store_true", help="write --metrics-file as JSON lines")
    p.add_argument("--note", default="")
    p.add_argument("--record", default="", help="write argv/env/cwd as JSON to this file")
    p.add_argument("--noise", action="store_true", help="print non-metric chatter on stderr")
    p.add_argument("--mode", choices=("ok", "fail", "nan", "quiet"), default="ok")
    p.add_argument("--ignore-term", action="store_true", help="ignore SIGTERM (an unkillable orphan)")
    p.add_argument(
        "--sleep-once", nargs=2, metavar=("MARKER", "S"), help="sleep S s if MARKER is absent (create it)"
    )
    args = p.parse_args()
    if args.mode == "fail":
        args.fail_at = args.fail_at or 1
    elif args.mode == "nan":
        args.nan_at = args.nan_at or 1
    elif args.mode == "quiet":
        args.no_metrics = True

    signal.signal(signal.SIGTERM, signal.SIG_IGN if args.ignore_term else (lambda *_: sys.exit(143)))
    out = Path(args.output_dir)
    if args.record:
        Path(args.record).parent.mkdir(parents=True, exist_ok=True)
        Path(args.record).write_text(
            json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)}), encoding="utf-8"
        )
    start = 0
    if args.resume_from and args.resume_from != "none":
        state = Path(args.resume_from) / "last" / "state.json"
        if not state.is_file():
            print(f"cannot resume: {state} not found", file=sys.stderr)
            return 2
        start = json.loads(state.read_text())["epoch"]
        print(f"resuming from epoch {start}", file=sys.stderr)
    for epoch in range(start + 1, args.epochs + 1):
        if args.noise:
            print(f"training epoch {epoch} of {args.epochs}", file=sys.stderr, flush=True)
        if args.sleep_once and not Path(args.sleep_once[0]).exists():
            Path(args.sleep_once[0]).touch()
            time.sleep(float(args.sleep_once[1]))
        time.sleep(args.sleep + (args.sleep_if_bad if score(args.lr, 1) < 0.1 else 0.0))
        if epoch == args.fail_at:
            print(f"RuntimeError: boom at epoch {epoch}", file=sys.stderr)
            return 1
        if epoch == args.nan_at:
            print("status=nan_loss", flush=True)
            print("the loss became nan", file=sys.stderr)
            return 3
        f1 = score(args.lr, epoch)
        # last/ appears whole (a renamed directory) and then has its state.json replaced atomically:
        # a kill -9 at any point leaves a complete checkpoint or none, as the real trainer's swap does
        last = out / "last"
        state = json.dumps({"epoch": epoch, "lr": args.lr})
        if last.is_dir():
            (last / ".state.json.tmp").write_text(state)
            os.replace(last / ".state.json.tmp", last / "state.json")
        else:
            tmp = out / ".tmp-last"
            tmp.mkdir(parents=True, exist_ok=True)
            (tmp / "state.json").write_text(state)
            tmp.rename(last)
        if args.no_metrics:
            continue
        line = f"epoch={epoch} eval_f1={f1:.6f} eval_loss={1 - f1:.6f}"
        print(line, flush=True)
        if args.metrics_file:
            with open(args.metrics_file, "a", encoding="utf-8") as fh:
                if args.json:
                    fh.write(json.dumps({"eval_f1": f"{f1:.6f}", "eval_loss": 1 - f1}) + "\n")
                else:
                    fh.write(line + "\n")
    (out / "metrics.json").write_text(json.dumps({"status": "completed"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
