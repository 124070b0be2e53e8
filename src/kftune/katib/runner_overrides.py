"""Override flags of ``kftune katib run --local``: swap cluster-only values for local ones.

Every override is explicit and printed. They are applied to the Experiment object itself (a copy
of the parsed YAML) before anything is rendered, so the validator checks the result and each
trial is rendered from it exactly as Katib would render it:

==================================  ===============================================================
``--set-arg --model=tiny``           replace the value of ``--model`` in the primary container's
                                     command/args (both ``--model X`` and ``--model=X`` forms); a
                                     flag that is not there is appended; ``--set-arg --flag`` (no
                                     ``=``) adds a flag without a value
``--drop-arg --flag``                remove ``--flag`` (and its value)
``--set-env NAME=VALUE``             set an env var of the primary container (replacing a value or a
                                     downward-API ``valueFrom``); ``$(NAME)`` references see it
``--param NAME=MIN:MAX[:STEP]``      new feasible range of an int/double parameter (distribution
                                     kept); ``--param NAME=a,b,c`` a new list for discrete/categorical
``--algorithm-setting NAME=VALUE``   set (or add) an algorithm setting, e.g. ``num_configurations=6``
``--early-stopping-setting N=V``     the same for ``spec.earlyStopping``
``--max-trial-count N``              ``spec.maxTrialCount`` (likewise ``--parallel N`` for
``--max-failed-trial-count N``       ``parallelTrialCount``, ``--goal X`` for ``objective.goal``)
==================================  ===============================================================
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from kftune.errors import UserError
from kftune.katib.experiment import find_container, pod_templates

MUTABLE_COUNTS = ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount")


def split_pair(text: str, flag: str, example: str) -> tuple[str, str]:
    """``NAME=VALUE`` -> (name, value); UserError naming the flag otherwise."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UserError(f"{flag} {text!r}: expected NAME=VALUE, e.g. {flag} {example}")
    return name.strip(), value


