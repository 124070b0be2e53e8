import json

import pytest

from kftune.data import load_corpus
from kftune.data.demo import ENTITIES, HOMOGRAPHS, MAPPING_SIMPLE, make_ner
from kftune.errors import UserError


def _write(d, name, text):
    (d / name).write_text(text)


def test_conll_dir_with_validation_name(tmp_path):
    _write(tmp_path, "train.txt", "A B-X\nb O\n")
    _write(tmp_path, "validation.txt", "c I-X\n")
    c = load_corpus(str(tmp_path), "ner")
    assert set(c.splits) == {"train", "dev"}
    assert c.splits["dev"][0].tags == ["B-X"]
    assert c.labels() == ["O", "B-X", "I-X"]


def test_missing_dev_split_is_clear(tmp_path):
    _write(tmp_path, "train.conll", "A O\n")
    with pytest.raises(UserError, match=r"has no dev\{.*\} file for task ner"):
        load_corpus(str(tmp_path), "ner")


def test_missing_path_and_unknown_task(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_corpus(str(tmp_path / "nope"), "ner")
    with pytest.raises(UserError, match="unknown task 'pos'"):
        load_corpus(str(tmp_path), "pos")


def test_jsonl_ner_and_classification(tmp_path):
    _write(tmp_path, "train.jsonl", json.dumps({"tokens": ["A", "b"], "ner_tags": [1, 0]}) + "\n")
    _write(tmp_path, "dev.jsonl", json.dumps({"tokens": ["c"], "ner_tags": [2]}) + "\n")
    _write(tmp_path, "labels.txt", "O\nB-X\nI-X\n")
    c = load_corpus(str(tmp_path), "ner")
    assert c.splits["train"][0].tags == ["B-X", "O"] and c.splits["dev"][0].tags == ["B-X"]
    d = tmp_path / "cls"
    d.mkdir()
    _write(d, "train.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", "label": "neg"}\n')
    _write(d, "dev.jsonl", '{"text": "ok", "label": "pos"}\n')
    assert load_corpus(str(d), "seqcls").labels() == ["neg", "pos"]


def test_jsonl_bad_line(tmp_path):
    _write(tmp_path, "train.jsonl", '{"tokens": ["a"], "ner_tags": ["O"]}\n{oops\n')
    _write(tmp_path, "dev.jsonl", '{"tokens": ["a"], "ner_tags": ["O"]}\n')
    with pytest.raises(UserError, match=r"train.jsonl:2: not valid JSON"):
        load_corpus(str(tmp_path), "ner")


def test_csv_and_tsv(tmp_path):
    _write(tmp_path, "train.csv", 'sentence,Label\n"hello, world",a\nbye,b\n')
    _write(tmp_path, "dev.tsv", "text\tlabel\nx\ta\n")
    c = load_corpus(str(tmp_path), "seqcls")
    assert c.splits["train"][0].text == "hello, world" and c.splits["dev"][0].label == "a"
    _write(tmp_path, "train.csv", "body,label\nx,a\n")
    with pytest.raises(UserError, match=r"train.csv:1: header .* needs a text column"):
        load_corpus(str(tmp_path), "seqcls")


def test_saved_hf_dataset_dir(tmp_path):
    import datasets

    feats = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"])),
        }
    )
    ds = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"tokens": [["Ann", "Lee", "ran"]], "ner_tags": [[1, 2, 0]]}, features=feats
            ),
            "validation": datasets.Dataset.from_dict({"tokens": [["Bo"]], "ner_tags": [[1]]}, features=feats),
        }
    )
    ds.save_to_disk(str(tmp_path / "saved"))
    c = load_corpus(str(tmp_path / "saved"), "ner")
    assert c.splits["train"][0].tags == ["B-PER", "I-PER", "O"] and c.splits["dev"][0].tokens == ["Bo"]


def test_hub_id_offline_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="hub may be unreachable"):
        load_corpus("hf:surely-not-cached/conll-x", "ner")


def test_demo_ner_corpus_properties(kftune_home):
    c = load_corpus("demo:ner", "ner")
    assert {k: len(v) for k, v in c.splits.items()} == {"train": 3000, "dev": 500, "test": 500}
    types = {t[2:] for ex in c.all_examples() for t in ex.tags if t != "O"}
    assert len(types) >= 6 and types <= set(MAPPING_SIMPLE)
    assert all(ex.tokens[0][0].isupper() or not ex.tokens[0][0].isalpha() for ex in c.all_examples())
    lowercase_homographs = sum(
        1
        for ex in c.splits["train"]
        for tok, tag in zip(ex.tokens, ex.tags, strict=True)
        if tok in HOMOGRAPHS and tag == "O"
    )
    assert lowercase_homographs > 300
    train_names = {" ".join(ex.tokens[s:e]) for ex in c.splits["train"] for s, e in _spans(ex)}
    test_names = {" ".join(ex.tokens[s:e]) for ex in c.splits["test"] for s, e in _spans(ex)}
    assert test_names - train_names, "dev/test should contain some names unseen in train"
    assert all(any(name in train_names for name in names) for names in ENTITIES.values())
    simple = load_corpus("demo:ner", "ner", family="simple")
    assert {t[2:] for ex in simple.all_examples() for t in ex.tags if t != "O"} == {
        "PER",
        "LOC",
        "ORG",
        "MISC",
    }


def _spans(ex):
    from kftune.data.tags import spans

    return [(s, e) for _, s, e in spans(ex.tags)]


def test_demo_generation_is_deterministic():
    a, b = make_ner(), make_ner()
    assert [(e.tokens, e.tags) for e in a["dev"]] == [(e.tokens, e.tags) for e in b["dev"]]
    assert [(e.tokens) for e in make_ner(seed=1)["dev"]] != [e.tokens for e in a["dev"]]


def test_demo_textcls_and_mlm(kftune_home):
    c = load_corpus("demo:textcls", "seqcls")
    assert 2 <= len(c.labels()) <= 4 and len(c.splits["train"]) >= 2000
    m = load_corpus("demo:mlm", "mlm")
    assert len(m.splits["train"]) > 3000 and all(ex.text for ex in m.splits["dev"])
    with pytest.raises(UserError, match="is a corpus for --task ner"):
        load_corpus("demo:ner", "seqcls")
