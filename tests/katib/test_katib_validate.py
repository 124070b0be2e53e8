"""``kftune katib validate``: documents, exit codes, output shapes (text and JSON)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kftune.katib import cli as katib_cli
from kftune.katib.validator import validate_paths

ROOT = Path(__file__).resolve().parents[2]
ASHA = ROOT / "katib" / "ner-asha.yaml"


def _broken_asha(tmp_path: Path) -> Path:
    text = ASHA.read_text()
    text = text.replace('min: "6e-6"', "min: 6e-6")  # a number where Katib wants a string
    text = text.replace("trainer:0.1.0", "trainer:latest")
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_findings_carry_file_line_path_and_fix(tmp_path):
    path = _broken_asha(tmp_path)
    report = validate_paths([path])
    by_rule = {f.rule: f for f in report.findings}
    decode = by_rule["webhook.decode"]
    assert decode.line == _line_of(path, "min: 6e-6")
    assert decode.path == "spec.parameters[0].feasibleSpace.min"
    assert 'min: "6e-6"' in decode.fix
    assert by_rule["extra.image-tag"].line == _line_of(path, "trainer:latest")
    assert report.exit_code == 1


def test_multi_document_files_and_other_kinds(tmp_path):
    good = ASHA.read_text()
    path = tmp_path / "multi.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n---\n"
        + good
        + "---\n- just\n- a list\n---\nmetadata: {name: x}\n---\nkind: Experiment\napiVersion: kubeflow.org/v1\n"
        + "metadata: {name: [oops\n---\n"
        + good.replace("name: ner-asha\n", "name: ner-asha-2\n")
    )
    report = validate_paths([path])
    kinds = [(d.index, d.kind, d.status) for d in report.documents]
    assert kinds == [
        (0, "ConfigMap", "skipped"),
        (1, "Experiment", "checked"),
        (2, None, "invalid"),
        (3, None, "invalid"),
        (4, None, "invalid"),
        (5, "Experiment", "checked"),
    ]
    doc_findings = [(f.document, f.severity, f.rule) for f in report.findings]
    assert (0, "note", "document") in doc_findings
    assert (2, "error", "document") in doc_findings  # a list, not a mapping
    assert (3, "error", "document") in doc_findings  # no kind
    assert (4, "error", "yaml") in doc_findings  # syntax error, with its line
    assert not [f for f in report.findings if f.document in (1, 5) and f.severity != "note"]
    syntax = next(f for f in report.findings if f.rule == "yaml")
    assert syntax.line == _line_of(path, "[oops")


def test_same_name_twice_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text(ASHA.read_text())
    (tmp_path / "b.yaml").write_text(ASHA.read_text())
    report = validate_paths([tmp_path])
    dup = [f for f in report.findings if f.rule == "document"]
    assert len(dup) == 1 and dup[0].file.endswith("b.yaml") and "a.yaml" in dup[0].message


def test_wrong_api_version(tmp_path):
    path = tmp_path / "v1.yaml"
    path.write_text(ASHA.read_text().replace("kubeflow.org/v1beta1", "kubeflow.org/v1alpha3"))
    (finding,) = [f for f in validate_paths([path]).findings if f.rule == "document"]
    assert finding.path == "apiVersion" and finding.line == _line_of(path, "v1alpha3")


def test_cli_ok_exit_0_and_text_shape(kftune_cli):
    proc = kftune_cli("katib", "validate", str(ASHA))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == f"{ASHA}: ok (ner-asha)"
    assert "0 error(s), 0 warning(s)" in proc.stdout.splitlines()[-1]


def test_cli_errors_exit_1_all_in_one_run_and_json(kftune_cli, tmp_path):
    path = _broken_asha(tmp_path)
    warn = tmp_path / "warn.yaml"  # warnings alone do not fail
    warn.write_text(
        ASHA.read_text()
        .replace("name: ner-asha\n", "name: ner-warn\n")
        .replace('sidecar.istio.io/inject: "false"', "app: trainer")
    )
    proc = kftune_cli("katib", "validate", "--format", "json", str(path), str(warn))
    assert proc.returncode == 1, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) == {"summary", "files", "documents", "findings"}
    assert out["summary"]["errors"] == 2 and out["summary"]["warnings"] == 1
    assert {f["rule"] for f in out["findings"]} == {"webhook.decode", "extra.image-tag", "extra.istio"}
    f = next(f for f in out["findings"] if f["rule"] == "webhook.decode")
    assert set(f) == {"severity", "file", "line", "path", "message", "fix", "rule", "document"}
    text = kftune_cli("katib", "validate", str(path))
    assert text.returncode == 1
    first = text.stdout.splitlines()[0]
    assert first.startswith(
        f"{path}:{_line_of(path, 'min: 6e-6')}: error: spec.parameters[0].feasibleSpace.min: "
    )
    assert first.endswith("[webhook.decode]") and "Fix: " in first
    only_warn = kftune_cli("katib", "validate", str(warn))
    assert only_warn.returncode == 0 and "warning:" in only_warn.stdout


def test_cli_usage_errors_exit_2(kftune_cli, tmp_path):
    missing = kftune_cli("katib", "validate", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    assert kftune_cli("katib", "frobnicate").returncode == 2
    assert kftune_cli("katib", "validate").returncode == 2


def test_custom_katib_config(tmp_path):
    from kftune.katib.findings import Options
    from kftune.katib.katib_config import KatibConfig

    cfg = tmp_path / "katib-config.yaml"
    cfg.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: katib-config}\ndata:\n  katib-config.yaml: |\n"
        "    apiVersion: config.kubeflow.org/v1beta1\n    kind: KatibConfig\n    runtime:\n"
        "      suggestions:\n        - {algorithmName: random, image: x:1}\n"
        "      metricsCollectors:\n        - {kind: StdOut, image: y:1}\n"
    )
    config = KatibConfig.load(cfg)
    assert config.suggestions == ("random",) and config.early_stoppings == ()
    report = validate_paths([ASHA], Options(config, check_algorithm_settings=False))
    assert [f.rule for f in report.findings if f.severity == "error"] == ["webhook.algorithm"]


def test_katib_dispatcher_lists_subcommands(capsys):
    assert katib_cli.main(["--help"]) == 0
    assert "validate" in capsys.readouterr().out
    assert katib_cli.main([]) == 2


@pytest.mark.parametrize("name", ["validate"])
def test_every_subcommand_module_has_main(name):
    import importlib

    module = importlib.import_module(katib_cli.SUBCOMMANDS[name][0])
    assert callable(module.main)
