"""The trainer's side of tracking, against the Tracker API of kftune.registry.tracking.

The real Tracker (MLflow) is tested with its own module; here a recording stand-in is put in its
place to check what the trainer sends: one run, tags, params, per-epoch metrics, metrics.json,
the model only with --log-model, the end status, and that a failing tracker never stops training.
"""

import sys
import types

import pytest


class Recorder:
    calls: list = []
    fail_on: str | None = None

    @classmethod
    def start(cls, output_dir, *, experiment, run_name, tags, params):
        cls.calls.append(
            ("start", {"experiment": experiment, "run_name": run_name, "tags": tags, "params": params})
        )
        return cls()

    def _rec(self, name, *args):
        if name == self.fail_on:
            raise ConnectionError("tracking server unreachable")
        self.calls.append((name, args))

    def log_metrics(self, metrics, step):
        self._rec("log_metrics", metrics, step)

    def log_artifact(self, path):
        self._rec("log_artifact", str(path))

    def log_model(self, model_dir, task):
        self._rec("log_model", str(model_dir), task)

    def end(self, status):
        self._rec("end", status)


@pytest.fixture
def recorder(monkeypatch):
    module = types.ModuleType("kftune.registry.tracking")
    module.Tracker = Recorder
    monkeypatch.setitem(sys.modules, "kftune.registry.tracking", module)
    Recorder.calls = []
    Recorder.fail_on = None
    return Recorder


def _argv(h, out, *extra):
    argv = h.ner_argv(
        out,
        "--num-epochs",
        "2",
        "--max-train-samples",
        "64",
        "--experiment",
        "exp1",
        "--trial",
        "t-1",
        *extra,
    )
    argv[argv.index("--tracking") + 1] = "on"
    return argv


def test_one_run_with_tags_params_metrics_and_artifact(h, tiny, tmp_path, recorder):
    code, _ = h.train(_argv(h, tmp_path / "t"))
    assert code == 0
    names = [c[0] for c in recorder.calls]
    assert names == ["start", "log_metrics", "log_metrics", "log_artifact", "end"]
    start = recorder.calls[0][1]
    assert start["experiment"] == "exp1" and start["run_name"] == "t-1"
    assert start["tags"] == {
        "kftune.experiment": "exp1", "kftune.trial": "t-1", "kftune.variant": "cased", "kftune.seed": "7",
        "kftune.task": "ner", "kftune.model": "tiny", "kftune.tag_family": "original",
    }  # fmt: skip
    assert start["params"]["learning_rate"] == 2e-3 and start["params"]["num_epochs"] == 2
    metrics, step = recorder.calls[2][1]
    assert step == 2 and {"eval_f1", "eval_loss", "train_loss"} <= set(metrics)
    assert recorder.calls[3][1][0].endswith("metrics.json")
    assert recorder.calls[-1][1] == ("FINISHED",)


def test_log_model_only_when_asked(h, tiny, tmp_path, recorder):
    code, _ = h.train(_argv(h, tmp_path / "t", "--log-model"))
    assert code == 0
    [call] = [c for c in recorder.calls if c[0] == "log_model"]
    assert call[1] == (str(tmp_path / "t" / "best"), "ner")


def test_failed_trial_ends_the_run_failed(h, tiny, tmp_path, recorder, monkeypatch):
    monkeypatch.setenv("KFTUNE_TEST_NAN_AT_STEP", "2")
    code, _ = h.train(_argv(h, tmp_path / "t"))
    assert code == 3 and recorder.calls[-1] == ("end", ("FAILED",))


def test_a_broken_tracker_never_stops_training(h, tiny, tmp_path, recorder, capfd):
    recorder.fail_on = "log_metrics"
    code, lines = h.train(_argv(h, tmp_path / "t"))
    assert code == 0 and len(lines) == 3
    assert capfd.readouterr().err.count("tracking log_metrics failed") == 1
    assert h.metrics(tmp_path / "t")["status"] == "completed"


def test_tracking_off_or_module_absent(h, tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kftune.registry.tracking", None)  # import fails
    argv = _argv(h, tmp_path / "t")
    code, _ = h.train(argv)
    assert code == 0
