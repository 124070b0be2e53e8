"""TrainArgs: every contract flag exists and has help; config files merge under the command line."""

import json
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from kftune.errors import UserError
from kftune.train.args import TrainArgs, build_parser, load_config_file, parse_args, validate

ROOT = Path(__file__).resolve().parents[2]
BASE = ["--task", "ner", "--data", "demo:ner", "--model", "tiny"]


def test_every_flag_of_the_contract_is_accepted_and_documented():
    text = (ROOT / "docs" / "contracts.md").read_text()
    block = text.split("## Trial argv", 1)[1].split("```", 2)[1]
    flags = set(re.findall(r"--[a-z][a-z0-9-]+", block))
    parser = build_parser()
    known = {opt for action in parser._actions for opt in action.option_strings}
    assert flags <= known, sorted(flags - known)
    for f in fields(TrainArgs):
        if f.metadata.get("cli", True):
            assert len(f.metadata.get("help", "")) > 10, f.name


def test_cli_overrides_config_and_config_overrides_defaults(tmp_path):
    cfg = tmp_path / "c.yaml"
    # YAML reads 1e-3 (no dot) as a string: it must still become a float
    cfg.write_text("learning_rate: 1e-3\nweight-decay: 0.1\nnum_epochs: 7\nauto_batch_size: true\n")
    args = parse_args([*BASE, "--output-dir", str(tmp_path), "--config", str(cfg), "--num-epochs", "2"])
    assert args.learning_rate == 1e-3 and args.weight_decay == 0.1
    assert args.num_epochs == 2 and args.auto_batch_size is True
    assert args.per_device_train_batch_size == 32  # default
    assert {"learning_rate", "num_epochs", "task"} <= args.explicit
    assert "per_device_train_batch_size" not in args.explicit


def test_json_config_can_hold_everything(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps(
            {
                "task": "seqcls",
                "data": "demo:textcls",
                "model": "tiny",
                "output_dir": str(tmp_path),
                "seed": 3,
            }
        )
    )
    args = parse_args(["--config", str(cfg)])
    validate(args)
    assert (args.task, args.seed, args.best_metric) == ("seqcls", 3, "eval_macro_f1")


def test_derived_values(tmp_path):
    args = parse_args(
        [*BASE, "--output-dir", str(tmp_path / "t9"), "--num-epochs", "2", "--resume-from", "none"]
    )
    assert args.schedule_epochs_ == 2 and args.eval_variant_ == "cased" and args.resume_dir is None
    assert args.trial_name == "t9" and args.greater_is_better
    assert parse_args([*BASE, "--output-dir", "x", "--resume-from", ""]).resume_dir is None
    mlm = parse_args(["--task", "mlm", "--data", "d", "--model", "m", "--output-dir", "x"])
    assert mlm.best_metric == "eval_loss" and not mlm.greater_is_better


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--learning-rate", "-1"], "--learning-rate must be a positive number"),
        (["--learning-rate", "nan"], "--learning-rate must be a positive number"),
        (["--per-device-train-batch-size", "0"], "--per-device-train-batch-size must be a positive integer"),
        (["--attention-dropout", "1.0"], "--attention-dropout must be in [0, 1)"),
        (["--hidden-dropout", "-0.1"], "--hidden-dropout must be in [0, 1)"),
        (["--warmup-ratio", "1.5"], "--warmup-ratio"),
        (
            ["--num-epochs", "4", "--schedule-epochs", "2"],
            "--schedule-epochs (2) must be >= --num-epochs (4)",
        ),
        (["--metric-for-best", "eval_macro_f1"], "not reported for --task ner"),
        (["--gradient-accumulation-steps", "0"], "--gradient-accumulation-steps"),
        (["--precision", "fp16", "--device", "cpu"], "fp16 needs a GPU"),
    ],
)
def test_validation_names_the_field(tmp_path, extra, fragment):
    args = parse_args([*BASE, "--output-dir", str(tmp_path), *extra])
    with pytest.raises(UserError) as err:
        validate(args)
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--task", "pos"], "argument --task: invalid choice: 'pos'"),
        (["--lr-scheduler", "step"], "argument --lr-scheduler: invalid choice"),
        (["--learning-rate", "fast"], "--learning-rate expects a number, got 'fast'"),
        (["--frobnicate", "1"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_syntax_errors_are_user_errors(argv, fragment):
    with pytest.raises(UserError) as err:
        parse_args(argv)
    assert fragment in str(err.value)


def test_config_file_errors(tmp_path):
    bad_key = tmp_path / "a.yaml"
    bad_key.write_text("learning_rte: 0.1\n")
    with pytest.raises(
        UserError, match=r"a.yaml: unknown option 'learning_rte' \(did you mean learning_rate\?\)"
    ):
        load_config_file(str(bad_key))
    bad_type = tmp_path / "b.yaml"
    bad_type.write_text("num_epochs: three\n")
    with pytest.raises(UserError, match=r"b.yaml: num_epochs: expected int, got 'three'"):
        load_config_file(str(bad_type))
    bad_json = tmp_path / "c.json"
    bad_json.write_text('{"seed": 1,\n "x": }')
    with pytest.raises(UserError, match=r"c.json:2: invalid JSON"):
        load_config_file(str(bad_json))
    not_map = tmp_path / "d.yaml"
    not_map.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        load_config_file(str(not_map))


def test_validation_does_not_import_torch(tmp_path):
    import subprocess

    code = (
        "import sys; from kftune.train.args import parse_args, validate;"
        f"validate(parse_args(['--task','ner','--data','demo:ner','--model','tiny','--output-dir',{str(tmp_path)!r}]));"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
