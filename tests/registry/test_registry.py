"""The model registry against a real ``mlflow server`` (SQLite, the session fixture) with real models.

One registered model goes through the champion rule: the real run (first version: champion), a
copy whose test scores are lower (challenger, with the reason), a copy whose test scores are
higher by 0.10/0.11/0.12 on the same seeds (paired t-test, p = 0.0014: champion moves). The
champion then loads in a fresh process and reproduces its registered dev F1. The copies share the
trained models (hard links); only metrics.json test values differ, so the decision is known.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from registry_server import _free_port
from test_registry_rundirs import build_run, copy_run, shared_base, tree_state

from kftune.errors import UserError
from kftune.registry.decision import CHALLENGER, CHAMPION, decide
from kftune.registry.modelcard import DESCRIPTION_LIMIT, parse_front_matter

pytestmark = pytest.mark.server

NAME = "ner-tiny"
WORSE = {1: -0.05, 2: -0.06, 3: -0.04}
BETTER = {1: 0.10, 2: 0.11, 3: 0.12}


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory, kftune_home):
    return build_run(shared_base(tmp_path_factory))


@pytest.fixture(scope="module")
def chain(mlflow_server, ner_run, tmp_path_factory):
    from kftune.registry import register

    base = tmp_path_factory.mktemp("chain")
    runs = {
        "first": copy_run(ner_run, base / "first"),
        "worse": copy_run(ner_run, base / "worse", test_shift=WORSE),
        "better": copy_run(ner_run, base / "better", test_shift=BETTER),
    }
    results = {k: register(p, name=NAME, tracking_uri=mlflow_server) for k, p in runs.items()}
    return runs, results


@pytest.fixture(scope="module")
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(mlflow_server)


def _scores(run):
    out = {}
    for seed in (1, 2, 3):
        out[seed] = json.loads((run / "retrain" / f"seed-{seed}" / "metrics.json").read_text())["test"][
            "test_f1"
        ]
    return out


# ----------------------------------------------------------------------------------------------
# The champion rule, end to end


def test_first_version_is_champion_with_card_tags_and_registry_json(chain, client, mlflow_server):
    import mlflow

    runs, results = chain
    r = results["first"]
    assert (r.version, r.alias, r.reason) == ("1", CHAMPION, "no champion yet")
    assert r.model_uri == f"models:/{NAME}/1" and r.metric == "test_f1" and r.scores == _scores(runs["first"])
    recorded = json.loads((runs["first"] / "registry.json").read_text())
    assert {k: recorded[k] for k in ("name", "version", "alias", "reason", "model_uri")} == {
        "name": NAME, "version": "1", "alias": CHAMPION, "reason": "no champion yet", "model_uri": f"models:/{NAME}/1",
    }  # fmt: skip
    mv = client.get_model_version(NAME, "1")
    tags = mv.tags
    assert json.loads(tags["kftune.seed_scores"])["test_f1"] == {str(k): v for k, v in r.scores.items()}
    values = list(r.scores.values())
    assert float(tags["kftune.metric_mean"]) == pytest.approx(sum(values) / 3, abs=1e-15)
    assert tags["kftune.seeds"] == "1,2,3" and tags["kftune.published_seed"] == str(r.seed)
    assert tags["kftune.git_sha"] == "0" * 40 and tags["kftune.pipeline"] == "ner-hpo"
    assert tags["kftune.test_used"].startswith("none") and tags["kftune.model_flavor"] == "transformers"
    matrix = json.loads(tags["kftune.eval_matrix"])
    ev = json.loads((runs["first"] / "eval" / f"seed-{r.seed}.json").read_text())
    assert matrix["test"] == {v: x["f1"] for v, x in ev["test"].items()}
    # the card: README.md artifact of the run, short form as description (<= 5000 characters)
    local = mlflow.artifacts.download_artifacts(f"runs:/{r.run_id}/README.md", tracking_uri=mlflow_server)
    card = Path(local).read_text()
    assert parse_front_matter(card)["kftune"]["version"] == "1" and "## Limitations" in card
    assert 0 < len(mv.description) <= DESCRIPTION_LIMIT and "no champion yet" in mv.description
    assert client.get_registered_model(NAME).description.startswith(f"**{NAME}**")
    run = client.get_run(r.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["kftune.registered_model"] == NAME
    assert run.data.metrics["test_f1"] == r.scores[r.seed] and "matrix_test_uncased" in run.data.metrics
    assert {"README.md", "kftune", "model"} <= {a.path for a in client.list_artifacts(r.run_id)}


def test_worse_model_is_challenger_with_the_reason(chain, client):
    _, results = chain
    r = results["worse"]
    assert (r.version, r.alias) == ("2", CHALLENGER)
    assert "not shown better than champion v1 on test_f1" in r.reason and "is not > 0" in r.reason
    mv = client.get_model_version(NAME, "2")
    assert mv.tags["kftune.decision"] == CHALLENGER and mv.tags["kftune.reason"] == r.reason
    assert mv.tags["kftune.compared_with"] == "v1" and "not shown better" in mv.description


def test_significantly_better_model_takes_the_champion_alias(chain, client):
    _, results = chain
    r = results["better"]
    assert (r.version, r.alias) == ("3", CHAMPION)
    assert r.reason.startswith("significantly better than champion v1 on test_f1 (paired by seed, n=3)")
    assert "paired t-test one-sided p = 0.0014" in r.reason
    rm = client.get_registered_model(NAME)
    assert dict(rm.aliases) == {CHAMPION: "3", CHALLENGER: "2"}
    mv = client.get_model_version(NAME, "3")
    assert mv.tags["kftune.test_used"] == "paired t-test" and float(mv.tags["kftune.p_value"]) < 0.05
    assert client.get_model_version(NAME, "1").tags["kftune.superseded_by"] == "3"
    assert "significantly better than champion v1" in rm.description


def test_registering_the_same_run_again_is_a_no_op(chain, client, mlflow_server):
    from kftune.registry import register

    runs, results = chain
    before = tree_state(runs["first"])
    again = register(runs["first"], name=NAME, tracking_uri=mlflow_server)
    assert again.already_registered and again.version == results["first"].version
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 3
    assert tree_state(runs["first"]) == before


def test_champion_loads_in_a_fresh_process_and_reproduces_its_metric(chain, mlflow_server, kftune_home):
    """models:/NAME@champion (v3) in a new interpreter: predict dev, recompute F1 with
    kftune.evaluate.metrics, equal to the registered kftune.dev_f1. v1 (unshifted scores) also
    reproduces its registered test F1, the metric the champion rule compares."""
    script = textwrap.dedent(
        """
        import json, sys
        import torch
        torch.set_num_threads(1)
        import mlflow
        from mlflow import MlflowClient
        from kftune.data import apply_variant, load_corpus
        from kftune.evaluate.metrics import ner_metrics
        from kftune.train.predict import predict_ner_tags

        uri, name = sys.argv[1:3]
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        out = {}
        for ref, split in (("@champion", "dev"), ("/1", "test")):
            mv = client.get_model_version_by_alias(name, "champion") if ref == "@champion" else client.get_model_version(name, "1")
            parts = mlflow.transformers.load_model(f"models:/{name}{ref}", return_type="components")
            args = json.load(open(mlflow.artifacts.download_artifacts(f"runs:/{mv.run_id}/kftune/metrics.json")))["args"]
            corpus = load_corpus(args["data"], "ner", family=args["tag_family"], mapping=args["mapping"])
            examples = corpus.splits[split][: args["max_eval_samples"]]
            examples = apply_variant(examples, args["eval_variant"] or args["train_variant"], args["data_seed"])
            tags = predict_ner_tags(parts["model"], parts["tokenizer"], examples, max_length=args["max_length"])
            out[ref] = {"version": mv.version, "f1": ner_metrics([ex.tags for ex in examples], tags)["f1"],
                        "registered": float(mv.tags[f"kftune.{split}_f1"]), "n": len(examples),
                        "class": type(parts["model"]).__name__}
        print(json.dumps(out))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, mlflow_server, NAME], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    champion, first = out["@champion"], out["/1"]
    assert (
        champion["version"] == "3"
        and champion["class"] == "BertForTokenClassification"
        and champion["n"] == 80
    )
    assert champion["f1"] == pytest.approx(champion["registered"], abs=1e-12)
    assert first["version"] == "1" and first["f1"] == pytest.approx(first["registered"], abs=1e-12)
    assert first["registered"] == chain[1]["first"].scores[chain[1]["first"].seed]


