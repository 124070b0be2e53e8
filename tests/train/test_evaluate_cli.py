"""`kftune evaluate` bad input: one line, exit 2, before a model is loaded."""


def test_missing_model_directory(h, tmp_path):
    proc = h.cli("evaluate", "--model", str(tmp_path / "nope"), "--data", "demo:ner")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        == f"kftune evaluate: error: model directory {tmp_path / 'nope'} does not exist: pass a trial output directory or its best/"
    )


def test_unknown_variant_and_split(h, cli_run):
    out, _ = cli_run
    proc = h.cli("evaluate", "--model", str(out), "--data", "demo:ner", "--variants", "cased,shouting")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "--variants: 'shouting' is not a casing variant" in proc.stderr
    proc = h.cli("evaluate", "--model", str(out), "--data", "demo:ner", "--splits", "dev,holdout")
    assert proc.returncode == 2 and "--splits: unknown split 'holdout'" in proc.stderr
