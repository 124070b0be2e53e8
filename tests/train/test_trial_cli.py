"""A real `kftune train` process: metric-line purity, metrics.json, checkpoints, determinism."""

import json
import re

from kftune.train.metric_lines import KATIB_DEFAULT_FILTER, METRICS_BY_TASK, parse_line

EPOCH_LINE = re.compile(r"^epoch=\d+( eval_[a-z0-9_]+=-?\d+\.\d{6})+$")
FINAL_LINE = re.compile(r"^final( test_[a-z0-9_]+=-?\d+\.\d{6})+$")


def test_stdout_holds_only_metric_lines(cli_run):
    out, proc = cli_run
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    assert [EPOCH_LINE.match(x) is not None for x in lines] == [True, True, False]
    assert FINAL_LINE.match(lines[2]), lines[2]
    first = parse_line(lines[0])
    assert [name for name, _ in first] == ["epoch", *METRICS_BY_TASK["ner"]]
    assert first[0] == ("epoch", 1.0)
    assert [name for name, _ in parse_line(lines[2])] == [f"test_{m[5:]}" for m in METRICS_BY_TASK["ner"]]


def test_stderr_has_no_metric_lookalikes(cli_run):
    """Katib's StdOut collector runs the trial with 2>&1: stderr must not carry metric pairs either."""
    _, proc = cli_run
    assert proc.stderr.strip(), "library logs and progress are expected on stderr"
    for line in proc.stderr.splitlines():
        names = {name for name, _ in parse_line(line, KATIB_DEFAULT_FILTER)}
        assert not {n for n in names if n == "epoch" or n.startswith(("eval_", "test_"))}, line


def test_metrics_json_records_the_run(cli_run):
    out, proc = cli_run
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "completed" and m["reason"] is None
    assert m["epochs_done"] == 2 and len(m["history"]) == 2
    assert m["args"]["learning_rate"] == 2e-3 and m["args"]["task"] == "ner"
    assert m["best"]["metric"] == "eval_f1" and m["best"]["epoch"] in (1, 2)
    best_hist = m["history"][m["best"]["epoch"] - 1]
    assert m["best"]["value"] == max(h["eval_f1"] for h in m["history"]) == best_hist["eval_f1"]
    assert set(m["test"]) == {"test_f1", "test_precision", "test_recall", "test_accuracy", "test_loss"}
    assert m["train_samples_per_second"] > 0 and m["timings"]["train_s"] > 0
    assert m["samples"] == {"train": 240, "dev": 80, "test": 80}
    assert m["batch"]["per_device_train_batch_size"] == 8 and m["batch"]["adjustments"] == []
    # the printed lines are the history, rounded to 6 places
    first = dict(parse_line(proc.stdout.splitlines()[0]))
    assert abs(first["eval_f1"] - m["history"][0]["eval_f1"]) < 1e-6
    final = dict(parse_line(proc.stdout.splitlines()[2]))
    assert abs(final["test_f1"] - m["test"]["test_f1"]) < 1e-6


def test_only_best_and_last_are_kept(cli_run):
    out, _ = cli_run
    assert sorted(p.name for p in out.iterdir()) == ["best", "last", "metrics.json"]
    last = {p.name for p in (out / "last").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "optimizer.pt", "scheduler.pt",
            "rng_state.pth", "trainer_state.json"} <= last  # fmt: skip
    best = {p.name for p in (out / "best").iterdir()}
    assert "optimizer.pt" not in best and {"model.safetensors", "config.json", "eval_results.json"} <= best
    state = json.loads((out / "last" / "trainer_state.json").read_text())
    assert state["epoch"] == 2 and state["data_order"]["next_epoch"] == 3
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    assert config["kftune"]["task"] == "ner" and config["kftune"]["max_length"] == 48
    assert config["kftune"]["train_variant"] == "cased" and config["kftune"]["tokenizer_lowercases"] is False
    assert config["id2label"]["0"] == "O" and len(config["id2label"]) == len(config["kftune"]["labels"])


def test_best_shares_bytes_with_last_when_it_is_the_last_epoch(cli_run):
    out, _ = cli_run
    m = json.loads((out / "metrics.json").read_text())
    same = (out / "best" / "model.safetensors").stat().st_ino == (
        out / "last" / "model.safetensors"
    ).stat().st_ino
    assert same == (m["best"]["epoch"] == m["epochs_done"])


def test_same_seed_same_metrics_other_seed_differs(cli_run, h, tmp_path):
    out, proc = cli_run
    again = h.cli("train", *h.ner_argv(tmp_path / "again", "--num-epochs", "2"))
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout == proc.stdout
    code, lines = h.train(h.ner_argv(tmp_path / "other", "--num-epochs", "2", "--seed", "8"))
    assert code == 0 and lines != proc.stdout.splitlines()
