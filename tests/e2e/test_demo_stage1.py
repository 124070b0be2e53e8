"""`kftune demo` stage 1, shrunk by flags: two NER models (uncased, cased), seven casing variants,
the seed-000 Development and Test tables."""

import json
import os
import re
import subprocess
import sys

import pytest

from kftune.data import VARIANTS
from kftune.evaluate.crossvariant import TABLE_HEADER

pytestmark = pytest.mark.e2e


def test_demo_stage1_prints_the_seed_tables(kftune_home, tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kftune",
            "demo",
            "--out",
            str(out),
            "--epochs",
            "2",
            "--max-train-samples",
            "400",
            "--max-eval-samples",
            "100",
            "--learning-rate",
            "2e-3",
            "--stages",
            "prepare,train,evaluate,report",  # the search stage has its own test (test_local_asha.py)
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "tables.md").read_text()
    assert text in proc.stdout
    rows = {}
    for title in ("Development", "Test"):
        block = text.split(f"{title}:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert block[0] == TABLE_HEADER and block[1] == "|" + " --- |" * 10
        assert len(block) == 4
        for line in block[2:]:
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[0] == "Original" and cells[2] == "-"
            assert all(re.fullmatch(r"\d\.\d{5}", c) for c in cells[3:]), line
            rows[(title, cells[1])] = dict(zip(VARIANTS, map(float, cells[3:]), strict=True))
    assert {k[1] for k in rows} == {"uncased", "cased"}
    # the casing effect: a cased-trained model drops on lower-cased text
    dev_cased = rows[("Development", "cased")]
    assert dev_cased["cased"] > dev_cased["uncased"] + 0.1
    results = json.loads((out / "results.json").read_text())
    assert set(results["results"]) == {"uncased", "cased"}
    assert set(results["results"]["cased"]["test"]) == set(VARIANTS)
    assert (out / "models" / "ner-original-cased" / "best" / "config.json").is_file()
    assert not (out / "models" / "ner-original-cased" / "last").exists()  # the demo keeps best/ only
