"""Issue point 11: each bad input ends in one line on stderr naming what and where, exit 2, no
traceback, before any model is loaded. These run the real CLI in a fresh process."""

import os
from pathlib import Path

import pytest

CONLL_OK = "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\n. O\n\nPeter B-PER\nBlackburn I-PER\n"


def _dataset(root: Path, dev_text: str = CONLL_OK) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.conll").write_text(CONLL_OK)
    (root / "dev.conll").write_text(dev_text)
    return root


def _assert_one_line_error(proc, *fragments: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err
    assert err.count("\n") == 0, err
    assert err.startswith("kftune train: error: ")
    for fragment in fragments:
        assert fragment in err, err
    assert proc.stdout == ""
    return err


def _train(h, tmp_path, *argv, env=None):
    base = {"--task": "ner", "--data": str(_dataset(tmp_path / "data")), "--model": "tiny",
            "--output-dir": str(tmp_path / "out"), "--tracking": "off"}  # fmt: skip
    given = dict(zip(argv[::2], argv[1::2], strict=True))
    merged = [x for kv in {**base, **given}.items() for x in kv]
    return h.cli("train", *merged, env=env)


def test_missing_data_directory(h, tmp_path):
    missing = tmp_path / "nope"
    _assert_one_line_error(_train(h, tmp_path, "--data", str(missing)), f"data path {missing} does not exist")


def test_missing_dev_file(h, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.conll").write_text(CONLL_OK)
    _assert_one_line_error(
        _train(h, tmp_path, "--data", str(tmp_path / "d")), "has no dev", str(tmp_path / "d")
    )


def test_malformed_conll_line_reports_file_and_line(h, tmp_path):
    data = _dataset(tmp_path / "bad", dev_text="EU B-ORG\nrejects\n")
    _assert_one_line_error(_train(h, tmp_path, "--data", str(data)), f"{data / 'dev.conll'}:2:")


def test_bad_tag_reports_file_and_line(h, tmp_path):
    data = _dataset(tmp_path / "bad", dev_text="EU B-ORG\nrejects X-FOO\n")
    _assert_one_line_error(_train(h, tmp_path, "--data", str(data)), f"{data / 'dev.conll'}:2:", "X-FOO")


def test_tag_not_in_mapping(h, tmp_path):
    mapping = tmp_path / "m.tsv"
    mapping.write_text("ORG\tORG\nPER\tPER\n")  # MISC missing
    _assert_one_line_error(
        _train(h, tmp_path, "--tag-family", "simple", "--mapping", str(mapping)), "'MISC'", str(mapping)
    )


def test_missing_mapping_file(h, tmp_path):
    _assert_one_line_error(
        _train(h, tmp_path, "--tag-family", "simple", "--mapping", str(tmp_path / "none.tsv")),
        "none.tsv does not exist",
    )


def test_negative_learning_rate(h, tmp_path):
    _assert_one_line_error(
        _train(h, tmp_path, "--learning-rate", "-0.001"), "--learning-rate must be a positive number"
    )


def test_batch_size_zero(h, tmp_path):
    _assert_one_line_error(
        _train(h, tmp_path, "--per-device-train-batch-size", "0"),
        "--per-device-train-batch-size must be a positive integer",
    )


def test_unknown_task(h, tmp_path):
    _assert_one_line_error(_train(h, tmp_path, "--task", "pos"), "--task", "'pos'")


def test_unknown_model_path(h, tmp_path):
    missing = tmp_path / "models" / "bert"
    _assert_one_line_error(
        _train(h, tmp_path, "--model", str(missing)), f"model path {missing} does not exist"
    )


def test_offline_hub_model(h, tmp_path):
    _assert_one_line_error(
        _train(h, tmp_path, "--model", "someone/not-cached-bert"), "hub is unreachable", "--model tiny"
    )


@pytest.mark.parametrize("kind", ["parent-is-a-file", "permissions"])
def test_non_writable_output_dir(h, tmp_path, kind):
    if kind == "parent-is-a-file":
        (tmp_path / "afile").write_text("x")
        out = tmp_path / "afile" / "out"
    else:
        if os.geteuid() == 0:
            pytest.skip("root ignores permission bits")
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "out"
    _assert_one_line_error(
        _train(h, tmp_path, "--output-dir", str(out)), f"--output-dir {out} is not writable"
    )


def test_invalid_config_file(h, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: [0.1\nseed: 3\n")
    _assert_one_line_error(_train(h, tmp_path, "--config", str(cfg)), f"{cfg}:", "invalid YAML")


def test_unknown_config_key(h, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text('{"learning_rate": 0.001, "epochs": 3}')
    _assert_one_line_error(_train(h, tmp_path, "--config", str(cfg)), f"{cfg}: unknown option 'epochs'")


def test_resume_from_missing_checkpoint(h, tmp_path):
    (tmp_path / "parent").mkdir()
    _assert_one_line_error(_train(h, tmp_path, "--resume-from", str(tmp_path / "parent")), "no checkpoint at")


def test_fp16_without_gpu(h, tmp_path, tiny):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    _assert_one_line_error(_train(h, tmp_path, "--precision", "fp16"), "--precision fp16 needs a GPU")