@dataclass
class Overrides:
    set_args: list[str] = field(default_factory=list)
    drop_args: list[str] = field(default_factory=list)
    set_env: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    algorithm_settings: list[str] = field(default_factory=list)
    early_stopping_settings: list[str] = field(default_factory=list)
    max_trial_count: int | None = None
    parallel: int | None = None
    max_failed_trial_count: int | None = None
    goal: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Overrides:
        known = {k: v for k, v in (data or {}).items() if k in Overrides.__dataclass_fields__}
        return Overrides(**known)

    def without_counts(self) -> Overrides:
        """The same overrides minus the ones Katib lets a user change on a running experiment."""
        return Overrides(
            self.set_args,
            self.drop_args,
            self.set_env,
            self.params,
            self.algorithm_settings,
            self.early_stopping_settings,
            goal=self.goal,
        )

    def is_empty(self) -> bool:
        return self == Overrides()

    # ------------------------------------------------------------------------------------
    def apply(self, raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """A copy of the Experiment with the overrides applied, and one message per change."""
        raw = copy.deepcopy(raw)
        spec = raw.setdefault("spec", {})
        notes: list[str] = []
        for key, value in (
            ("maxTrialCount", self.max_trial_count),
            ("parallelTrialCount", self.parallel),
            ("maxFailedTrialCount", self.max_failed_trial_count),
        ):
            if value is not None:
                if value < 0 or (value == 0 and key != "maxFailedTrialCount"):
                    raise UserError(f"--{_flag_of(key)} {value}: must be a positive integer")
                notes.append(f"spec.{key}: {_show(spec.get(key))} -> {value}")
                spec[key] = value
        parallel = spec.get("parallelTrialCount", 3)
        if (
            self.max_trial_count is not None
            and self.parallel is None
            and isinstance(parallel, int)
            and parallel > self.max_trial_count
        ):
            notes.append(
                f"spec.parallelTrialCount: {parallel} -> {self.max_trial_count} (capped by --max-trial-count)"
            )
            spec["parallelTrialCount"] = self.max_trial_count
        max_failed = spec.get("maxFailedTrialCount")
        if (
            self.max_trial_count is not None
            and self.max_failed_trial_count is None
            and isinstance(max_failed, int)
            and max_failed > self.max_trial_count
        ):
            notes.append(
                f"spec.maxFailedTrialCount: {max_failed} -> {self.max_trial_count} (capped by --max-trial-count)"
            )
            spec["maxFailedTrialCount"] = self.max_trial_count
        if self.goal is not None:
            objective = spec.setdefault("objective", {})
            notes.append(f"spec.objective.goal: {_show(objective.get('goal'))} -> {self.goal:g}")
            objective["goal"] = self.goal
        for text in self.params:
            notes.append(_apply_param(spec, text))
        for text in self.algorithm_settings:
            notes.append(_apply_setting(spec, "algorithm", text, "--algorithm-setting"))
        for text in self.early_stopping_settings:
            notes.append(_apply_setting(spec, "earlyStopping", text, "--early-stopping-setting"))
        if self.set_env or self.set_args or self.drop_args:
            containers = primary_containers(raw)
            for text in self.set_env:
                name, value = split_pair(text, "--set-env", "KFTUNE_HOME=/tmp/kftune")
                notes.append(_apply_env(containers, name, value))
            for text in self.drop_args:
                notes.append(_apply_drop_arg(containers, text))
            for text in self.set_args:
                notes.append(_apply_set_arg(containers, text))
        return raw, notes


def _flag_of(key: str) -> str:
    return {
        "maxTrialCount": "max-trial-count",
        "parallelTrialCount": "parallel",
        "maxFailedTrialCount": "max-failed-trial-count",
    }[key]


def _show(value: Any) -> str:
    return "(unset)" if value is None else str(value)


def primary_containers(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The primary container of every pod template of the trial spec (PyTorchJob: all replicas)."""
    tt = (raw.get("spec") or {}).get("trialTemplate") or {}
    name = tt.get("primaryContainerName")
    trial_spec = tt.get("trialSpec")
    if not isinstance(trial_spec, dict):
        raise UserError("the Experiment has no spec.trialTemplate.trialSpec: nothing to override or run")
    found: list[dict[str, Any]] = []
    for _, template in pod_templates(trial_spec):
        container = find_container(template, name)
        if container is not None and not any(c is container for c in found):
            found.append(container)
    if not found:
        raise UserError(
            f"spec.trialTemplate.primaryContainerName {name!r} names no container of the trial's pod template"
        )
    return found


def _apply_param(spec: dict[str, Any], text: str) -> str:
    name, value = split_pair(text, "--param", "learning_rate=1e-4:3e-3")
    params = [p for p in spec.get("parameters") or [] if isinstance(p, dict)]
    match = [p for p in params if p.get("name") == name]
    if not match:
        names = ", ".join(str(p.get("name")) for p in params)
        raise UserError(
            f"--param {text}: no parameter named {name!r} in spec.parameters (there are: {names})"
        )
    param = match[0]
    fs = param.setdefault("feasibleSpace", {})
    ptype = param.get("parameterType")
    if ptype in ("int", "double"):
        parts = value.split(":")
        if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
            raise UserError(
                f"--param {text}: {name} is {ptype}; give MIN:MAX or MIN:MAX:STEP, e.g. --param {name}=1:3"
            )
        for part in parts:
            try:
                float(part)
            except ValueError:
                raise UserError(f"--param {text}: {part!r} is not a number") from None
        before = f"{fs.get('min')}..{fs.get('max')}"
        fs["min"], fs["max"] = parts[0].strip(), parts[1].strip()
        if len(parts) == 3:
            fs["step"] = parts[2].strip()
        after = f"{fs['min']}..{fs['max']}" + (f" step {fs['step']}" if len(parts) == 3 else "")
        return f"parameter {name}: {before} -> {after}"
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise UserError(f"--param {text}: {name} is {ptype}; give a comma-separated list, e.g. {name}=16,32")
    before = ",".join(str(v) for v in fs.get("list") or [])
    fs["list"] = items
    return f"parameter {name}: [{before}] -> [{','.join(items)}]"


def _apply_setting(spec: dict[str, Any], key: str, text: str, flag: str) -> str:
    name, value = split_pair(text, flag, "num_configurations=6")
    section = spec.get(key)
    if not isinstance(section, dict):
        raise UserError(f"{flag} {text}: the Experiment has no spec.{key}")
    settings = section.setdefault("algorithmSettings", [])
    for s in settings:
        if isinstance(s, dict) and s.get("name") == name:
            before = s.get("value")
            s["value"] = value
            return f"spec.{key} setting {name}: {_show(before)} -> {value}"
    settings.append({"name": name, "value": value})
    return f"spec.{key} setting {name}: (unset) -> {value}"


def _apply_env(containers: list[dict[str, Any]], name: str, value: str) -> str:
    before = None
    for c in containers:
        env = c.setdefault("env", [])
        for i, entry in enumerate(env):
            if isinstance(entry, dict) and entry.get("name") == name:
                before = entry.get("value", "(valueFrom)")
                env[i] = {"name": name, "value": value}
                break
        else:
            env.append({"name": name, "value": value})
    return f"env {name}: {_show(before)} -> {value}"


def _argv_lists(container: dict[str, Any]) -> list[list[Any]]:
    lists = []
    for key in ("command", "args"):
        if isinstance(container.get(key), list):
            lists.append(container[key])
    return lists


def _find_flag(items: list[Any], flag: str) -> tuple[int, bool] | None:
    """(index, inline) of the first ``flag`` / ``flag=...`` element."""
    for i, item in enumerate(items):
        s = str(item)
        if s == flag:
            return i, False
        if s.startswith(flag + "="):
            return i, True
    return None


def _takes_next(items: list[Any], i: int) -> bool:
    return i + 1 < len(items) and not str(items[i + 1]).startswith("--")


def _check_flag(text: str, option: str) -> str:
    if not text.startswith("-") or text in ("-", "--"):
        raise UserError(f"{option} {text!r}: expected a flag such as --model=tiny")
    return text


def _apply_set_arg(containers: list[dict[str, Any]], text: str) -> str:
    flag, sep, value = _check_flag(text, "--set-arg").partition("=")
    note = ""
    for c in containers:
        hit = None
        for items in _argv_lists(c):
            found = _find_flag(items, flag)
            if found is not None:
                hit = (items, *found)
                break
        if hit is None:
            c.setdefault("args", []).extend([flag, value] if sep else [flag])
            note = f"argument {flag}: (added) {value}".rstrip()
            continue
        items, i, inline = hit
        if not sep:  # a bare flag: make sure it is there
            note = f"argument {flag}: already there"
        elif inline:
            note = f"argument {flag}: {str(items[i]).partition('=')[2]} -> {value}"
            items[i] = f"{flag}={value}"
        elif _takes_next(items, i):
            note = f"argument {flag}: {items[i + 1]} -> {value}"
            items[i + 1] = value
        else:
            note = f"argument {flag}: (no value) -> {value}"
            items.insert(i + 1, value)
    return note


def _apply_drop_arg(containers: list[dict[str, Any]], text: str) -> str:
    flag = _check_flag(text, "--drop-arg").partition("=")[0]
    dropped = None
    for c in containers:
        for items in _argv_lists(c):
            while (hit := _find_flag(items, flag)) is not None:
                i, inline = hit
                n = 1 if inline or not _takes_next(items, i) else 2
                dropped = " ".join(str(x) for x in items[i : i + n])
                del items[i : i + n]
    if dropped is None:
        raise UserError(f"--drop-arg {text}: the primary container's command/args have no {flag}")
    return f"argument {flag}: removed ({dropped})"
