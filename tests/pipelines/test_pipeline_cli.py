"""``kftune pipeline compile`` / ``submit`` and bad input: fast (no training)."""

from __future__ import annotations

import json
import socket

import pytest
import yaml
from kfp import components
from kftune.pipelines import PIPELINES

from kftune.cli import main as kftune_main
from tests.pipelines.fake_kfp import FakeKFP

EXPECTED_TASKS = {
    "ner-hpo": {"exit-handler-1", "delete-experiment"},
    "ner-matrix": {"exit-handler-1", "delete-experiment"},
    "textcls": {"exit-handler-1", "delete-experiment"},
    "mlm": {"exit-handler-1", "delete-experiment"},
}
# tasks of each pipeline's steps (the DAG that does the work)
STEPS = {
    "ner-hpo": {"start-run", "prepare-data", "tune", "plan-seeds", "for-loop-1", "compare-models",
                "register-model", "write-report"},
    "ner-matrix": {"start-run", "plan-configurations", "for-loop-2", "write-matrix-report"},
    "textcls": {"start-run", "prepare-data", "tune", "plan-seeds", "for-loop-1", "plan-other-models",
                "for-loop-2", "compare-models", "register-model", "write-report"},
    "mlm": {"check-finetune-tasks", "start-run", "prepare-data", "tune", "retrain-seed", "measure-perplexity",
            "plan-finetunes", "for-loop-1", "write-glue-report"},
}  # fmt: skip


