"""Findings of ``kftune katib validate`` and the small framework the rule modules share.

A rule is a function of a ``Check`` (one Experiment document) registered with ``@rule(id, source,
summary)``; it reports with ``check.error(ypath, what, fix)`` / ``check.warning(...)``. Rules never
stop at the first problem and never raise on malformed input: each reads the raw dict defensively.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from kftune.katib.experiment import Experiment
from kftune.katib.katib_config import KatibConfig
from kftune.katib.kubeyaml import Document, YPath

ERROR, WARNING, NOTE = "error", "warning", "note"
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_ypath(ypath: YPath) -> str:
    """``("spec", "parameters", 2, "feasibleSpace", "max")`` -> ``spec.parameters[2].feasibleSpace.max``."""
    out = ""
    for part in ypath:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


@dataclass(frozen=True)
class Finding:
    severity: str  # error | warning | note
    file: str
    line: int | None
    path: str  # YAML path, e.g. spec.parameters[2].feasibleSpace.max ("" for the whole document)
    message: str  # what is wrong
    fix: str  # how to fix it
    rule: str  # rule id, e.g. webhook.parameters
    document: int | None = None  # 0-based index of the document in its file

    @property
    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file

    def format(self) -> str:
        where = f"{self.path}: " if self.path else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{self.location}: {self.severity}: {where}{self.message}.{fix} [{self.rule}]"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Options:
    katib_config: KatibConfig
    kube_version: str = "1.30"
    check_algorithm_settings: bool = True


@dataclass
class Check:
    """The state one Experiment document's rules share."""

    exp: Experiment
    doc: Document
    options: Options
    findings: list[Finding] = field(default_factory=list)
    rule_id: str = ""

    def _add(self, severity: str, ypath: YPath, message: str, fix: str) -> None:
        self.findings.append(
            Finding(
                severity=severity,
                file=str(self.doc.path),
                line=self.doc.line_of(tuple(ypath)),
                path=format_ypath(tuple(ypath)),
                message=message.rstrip("."),
                fix=fix.rstrip("."),
                rule=self.rule_id,
                document=self.doc.index,
            )
        )

    def error(self, ypath: YPath, message: str, fix: str = "") -> None:
        self._add(ERROR, ypath, message, fix)

    def warning(self, ypath: YPath, message: str, fix: str = "") -> None:
        self._add(WARNING, ypath, message, fix)

    @property
    def spec(self) -> dict[str, Any]:
        return self.exp.spec


@dataclass(frozen=True)
class Rule:
    id: str
    source: str  # where it comes from: "validator.go: validateObjective", "kftune"...
    summary: str
    func: Callable[[Check], None]


RULES: dict[str, Rule] = {}


def rule(
    rule_id: str, source: str, summary: str
) -> Callable[[Callable[[Check], None]], Callable[[Check], None]]:
    def register(func: Callable[[Check], None]) -> Callable[[Check], None]:
        if rule_id in RULES:
            raise ValueError(f"rule {rule_id} registered twice")
        RULES[rule_id] = Rule(rule_id, source, summary, func)
        return func

    return register


def run_rules(check: Check, rules: list[Rule]) -> None:
    for r in rules:
        check.rule_id = r.id
        try:
            r.func(check)
        except Exception as exc:  # noqa: BLE001 - a rule bug must not hide the other findings
            check.error(
                (),
                f"internal error in rule {r.id}: {type(exc).__name__}: {exc}",
                "report this as a kftune bug",
            )
