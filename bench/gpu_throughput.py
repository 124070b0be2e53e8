"""GPU training throughput: plain HF ``Trainer`` vs ``kftune train``, one trial and K trials per GPU.

One run, side by side, on a BERT-base-size token classifier (random init, 9 labels, CoNLL-like
sentence lengths, ~27 tokens; ``bench/gpu_common.py``):

- the measured bf16 dense peak of this GPU (8192^3 bf16 matmul, median of 20 after warm-up);
- plain ``Trainer`` (``bench/gpu_hf_run.py``), batch 32: fp32 and bf16 padded to 128, bf16 with
  dynamic padding + length grouping;
- ``kftune train``, bf16, batch 16/32/64 with its defaults on CUDA (fast path, ``torch.compile``);
  batch 32 also with the fast path but no compile, and with the plain path; fp32 at batch 32;
- K = 2, 4, 8 ``kftune train`` processes at once on the one GPU (batch 32, bf16), under NVIDIA
  MPS when ``nvidia-cuda-mps-control`` works here, else plain time-slicing (and both when there is
  time), with ``nvidia-smi`` sampling utilisation and memory.

Every run is a separate process (clean memory peaks; as Katib runs trials). kftune runs train 3
epochs: epoch 1 holds start-up and compilation, epoch 2 gives the steady samples/s, epoch 3 is
profiled (``--profile-steps``: data / forward+backward / optimizer / host, ms per step). The
Trainer's steady rate is timed from its 20th step to the end. Useful MFU = steady samples/s x
useful FLOPs per sample (non-pad tokens, formula in gpu_common) / the measured peak. The K-trial
aggregate counts each process's epochs 2-3 inside the window where all K were past epoch 1.

    python bench/gpu_throughput.py --out /tmp/gpu-bench          # on the GPU machine
    python bench/gpu_throughput.py --smoke --out /tmp/smoke       # CPU check of the bench itself
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

import gpu_common  # noqa: E402

T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.0f}s] {msg}", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, a) -> None:
        self.a = a
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(a.work)
        self.work.mkdir(parents=True, exist_ok=True)
        scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK) else None
        self.scratch = Path(tempfile.mkdtemp(prefix="kftune-gpu-bench-", dir=scratch))
        self.results: dict = {"runs": {}, "shares": {}, "share_flags": a.share_flags}
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "2",
            "PYTHONUNBUFFERED": "1",
            "TORCHINDUCTOR_CACHE_DIR": str(self.work / "inductor-cache"),
        }
        self.mps_env: dict | None = None
        self.previous: set[str] = set()

    def key(self, name: str) -> str:
        """A row of --previous keeps its name; this run's twin becomes NAME_rerun."""
        return f"{name}_rerun" if name in self.previous else name

    def left(self) -> float:
        return self.a.deadline - (time.monotonic() - T0)

    def log_file(self, name: str):
        return open(self.out / "logs" / f"{name}.log", "w")  # noqa: SIM115

    # ------------------------------------------------------------------ set-up
    def setup(self) -> None:
        (self.out / "logs").mkdir(exist_ok=True)
        import torch

        size = "smoke" if self.a.smoke else "base"
        self.data, self.model = gpu_common.prepare(self.work, self.a.train, self.a.dev, size)
        self.shape = gpu_common.model_shape(self.model)
        lengths = gpu_common.token_lengths(self.data, self.model)
        self.flops = gpu_common.useful_flops_per_sample(lengths, self.shape)
        cuda = torch.cuda.is_available()
        self.results["env"] = {
            "date": datetime.date.today().isoformat(),
            "gpu": torch.cuda.get_device_name(0) if cuda else "none (CPU)",
            "torch": torch.__version__,
            "transformers": __import__("transformers").__version__,
            "cpus": os.cpu_count(),
            "train_sentences": int(len(lengths)),
            "mean_tokens": round(float(lengths.mean()), 2),
            "model": self.shape,
            "useful_gflops_per_sample": round(self.flops / 1e9, 3),
        }
        say(f"env {self.results['env']}")
        self.cuda = cuda

    def peak(self) -> None:
        import torch

        if not self.cuda:
            self.results["peak_tflops"] = None
            return
        n = 8192
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        for _ in range(5):
            a @ b
        times = []
        for _ in range(20):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            a @ b
            e.record()
            e.synchronize()
            times.append(s.elapsed_time(e) / 1000)
        self.results["peak_tflops"] = 2 * n**3 / statistics.median(times) / 1e12
        del a, b
        torch.cuda.empty_cache()
        say(f"bf16 dense peak {self.results['peak_tflops']:.0f} TFLOP/s")

    def mps_start(self) -> None:
        """Start an MPS control daemon in our own pipe directory; keep it only if a client works."""
        exe = shutil.which("nvidia-cuda-mps-control")
        info = {"binary": exe, "works": False}
        self.results["mps"] = info
        if not exe or not self.cuda:
            return
        pipe, logs = self.work / "mps-pipe", self.work / "mps-log"
        pipe.mkdir(exist_ok=True)
        logs.mkdir(exist_ok=True)
        env = {**self.env, "CUDA_MPS_PIPE_DIRECTORY": str(pipe), "CUDA_MPS_LOG_DIRECTORY": str(logs)}
        try:
            r = subprocess.run([exe, "-d"], env=env, capture_output=True, text=True, timeout=30)
            info["start_rc"] = r.returncode
            probe = subprocess.run(
                [sys.executable, "-c", "import torch;x=torch.ones(1024,device='cuda');print(float(x.sum()))"],
                env=env, capture_output=True, text=True, timeout=90,
            )  # fmt: skip
            info["client_rc"] = probe.returncode
            info["client_err"] = probe.stderr[-400:]
            servers = subprocess.run(
                [exe], input="get_server_list\n", env=env, capture_output=True, text=True, timeout=30
            )
            info["servers"] = servers.stdout.strip()
            info["works"] = (
                probe.returncode == 0 and probe.stdout.strip() == "1024.0" and bool(servers.stdout.strip())
            )
        except (OSError, subprocess.SubprocessError) as exc:
            info["error"] = repr(exc)
        if info["works"]:
            self.mps_env = env
        else:
            self.mps_stop(env)
        say(f"MPS: {info}")

    def mps_stop(self, env: dict | None = None) -> None:
        env = env or self.mps_env
        if env is None:
            return
        subprocess.run(
            ["nvidia-cuda-mps-control"], input="quit\n", env=env, capture_output=True, text=True, timeout=30
        )
        time.sleep(1)

    # ------------------------------------------------------------------ runs
    def kftune_cmd(self, out: Path, batch: int, precision: str, seed: int, extra: list[str]) -> list[str]:
        return [
            sys.executable, "-m", "kftune", "train", "--task", "ner", "--data", str(self.data),
            "--model", str(self.model), "--output-dir", str(out), "--num-epochs", str(self.a.epochs),
            "--per-device-train-batch-size", str(batch), "--precision", precision, "--learning-rate", "1e-4",
            "--seed", str(seed), "--keep", "none", "--tracking", "off", "--num-threads", "2",
            *(["--device", "cpu"] if not self.cuda else []), *extra,
        ]  # fmt: skip

    def kftune(self, name: str, batch: int = 32, precision: str = "bf16", extra: list[str] = ()) -> None:
        if self.left() < 60:
            say(f"skip {name}: deadline")
            return
        out = self.scratch / name
        cmd = self.kftune_cmd(out, batch, precision, 0, ["--profile-steps", "20", *extra])
        say(f"run {name}: {' '.join(cmd[3:])}")
        t = time.monotonic()
        with self.log_file(name) as log:
            try:
                rc = subprocess.run(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=min(self.left(), 400)).returncode  # fmt: skip
            except subprocess.TimeoutExpired:
                rc = "timeout"
        r = {"kind": "kftune", "batch": batch, "precision": precision, "extra": list(extra), "rc": rc,
             "wall_s": round(time.monotonic() - t, 1)}  # fmt: skip
        mpath = out / "metrics.json"
        if mpath.is_file():
            m = json.loads(mpath.read_text())
            shutil.copy(mpath, self.out / "logs" / f"{name}.metrics.json")
            hist = m.get("history", [])
            rates = [h["train_samples_per_second"] for h in hist]
            r.update(
                status=m["status"],
                epoch_rates=[round(x, 1) for x in rates],
                steady=rates[1] if len(rates) > 1 else (rates[0] if rates else None),
                f1=[round(h.get("eval_f1", float("nan")), 4) for h in hist],
                fast_path=m.get("fast_path"),
                profile=m.get("profile"),
                gpu=m.get("gpu"),
                timings=m.get("timings"),
            )
        self.results["runs"][self.key(name)] = r
        shutil.rmtree(out, ignore_errors=True)
        say(
            f"done {name}: rc {rc}, steady {r.get('steady')}, epochs {r.get('epoch_rates')}, f1 {r.get('f1')}"
        )

    def hf(self, name: str, precision: str, padding: str, batch: int = 32) -> None:
        if self.left() < 45:
            say(f"skip {name}: deadline")
            return
        cmd = [sys.executable, str(ROOT / "bench" / "gpu_hf_run.py"), "--data", str(self.data), "--model",
               str(self.model), "--out", str(self.scratch / name), "--precision", precision, "--padding", padding,
               "--batch-size", str(batch)]  # fmt: skip
        say(f"run {name}")
        t = time.monotonic()
        r: dict = {"kind": "hf", "batch": batch, "precision": precision, "padding": padding}
        with self.log_file(name) as log:
            try:
                proc = subprocess.run(cmd, env=self.env, stdout=subprocess.PIPE, stderr=log, text=True,
                                      timeout=min(self.left(), 300))  # fmt: skip
                r["rc"] = proc.returncode
                for line in proc.stdout.splitlines():
                    if line.startswith("RESULT "):
                        res = json.loads(line[7:])
                        r.update(res, steady=res["steady_samples_per_second"])
            except subprocess.TimeoutExpired:
                r["rc"] = "timeout"
        r["wall_s"] = round(time.monotonic() - t, 1)
        self.results["runs"][self.key(name)] = r
        shutil.rmtree(self.scratch / name, ignore_errors=True)
        say(f"done {name}: {r.get('rc')}, steady {r.get('steady')}, whole {r.get('samples_per_second')}")

    def share(self, k: int, mps: bool, batch: int = 32) -> None:
        name = f"share_k{k}_{'mps' if mps else 'timeslice'}"
        if self.left() < 90:
            say(f"skip {name}: deadline")
            return
        env = self.mps_env if mps else self.env
        outs = [self.scratch / name / f"t{i}" for i in range(k)]
        say(f"run {name}")
        smi = None
        if self.cuda:
            smi_log = open(self.out / "logs" / f"{name}.smi.csv", "w")  # noqa: SIM115
            smi = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=timestamp,utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                 "-lms", "500"], stdout=smi_log, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        t = time.monotonic()
        procs, logs = [], []
        for i, out in enumerate(outs):
            log = self.log_file(f"{name}_t{i}")
            logs.append(log)
            cmd = self.kftune_cmd(out, batch, "bf16", i, self.a.share_flags.split())
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
        rcs = []
        for p in procs:
            try:
                rcs.append(p.wait(timeout=max(10, self.left())))
            except subprocess.TimeoutExpired:
                p.kill()
                rcs.append("timeout")
        for log in logs:
            log.close()
        if smi is not None:
            smi.terminate()
            smi.wait()
        wall = time.monotonic() - t
        metrics = []
        for out in outs:
            mp = out / "metrics.json"
            metrics.append(json.loads(mp.read_text()) if mp.is_file() else None)
        r = {"k": k, "mps": mps, "rcs": rcs, "wall_s": round(wall, 1), **aggregate(metrics)}
        if smi is not None:
            r.update(smi_summary(self.out / "logs" / f"{name}.smi.csv"))
        self.results["shares"][name] = r
        shutil.rmtree(self.scratch / name, ignore_errors=True)
        say(f"done {name}: {r}")

    def finish(self) -> None:
        self.mps_stop()
        shutil.rmtree(self.scratch, ignore_errors=True)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str))
        table = render(self.results, getattr(self, "flops", 0.0))
        (self.out / "table.md").write_text(table)
        logs = self.out / "logs"
        if logs.is_dir():  # one archive: the device tool brings back at most 8 files
            import tarfile

            with tarfile.open(self.out / "logs.tgz", "w:gz") as tar:
                tar.add(logs, arcname="logs")
            shutil.rmtree(logs)
        print(table)


