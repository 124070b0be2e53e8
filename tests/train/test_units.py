"""Unit tests of the pieces: length-grouped batches, masking, atomic checkpoints, seed tables."""

import numpy as np
import pytest

from kftune.evaluate.crossvariant import TableRow, seed_table
from kftune.train.batches import epoch_batches, mask_tokens, split_micro
from kftune.train.checkpoint import resolve, write_atomic


def test_epoch_batches_cover_everything_once_grouped_by_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1000)
    batches = epoch_batches(lengths, 16, seed=1, epoch=1)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    assert all(len(b) <= 16 for b in batches)
    assert lengths[batches[0]].max() == lengths.max(), "the longest batch comes first"
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 5, "a batch holds examples of similar length"
    again = epoch_batches(lengths, 16, seed=1, epoch=1)
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))
    other = epoch_batches(lengths, 16, seed=1, epoch=2)
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(batches, other, strict=False))


def test_split_micro():
    parts = split_micro(np.arange(10), 4)
    assert [p.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_mask_tokens_is_seeded_and_spares_special_tokens():
    ids = [[2, 10, 11, 12, 13, 14, 15, 16, 17, 3]] * 200
    special = [[1, 0, 0, 0, 0, 0, 0, 0, 0, 1]] * 200
    a = mask_tokens(ids, special, np.random.default_rng(5), probability=0.15, mask_id=4, vocab_size=100)
    b = mask_tokens(ids, special, np.random.default_rng(5), probability=0.15, mask_id=4, vocab_size=100)
    assert a == b
    new, labels = a
    chosen = np.array(labels) != -100
    assert not chosen[:, [0, -1]].any()
    assert 0.10 < chosen[:, 1:-1].mean() < 0.20
    masked = (np.array(new) == 4) & chosen
    assert 0.7 < masked.sum() / chosen.sum() < 0.9
    assert (np.array(labels)[chosen] == np.array(ids)[chosen]).all()


def test_write_atomic_replaces_and_keeps_the_old_one_on_failure(tmp_path):
    target = tmp_path / "last"

    def writer(content):
        def write(tmp):
            (tmp / "weights").write_text(content)
            if content == "boom":
                raise OSError("disk went away")

        return write

    write_atomic(target, writer("v1"))
    write_atomic(target, writer("v2"))
    assert (target / "weights").read_text() == "v2"
    with pytest.raises(OSError):
        write_atomic(target, writer("boom"))
    assert (target / "weights").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_resolve_recovers_a_parked_checkpoint(tmp_path):
    (tmp_path / ".old-last").mkdir()
    assert resolve(tmp_path / "last") == tmp_path / "last" and (tmp_path / "last").is_dir()
    assert resolve(tmp_path / "best") is None


def test_seed_table_format():
    rows = [
        TableRow("original", "uncased", "-", {"cased": 0.779314, "uncased": 0.870123}),
        TableRow("simple", "cased"),
    ]
    lines = seed_table(rows).splitlines()
    assert lines[0] == (
        "| Tag Family | Trained on | HPO Alg | cased | uncased | uncased-cased-mix | uncased-cased-both "
        "| ne-lower | ne-lower-cased-mix | ne-lower-cased-both |"
    )
    assert lines[1] == "|" + " --- |" * 10
    assert lines[2] == "| Original | uncased | - | 0.77931 | 0.87012 | - | - | - | - | - |"
    assert lines[3].startswith("| Simple | cased | - | - |")


def test_tiny_model_builds_are_byte_identical(tmp_path):
    """Same seed, same metrics on a fresh cache too: the tiny model must not vary between builds."""
    import hashlib

    from kftune.train.models import build_tiny

    digests = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        build_tiny(tmp_path / name)
        digests.append(
            {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (tmp_path / name).iterdir()}
        )
    assert digests[0] == digests[1]
