"""--resume-from: 2 epochs then resume to 4 equals 4 straight epochs (same --schedule-epochs)."""

import json

import pytest
from safetensors.torch import load_file

from kftune.train.metric_lines import parse_line


def _values(lines):
    return [dict(parse_line(x)) for x in lines]


def test_two_then_resume_to_four_equals_four_straight(h, tiny, tmp_path):
    code, straight = h.train(h.ner_argv(tmp_path / "straight", "--num-epochs", "4", "--schedule-epochs", "4"))
    assert code == 0
    code, first = h.train(h.ner_argv(tmp_path / "parent", "--num-epochs", "2", "--schedule-epochs", "4"))
    assert code == 0
    parent_state = (tmp_path / "parent" / "last" / "trainer_state.json").read_text()
    # a promotion: a new trial directory that continues from the parent's last/
    code, second = h.train(
        h.ner_argv(
            tmp_path / "child",
            "--num-epochs",
            "4",
            "--schedule-epochs",
            "4",
            "--resume-from",
            str(tmp_path / "parent"),
        )
    )
    assert code == 0
    assert first[:2] == straight[:2]
    assert [x.split()[0] for x in second] == ["epoch=3", "epoch=4", "final"]
    for got, want in zip(_values(second), _values(straight[2:]), strict=True):
        assert got.keys() == want.keys()
        for key in got:
            assert got[key] == pytest.approx(want[key], abs=1e-5), key
    a = load_file(tmp_path / "straight" / "last" / "model.safetensors")
    b = load_file(tmp_path / "child" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5

    child = h.metrics(tmp_path / "child")
    assert [e["epoch"] for e in child["history"]] == [1, 2, 3, 4]
    assert (
        child["resumed_from"] == str(tmp_path / "parent")
        and child["global_step"] == h.metrics(tmp_path / "straight")["global_step"]
    )
    assert child["best"]["epoch"] == h.metrics(tmp_path / "straight")["best"]["epoch"]
    assert (tmp_path / "child" / "best" / "config.json").is_file()
    # the parent's checkpoint is left as it was
    assert (tmp_path / "parent" / "last" / "trainer_state.json").read_text() == parent_state


def test_resume_none_or_empty_starts_fresh(h, tiny, tmp_path):
    code, lines = h.train(h.ner_argv(tmp_path / "t", "--num-epochs", "1", "--resume-from", ""))
    assert code == 0 and lines[0].startswith("epoch=1 ")
    code, lines = h.train(h.ner_argv(tmp_path / "t", "--num-epochs", "1", "--resume-from", "none"))
    assert code == 0 and lines[0].startswith("epoch=1 ")
    assert h.metrics(tmp_path / "t")["resumed_from"] is None


def test_resume_past_the_end_only_reports(h, tiny, tmp_path):
    code, _ = h.train(h.ner_argv(tmp_path / "t", "--num-epochs", "1"))
    state = json.loads((tmp_path / "t" / "last" / "trainer_state.json").read_text())
    code, lines = h.train(
        h.ner_argv(tmp_path / "t", "--num-epochs", "1", "--resume-from", str(tmp_path / "t"))
    )
    assert code == 0 and [x.split()[0] for x in lines] == ["final"]
    assert json.loads((tmp_path / "t" / "last" / "trainer_state.json").read_text()) == state