def run(argv, capsys):
    code = kftune_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("compiled")
    assert kftune_main(["pipeline", "compile", "all", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", list(PIPELINES))
def test_compiled_ir_loads_with_kfp_and_has_the_steps(compiled, name):
    path = compiled / f"{name}.yaml"
    comp = components.load_component_from_file(str(path))  # KFP's own loader accepts it
    assert comp.name == name
    ir = next(yaml.safe_load_all(path.read_text()))
    assert set(ir["root"]["dag"]["tasks"]) == EXPECTED_TASKS[name]
    steps_dag = next(
        spec["dag"]["tasks"]
        for key, spec in ir["components"].items()
        if key.startswith("comp-") and "dag" in spec and STEPS[name] <= set(spec["dag"]["tasks"])
    )
    assert STEPS[name] <= set(steps_dag)
    # every executor runs on the pipeline image, with kfp already installed there
    images = {e["container"]["image"] for e in ir["deploymentSpec"]["executors"].values()}
    assert images == {"ghcr.io/kftune/pipeline:0.1.0"}
    assert "pip install" not in path.read_text()
    # the exit handler deletes the Katib experiment; the Katib file is embedded as a default
    assert (
        ir["root"]["dag"]["tasks"]["delete-experiment"]["triggerPolicy"]["strategy"]
        == "ALL_UPSTREAM_TASKS_COMPLETED"
    )
    default = json.loads(ir["root"]["inputDefinitions"]["parameters"]["experiment"]["defaultValue"])
    assert default["kind"] == "Experiment" and default["spec"]["trialTemplate"]


def test_side_effect_steps_are_not_cached(compiled):
    text = (compiled / "ner-hpo.yaml").read_text()
    docs = list(yaml.safe_load_all(text))
    ir = docs[0]
    steps = next(s for k, s in ir["components"].items() if k == "comp-ner-hpo-steps")["dag"]["tasks"]
    for task in ("tune", "register-model", "retrain-seed", "write-report"):
        spec = steps.get(task) or ir["components"]["comp-for-loop-1"]["dag"]["tasks"].get(task)
        assert spec["cachingOptions"].get("enableCache") is not True, task
    assert steps["prepare-data"]["cachingOptions"]["enableCache"] is True
    # the platform spec mounts the cache volume and the settings ConfigMap
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    # training steps ask for the GPUs the pipeline parameter says (0: CPU nodes)
    executors = ir["deploymentSpec"]["executors"]
    for name in ("exec-retrain-seed", "exec-evaluate-variants"):
        accel = executors[name]["container"]["resources"]["accelerator"]
        assert accel["resourceType"] == "nvidia.com/gpu" and "gpus_per_step" in accel["resourceCount"]
    assert "resources" not in executors["exec-tune"]["container"]
    tune_exec = platform["exec-tune"]
    assert tune_exec["pvcMount"][0]["mountPath"] == "/cache"
    assert tune_exec["configMapAsEnv"][0]["configMapName"] == "kftune-settings"


def test_unknown_pipeline_name_is_one_line_with_the_known_ones(capsys):
    for argv in (["pipeline", "compile", "nope"], ["pipeline", "run", "nope", "--local"],
                 ["pipeline", "submit", "nope", "--host", "http://127.0.0.1:1"]):  # fmt: skip
        code, out, err = run(argv, capsys)
        assert code == 2
        assert err.count("\n") == 1
        assert "unknown pipeline 'nope'" in err and all(n in err for n in PIPELINES)


def test_bad_param_is_a_user_error(capsys):
    code, _, err = run(["pipeline", "run", "ner-hpo", "--local", "--param", "num_seeds=many"], capsys)
    assert code == 2 and "num_seeds=many" in err and "integer" in err
    code, _, err = run(["pipeline", "run", "ner-hpo", "--local", "--param", "colour=red"], capsys)
    assert code == 2 and "not a parameter" in err and "num_seeds" in err
    code, _, err = run(["pipeline", "run", "ner-hpo"], capsys)
    assert code == 2 and "--local" in err


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_host_is_one_line_exit_2(capsys):
    url = f"http://127.0.0.1:{_closed_port()}"
    code, out, err = run(["pipeline", "submit", "ner-hpo", "--host", url], capsys)
    assert code == 2
    assert err.count("\n") == 1 and "cannot reach Kubeflow Pipelines at" in err and url in err


@pytest.fixture
def fake_kfp():
    fake = FakeKFP().start()
    yield fake
    fake.stop()


def test_submit_uploads_a_version_tagged_by_git_sha_runs_and_waits(fake_kfp, capsys, monkeypatch):
    from kftune import pipelines_cli

    monkeypatch.setattr(pipelines_cli, "git_sha", lambda short=12: "abc123def456")
    argv = ["pipeline", "submit", "ner-hpo", "--host", fake_kfp.url, "--experiment", "ci", "--poll", "0.05",
            "--param", "num_seeds=3", "--token", "secret"]  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert "SUCCEEDED" in out
    paths = fake_kfp.paths()
    assert "POST /apis/v2beta1/pipelines/upload" in paths
    assert "POST /apis/v2beta1/pipelines/upload_version" in paths
    version_req = next(r for r in fake_kfp.requests if r.path.endswith("/upload_version"))
    assert version_req.query["name"] == ["ner-hpo-abc123def456"]
    assert b"pipelineInfo" in fake_kfp.uploads[-1] and b"ner-hpo" in fake_kfp.uploads[-1]
    run_req = fake_kfp.runs["run-1"]["request"]
    assert run_req["pipeline_version_reference"]["pipeline_version_id"] == "pipeline-1-v1"
    params = run_req["runtime_config"]["parameters"]
    assert params["num_seeds"] == 3 and params["mode"] == "cluster"
    assert run_req["service_account"] == "kftune-pipeline"
    assert fake_kfp.experiments["experiment-1"]["display_name"] == "ci"
    # the bearer token went with the requests
    assert all(r.headers.get("authorization") == "Bearer secret" for r in fake_kfp.requests)

    # the same commit again: the existing pipeline and version are reused, a second run starts
    fake_kfp.gets = 0
    code, out, err = run(argv, capsys)
    assert code == 0, err
    assert len(fake_kfp.pipelines) == 1 and len(fake_kfp.versions["pipeline-1"]) == 2
    assert (
        fake_kfp.runs["run-2"]["request"]["pipeline_version_reference"]["pipeline_version_id"]
        == "pipeline-1-v1"
    )


def test_submit_exits_1_with_the_runs_error_when_it_fails(fake_kfp, capsys):
    fake_kfp.final_state = "FAILED"
    fake_kfp.error_message = "tune: experiment ner-asha-1234 Failed (MaxFailedTrialsReached)"
    code, out, err = run(["pipeline", "submit", "ner-hpo", "--host", fake_kfp.url, "--poll", "0.05"], capsys)
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("kftune pipeline: error: run run-1 FAILED") and "MaxFailedTrialsReached" in last


def test_submit_recurring_creates_a_schedule_and_does_not_wait(fake_kfp, capsys):
    code, out, err = run(["pipeline", "submit", "textcls", "--host", fake_kfp.url, "--recurring",
                          "0 0 3 * * 1"], capsys)  # fmt: skip
    assert code == 0, err
    (rec,) = fake_kfp.recurring.values()
    assert rec["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert rec["pipeline_version_reference"]["pipeline_version_id"] == "pipeline-1-v1"
    assert not fake_kfp.runs


def test_list_names_every_pipeline(capsys):
    code, out, _ = run(["pipeline", "list"], capsys)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == list(PIPELINES)


def test_ci_workflow_compiles_validates_and_submits_only_with_secrets():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    wf = yaml.safe_load((root / ".github" / "workflows" / "pipeline.yml").read_text())
    assert wf[True]["push"]["branches"] == ["main"]  # YAML 1.1 reads the key `on` as True
    job = next(iter(wf["jobs"].values()))
    assert (
        job["env"]["KFP_HOST"] == "${{ secrets.KFP_HOST }}"
        and job["env"]["KFP_TOKEN"] == "${{ secrets.KFP_TOKEN }}"
    )
    runs = [s.get("run", "") for s in job["steps"]]
    order = [
        next(i for i, r in enumerate(runs) if "make setup" in r),
        next(i for i, r in enumerate(runs) if "kftune pipeline compile all" in r),
        next(i for i, r in enumerate(runs) if "kftune katib validate katib/" in r),
        next(i for i, r in enumerate(runs) if "load_component_from_file" in r),
        next(i for i, r in enumerate(runs) if "kftune pipeline submit" in r),
    ]
    assert order == sorted(order)
    submit = job["steps"][order[-1]]
    assert submit["if"] == "${{ env.KFP_HOST != '' }}" and '--host "$KFP_HOST"' in submit["run"]
    skipped = [s for s in job["steps"] if s.get("if") == "${{ env.KFP_HOST == '' }}"]
    assert skipped and "nothing submitted" in skipped[0]["run"]