def aggregate(metrics: list[dict | None]) -> dict:
    """Aggregate samples/s of concurrent trials: epochs >= 2 inside the window where every trial
    was past its first epoch and none had finished (each epoch's rate taken as uniform)."""
    ok = [m for m in metrics if m and len(m.get("history", [])) >= 2]
    if not ok:
        return {"aggregate": None, "completed": 0}
    epochs = [[(h["train_started_unix"], h["train_ended_unix"], h["train_samples_per_second"]) for h in m["history"][1:]] for m in ok]  # fmt: skip
    lo = max(e[0][0] for e in epochs)
    hi = min(e[-1][1] for e in epochs)
    method = "overlap"
    if hi - lo < 2.0:  # no common window: total samples over the envelope
        lo, hi = min(e[0][0] for e in epochs), max(e[-1][1] for e in epochs)
        method = "envelope"
    samples = 0.0
    for trial in epochs:
        for start, end, rate in trial:
            samples += max(0.0, min(end, hi) - max(start, lo)) * rate
    per_trial = [statistics.mean(x[2] for x in e) for e in epochs]
    peaks = [m["gpu"]["peak_reserved_bytes"] for m in ok if m.get("gpu")]
    return {
        "aggregate": samples / (hi - lo) if hi > lo else None,
        "window_s": round(hi - lo, 1),
        "method": method,
        "completed": len(ok),
        "per_trial_mean": round(statistics.mean(per_trial), 1),
        "f1_last": [round(m["history"][-1].get("eval_f1", float("nan")), 4) for m in ok],
        "peak_reserved_gib_max": round(max(peaks) / 2**30, 2) if peaks else None,
        "compile_first_step_s": [m.get("fast_path", {}).get("first_step_s") for m in ok],
    }