# ----------------------------------------------------------------------------------------------
# The CLI: show, compare (dry run), the server down and registering later


def test_show_lists_versions_with_aliases_and_metrics(chain, kftune_cli, mlflow_server):
    proc = kftune_cli("registry", "show", NAME, "--tracking-uri", mlflow_server)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{NAME}: 3 versions, champion v3"
    rows = {ln.split()[0]: ln.split() for ln in lines[2:5]}
    assert rows["3"][1] == "champion" and rows["2"][1] == "challenger" and rows["1"][1] == "-"
    _, results = chain
    mean = sum(results["better"].scores.values()) / 3
    assert rows["3"][2] == "test_f1" and rows["3"][3] == f"{mean:.4f}"
    assert any(ln.startswith("v2 challenger: not shown better than champion v1") for ln in lines)


def test_compare_is_a_dry_run(chain, kftune_cli, mlflow_server, client, tmp_path, ner_run):
    run = copy_run(ner_run, tmp_path / "candidate")
    before = tree_state(run)
    proc = kftune_cli("registry", "compare", str(run), "--name", NAME, "--tracking-uri", mlflow_server)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "champion v3 of ner-tiny" in out and "vs champion v3 (test_f1): mean difference -0.1100" in out
    assert "would become: challenger (not shown better than champion v3" in out
    assert "nothing was registered" in out
    assert tree_state(run) == before and len(client.search_model_versions(f"name = '{NAME}'")) == 3


