from kftune.data.casing import VARIANTS
from kftune.data.conll import read_conll


def test_variants_writes_seven_per_split(kftune_cli, kftune_home, tmp_path):
    proc = kftune_cli("data", "variants", "demo:ner", str(tmp_path / "out"), "--family", "simple")
    assert proc.returncode == 0, proc.stderr
    for variant in VARIANTS:
        for split in ("train", "dev", "test"):
            assert (tmp_path / "out" / "simple" / variant / f"{split}.conll").is_file()
    both = read_conll(tmp_path / "out" / "simple" / "uncased-cased-both" / "dev.conll")
    assert len(both) == 1000
    assert {t[2:] for ex in both for t in ex.tags if t != "O"} == {"PER", "LOC", "ORG", "MISC"}


def test_variants_reports_bad_mapping_in_one_line(kftune_cli, kftune_home, tmp_path):
    (tmp_path / "m.tsv").write_text("PERSON\tPER\n")
    proc = kftune_cli(
        "data",
        "variants",
        "demo:ner",
        str(tmp_path / "o"),
        "--family",
        "simple",
        "--mapping",
        str(tmp_path / "m.tsv"),
    )
    assert proc.returncode == 2
    assert "is not in the mapping" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_non_writable_output_dir(kftune_cli, kftune_home, tmp_path):
    (tmp_path / "file").write_text("x")
    proc = kftune_cli("data", "variants", "demo:ner", str(tmp_path / "file" / "sub"))
    assert proc.returncode == 2 and "not writable" in proc.stderr
