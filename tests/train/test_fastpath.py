"""The fast path (``--fast-path on``: device-resident data, bucketed widths, 4-D masks, optional
torch.compile) trains the same model as the plain path.

Tolerances (CPU, fp32, same seed):
- ``--pad-multiple 1``: the model sees exactly the plain path's tensors, so every metric and the
  training loss agree to 1e-6 relative (float summation order is the only difference), dropout on.
- ``--pad-multiple 16`` or 64 without dropout: only padded positions change, hidden by the mask;
  losses agree to 1e-5 relative, F1 exactly. With dropout the random draws land differently on
  real tokens, so results then agree only statistically (not tested here; the GPU bench prints
  F1 for both paths).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from kftune.errors import UserError
from kftune.train import fastpath
from kftune.train.batches import collate
from kftune.train.encode import Encoded

NO_DROPOUT = ("--attention-dropout", "0", "--hidden-dropout", "0")
SMALL = [
    "--data",
    "demo:ner",
    "--model",
    "tiny",
    "--learning-rate",
    "2e-3",
    "--max-train-samples",
    "240",
    "--max-eval-samples",
    "80",
    "--max-length",
    "48",
    "--per-device-train-batch-size",
    "8",
    "--tracking",
    "off",
    "--seed",
    "7",
    "--num-threads",
    "1",
]  # fmt: skip  (tests/train/conftest.py's SMALL)


def _close(a: float, b: float, rel: float) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel)


def _compare(m1: dict, m2: dict, rel: float) -> None:
    assert len(m1["history"]) == len(m2["history"]) == 2
    for h1, h2 in zip(m1["history"], m2["history"], strict=True):
        assert h1["eval_f1"] == pytest.approx(h2["eval_f1"], abs=1e-9)
        for key in ("eval_loss", "train_loss", "eval_precision", "eval_recall", "eval_accuracy"):
            assert _close(h1[key], h2[key], rel), (key, h1[key], h2[key])
    for key, value in m1["test"].items():
        assert _close(value, m2["test"][key], rel), (key, value, m2["test"][key])


@pytest.fixture(scope="module")
def plain_runs(tiny, tmp_path_factory):
    """The plain path, with and without dropout (2 epochs each)."""
    import io
    import json

    from kftune.train.args import parse_args, validate
    from kftune.train.cli import run_trial

    root = tmp_path_factory.mktemp("plain")
    out = {}
    for name, extra in (("dropout", ()), ("no_dropout", NO_DROPOUT)):
        args = parse_args(["--task", "ner", "--output-dir", str(root / name), *SMALL, "--num-epochs", "2",
                           "--fast-path", "off", *extra])  # fmt: skip
        validate(args)
        stream = io.StringIO()
        assert run_trial(args, stream) == 0
        out[name] = (json.loads((root / name / "metrics.json").read_text()), stream.getvalue().splitlines())
    assert out["dropout"][0]["fast_path"] == {"enabled": False}
    return out


def test_fast_path_pad1_equals_plain_with_dropout(h, tmp_path, plain_runs):
    code, lines = h.train(
        h.ner_argv(
            tmp_path, "--num-epochs", "2", "--fast-path", "on", "--pad-multiple", "1", "--profile-steps", "3"
        )
    )
    assert code == 0
    m = h.metrics(tmp_path)
    assert m["fast_path"]["enabled"] and m["fast_path"]["device_data"]
    assert m["fast_path"]["mask_4d"] is True, "the tiny BERT (SDPA) takes a ready 4-D mask"
    assert m["fast_path"]["compile"] == "off"
    _compare(m, plain_runs["dropout"][0], rel=1e-6)
    assert len(lines) == len(plain_runs["dropout"][1])
    # --profile-steps: the last epoch's steps 21.. are timed phase by phase (240/8 = 30 steps per epoch)
    p = m["profile"]
    assert p["steps"] == 3 and p["from_epoch_step"] == 21 and p["unprofiled_steps"] == 30 - 23
    assert set(p["done_ms"]) == {"data", "forward_backward", "optimizer", "host"}
    assert all(v >= 0 for v in p["done_ms"].values())
    assert p["done_ms"]["forward_backward"] > 0 and p["step_ms_unprofiled"] > 0
    for rec in m["history"]:
        assert rec["train_ended_unix"] > rec["train_started_unix"] > 1.6e9


def test_oom_halving_on_the_fast_path(h, tmp_path, plain_runs, monkeypatch):
    """An OOM at the 3rd forward halves the per-device batch; the step is redone as two device
    slices with the same effective batch, so (without dropout) the run matches the plain one."""
    monkeypatch.setenv("KFTUNE_TEST_OOM_AT_STEP", "3")
    code, _ = h.train(h.ner_argv(tmp_path, "--num-epochs", "2", "--fast-path", "on", *NO_DROPOUT))
    assert code == 0
    m = h.metrics(tmp_path)
    assert m["batch"]["per_device_train_batch_size"] == 4 and m["batch"]["gradient_accumulation_steps"] == 2
    assert m["fast_path"]["device_data"]
    _compare(m, plain_runs["no_dropout"][0], rel=1e-5)


def test_a_split_too_large_for_the_device_is_collated_on_the_host(
    h, tmp_path, plain_runs, monkeypatch, capfd
):
    monkeypatch.setattr(fastpath, "DEVICE_DATA_MAX_BYTES", 1000)
    code, _ = h.train(h.ner_argv(tmp_path, "--num-epochs", "2", "--fast-path", "on", "--pad-multiple", "1"))
    assert code == 0
    m = h.metrics(tmp_path)
    assert m["fast_path"]["enabled"] and not m["fast_path"]["device_data"]
    assert "too large to keep on the device" in capfd.readouterr().err
    _compare(m, plain_runs["dropout"][0], rel=1e-6)


@pytest.mark.parametrize("multiple", ["16", "64"])
def test_bucketed_widths_match_plain_without_dropout(h, tmp_path, plain_runs, multiple):
    code, _ = h.train(
        h.ner_argv(
            tmp_path, "--num-epochs", "2", "--fast-path", "on", "--pad-multiple", multiple, *NO_DROPOUT
        )
    )
    assert code == 0
    m = h.metrics(tmp_path)
    assert m["fast_path"]["pad_multiple"] == int(multiple)
    _compare(m, plain_runs["no_dropout"][0], rel=1e-5)


def test_compile_failure_falls_back_to_eager(h, tmp_path, plain_runs, monkeypatch, capfd):
    """A torch.compile that breaks (no compiler, an unsupported op) must not lose the trial: the
    first step notices, says so on stderr and in metrics.json, and the trial trains eagerly."""

    def broken_compile(fn, mode):
        def compiled(*args):
            raise RuntimeError("inductor: simulated compiler failure")

        return compiled

    monkeypatch.setattr(fastpath, "compile_loss", broken_compile)
    code, _ = h.train(
        h.ner_argv(tmp_path, "--num-epochs", "2", "--compile", "default", "--pad-multiple", "1")
    )
    assert code == 0
    m = h.metrics(tmp_path)
    assert m["fast_path"]["compile"] == "off"
    assert "simulated compiler failure" in m["fast_path"]["compile_error"]
    assert "torch.compile failed" in capfd.readouterr().err
    _compare(m, plain_runs["dropout"][0], rel=1e-6)  # the redone step left no trace


def test_fast_path_mlm_and_seqcls_train(h, tmp_path):
    for task, data in (("seqcls", "demo:textcls"), ("mlm", "demo:mlm")):
        out = tmp_path / task
        argv = ["--task", task, "--data", data, "--output-dir", str(out), *h.SMALL[2:], "--num-epochs", "1",
                "--fast-path", "on", "--pad-multiple", "8"]  # fmt: skip
        code, lines = h.train(argv)
        assert code == 0, task
        m = h.metrics(out)
        assert m["fast_path"]["device_data"] is (task == "seqcls")
        assert math.isfinite(m["history"][0]["train_loss"])
        assert lines[0].startswith("epoch=1 ")


def test_device_data_slices_equal_host_collation():
    rng = np.random.default_rng(0)
    rows = [rng.integers(5, 100, size=n).tolist() for n in rng.integers(2, 40, size=50)]
    labels = [[int(x) % 3 if j % 2 else -100 for j, x in enumerate(r)] for r in rows]
    enc = Encoded(rows, labels)
    data = fastpath.DeviceData(enc, "ner", pad_id=0, device=torch.device("cpu"), pad_multiple=8)
    batches = [np.array([3, 7, 11]), np.array([0, 1]), np.arange(20, 50)]
    spans = data.start_epoch(batches)
    assert spans == [(0, 3), (3, 5), (5, 35)]
    for idx, (s, e) in zip(batches, spans, strict=True):
        ids, mask, lab = data.slice(s, e)
        ref = collate(
            [rows[i] for i in idx], [labels[i] for i in idx], 0, torch.device("cpu"), width_multiple=8
        )
        width = ids.shape[1]
        longest = max(len(rows[i]) for i in idx)
        assert width == min(-(-longest // 8) * 8, data.width) >= longest
        # the host pads to the multiple; the device never past the split's longest row
        assert (ref["attention_mask"][:, width:] == 0).all()
        assert torch.equal(ids, ref["input_ids"][:, :width]) and torch.equal(lab, ref["labels"][:, :width])
        assert torch.equal(mask, ref["attention_mask"][:, :width])
    _, mask2, _ = data.slice(0, 3)
    data.mask_4d = True
    _, mask4, _ = data.slice(0, 3)
    assert mask4.shape[:3] == (3, 1, 1) and mask4.dtype == torch.bool
    assert torch.equal(mask4[:, 0, 0, :].long(), mask2)


def test_bucket_width():
    assert [fastpath.bucket_width(n, 16, 128) for n in (1, 16, 17, 120, 128)] == [16, 16, 32, 128, 128]
    assert fastpath.bucket_width(45, 16, 45) == 45, "never wider than the longest row of the split"
    assert fastpath.bucket_width(7, 1, 128) == 7


def test_accepts_4d_mask_is_checked_not_assumed(tiny):
    from transformers import AutoModelForTokenClassification

    ids = torch.tensor([[2, 50, 60, 70, 3], [2, 80, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    sdpa = AutoModelForTokenClassification.from_pretrained(tiny, num_labels=3, attn_implementation="sdpa")
    sdpa.eval()
    assert fastpath.accepts_4d_mask(sdpa, ids, mask)
    assert not sdpa.training
    sdpa.train()
    fastpath.accepts_4d_mask(sdpa, ids, mask)
    assert sdpa.training, "the check restores training mode"
    # the eager attention adds the mask as a float bias: a boolean 4-D mask means something else there
    eager = AutoModelForTokenClassification.from_pretrained(tiny, num_labels=3, attn_implementation="eager")
    assert not fastpath.accepts_4d_mask(eager, ids, mask)


def test_bad_fast_path_options(h, tmp_path, monkeypatch):
    from kftune.train.args import parse_args, validate

    def check(*extra):
        with pytest.raises(UserError) as err:
            validate(parse_args(h.ner_argv(tmp_path, *extra)))
        return str(err.value)

    assert "--compile default needs the fast path" in check("--fast-path", "off", "--compile", "default")
    assert "--pad-multiple" in check("--pad-multiple", "0")
    assert "--gpu-memory-fraction" in check("--gpu-memory-fraction", "1.5")
    assert "--profile-steps" in check("--profile-steps", "-1")
    monkeypatch.setenv("KFTUNE_GPU_MEMORY_FRACTION", "half")
    assert "KFTUNE_GPU_MEMORY_FRACTION='half'" in check()
    monkeypatch.setenv("KFTUNE_GPU_MEMORY_FRACTION", "0.25")
    args = parse_args(h.ner_argv(tmp_path))
    validate(args)
    assert args.gpu_memory_fraction_ == 0.25
    assert parse_args(h.ner_argv(tmp_path, "--gpu-memory-fraction", "0.5")).gpu_memory_fraction_ == 0.5


def test_auto_resolution_on_cpu():
    cpu = torch.device("cpu")
    assert fastpath.resolve_fast_path("auto", cpu) is False
    assert fastpath.resolve_fast_path("auto", torch.device("cuda")) is True
    assert fastpath.resolve_compile("auto", cpu) == "off"
    assert fastpath.resolve_compile("reduce-overhead", cpu) == "reduce-overhead"
