"""Where a trial's container paths live on this machine.

A trial template names paths inside its container: the checkpoint volume (``/cache``), the
trial's output dir (``/cache/trials/<experiment>/<trial>``), a ``workingDir``, a File collector's
metrics file. Locally each container path prefix maps to a local directory (longest prefix
first), applied to every argv element (whole, or the value of ``--flag=value``), env value and
working directory after Kubernetes' ``$(VAR)`` expansion:

- the **trials root** -> ``WORK_DIR/trials``: the container's ``workingDir`` and the directory of
  every path that ends in the trial's name (``/cache/trials/ner-asha/${trialParameters.trialName}``).
  So a promoted trial's ``--resume-from=<parent>`` (relative to ``workingDir``) resolves to the
  parent's local output dir;
- the **cache volume** (the volume mounted where the container's ``KFTUNE_HOME`` points) -> this
  machine's KFTUNE_HOME (``$KFTUNE_HOME`` or ``./.kftune``), so the tiny model and the demo
  corpora are built once and shared with other kftune commands;
- every other volume -> ``WORK_DIR/volumes/<volume name>``; a ``configMap`` volume whose ConfigMap
  is in the same file is written there (one file per key), as the kubelet would;
- ``--volume NAME=DIR`` maps a volume (by name) to a directory of your choice;
- a File collector's metrics directory -> ``WORK_DIR/metrics/<trial>/`` (one per trial, as the
  sidecar's emptyDir is one per pod).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kftune import paths
from kftune.katib.experiment import Experiment, _get, find_container, primary_pod_template

_TRIAL_NAME_REF = re.compile(r"\$\{trialParameters\.([^}]+)\}$")


@dataclass
class PathMap:
    """Container path prefixes -> local directories (longest prefix wins)."""

    rules: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, container: str, local: str | Path, note: str = "") -> None:
        container = _norm(container)
        if not container.startswith("/") or any(c == container for c, _ in self.rules):
            return
        self.rules.append((container, str(local)))
        self.rules.sort(key=lambda r: -len(r[0]))
        if note:
            self.notes.append(f"{container} -> {local} ({note})")

    def with_rule(self, container: str, local: str | Path) -> PathMap:
        out = PathMap(list(self.rules), list(self.notes))
        container = _norm(container)
        out.rules = [r for r in out.rules if r[0] != container] + [(container, str(local))]
        out.rules.sort(key=lambda r: -len(r[0]))
        return out

    def map_path(self, value: str) -> str:
        if not value.startswith("/"):
            return value
        for prefix, local in self.rules:
            if value == prefix or value.startswith(prefix + "/") or prefix == "/":
                rest = value[len(prefix) :].lstrip("/")
                return str(Path(local, rest)) if rest else local
        return value

    def map_value(self, value: str) -> str:
        """A whole path, or the value of ``--flag=/path``."""
        if value.startswith("/"):
            return self.map_path(value)
        if value.startswith("-") and "=" in value:
            flag, _, rest = value.partition("=")
            if rest.startswith("/"):
                return f"{flag}={self.map_path(rest)}"
        return value

    def to_dict(self) -> dict[str, Any]:
        return {"rules": self.rules, "notes": self.notes}


def _norm(path: str) -> str:
    path = re.sub(r"/+", "/", path)
    return path.rstrip("/") or "/"


@dataclass(frozen=True)
class LocalLayout:
    work_dir: Path

    @property
    def trials(self) -> Path:
        return self.work_dir / "trials"

    @property
    def logs(self) -> Path:
        return self.work_dir / "logs"

    def volume(self, name: str) -> Path:
        return self.work_dir / "volumes" / name

    def metrics_dir(self, trial: str) -> Path:
        return self.work_dir / "metrics" / trial


def trial_roots(exp: Experiment) -> list[str]:
    """Container directories that hold one subdirectory per trial (see module doc)."""
    tt = exp.trial_template
    name_params = {p.name for p in tt.trial_parameters if p.meta_key == "Name"}
    found: list[str] = []
    pod = primary_pod_template(tt.trial_spec or {}, tt.primary_pod_labels)
    if pod is None:
        return found
    container = find_container(pod[1], tt.primary_container_name) or {}
    working_dir = container.get("workingDir")
    if isinstance(working_dir, str) and working_dir.startswith("/"):
        found.append(_norm(working_dir))
    strings = [str(x) for x in [*(container.get("command") or []), *(container.get("args") or [])]]
    strings += [
        str(e.get("value")) for e in container.get("env") or [] if isinstance(e, dict) and "value" in e
    ]
    for s in strings:
        s = s.partition("=")[2] if s.startswith("-") and "=" in s else s
        head, _, tail = s.rpartition("/")
        m = _TRIAL_NAME_REF.match(tail)
        if head.startswith("/") and m and m.group(1) in name_params:
            root = _norm(head)
            if root not in found:
                found.append(root)
    return found


def build_path_map(
    exp: Experiment,
    layout: LocalLayout,
    volumes: dict[str, str] | None = None,
    config_maps: dict[str, dict[str, Any]] | None = None,
    kftune_home: Path | None = None,
) -> PathMap:
    """The default container -> local mapping for an experiment (see module doc).

    ``volumes`` are ``--volume NAME=DIR`` choices; ``config_maps`` the ConfigMaps found beside the
    Experiment (name -> data), written into their volume's directory.
    """
    volumes = dict(volumes or {})
    config_maps = config_maps or {}
    home = Path(kftune_home or paths.home()).resolve()
    pm = PathMap()
    for root in trial_roots(exp):
        pm.add(root, layout.trials, "trial outputs")
    tt = exp.trial_template
    pod = primary_pod_template(tt.trial_spec or {}, tt.primary_pod_labels)
    if pod is None:
        return pm
    template = pod[1]
    container = find_container(template, tt.primary_container_name) or {}
    env = {
        e.get("name"): e.get("value")
        for e in container.get("env") or []
        if isinstance(e, dict) and isinstance(e.get("value"), str)
    }
    cache_path = _norm(env["KFTUNE_HOME"]) if isinstance(env.get("KFTUNE_HOME"), str) else None
    pod_volumes = {
        v.get("name"): v for v in _get(template, "spec", "volumes", default=[]) if isinstance(v, dict)
    }
    for mount in container.get("volumeMounts") or []:
        if not isinstance(mount, dict) or not isinstance(mount.get("mountPath"), str):
            continue
        name = str(mount.get("name"))
        mount_path = _norm(mount["mountPath"])
        if name in volumes:
            local = Path(volumes.pop(name)).expanduser().resolve()
            local.mkdir(parents=True, exist_ok=True)
            pm.add(mount_path, local, f"volume {name}, --volume")
            continue
        if cache_path is not None and mount_path == cache_path:
            home.mkdir(parents=True, exist_ok=True)
            pm.add(mount_path, home, f"volume {name}: KFTUNE_HOME, shared cache")
            continue
        local = layout.volume(name)
        local.mkdir(parents=True, exist_ok=True)
        vol = pod_volumes.get(name) or {}
        cm_name = _get(vol, "configMap", "name")
        if isinstance(cm_name, str):
            data = config_maps.get(cm_name)
            if data is None:
                pm.add(mount_path, local, f"volume {name}: ConfigMap {cm_name} not in the file, empty")
                continue
            for key, text in data.items():
                (local / str(key)).write_text(str(text), encoding="utf-8")
            pm.add(mount_path, local, f"volume {name}: ConfigMap {cm_name}, {len(data)} file(s)")
            continue
        pm.add(mount_path, local, f"volume {name}")
    if cache_path is not None and pm.map_path(cache_path) == cache_path:
        home.mkdir(parents=True, exist_ok=True)
        pm.add(cache_path, home, "KFTUNE_HOME, shared cache")
    for name in volumes:  # --volume for a volume the container does not mount
        pm.notes.append(f"--volume {name}: the primary container mounts no volume of that name (ignored)")
    return pm


def metrics_file_rule(exp: Experiment, layout: LocalLayout, trial: str) -> tuple[str, Path] | None:
    """(container dir, local dir) of a File collector's metrics file for one trial, or None."""
    mc = exp.metrics_collector
    if mc.kind != "File" or not mc.path.startswith("/"):
        return None
    return os.path.dirname(_norm(mc.path)) or "/", layout.metrics_dir(trial)