def test_server_down_is_one_clear_error_and_registering_later_works(
    mlflow_server, kftune_cli, ner_run, tmp_path, client
):
    run = copy_run(ner_run, tmp_path / "run")
    before = tree_state(run)
    dead = f"http://127.0.0.1:{_free_port()}"
    proc = kftune_cli(
        "registry", "register", str(run), "--name", "ner-later", "--tracking-uri", dead, timeout=120
    )
    assert proc.returncode == 3, (proc.stdout, proc.stderr[-2000:])
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert err[0].startswith(f"kftune registry: error: MLflow server at {dead} is not reachable")
    assert (
        f"register later with `kftune registry register {run} --name ner-later --tracking-uri {dead}`"
        in err[0]
    )
    assert str(run / "retrain") in err[0] and proc.stdout == ""
    assert tree_state(run) == before  # nothing written, the retrained models intact

    # later, with the server up: the same command (its main() in this process: no interpreter start-up)
    argv = ["registry", "register", str(run), "--name", "ner-later", "--tracking-uri", mlflow_server]
    code, out, err = _cli_in_process(*argv)
    assert code == 0, err[-3000:]
    assert out.startswith("registered models:/ner-later/1 (seed ") and "as champion" in out
    assert json.loads((run / "registry.json").read_text())["alias"] == CHAMPION
    assert {p for p in tree_state(run) if p not in before} == {"registry.json"}
    assert client.get_registered_model("ner-later").aliases == {CHAMPION: "1"}


def _cli_in_process(*argv: str) -> tuple[int, str, str]:
    """``kftune ARGV`` in this process (the same main() as the command; no interpreter start-up)."""
    import contextlib
    import io

    from kftune.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_bad_input_is_one_line_exit_2(mlflow_server, tmp_path, ner_run):
    uri = ["--tracking-uri", mlflow_server]
    (tmp_path / "empty").mkdir()
    failed = copy_run(ner_run, tmp_path / "failed")
    for seed in (1, 2, 3):
        path = failed / "retrain" / f"seed-{seed}" / "metrics.json"
        data = json.loads(path.read_text())
        path.unlink()
        path.write_text(json.dumps({**data, "status": "nan_loss"}))
    cases = [
        (["register", str(tmp_path / "missing"), "--name", "x", *uri], "does not exist"),
        (["register", str(tmp_path / "empty"), "--name", "x", *uri], "is not a run directory"),
        (["register", str(ner_run), "--name", "a/b", *uri], "registered model name"),
        (["register", str(failed), "--name", "x", *uri], "no completed retrained model"),
        (["register", str(ner_run), "--name", "x", "--alpha", "2", *uri], "--alpha must be between 0 and 1"),
        (["show", "no-such-model", *uri], "no registered model named 'no-such-model'"),
        (["frobnicate"], "invalid choice"),
    ]
    for argv, words in cases:
        code, out, err = _cli_in_process("registry", *argv)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 2 and len(lines) == 1 and words in lines[0], (argv, code, err)
        assert lines[0].startswith("kftune registry: error: ") and out == ""
    assert not (ner_run / "registry.json").exists() and not (failed / "registry.json").exists()


# ----------------------------------------------------------------------------------------------
# The decision rule alone (no server)


def test_decide_rules():
    a = {1: 0.80, 2: 0.81, 3: 0.79}
    assert decide(a, None, metric="test_f1").alias == CHAMPION
    same = decide(a, dict(a), metric="test_f1", champion_version="2")
    assert same.alias == CHALLENGER and "identical" in same.reason and "champion v2" in same.reason
    one = decide({1: 0.9}, {1: 0.5}, metric="test_f1")
    assert one.alias == CHALLENGER and "Undecided" in one.reason and "not testable" in one.reason
    loss = decide({1: 0.30, 2: 0.20, 3: 0.25}, {1: 0.50, 2: 0.60, 3: 0.55}, metric="test_loss")
    assert loss.alias == CHAMPION and loss.comparison.alternative == "less"
    unpaired = decide({4: 0.9, 5: 0.91}, {1: 0.5, 2: 0.52}, metric="test_f1")
    assert not unpaired.comparison.paired
    none = decide(a, {}, metric="test_f1", champion_version="1")
    assert none.alias == CHALLENGER and "no per-seed test_f1 scores" in none.reason
    with pytest.raises(UserError, match="NaN"):
        decide({1: float("nan"), 2: 0.5}, {1: 0.4, 2: 0.3}, metric="test_f1")