def smi_summary(path: Path) -> dict:
    util, mem = [], []
    for line in path.read_text().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[1].isdigit():
            util.append(int(parts[1]))
            mem.append(int(parts[2]))
    if not util:
        return {}
    busy = sorted(util)[len(util) // 4 :]  # drop the start-up quarter (lowest readings)
    return {"smi_util_median": statistics.median(busy), "smi_mem_max_mib": max(mem)}


def render(res: dict, flops: float) -> str:
    env = res.get("env", {})
    peak = res.get("peak_tflops")

    def mfu(rate):
        if rate is None or not peak:
            return "-"
        return f"{100 * rate * flops / (peak * 1e12):.1f}%"

    def fmt(x, spec=".0f"):
        return "-" if x is None else format(x, spec)

    lines = [
        f"GPU: {env.get('gpu')} | date {env.get('date')} | torch {env.get('torch')} | transformers "
        f"{env.get('transformers')} | measured bf16 dense peak {fmt(peak)} TFLOP/s",
        f"model: BERT-base-size token classifier ({env.get('model', {}).get('params', 0) / 1e6:.1f} M params), "
        f"{env.get('train_sentences')} train sentences, mean {env.get('mean_tokens')} tokens, "
        f"useful {env.get('useful_gflops_per_sample')} GFLOP per training sample",
        "",
        "| run | setting | steady samples/s | whole-run samples/s | useful MFU | vs best plain Trainer | peak GiB | last F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    runs = res.get("runs", {})
    hf_best = max(
        (r.get("steady") or 0 for r in runs.values() if r["kind"] == "hf" and r["batch"] == 32), default=0
    )
    for name, r in runs.items():
        steady = r.get("steady")
        if r["kind"] == "hf":
            whole = r.get("samples_per_second")
            peak_b = r.get("peak_reserved_bytes")
            f1 = "-"
            label = f"HF Trainer b{r['batch']} {r['precision']} {'pad 128' if r['padding'] == 'max_length' else 'dynamic+group'}"
        else:
            rates = r.get("epoch_rates") or []
            whole = rates[0] if rates else None
            peak_b = (r.get("gpu") or {}).get("peak_reserved_bytes")
            f1 = fmt((r.get("f1") or [None])[-1], ".4f")
            fp = r.get("fast_path") or {}
            how = "plain path" if not fp.get("enabled") else f"fast path, compile {fp.get('compile')}"
            label = f"kftune b{r['batch']} {r['precision']} ({how})"
        if r.get("rc") not in (0, None):
            label += f" [rc {r.get('rc')}]"
        ratio = f"{steady / hf_best:.2f}x" if steady and hf_best else "-"
        lines.append(f"| {name} | {label} | {fmt(steady)} | {fmt(whole)} | {mfu(steady)} | {ratio} | "
                     f"{fmt(peak_b / 2**30 if peak_b else None, '.1f')} | {f1} |")  # fmt: skip
    lines += [
        "",
        "kftune step breakdown (ms per optimizer step; issue = host time, done = with device sync):",
        "",
    ]
    lines += ["| run | data | fwd+bwd | optimizer | host | profiled step | unprofiled step | first step (compile) s |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, r in runs.items():
        p = r.get("profile")
        if not p:
            continue
        i, d = p["issue_ms"], p["done_ms"]
        cells = " | ".join(
            f"{i[k]:.2f} / {d[k]:.2f}" for k in ("data", "forward_backward", "optimizer", "host")
        )
        first = (r.get("fast_path") or {}).get("first_step_s")
        lines.append(f"| {name} | {cells} | {p['step_ms_profiled']:.2f} | {fmt(p.get('step_ms_unprofiled'), '.2f')} | {fmt(first, '.1f')} |")  # fmt: skip
    comp, eager = runs.get("kftune_b32_compiled") or {}, runs.get("kftune_b32") or {}
    if comp.get("steady") and eager.get("steady") and eager.get("profile") and comp.get("profile"):
        first_c = (comp.get("fast_path") or {}).get("first_step_s") or 0.0
        warm = ((runs.get("kftune_b32_compiled_warm") or {}).get("fast_path") or {}).get("first_step_s")
        t_c = 1 / comp["steady"] * 32
        t_e = 1 / eager["steady"] * 32
        gain = t_e - t_c
        lines += [
            "",
            f"torch.compile at batch 32: steady {comp['steady'] / eager['steady']:.2f}x the eager fast path; "
            f"first (compiling) step {first_c:.1f} s, {fmt(warm, '.1f')} s with a warm Inductor cache; "
            + (
                f"pays off after ~{first_c / gain:.0f} steps (warm cache: ~{(warm or 0) / gain:.0f})"
                if gain > 0
                else "never pays off"
            )
            + f" ({t_e * 1000:.2f} -> {t_c * 1000:.2f} ms per step)",
        ]
    shares = res.get("shares", {})
    if shares:
        base = max(
            (r.get("steady") or 0 for r in runs.values() if r["kind"] == "hf" and r["batch"] == 32), default=0
        )
        lines += ["", "K trials on one GPU (kftune, bf16, batch 32 each):", ""]
        lines += ["| K | sharing | aggregate samples/s | per trial | vs one plain Trainer | aggregate useful MFU | GPU util (smi median) | max GPU mem MiB | peak/trial GiB |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        one = runs.get("kftune_b32_compiled" if "compile" in res.get("share_flags", "") else "kftune_b32")
        if one and one.get("steady"):
            rate = one["steady"]
            peak_one = (one.get("gpu") or {}).get("peak_reserved_bytes")
            lines.append(
                f"| 1 | alone | {rate:.0f} | {rate:.0f} | {f'{rate / base:.2f}x' if base else '-'} | {mfu(rate)} | - | - | "
                f"{fmt(peak_one / 2**30 if peak_one else None, '.2f')} |"
            )
        for r in shares.values():
            agg = r.get("aggregate")
            lines.append(
                f"| {r['k']} | {'MPS' if r['mps'] else 'time-slicing'} | {fmt(agg)} | {fmt(r.get('per_trial_mean'))} | "
                f"{f'{agg / base:.2f}x' if agg and base else '-'} | {mfu(agg)} | {fmt(r.get('smi_util_median'))}% | "
                f"{fmt(r.get('smi_mem_max_mib'))} | {fmt(r.get('peak_reserved_gib_max'), '.2f')} |"
            )
    mps = res.get("mps")
    if mps is not None:
        lines += ["", f"MPS: {'works' if mps.get('works') else 'not available'} ({mps.get('binary')})"]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=os.environ.get("OUT") or "gpu-bench-out")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "kftune-gpu-bench-work"))
    p.add_argument("--train", type=int, default=6000, help="training sentences (CoNLL-like)")
    p.add_argument("--dev", type=int, default=300)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--deadline", type=float, default=540, help="seconds; later runs are skipped past it")
    p.add_argument("--only", default="", help="comma list of run names to do (default: all)")
    p.add_argument("--shares", default="2,4,8")
    p.add_argument("--timeslice-k", default="4", help="K values also run without MPS (when MPS works)")
    p.add_argument(
        "--share-flags", default="--compile default", help="extra kftune train flags of the K-trial runs"
    )
    p.add_argument("--previous", help="results.json of an earlier run: its runs join this table")
    p.add_argument("--smoke", action="store_true", help="tiny model, CPU: checks the bench itself")
    a = p.parse_args()
    if a.smoke:
        a.train, a.dev, a.epochs = min(a.train, 400), min(a.dev, 40), 2
    else:
        import torch

        if not torch.cuda.is_available():  # `make bench` on a CPU machine: nothing to measure here
            print(
                "bench/gpu_throughput.py: no CUDA GPU here, nothing measured; run it on a GPU machine "
                "(docs/gpu.md, 'Measuring'), or with --smoke to check the bench itself on CPU"
            )
            return 0

    b = Bench(a)
    if a.previous:
        prev = json.loads(Path(a.previous).read_text())
        b.results["runs"].update(prev.get("runs", {}))
        b.previous = set(prev.get("runs", {}))
        b.results["shares"].update(prev.get("shares", {}))
        b.results.setdefault("peak_tflops", prev.get("peak_tflops"))
        b.results.setdefault("mps", prev.get("mps"))
    only = set(filter(None, a.only.split(",")))

    def want(name: str) -> bool:
        return not only or name in only

    try:
        b.setup()
        if want("peak"):
            b.peak()
        c = ["--compile", "default"]
        plan = [  # priority order: past --deadline the rest is skipped
            ("kftune_b32_compiled", lambda: b.kftune("kftune_b32_compiled", 32, extra=c)),  # cold compile
            # the same again: the Inductor cache is warm now (what every trial after the first sees)
            ("kftune_b32_compiled_warm", lambda: b.kftune("kftune_b32_compiled_warm", 32, extra=c)),
            ("hf_bf16_pad128", lambda: b.hf("hf_bf16_pad128", "bf16", "max_length")),
            ("hf_fp32_pad128", lambda: b.hf("hf_fp32_pad128", "fp32", "max_length")),
            ("kftune_b32", lambda: b.kftune("kftune_b32", 32)),
            ("kftune_b32_plain", lambda: b.kftune("kftune_b32_plain", 32, extra=["--fast-path", "off"])),
            ("kftune_b16_compiled", lambda: b.kftune("kftune_b16_compiled", 16, extra=c)),
            ("kftune_b64_compiled", lambda: b.kftune("kftune_b64_compiled", 64, extra=c)),
            ("hf_bf16_dynamic", lambda: b.hf("hf_bf16_dynamic", "bf16", "dynamic")),
            ("kftune_b16", lambda: b.kftune("kftune_b16", 16)),
            ("kftune_b64", lambda: b.kftune("kftune_b64", 64)),
            ("kftune_b32_fp32", lambda: b.kftune("kftune_b32_fp32", 32, "fp32")),
            ("kftune_b32_fp32_compiled", lambda: b.kftune("kftune_b32_fp32_compiled", 32, "fp32", extra=c)),
            ("kftune_b32_pm1", lambda: b.kftune("kftune_b32_pm1", 32, extra=["--pad-multiple", "1"])),
        ]
        for name, fn in plan:
            if want(name):
                fn()
        ks = [int(x) for x in a.shares.split(",") if x]
        if ks and want("share"):
            b.mps_start()
            for k in ks:
                b.share(k, mps=b.mps_env is not None)
            if b.mps_env is not None:
                b.mps_stop()
                b.mps_env = None
                for k in [int(x) for x in a.timeslice_k.split(",") if x]:
                    b.share(k, mps=False)
        if want("kftune_b32_reduce_overhead"):
            b.kftune("kftune_b32_reduce_overhead", 32, extra=["--compile", "reduce-overhead"])
    finally:
        b.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
