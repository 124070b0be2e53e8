"""GetSuggestions latency over real gRPC with 1,000 past trials (issue #4, benchmark c; target
p95 <= 50 ms), next to the pure function that bench/suggest_latency.py times.

The same 1,000-trial histories as bench/suggest_latency.py (seed-000 space, 8 simulated workers,
the last 8 trials running). For each algorithm, side by side in one run:

- ``suggest()``       the pure function on a fresh Problem per call (what a stateless service
                      without a memo would do: every value parsed again)
- ``servicer``        ``SuggestionService.GetSuggestions`` in this process: request -> Problem
                      (memoised by bytes) + 1,000 TrialRecords (each memoised by its message's
                      bytes, as a live service sees the same trials on every call) -> suggest
                      -> reply message
- ``gRPC``            a ``GetSuggestionsRequest`` (built once, as Katib's Go controller would)
                      sent to ``kftune katib serve`` running as a separate process on 127.0.0.1,
                      round trip measured by the client: serialisation, transport, conversion,
                      the algorithm, the reply

Run: ``PYTHONPATH=src .venv/bin/python bench/grpc_latency.py [--trials 1000] [--repeat 40]``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import grpc  # noqa: E402
from suggest_latency import SEED000, WORKERS, history, make_problem, percentiles  # noqa: E402

from kftune.hpo import Problem, get_algorithm  # noqa: E402
from kftune.katib import proto, service  # noqa: E402


def katib_spec(problem: Problem) -> dict:
    return {
        "parameters": SEED000,
        "objective": {"type": "maximize", "objectiveMetricName": "eval_f1"},
        "algorithm": {
            "algorithmName": problem.algorithm_name,
            "algorithmSettings": [{"name": k, "value": v} for k, v in problem.settings.items()],
        },
        "parallelTrialCount": WORKERS,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kftune",
            "katib",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                stub.Check(health_pb2.HealthCheckRequest(service=proto.KATIB_HEALTH_SERVICE), timeout=1)
                return proc
            except grpc.RpcError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("kftune katib serve did not start") from None
                time.sleep(0.2)


def timed(fn, repeat: int) -> tuple[float, float]:
    fn()  # warm-up
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    return percentiles(samples)


class _Context:
    def abort(self, code, message):
        raise RuntimeError(f"{code}: {message}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--target-ms", type=float, default=50.0)
    args = parser.parse_args(argv)

    asha_tpe = make_problem("asha", {"resource_name": "num_epochs", "sampler": "tpe"})
    asha_random = make_problem("asha", {"resource_name": "num_epochs", "sampler": "random"})
    bohb = make_problem("bohb", {"resource_name": "num_epochs", "num_iterations": "1000"})
    t0 = time.perf_counter()
    asha_hist = history(asha_random, args.trials)
    bohb_hist = history(bohb, args.trials)
    print(f"built histories in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    cases = [
        ("asha (sampler tpe)", asha_tpe, asha_hist),
        ("asha (sampler random)", asha_random, asha_hist),
        ("bohb", bohb, bohb_hist),
    ]

    port = free_port()
    proc = start_serve(port)
    servicer = service.SuggestionService()
    ok = True
    try:
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", service.MAX_MESSAGE_BYTES)]
        ) as channel:
            stub = proto.SuggestionStub(channel)
            print(
                f"GetSuggestions(n=1) latency with {args.trials} past trials ({WORKERS} running), {args.repeat} calls each"
            )
            print(f"{'':<24}{'suggest()':>16}{'servicer':>16}{'gRPC (process)':>18}")
            print(
                f"{'algorithm':<24}{'p50':>8}{'p95':>8}{'p50':>8}{'p95':>8}{'p50':>9}{'p95':>9}  {'gRPC/suggest p50':>17}  target p95 <= {args.target_ms:g} ms"
            )
            for label, problem, trials in cases:
                spec = katib_spec(problem)
                message = service.experiment_message("bench", spec)
                request = proto.pb2().GetSuggestionsRequest(
                    experiment=message,
                    trials=[service.trial_message(t, message.spec.objective) for t in trials],
                    current_request_number=1,
                    total_request_number=len(trials) + 1,
                )
                algo = get_algorithm(problem.algorithm_name)
                pure = timed(
                    lambda spec=spec, trials=trials, algo=algo: algo.suggest(
                        Problem.from_katib(spec), trials, 1
                    ),
                    args.repeat,
                )
                local = timed(
                    lambda request=request: servicer.GetSuggestions(request, _Context()), args.repeat
                )
                remote = timed(lambda request=request: stub.GetSuggestions(request, timeout=30), args.repeat)
                verdict = "ok" if remote[1] <= args.target_ms else "MISSED"
                ok = ok and verdict == "ok"
                print(
                    f"{label:<24}{pure[0]:>8.1f}{pure[1]:>8.1f}{local[0]:>8.1f}{local[1]:>8.1f}{remote[0]:>9.1f}{remote[1]:>9.1f}"
                    f"  {remote[0] / pure[0]:>16.2f}x  {verdict}"
                )
            print(f"request size: {request.ByteSize() / 1024:.0f} KiB")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
