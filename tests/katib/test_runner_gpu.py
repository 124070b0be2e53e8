"""GPU placement in ``kftune katib run --local`` (``--gpus``, ``--trials-per-gpu``, ``--mps``):
the runner's scheduling of K trials per GPU within its memory, tested without a GPU: the GPUs are
stated with ``--gpus INDEX:MIB`` and the trials are scripted (``fake_trial.py``), which record the
environment the runner gave them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from runner_helpers import experiment_yaml, write_experiment

from kftune.cli import main as kftune_main
from kftune.errors import UserError
from kftune.katib.runner_gpu import GpuSettings, build_scheduler, parse_gpu_list, trainer_shape
from kftune.katib.store import Store
from kftune.train.gpu_share import MIB, ModelDims, estimate_mib

HAS_NVIDIA_SMI = shutil.which("nvidia-smi") is not None


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("KFTUNE_HOME", str(tmp_path / "home"))


def run(tmp_path: Path, text: str, *args: str, capsys) -> tuple[int, str, str, Path]:
    path = write_experiment(tmp_path, text)
    work = tmp_path / "w"
    rc = kftune_main(
        ["katib", "run", str(path), "--local", "--work-dir", str(work), "--progress", "plain", *args]
    )
    out, err = capsys.readouterr()
    return rc, out, err, work


def recording_experiment(tmp_path: Path, max_trials: int, parallel: int, sleep: float = 0.4) -> str:
    records = tmp_path / "records"
    return experiment_yaml(
        max_trials=max_trials,
        parallel=parallel,
        args=[
            "--lr",
            "${trialParameters.lr}",
            "--epochs",
            "2",
            "--sleep",
            str(sleep),
            "--record",
            f"{records}/${{trialParameters.trialName}}.json",
        ],
    )


# ------------------------------------------------------------------ units


def test_gpu_lists_parse_and_bad_ones_say_how_to_write_them():
    assert parse_gpu_list("0,1") == [(0, None), (1, None)]
    assert parse_gpu_list("0:81559, 3:40000") == [(0, 81559), (3, 40000)]
    for bad in ("gpu0", "0:lots", "0:0", "0,0", ""):
        with pytest.raises(UserError, match="--gpus"):
            parse_gpu_list(bad)


def test_no_gpu_means_no_placement_and_trials_run_as_before():
    said: list[str] = []
    assert (
        build_scheduler(GpuSettings(gpus="none", trials_per_gpu=4), Path("/nonexistent"), said.append) is None
    )
    if not HAS_NVIDIA_SMI:
        sched = build_scheduler(
            GpuSettings(gpus="auto", trials_per_gpu=4, mps=True), Path("/nonexistent"), said.append
        )
        assert sched is None
        assert any("no GPU found" in s for s in said)


@pytest.mark.skipif(HAS_NVIDIA_SMI, reason="this machine has nvidia-smi")
def test_a_gpu_without_its_memory_on_a_machine_without_nvidia_smi_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match=r"GPU 1 is not listed by nvidia-smi.*--gpus 1:MIB"):
        build_scheduler(GpuSettings(gpus="1"), tmp_path, print)
    with pytest.raises(UserError, match="--trials-per-gpu must be at least 1"):
        build_scheduler(GpuSettings(gpus="0:8000", trials_per_gpu=0), tmp_path, print)


def test_a_kftune_train_trial_books_its_estimate_then_its_measured_peak(tmp_path, kftune_home, monkeypatch):
    monkeypatch.setenv("KFTUNE_HOME", str(kftune_home))
    config = tmp_path / "cfg.yaml"
    config.write_text("max_length: 64\noptimizer: adamw\n")
    argv = [
        "python", "-m", "kftune", "train", "--task", "ner", "--data", "demo:ner", "--model", "tiny",
        "--output-dir", str(tmp_path / "t1"), "--per-device-train-batch-size", "16", f"--config={config}",
    ]  # fmt: skip
    shape, dims, source = trainer_shape(argv, str(tmp_path))
    assert (shape.batch, shape.max_length, shape.precision, shape.optimizer) == (16, 64, "bf16", "adamw")
    assert source.endswith("config.json") and dims.hidden < 768  # the tiny model's own dimensions
    assert trainer_shape(["python", "train.py", "--lr", "1"], None) is None

    sched = build_scheduler(GpuSettings(gpus="0:24000", trials_per_gpu=2), tmp_path, print)
    first = sched.trial("t1", argv, str(tmp_path))
    assert first.source == "estimate" and first.allocator_mib == estimate_mib(dims, shape)
    assert sched.place("t1", argv, str(tmp_path)) is not None
    out = tmp_path / "t1"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"gpu": {"peak_reserved_bytes": 1234 * MIB}}))
    assert sched.release("t1", str(out)) == 1234
    again = sched.trial("t2", argv, str(tmp_path))
    assert (again.source, again.allocator_mib) == ("measured", 1234)
    # later runs start informed: the book is a file in the work dir
    book = json.loads((tmp_path / "gpu-memory.json").read_text())
    assert list(book.values()) == [1234]


def test_an_unknown_model_is_estimated_with_bert_base_dimensions(tmp_path):
    argv = ["python", "-m", "kftune", "train", "--task", "ner", "--data", "demo:ner", "--model",
            "./no-such-model", "--output-dir", "o"]  # fmt: skip
    _, dims, source = trainer_shape(argv, str(tmp_path))
    assert dims == ModelDims.from_config({}) and "BERT-base" in source


# ------------------------------------------------------------------ the runner


def test_k_trials_per_gpu_within_memory_each_told_its_gpu_and_cap(tmp_path, capsys):
    """Two GPUs stated as 10,000 and 6,000 MiB, 3 slots each, trials booking 2,500 MiB: with the
    20% margin and 600 MiB of context a trial needs 3,600 MiB, so GPU 0 holds 2 at once and GPU 1
    one, although parallelTrialCount is 6: the rest wait, and every trial still runs."""
    text = recording_experiment(tmp_path, max_trials=8, parallel=6)
    rc, out, err, work = run(
        tmp_path, text, "--gpus", "0:10000,1:6000", "--trials-per-gpu", "3", "--gpu-memory-per-trial", "2500",
        capsys=capsys,
    )  # fmt: skip
    assert rc == 0, err
    assert "GPU placement: GPU 0 (10000 MiB), GPU 1 (6000 MiB); 3 trial(s) per GPU" in err
    assert "Waiting   for a GPU slot" in err
    store = Store.open(work / "experiment.db")
    rows = store.trials()
    assert len(rows) == 8 and all(r.status == "Succeeded" for r in rows)
    placed = {e["trial"]: e["data"] for e in store.events() if e["kind"] == "gpu-placed"}
    store.close()
    assert set(placed) == {r.name for r in rows}
    for row in rows:
        env = json.loads((tmp_path / "records" / f"{row.name}.json").read_text())["env"]
        gpu = placed[row.name]["gpu"]
        assert env["CUDA_VISIBLE_DEVICES"] == str(gpu)
        assert float(env["KFTUNE_GPU_MEMORY_FRACTION"]) == {0: 0.3, 1: 0.5}[gpu]  # 3,000 MiB cap / total
        assert placed[row.name]["booked_mib"] == 3600
    # at no moment more trials on a GPU than its memory allows (records: start/finish times)
    limit = {0: 2, 1: 1}
    for gpu in (0, 1):
        spans = [(r.started, r.finished) for r in rows if placed[r.name]["gpu"] == gpu]
        assert spans, f"no trial ran on GPU {gpu}"
        for start, _ in spans:
            at_once = sum(1 for s, f in spans if s <= start < f)
            assert at_once <= limit[gpu], (gpu, at_once)
    both = [r for r in rows if placed[r.name]["gpu"] == 0]
    assert any(sum(1 for s in both if s.started <= r.started < s.finished) == 2 for r in both), (
        "GPU 0 never ran two trials at once"
    )


def test_a_trial_that_fits_on_no_gpu_is_refused_before_anything_runs(tmp_path, capsys):
    text = recording_experiment(tmp_path, max_trials=2, parallel=1)
    rc, out, err, work = run(
        tmp_path, text, "--gpus", "0:10000", "--gpu-memory-per-trial", "20000", capsys=capsys
    )
    assert rc == 2
    assert "needs ~24600 MiB of GPU memory" in err and "the largest GPU has 9488 MiB usable" in err
    assert "lower --per-device-train-batch-size or --max-length" in err
    assert not (tmp_path / "records").exists()
    assert not (work / "experiment.db").exists()


def test_dry_run_shows_the_gpu_plan(tmp_path, capsys):
    text = recording_experiment(tmp_path, max_trials=4, parallel=4)
    rc, out, err, _ = run(
        tmp_path, text, "--dry-run", "--gpus", "0:24000", "--trials-per-gpu", "2", "--mps", capsys=capsys
    )
    assert rc == 0, err
    assert "note: GPU placement: GPU 0 (24000 MiB); 2 trial(s) per GPU at most" in err
    assert "parallelTrialCount 4 > 2 GPU slots" in err
    assert not (tmp_path / "w" / "mps").exists(), "a dry run starts no MPS daemon"


@pytest.mark.skipif(HAS_NVIDIA_SMI, reason="this machine has an MPS control binary maybe")
def test_mps_without_the_daemon_binary_says_so_and_time_slices(tmp_path, capsys):
    text = recording_experiment(tmp_path, max_trials=2, parallel=2, sleep=0.05)
    rc, _, err, _ = run(tmp_path, text, "--gpus", "0:24000", "--trials-per-gpu", "2", "--mps", capsys=capsys)
    assert rc == 0, err
    assert "--mps: no MPS (nvidia-cuda-mps-control not found); trials share each GPU by time-slicing" in err
    env = json.loads(next((tmp_path / "records").glob("*.json")).read_text())["env"]
    assert "CUDA_MPS_PIPE_DIRECTORY" not in env and env["CUDA_VISIBLE_DEVICES"] == "0"
