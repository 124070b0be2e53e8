"""kubectl's YAML typing (go-yaml v2 via sigs.k8s.io/yaml), documents and line numbers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from kftune.katib.kubeyaml import load_value, parse_documents, split_documents

# plain scalar -> (what kubectl sends, what PyYAML's safe_load gives)
TYPING = [
    ("1e-5", 1e-05, "1e-5"),  # PyYAML 1.1 needs a dot in a float
    ("1.0e5", 100000.0, "1.0e5"),  # ... and a sign in the exponent
    ("6e-6", 6e-06, "6e-6"),
    ("y", True, "y"),  # go-yaml v2 keeps YAML 1.1's y/n booleans; PyYAML does not
    ("n", False, "n"),
    ("0o17", 15, "0o17"),  # Go's ParseInt(s, 0, 64)
    ("08", 8.0, "08"),  # not octal, not a PyYAML int: a float to go-yaml
    ("1:20", "1:20", 80),  # PyYAML's base 60
    ("2024-01-02", "2024-01-02T00:00:00Z", None),  # time.Time, then JSON; PyYAML: a date
    ("1e400", "1e400", "1e400"),  # overflow: go-yaml keeps the string
    ("yes", True, True),  # the same in both: YAML 1.1 booleans (not strings as in YAML 1.2)
    ("on", True, True),
    ("off", False, False),
    ("~", None, None),
    ("017", 15, 15),
    ("0x1F", 31, 31),
    ("1_000", 1000, 1000),
    ("+12", 12, 12),
    (".5", 0.5, 0.5),
    ("3.", 3.0, 3.0),
    ("-.inf", -math.inf, -math.inf),
    ("eval_f1", "eval_f1", "eval_f1"),
    ("99999999999999999999", 1e20, 99999999999999999999),  # beyond uint64: a float
]


@pytest.mark.parametrize(("text", "kubectl", "pyyaml"), TYPING, ids=[t for t, _, _ in TYPING])
def test_plain_scalars_are_typed_like_kubectl(text, kubectl, pyyaml):
    got = load_value(f"v: {text}")["v"]
    assert got == kubectl and type(got) is type(kubectl)
    if pyyaml is not None:
        assert yaml.safe_load(f"v: {text}")["v"] == pyyaml


def test_nan_loads_as_a_float():
    assert math.isnan(load_value("v: .nan")["v"])


@pytest.mark.parametrize("text", ["'1e-5'", '"yes"', "'08'", "|\n  1e-5"])
def test_quoted_and_block_scalars_are_strings(text):
    assert isinstance(load_value(f"v: {text}")["v"], str)


def test_map_keys_become_json_strings():
    assert load_value("on: 1\n1: 2\n~x: 3") == {"true": 1, "1": 2, "~x": 3}


def test_merge_keys_and_anchors():
    assert load_value("a: &x {b: 1}\nc:\n  <<: *x\n  d: 2") == {"a": {"b": 1}, "c": {"b": 1, "d": 2}}


def test_explicit_tags():
    assert load_value("v: !!str 1e-5")["v"] == "1e-5"
    assert load_value("v: !!float 3")["v"] == 3.0


SPLIT_TEXT = """# header comment
---
a: 1
---   # a comment after the separator
b: 2
---
# only a comment
---
c: [1,
---
d: 4
"""


def test_split_documents_like_kubectl():
    chunks = list(split_documents(SPLIT_TEXT))
    assert [start for start, _ in chunks] == [1, 3, 5, 7, 9, 11]


def test_documents_keep_index_lines_and_survive_a_bad_neighbour():
    docs = parse_documents(SPLIT_TEXT, Path("f.yaml"))
    assert [d.index for d in docs] == [0, 1, 2, 3]  # empty documents are skipped
    assert [d.data for d in docs] == [{"a": 1}, {"b": 2}, None, {"d": 4}]
    assert docs[0].line_of(("a",)) == 3 and docs[3].line_of(("d",)) == 11
    assert docs[2].problems and docs[2].problems[0].severity == "error"
    assert docs[2].problems[0].line == 9  # where the unclosed [ is, not the end of the document
    assert "syntax error" in docs[2].problems[0].message


def test_line_of_falls_back_to_the_nearest_ancestor():
    (doc,) = parse_documents(
        "spec:\n  parameters:\n    - name: x\n      feasibleSpace: {min: '1'}\n", Path("f")
    )
    assert doc.line_of(("spec", "parameters", 0, "feasibleSpace", "min")) == 4
    assert doc.line_of(("spec", "parameters", 0, "feasibleSpace", "max")) == 4
    assert doc.line_of(("spec", "nothing")) == 1
    assert doc.scalars[("spec", "parameters", 0, "name")] == "x"


def test_duplicate_keys_are_a_warning_and_the_last_wins():
    (doc,) = parse_documents("a: 1\nb: 2\na: 3\n", Path("f"))
    assert doc.data == {"a": 3, "b": 2}
    assert [(p.severity, p.line) for p in doc.problems] == [("warning", 3)]
